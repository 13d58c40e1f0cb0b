"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020), stacked CGC levels.

Each level has task-specific experts and shared experts; a task's gate mixes
its own and the shared experts, and between levels a shared gate mixes all of
them into the next level's shared input. One level is CGC.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import CGC
from trainer.models.common import TASKS, TasksArg, bottom, check_tasks, esmm_heads


def build_ple(features: List[InputFeature], num_levels: int = 2, specific_expert_num: int = 1,
              shared_expert_num: int = 1, expert_dnn_hidden_units: Sequence[int] = (128,),
              gate_dnn_hidden_units: Sequence[int] = (), tower_dnn_hidden_units: Sequence[int] = (64,),
              dropout: float = 0.0, l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("PLE", tasks)
    tasks = funnel.task_names
    inputs, shared = bottom(features, l2_embedding)
    task_inputs = ple_middle(shared, tasks, num_levels, specific_expert_num, shared_expert_num,
                             expert_dnn_hidden_units, gate_dnn_hidden_units, dropout)
    return keras.Model(inputs, esmm_heads(task_inputs, tower_dnn_hidden_units, dropout, funnel), name="ple")


def ple_middle(shared, tasks: List[str], num_levels: int = 2, specific_expert_num: int = 1,
               shared_expert_num: int = 1, expert_dnn_hidden_units: Sequence[int] = (128,),
               gate_dnn_hidden_units: Sequence[int] = (), dropout: float = 0.0) -> Dict[str, object]:
    """Each task's tower input: the last CGC level's output for that task."""
    if int(num_levels) < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    x = [shared] * (len(tasks) + 1)
    for level in range(int(num_levels)):
        x = CGC(len(tasks), specific_expert_num, shared_expert_num, expert_dnn_hidden_units, gate_dnn_hidden_units,
                is_last=level == int(num_levels) - 1, dropout=dropout, name=f"cgc_{level}")(x)
    return dict(zip(tasks, x))
