"""What every multi-task model shares: the embedding bottom and the ctr / cvr / ctcvr heads.

Every model outputs the three named heads and trains over the entire
impression space: CTR against click and CTCVR against click AND conversion on
every impression; CVR is learned through CTCVR (ESMM's decomposition), so no
model fits CVR on the clicked subset alone.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import tf_keras as keras

from trainer import initializers
from trainer.features import InputFeature, build_inputs, embed
from trainer.layers import DNN, ProbabilityProduct

TASKS = ("ctr", "cvr")


def check_tasks(model: str, task_names: Sequence[str]) -> List[str]:
    if list(task_names) != list(TASKS):
        raise ValueError(f"{model} models the tasks {TASKS} (ctcvr = ctr x cvr), got {list(task_names)}")
    return list(task_names)


def bottom(features: List[InputFeature], l2_embedding: float = 0.0) -> Tuple[Dict, object]:
    inputs = build_inputs(features)
    shared, _ = embed(features, inputs, l2=l2_embedding)
    return inputs, shared


def esmm_heads(task_inputs: Dict[str, object], tower_dnn_hidden_units: Sequence[int],
               dropout: float = 0.0) -> Dict[str, object]:
    """One tower per task on its representation, sigmoid heads, and ctcvr = ctr x cvr."""
    heads = {}
    for task, x in task_inputs.items():
        tower = DNN(tower_dnn_hidden_units, dropout=dropout, name=f"{task}_tower")(x)
        heads[task] = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=initializers.dense(),
                                         name=task)(tower)
    heads["ctcvr"] = ProbabilityProduct(name="ctcvr")([heads["ctr"], heads["cvr"]])
    return heads


def middle_model(name: str, features: List[InputFeature], l2_embedding: float,
                 make_middle: Callable[[object], Dict[str, object]], tower_dnn_hidden_units: Sequence[int],
                 dropout: float = 0.0) -> keras.Model:
    """The zoo's usual shape: the embedding bottom, a middle's per-task inputs, towers and heads."""
    inputs, shared = bottom(features, l2_embedding)
    return keras.Model(inputs, esmm_heads(make_middle(shared), tower_dnn_hidden_units, dropout), name=name)
