"""STAR: Star Topology Adaptive Recommender (Sheng et al., CIKM 2021), the peer multi-domain baseline.

- Partitioned normalisation of the (shared) embeddings: per-scene statistics
  and per-scene scale and shift on top of shared ones.
- Star-topology FCN per head: scene d's layer kernel is W_shared * W_d and its
  bias b_shared + b_d (``PerDomainDense(star=True)``), the last layer giving
  the scene's logit.
- Auxiliary network per head: a small DNN on the scene indicator's embedding
  whose logit is added to the FCN's, so the scene can shift the prediction
  directly (the paper's input is "the domain indicator and features depicting
  the domain"; these logs have no other scene-describing feature).
- A multi-task middle from the zoo sits between the normalisation and the
  star towers, as on the transfer backbone; the paper is single-task (CTR).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

import tf_keras as keras

from trainer import initializers
from trainer.features import InputFeature, embed
from trainer.layers import DNN, DomainDNN, PartitionedNorm
from trainer.models.common import TASKS, TasksArg, check_tasks
from trainer.models.multi_domain import middle, scene_feature, scene_inputs, funnel_outputs


def build_star(features: List[InputFeature], multi_task: str = "esmm",
               multi_task_params: Optional[Mapping[str, Any]] = None,
               tower_dnn_hidden_units: Sequence[int] = (128, 64), aux_dnn_hidden_units: Sequence[int] = (16,),
               dropout: float = 0.0, l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("STAR", tasks)
    tasks = funnel.task_names
    _, num_domains = scene_feature(features)
    inputs, read, onehot = scene_inputs(features)
    shared, _ = embed(features, read, l2=l2_embedding)
    x = PartitionedNorm(num_domains, name="partitioned_norm")([shared, onehot])
    # one-hot times a bias-free kernel: the scene indicator's embedding
    scene_embedding = keras.layers.Dense(4, use_bias=False, kernel_initializer=initializers.dense(),
                                         name="aux_scene_embedding")(onehot)
    logits = {}
    for task, rep in middle(multi_task, multi_task_params, x, tasks).items():
        star = DomainDNN(list(tower_dnn_hidden_units) + [1], num_domains, output_activation="linear", star=True,
                         dropout=dropout, name=f"{task}_star_tower")([rep, onehot])
        aux = keras.layers.Dense(1, kernel_initializer=initializers.dense(), name=f"{task}_aux_logit")(
            DNN(aux_dnn_hidden_units, name=f"{task}_aux")(scene_embedding))
        logits[task] = keras.layers.Add(name=f"{task}_logit")([star, aux])
    return keras.Model(inputs, funnel_outputs(logits, funnel), name=f"star_{multi_task}")
