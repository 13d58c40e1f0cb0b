"""ESMM: Entire Space Multi-task Model (Ma et al., SIGIR 2018).

pCTCVR = pCTR x pCVR. The CTR and CVR towers share the embeddings; losses are
on CTR (label: click) and CTCVR (label: click AND conversion) over *all*
impressions, so pCVR is never fit on the clicked subset alone, which removes
the sample selection bias and data sparsity of a click-only CVR model.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tf_keras as keras

from trainer.features import InputFeature
from trainer.models.common import TASKS, TasksArg, bottom, check_tasks, esmm_heads


def build_esmm(features: List[InputFeature], tower_dnn_hidden_units: Sequence[int] = (128, 64),
               dropout: float = 0.0, l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("ESMM", tasks)
    tasks = funnel.task_names
    inputs, shared = bottom(features, l2_embedding)
    return keras.Model(inputs, esmm_heads(esmm_middle(shared, tasks), tower_dnn_hidden_units, dropout, funnel), name="esmm")


def esmm_middle(x, tasks: List[str]) -> Dict[str, object]:
    """ESMM's towers share the embeddings and nothing else."""
    return {t: x for t in tasks}
