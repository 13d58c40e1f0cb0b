"""ESMM: Entire Space Multi-task Model (Ma et al., SIGIR 2018).

pCTCVR = pCTR x pCVR. The CTR and CVR towers share the embeddings; losses are
on CTR (label: click) and CTCVR (label: click AND conversion) over *all*
impressions, so pCVR is never fit on the clicked subset alone, which removes
the sample selection bias and data sparsity of a click-only CVR model.
"""
from __future__ import annotations

from typing import List, Sequence

import tf_keras as keras

from trainer.features import InputFeature, build_inputs, embed
from trainer.layers import DNN


def build_esmm(features: List[InputFeature], tower_dnn_hidden_units: Sequence[int] = (128, 64),
               dropout: float = 0.0, l2_embedding: float = 0.0, task_names: Sequence[str] = ("ctr", "cvr"),
               **unused) -> keras.Model:
    if list(task_names) != ["ctr", "cvr"]:
        raise ValueError(f"ESMM models exactly the tasks ('ctr', 'cvr'), got {task_names}")
    inputs = build_inputs(features)
    shared, _ = embed(features, inputs, l2=l2_embedding)
    heads = {}
    for task in task_names:
        tower = DNN(tower_dnn_hidden_units, dropout=dropout, name=f"{task}_tower")(shared)
        heads[task] = keras.layers.Dense(1, activation="sigmoid", name=task)(tower)
    heads["ctcvr"] = keras.layers.Multiply(name="ctcvr")([heads["ctr"], heads["cvr"]])
    return keras.Model(inputs=inputs, outputs=heads, name="esmm")
