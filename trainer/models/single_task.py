"""Single-task baseline: one independent network per task, embeddings included.

The row every multi-task table starts from (Caruana, Machine Learning 1997; the MMoE paper's
census tables): each task has its own embedding tables, bottom network and tower, so nothing
is shared but the input columns. Under this product's entire-space heads (ctcvr = ctr × cvr,
trained on ctr and ctcvr) the CTCVR loss still reaches the CTR network through the product;
what the baseline removes is every shared parameter.
"""
from __future__ import annotations

from typing import List, Sequence

import tf_keras as keras

from trainer.features import InputFeature, build_inputs, embed
from trainer.layers import DNN
from trainer.models.common import TASKS, TasksArg, check_tasks, esmm_heads


def build_single_task(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                      tower_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0,
                      l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("Single-task", tasks)
    tasks = funnel.task_names
    inputs = build_inputs(features)
    middle = {}
    for task in tasks:
        own, _ = embed(features, inputs, prefix=f"{task}_emb", l2=l2_embedding)
        middle[task] = DNN(bottom_dnn_hidden_units, dropout=dropout, name=f"{task}_bottom")(own)
    return keras.Model(inputs, esmm_heads(middle, tower_dnn_hidden_units, dropout, funnel), name="single_task")
