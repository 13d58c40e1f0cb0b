"""The multi-domain transfer model (Alibaba search team, "Transfer learning in multi-task multi-scene search", technical blog, 2019, part 1).

- Embeddings: feature j has a shared embedding and, per scene, a small
  scene-specific one; e^j = concat(e_c^j, e_d^j). Numeric features enter as
  their (normalised) value, shared by all scenes.
- Per-scene feature attention: a three-layer sigmoid gate per scene and
  feature, g^j = a^j * e^j (layers named ``attention_<feature>``; their second
  output is a^j, read by ``attention_by_scene``).
- A multi-task middle from the zoo (``multi_task``: esmm, shared_bottom, mmoe,
  omoe, ple) forms each task's tower input from concat(g^j).
- Per head, a shared tower plus a scene-specific tower, combined with
  per-scene output weights into the head's logit (``DomainTower``).
The per-scene losses and the Wasserstein regulariser are training-time terms:
``trainer.adversarial.DomainAdversarialModel``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tf_keras as keras

from trainer.features import InputFeature
from trainer.layers import DomainEmbedding, DomainTower, FeatureAttention, interactions
from trainer.models.common import TASKS, TasksArg, check_tasks
from trainer.models.multi_domain import middle, scene_feature, scene_inputs, funnel_outputs


def build_transfer(features: List[InputFeature], multi_task: str = "esmm",
                   multi_task_params: Optional[Mapping[str, Any]] = None, domain_embedding_dim: int = 4,
                   attention_hidden_units: Sequence[int] = (16, 16), tower_dnn_hidden_units: Sequence[int] = (128, 64),
                   domain_tower_dnn_hidden_units: Sequence[int] = (64,), dropout: float = 0.0,
                   l2_embedding: float = 0.0, tasks: TasksArg = TASKS) -> keras.Model:
    funnel = check_tasks("The transfer model", tasks)
    tasks = funnel.task_names
    _, num_domains = scene_feature(features)
    inputs, read, onehot = scene_inputs(features)
    gated = []
    for f in features:
        name = f.feature.name
        e = (DomainEmbedding(f.cardinality, f.feature.embedding_dim, domain_embedding_dim, num_domains,
                             l2=l2_embedding, name=f"emb_{name}")([read[name], onehot])
             if f.feature.is_sparse else read[name])
        g, _ = FeatureAttention(num_domains, attention_hidden_units, name=f"attention_{name}")([e, onehot])
        gated.append(g)
    x = interactions.interact(gated, "gated")
    logits = {}
    for task, rep in middle(multi_task, multi_task_params, x, tasks).items():
        logits[task], _, _ = DomainTower(num_domains, tower_dnn_hidden_units, domain_tower_dnn_hidden_units,
                                         dropout, name=f"{task}_tower")([rep, onehot])
    return keras.Model(inputs, funnel_outputs(logits, funnel), name=f"transfer_{multi_task}")


def attention_layers(model: keras.Model) -> Dict[str, FeatureAttention]:
    return {layer.name[len("attention_"):]: layer for layer in model.layers if isinstance(layer, FeatureAttention)}


def attention_model(model: keras.Model) -> keras.Model:
    """inputs -> {feature: a^j (batch, width)}: the per-example attention weights."""
    return keras.Model(model.inputs, {name: layer.output[1] for name, layer in attention_layers(model).items()})


def attention_by_scene(model: keras.Model, batches, scene_input: str, num_domains: int) -> np.ndarray:
    """Mean attention weight per scene (rows) and feature (columns, ``attention_layers`` order),
    averaged over the embedding elements and the examples of ``batches`` (feature dicts);
    NaN for a scene with no example."""
    probe = attention_model(model)
    names = list(attention_layers(model))
    total = np.zeros((num_domains, len(names)))
    count = np.zeros(num_domains)
    for x in batches:
        weights = probe(x, training=False)
        scene = np.asarray(x[scene_input]).reshape(-1)
        per_feature = np.stack([weights[n].numpy().mean(axis=1) for n in names], axis=1)
        for d in range(num_domains):
            mask = scene == d
            total[d] += per_feature[mask].sum(axis=0)
            count[d] += mask.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count[:, None]


def attention_summary(model: keras.Model, dataset, features: List[InputFeature],
                      max_batches: int = 20) -> Dict[str, Dict[str, float]]:
    """{scene name: {feature: mean attention weight}} on up to ``max_batches`` batches of
    (features, labels); {} for a model without feature attention. The Trainer logs it and
    writes it to train_summary.json, the figure the seed reports."""
    if not attention_layers(model):
        return {}
    scene, num_domains = scene_feature(features)
    names = scene.vocabulary or tuple(str(d) for d in range(num_domains))
    table = attention_by_scene(model, (x for x, _ in dataset.take(max_batches)), scene.feature.name, num_domains)
    return {names[d]: {f: round(float(w), 4) for f, w in zip(attention_layers(model), table[d])}
            for d in range(num_domains) if not np.isnan(table[d]).all()}
