"""AITM: Adaptive Information Transfer Multi-task (Xi et al., KDD 2021).

The tasks are sequential (impression -> click -> conversion -> ...). Each step's tower receives
the previous step's representation through an AIT module and predicts that step's entire-space
probability, P(every step up to it | impression), on every impression; the behavioural
expectation calibrator penalises a step's probability above its parent's. Served heads per
step: the entire-space head (= min(raw, parent), so the invariant holds exactly) and the
conditional head = entire-space / parent's entire-space. A root task is predicted from its own
tower. Default funnel: ctr, ctcvr (the calibrated conversion step) and cvr = ctcvr / ctr.
"""
from __future__ import annotations

from typing import List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import DNN, AITMTransfer, BehaviorCalibrator, ConditionalProbability
from trainer.models.common import TASKS, TasksArg, bottom, check_tasks, output_layer


def build_aitm(features: List[InputFeature], tower_dnn_hidden_units: Sequence[int] = (128, 64),
               calibrator_alpha: float = 0.6, dropout: float = 0.0, l2_embedding: float = 0.0,
               tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("AITM", tasks)
    inputs, shared = bottom(features, l2_embedding)
    width = int(tower_dnn_hidden_units[-1])
    representation, heads = {}, {}
    for t in funnel.tasks:
        es = funnel.entire_space_head(t.name)
        tower = DNN(tower_dnn_hidden_units, dropout=dropout, name=f"{es}_tower")(shared)
        if t.after is None:
            representation[t.name] = tower
            heads[t.name] = output_layer(t)(tower)
            continue
        # The default funnel's one transfer keeps the name it had when AITM modelled ctr -> ctcvr only.
        ait = "ait" if len(funnel.tasks) == 2 else f"ait_{t.name}"
        representation[t.name] = AITMTransfer(width, name=ait)([representation[t.after], tower])
        if not t.binary:
            heads[t.name] = output_layer(t)(representation[t.name])
            continue
        parent = heads[funnel.entire_space_head(t.after)]
        raw = output_layer(t, name=f"{es}_raw")(representation[t.name])
        heads[es] = BehaviorCalibrator(calibrator_alpha, name=es)([raw, parent])
        heads[t.name] = ConditionalProbability(name=t.name)([heads[es], parent])
    return keras.Model(inputs, heads, name="aitm")
