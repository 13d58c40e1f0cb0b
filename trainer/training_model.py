"""Which training wrapper a model gets: the served model never changes, only how it is trained.

Multi-domain transfer models (they have ``DomainTower`` heads) train with
per-scene losses and the Wasserstein critic (``trainer.multi_domain``); every
other model with ``MultiTaskModel``. Both take the same loss balancing.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import tf_keras as keras

from trainer.adversarial import DomainAdversarialModel
from trainer.balancing import MultiTaskModel
from schemas import scene_of
from trainer.features import InputFeature
from trainer.layers import DomainTower

MULTI_DOMAIN_KEYS = ("scene_loss", "adversarial_weight", "critic_steps", "lipschitz", "gradient_penalty_weight",
                     "clip_value", "critic_hidden_units", "critic_learning_rate", "source_scene")


def is_transfer_model(model: keras.Model) -> bool:
    return any(isinstance(layer, DomainTower) for layer in model.layers)


BALANCING_KEYS = ("method", "gradnorm_alpha", "weight_learning_rate")


def training_model(model: keras.Model, features: List[InputFeature], config: Mapping[str, Any]) -> MultiTaskModel:
    # The values come from configs/pipeline.yaml (trainer.loss_balancing); a key left out of a
    # hand-built config takes MultiTaskModel's own default.
    balancing = dict(config.get("loss_balancing") or {})
    unknown = sorted(set(balancing) - set(BALANCING_KEYS))
    if unknown:
        raise ValueError(f"trainer.loss_balancing has unknown keys {unknown}; known: {list(BALANCING_KEYS)}")
    common: Dict[str, Any] = {k: (v if k == "method" else float(v)) for k, v in balancing.items()}
    loss_weights: Dict[str, float] = config["loss_weights"]
    common["heads"] = config.get("heads")
    if not is_transfer_model(model):
        return MultiTaskModel(model, loss_weights, **common)
    settings = dict(config.get("multi_domain") or {})
    unknown = sorted(set(settings) - set(MULTI_DOMAIN_KEYS))
    if unknown:
        raise ValueError(f"trainer.multi_domain has unknown keys {unknown}; known: {list(MULTI_DOMAIN_KEYS)}")
    vocabulary = scene_of(features, lambda f: f.feature).vocabulary
    return DomainAdversarialModel(model, loss_weights, scene_vocabulary=vocabulary, **settings, **common)
