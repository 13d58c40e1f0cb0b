"""Bayesian multi-objective chain (Taobao live-stream ranking).

The funnel's joint probability factorises along the chain,
P(t1, t2, t3 | x) = P(t3 | t1, t2, x) · P(t2 | t1, x) · P(t1 | x), and the model is trained on
the weighted factors, -L = w1 log P(t3 | t1, t2, x) + w2 log P(t2 | t1, x) + w3 log P(t1 | x).

Here each factor is a task's conditional head. Labels are nested (a cart needs a click), so
conditioning on the earlier behaviours is conditioning on the parent's event, and a factor's
log-likelihood is its cross-entropy on the rows where the parent happened (0 elsewhere: given no
click, no cart is certain). The Trainer does exactly that for every conditional head that
``trainer.loss_weights`` names (schemas/tasks.py), so the weights there are the w_k, one per
factor, and this model requires one for every task's conditional head.

Each factor's tower reads the shared representation and its parent factor's tower output, so
what was learned about the earlier step conditions the next (the chain's information path); the
entire-space heads are the products of the factors down the chain, as in every model here.
"""
from __future__ import annotations

from typing import List, Mapping, Sequence

import tf_keras as keras

from schemas.tasks import Funnel
from trainer.features import InputFeature
from trainer.layers import DNN
from trainer.models.common import TASKS, TasksArg, bottom, chain_heads, check_tasks, output_layer


def build_bayes_chain(features: List[InputFeature], bottom_dnn_hidden_units: Sequence[int] = (256, 128),
                      tower_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0,
                      l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("Bayesian chain", tasks)
    inputs, shared = bottom(features, l2_embedding)
    x = DNN(bottom_dnn_hidden_units, dropout=dropout, name="chain_shared")(shared) if bottom_dnn_hidden_units \
        else shared
    representation, conditional = {}, {}
    for t in funnel.tasks:
        given = x if t.after is None else keras.layers.Concatenate(name=f"{t.name}_given")(
            [x, representation[t.after]])
        representation[t.name] = DNN(tower_dnn_hidden_units, dropout=dropout, name=f"{t.name}_tower")(given)
        conditional[t.name] = output_layer(t)(representation[t.name])
    return keras.Model(inputs, chain_heads(conditional, funnel), name="bayes_chain")


def check_factor_weights(funnel: Funnel, loss_weights: Mapping[str, float]) -> None:
    """The chain's objective has one weighted term per factor: every task's conditional head."""
    missing = [t.name for t in funnel.tasks if t.name not in loss_weights]
    if missing:
        raise ValueError(f"model bayes_chain trains every factor P(task | parent, x): trainer.loss_weights needs a "
                         f"weight for the conditional heads {missing} (e.g. loss_weights: "
                         f"{ {t.name: 1.0 for t in funnel.tasks} })")
