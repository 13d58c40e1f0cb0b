"""Keras inputs and embeddings built from the feature spec and the Transform vocabularies."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import tf_keras as keras

from schemas import Feature, FeatureSpec
from trainer import initializers
from trainer.layers import interactions, penalty


@dataclasses.dataclass(frozen=True)
class InputFeature:
    feature: Feature
    cardinality: int  # rows of the embedding table; 0 for numeric features
    vocabulary: Tuple[str, ...] = ()  # the scene feature's values, index order (multi-domain models)


def input_features(spec: FeatureSpec, tft_output) -> List[InputFeature]:
    """Cardinalities come from the Transform output, so vocabularies can grow day to day."""
    out = []
    for f in spec.features:
        if f.kind in ("categorical", "scene"):
            size = tft_output.vocabulary_size_by_name(f.name) + f.num_oov_buckets
        elif f.kind == "hashed":
            size = f.hash_buckets
        elif f.kind == "bucketized":
            size = f.num_buckets
        else:
            size = 0
        vocab = tuple(v.decode() if isinstance(v, bytes) else str(v)
                      for v in tft_output.vocabulary_by_name(f.name)) if f.kind == "scene" else ()
        out.append(InputFeature(f, int(size), vocab))
    return out


def raw_input_spec(spec: FeatureSpec, tft_output) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(what serving and training feed to tft_layer, the rest: labels and passthrough ids).

    Serving requests carry neither labels nor ids, so neither may reach the Transform
    graph in training: one split, used by both paths."""
    raw = tft_output.raw_feature_spec()
    extra_names = set(spec.labels) | set(spec.passthrough)
    return ({k: v for k, v in raw.items() if k not in extra_names},
            {k: v for k, v in raw.items() if k in extra_names})


def build_inputs(features: List[InputFeature]) -> Dict[str, keras.Input]:
    return {
        f.feature.name: keras.Input(shape=(1,), name=f.feature.name,
                                    dtype="int64" if f.feature.is_sparse else "float32")
        for f in features
    }


def embed(features: List[InputFeature], inputs: Dict[str, keras.Input], prefix: str = "emb",
          l2: float = 0.0) -> Tuple[keras.layers.Layer, List]:
    """The bottom (``layers/interactions.py``; by default the concatenated embeddings of sparse features
    and the numeric features, shape (batch, width)) and the per-field parts."""
    reg = penalty.table_regularizer(l2)
    parts = []
    for f in features:
        x = inputs[f.feature.name]
        if f.feature.is_sparse:
            e = keras.layers.Embedding(f.cardinality, f.feature.embedding_dim, embeddings_regularizer=reg,
                                       embeddings_initializer=initializers.embedding(),
                                       name=f"{prefix}_{f.feature.name}")(x)
            if l2 and penalty.current() == "batch":
                e = penalty.BatchL2(l2, f.cardinality, penalty.counts(f.feature.name),
                                    name=f"{prefix}_{f.feature.name}_l2")([x, e])
            parts.append(keras.layers.Flatten(name=f"{prefix}_{f.feature.name}_flat")(e))
        else:
            parts.append(x)
    return interactions.interact(parts, prefix), parts
