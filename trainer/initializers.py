"""Weight initialisers of every model family, set per model in config (``model_params.initializers``).

    model_params:
      initializers:
        embedding: {class_name: RandomNormal, config: {stddev: 0.0001}}   # DeepCTR's choice
        dense: glorot_uniform                                               # Keras' default

Each value is any Keras initializer identifier: a name (``glorot_normal``, ``he_uniform``) or a
``{class_name, config}`` mapping. ``embedding`` is every embedding table (the multi-domain models'
shared and scene tables included); ``dense`` is the kernel of every Dense layer in bottoms, experts,
gates, towers and heads. The multi-domain per-scene kernels keep their own per-scene Glorot
(``layers/domain.py``): their fan-in is per scene, not per stacked tensor.

Why a scope rather than an argument on every layer: the same two choices apply to some thirty
layer constructors across the zoo, and an initialiser matters only while a model is built; a
model loaded from a SavedModel gets its trained weights whatever the scope says.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict, Iterator, Mapping, Optional

import tf_keras as keras

KEYS = ("embedding", "dense")
# Keras' own defaults (U(-0.05, 0.05) tables, Glorot-uniform kernels). DeepCTR's N(0, 1e-4) tables and
# Glorot-normal kernels, and He-normal kernels, measured no different on UCI Adult (README, "Initialisation").
DEFAULTS: Dict[str, Any] = {"embedding": "uniform", "dense": "glorot_uniform"}
_current: Dict[str, Any] = dict(DEFAULTS)


def _resolve(key: str, identifier: Any) -> keras.initializers.Initializer:
    try:
        return keras.initializers.get(copy.deepcopy(identifier))
    except (ValueError, TypeError) as e:
        raise ValueError(f"model_params.initializers.{key}: {identifier!r} is not a Keras initializer "
                         f"(a name such as 'glorot_normal' or {{class_name: RandomNormal, config: "
                         f"{{stddev: 0.0001}}}}): {e}") from None


def check(spec: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The full choice: defaults updated by ``spec``; unknown keys and identifiers are config errors."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ValueError(f"model_params.initializers has unknown keys {unknown}; known: {list(KEYS)}")
    chosen = dict(DEFAULTS, **spec)
    for key, identifier in chosen.items():
        _resolve(key, identifier)
    return chosen


@contextlib.contextmanager
def using(spec: Optional[Mapping[str, Any]]) -> Iterator[Dict[str, Any]]:
    global _current
    previous, _current = _current, check(spec)
    try:
        yield _current
    finally:
        _current = previous


def embedding() -> keras.initializers.Initializer:
    """A fresh initializer per table (each draws its own values under the global seed)."""
    return _resolve("embedding", _current["embedding"])


def dense() -> keras.initializers.Initializer:
    return _resolve("dense", _current["dense"])
