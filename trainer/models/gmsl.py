"""GMSL: a GRU over the tasks in funnel order (Lazada's multi-target ranking network).

After the shared layer, one network per task (in the order of the funnel: click, then
conversion, ...); their outputs, in that order, are the inputs of a GRU, and each GRU node's
output is its task's representation, so the last node, which has read every earlier task's,
predicts the last and sparsest task. Here each node feeds its task's tower and conditional head,
and the entire-space heads are the products along the chain (ctcvr = ctr × cvr), trained on the
entire impression space as every model here.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer import initializers
from trainer.features import InputFeature
from trainer.layers import DNN, SequenceStep, TaskNetworks
from trainer.models.common import TASKS, TasksArg, check_tasks, middle_model


def build_gmsl(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
               task_dnn_hidden_units: Sequence[int] = (64,), gru_units: int = 32,
               tower_dnn_hidden_units: Sequence[int] = (32,), dropout: float = 0.0, l2_embedding: float = 0.0,
               tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("GMSL", tasks)
    tasks = funnel.task_names
    return middle_model("gmsl", features, l2_embedding, lambda x: gmsl_middle(
        x, tasks, bottom_dnn_hidden_units, task_dnn_hidden_units, gru_units, dropout), tower_dnn_hidden_units, dropout, funnel)


def gmsl_middle(x, tasks: List[str], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                task_dnn_hidden_units: Sequence[int] = (64,), gru_units: int = 32,
                dropout: float = 0.0) -> Dict[str, object]:
    """Each task's tower input: its GRU node, which has read the task networks up to its own."""
    if int(gru_units) < 1:
        raise ValueError(f"gru_units must be >= 1, got {gru_units}")
    shared = DNN(bottom_dnn_hidden_units, dropout=dropout, name="gmsl_shared")(x) if bottom_dnn_hidden_units else x
    sequence = TaskNetworks(len(tasks), task_dnn_hidden_units, dropout, stacked=True, name="gmsl_tasks")(shared)
    nodes = keras.layers.GRU(int(gru_units), return_sequences=True, kernel_initializer=initializers.dense(),
                             name="gmsl_gru")(sequence)
    return {t: SequenceStep(i, name=f"gmsl_node_{t}")(nodes) for i, t in enumerate(tasks)}
