"""What every multi-task model shares: the embedding bottom and the funnel's heads.

Every model takes ``tasks`` (the funnel, ``schemas/tasks.py``; default click -> conversion) and
outputs its heads: one conditional head per task and the entire-space products down the chain
(default: ctr, cvr and ctcvr = ctr x cvr). Which heads carry a loss is the Trainer's choice
(``trainer.loss_weights``): by default the entire-space ones, so CVR is learned through CTCVR over
every impression (ESMM's decomposition) and no model fits it on the clicked subset alone.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import tf_keras as keras

from schemas.tasks import DEFAULT_FUNNEL, Funnel, Task, TaskConfigError, funnel_of
from trainer import initializers
from trainer.features import InputFeature, build_inputs, embed
from trainer.layers import DNN, ProbabilityProduct

TasksArg = Union[None, Funnel, Iterable[Mapping[str, Any]]]

TASKS = None  # a builder's default ``tasks``: the default funnel (schemas/tasks.py), click -> conversion


def check_tasks(model: str, tasks: TasksArg) -> Funnel:
    """The funnel a builder was given (a Funnel, the ``tasks:`` config list, or None: the default)."""
    try:
        return funnel_of(tasks)
    except TaskConfigError as e:
        raise ValueError(f"{model}: {e}") from e


def bottom(features: List[InputFeature], l2_embedding: float = 0.0) -> Tuple[Dict, object]:
    inputs = build_inputs(features)
    shared, _ = embed(features, inputs, l2=l2_embedding)
    return inputs, shared


def output_layer(task: Task, name: Optional[str] = None) -> keras.layers.Layer:
    """A binary task's head is a sigmoid probability, a regression task's a linear value."""
    return keras.layers.Dense(1, activation="sigmoid" if task.binary else None,
                              kernel_initializer=initializers.dense(), name=name or task.name)


def chain_heads(conditional: Dict[str, object], funnel: Funnel) -> Dict[str, object]:
    """The conditional heads plus the entire-space heads: P(task and its ancestors) is the parent's
    entire-space probability times the task's conditional one, down the funnel (ESMM's product)."""
    heads = dict(conditional)
    for t in funnel.tasks:
        if t.after is not None and t.binary:
            es = funnel.entire_space_head(t.name)
            heads[es] = ProbabilityProduct(name=es)([heads[funnel.entire_space_head(t.after)], heads[t.name]])
    return heads


def esmm_heads(task_inputs: Dict[str, object], tower_dnn_hidden_units: Sequence[int],
               dropout: float = 0.0, funnel: Optional[Funnel] = None) -> Dict[str, object]:
    """One tower per task on its representation, its conditional head, and the chain's products."""
    funnel = funnel or DEFAULT_FUNNEL
    conditional = {}
    for t in funnel.tasks:
        tower = DNN(tower_dnn_hidden_units, dropout=dropout, name=f"{t.name}_tower")(task_inputs[t.name])
        conditional[t.name] = output_layer(t)(tower)
    return chain_heads(conditional, funnel)


def middle_model(name: str, features: List[InputFeature], l2_embedding: float,
                 make_middle: Callable[[object], Dict[str, object]], tower_dnn_hidden_units: Sequence[int],
                 dropout: float = 0.0, funnel: Optional[Funnel] = None) -> keras.Model:
    """The zoo's usual shape: the embedding bottom, a middle's per-task inputs, towers and heads."""
    inputs, shared = bottom(features, l2_embedding)
    return keras.Model(inputs, esmm_heads(make_middle(shared), tower_dnn_hidden_units, dropout, funnel), name=name)
