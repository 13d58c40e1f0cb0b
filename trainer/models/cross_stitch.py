"""Cross-stitch networks (Misra, Shrivastava, Gupta and Hebert, CVPR 2016).

One network per task on the shared embeddings; after every layer a cross-stitch unit mixes the
tasks' activations with a learned T×T matrix (``layers/task_networks.py``), initialised to
``stitch_init`` on the diagonal, so the networks start nearly separate and learn how much to
share. A soft-sharing baseline of the MMoE paper's census tables; heads as every model here
(ctcvr = ctr × cvr, trained on the entire impression space).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import TaskNetworks
from trainer.models.common import TASKS, TasksArg, check_tasks, middle_model


def build_cross_stitch(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                       stitch_init: float = 0.9, tower_dnn_hidden_units: Sequence[int] = (64,),
                       dropout: float = 0.0, l2_embedding: float = 0.0,
                       tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("Cross-stitch", tasks)
    tasks = funnel.task_names
    return middle_model("cross_stitch", features, l2_embedding, lambda x: cross_stitch_middle(
        x, tasks, bottom_dnn_hidden_units, stitch_init, dropout), tower_dnn_hidden_units, dropout, funnel)


def cross_stitch_middle(x, tasks: List[str], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                        stitch_init: float = 0.9, dropout: float = 0.0) -> Dict[str, object]:
    """Each task's tower input: its own network, stitched to the others' after every layer."""
    outs = TaskNetworks(len(tasks), bottom_dnn_hidden_units, dropout, cross_stitch=True, stitch_init=stitch_init,
                        name="cross_stitch")(x)
    return dict(zip(tasks, outs))
