"""MMoE (Ma et al., KDD 2018) and its one-gate ablation OMoE.

n experts f_i on the shared input; per task k a gate g^k(x) = softmax(W_gk x);
task k's tower sees f^k(x) = sum_i g^k(x)_i f_i(x). OMoE uses one gate for all
tasks. The gates are named ``gate_<task>`` (OMoE: ``gate``) so their weights
can be read off the model.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import ExpertMix, Experts, Gate
from trainer.models.common import TASKS, TasksArg, bottom, check_tasks, esmm_heads


def build_mmoe(features: List[InputFeature], num_experts: int = 4, expert_dnn_hidden_units: Sequence[int] = (128,),
               gate_dnn_hidden_units: Sequence[int] = (), tower_dnn_hidden_units: Sequence[int] = (64,),
               dropout: float = 0.0, l2_embedding: float = 0.0, tasks: TasksArg = TASKS,
               one_gate: bool = False) -> keras.Model:
    funnel = check_tasks("OMoE" if one_gate else "MMoE", tasks)
    tasks = funnel.task_names
    inputs, shared = bottom(features, l2_embedding)
    task_inputs = mmoe_middle(shared, tasks, num_experts, expert_dnn_hidden_units, gate_dnn_hidden_units, dropout,
                              one_gate)
    return keras.Model(inputs, esmm_heads(task_inputs, tower_dnn_hidden_units, dropout, funnel),
                       name="omoe" if one_gate else "mmoe")


def mmoe_middle(x, tasks: List[str], num_experts: int = 4, expert_dnn_hidden_units: Sequence[int] = (128,),
                gate_dnn_hidden_units: Sequence[int] = (), dropout: float = 0.0,
                one_gate: bool = False) -> Dict[str, object]:
    """Each task's tower input: its gate's mix of the experts (OMoE: one gate for all tasks)."""
    experts = Experts(num_experts, expert_dnn_hidden_units, dropout, name="experts")(x)
    if one_gate:
        mixed = ExpertMix(name="mix")([experts, Gate(num_experts, gate_dnn_hidden_units, name="gate")(x)])
        return {t: mixed for t in tasks}
    return {t: ExpertMix(name=f"mix_{t}")([experts, Gate(num_experts, gate_dnn_hidden_units, name=f"gate_{t}")(x)])
            for t in tasks}


build_omoe = functools.partial(build_mmoe, one_gate=True)
omoe_middle = functools.partial(mmoe_middle, one_gate=True)
