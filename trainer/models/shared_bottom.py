"""Shared-Bottom (hard parameter sharing, Caruana 1997): one shared DNN, one tower per task.

The baseline the MMoE paper compares against; heads as every model here
(ctcvr = ctr x cvr, trained on the entire impression space).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import DNN
from trainer.models.common import TASKS, TasksArg, bottom, check_tasks, esmm_heads


def build_shared_bottom(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                        tower_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0,
                        l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("Shared-Bottom", tasks)
    tasks = funnel.task_names
    inputs, shared = bottom(features, l2_embedding)
    return keras.Model(inputs, esmm_heads(shared_bottom_middle(shared, tasks, bottom_dnn_hidden_units, dropout),
                                          tower_dnn_hidden_units, dropout, funnel), name="shared_bottom")


def shared_bottom_middle(x, tasks: List[str], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                         dropout: float = 0.0) -> Dict[str, object]:
    """Each task's tower input from the shared representation (also used on multi-domain backbones)."""
    shared = DNN(bottom_dnn_hidden_units, dropout=dropout, name="shared_bottom")(x)
    return {t: shared for t in tasks}
