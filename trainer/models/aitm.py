"""AITM: Adaptive Information Transfer Multi-task (Xi et al., KDD 2021).

The tasks are sequential (impression -> click -> conversion). The conversion
tower receives the click tower's representation through the AIT module and
predicts CTCVR, P(click and conversion), on every impression; the behavioural
expectation calibrator penalises pCTCVR > pCTR. Served heads: ctr, ctcvr
(= min(raw, ctr), so the invariant holds exactly) and cvr = ctcvr / ctr.
"""
from __future__ import annotations

from typing import List, Sequence

import tf_keras as keras

from trainer import initializers
from trainer.features import InputFeature
from trainer.layers import DNN, AITMTransfer, BehaviorCalibrator, ConditionalProbability
from trainer.models.common import TASKS, bottom, check_tasks


def build_aitm(features: List[InputFeature], tower_dnn_hidden_units: Sequence[int] = (128, 64),
               calibrator_alpha: float = 0.6, dropout: float = 0.0, l2_embedding: float = 0.0,
               task_names: Sequence[str] = TASKS) -> keras.Model:
    check_tasks("AITM", task_names)
    inputs, shared = bottom(features, l2_embedding)
    click = DNN(tower_dnn_hidden_units, dropout=dropout, name="ctr_tower")(shared)
    conversion = DNN(tower_dnn_hidden_units, dropout=dropout, name="ctcvr_tower")(shared)
    transferred = AITMTransfer(int(tower_dnn_hidden_units[-1]), name="ait")([click, conversion])
    ctr = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=initializers.dense(), name="ctr")(click)
    raw = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=initializers.dense(),
                             name="ctcvr_raw")(transferred)
    ctcvr = BehaviorCalibrator(calibrator_alpha, name="ctcvr")([raw, ctr])
    cvr = ConditionalProbability(name="cvr")([ctcvr, ctr])
    return keras.Model(inputs, {"ctr": ctr, "cvr": cvr, "ctcvr": ctcvr}, name="aitm")
