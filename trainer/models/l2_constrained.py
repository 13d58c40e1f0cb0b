"""L2-constrained soft parameter sharing (Duong, Cohn, Bird and Cook, ACL 2015).

One network per task on the shared embeddings, and a penalty λ·Σ_layers Σ_{i<j} ‖W_i − W_j‖²
between the corresponding kernels of every pair of task networks (``layers/task_networks.py``),
so the tasks share by keeping their networks close rather than by sharing them. λ = 0 is
independent networks; a large λ approaches Shared-Bottom. A soft-sharing baseline of the MMoE
paper's census tables; heads as every model here.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import TaskNetworks
from trainer.models.common import TASKS, TasksArg, check_tasks, middle_model


def build_l2_constrained(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                         l2_distance: float = 1e-3, tower_dnn_hidden_units: Sequence[int] = (64,),
                         dropout: float = 0.0, l2_embedding: float = 0.0,
                         tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("L2-constrained", tasks)
    tasks = funnel.task_names
    return middle_model("l2_constrained", features, l2_embedding, lambda x: l2_constrained_middle(
        x, tasks, bottom_dnn_hidden_units, l2_distance, dropout), tower_dnn_hidden_units, dropout, funnel)


def l2_constrained_middle(x, tasks: List[str], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                          l2_distance: float = 1e-3, dropout: float = 0.0) -> Dict[str, object]:
    """Each task's tower input: its own network, pulled towards the others' by the penalty."""
    outs = TaskNetworks(len(tasks), bottom_dnn_hidden_units, dropout, l2_distance=l2_distance,
                        name="l2_constrained")(x)
    return dict(zip(tasks, outs))
