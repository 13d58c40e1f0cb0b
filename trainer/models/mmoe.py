"""MMoE (Ma et al., KDD 2018) and its one-gate ablation OMoE.

n experts f_i on the shared input; per task k a gate g^k(x) = softmax(W_gk x);
task k's tower sees f^k(x) = sum_i g^k(x)_i f_i(x). OMoE uses one gate for all
tasks. The gates are named ``gate_<task>`` (OMoE: ``gate``) so their weights
can be read off the model.
"""
from __future__ import annotations

import functools
from typing import List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import ExpertMix, Experts, Gate
from trainer.models.common import TASKS, bottom, check_tasks, esmm_heads


def build_mmoe(features: List[InputFeature], num_experts: int = 4, expert_dnn_hidden_units: Sequence[int] = (128,),
               gate_dnn_hidden_units: Sequence[int] = (), tower_dnn_hidden_units: Sequence[int] = (64,),
               dropout: float = 0.0, l2_embedding: float = 0.0, task_names: Sequence[str] = TASKS,
               one_gate: bool = False) -> keras.Model:
    tasks = check_tasks("OMoE" if one_gate else "MMoE", task_names)
    inputs, shared = bottom(features, l2_embedding)
    experts = Experts(num_experts, expert_dnn_hidden_units, dropout, name="experts")(shared)
    if one_gate:
        gate = Gate(num_experts, gate_dnn_hidden_units, name="gate")(shared)
        mixed = ExpertMix(name="mix")([experts, gate])
        task_inputs = {t: mixed for t in tasks}
    else:
        task_inputs = {t: ExpertMix(name=f"mix_{t}")([experts, Gate(num_experts, gate_dnn_hidden_units,
                                                                     name=f"gate_{t}")(shared)])
                       for t in tasks}
    return keras.Model(inputs, esmm_heads(task_inputs, tower_dnn_hidden_units, dropout),
                       name="omoe" if one_gate else "mmoe")


build_omoe = functools.partial(build_mmoe, one_gate=True)
