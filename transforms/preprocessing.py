"""preprocessing_fn: every output is derived from the feature spec; no feature name lives here.

Passed to Transform as a dotted path (``transforms.preprocessing.preprocessing_fn``)
so TFX imports it instead of packaging a module file into a wheel.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from schemas import FEATURE_SPEC_PATH, Feature, load_feature_spec


def vocabulary_name(feature: Feature) -> str:
    """The vocabulary file name TFT writes for a feature (listed by `rankpipe vocab`)."""
    return feature.name


def _dense(x):
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value="" if x.dtype == tf.string else 0)
    return x


def transform_feature(feature: Feature, x: tf.Tensor) -> tf.Tensor:
    x = _dense(x)
    if feature.kind in ("categorical", "scene"):
        return tft.compute_and_apply_vocabulary(
            x, top_k=feature.top_k, frequency_threshold=feature.frequency_threshold or None,
            num_oov_buckets=feature.num_oov_buckets, vocab_filename=vocabulary_name(feature))
    if feature.kind == "hashed":
        return tf.strings.to_hash_bucket_fast(x, feature.hash_buckets)
    if feature.kind == "numeric":
        x = tf.cast(x, tf.float32)
        if feature.log1p:
            x = tf.math.log1p(tf.maximum(x, 0.0))
        if feature.scale == "z_score":
            return tft.scale_to_z_score(x)
        if feature.scale == "min_max":
            return tft.scale_to_0_1(x)
        return x
    if feature.kind == "bucketized":
        return tft.bucketize(tf.cast(x, tf.float32), feature.num_buckets)
    raise ValueError(f"feature '{feature.name}': unsupported kind {feature.kind!r}")


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    spec_path = (custom_config or {}).get("feature_spec_path") or FEATURE_SPEC_PATH
    spec = load_feature_spec(spec_path)
    outputs = {}
    for feature in spec.features:
        if feature.source_column not in inputs:
            raise KeyError(f"feature '{feature.name}' from {spec_path} reads column '{feature.source_column}', "
                           f"which is not in the examples' schema; available: {sorted(inputs)}")
        outputs[feature.name] = transform_feature(feature, inputs[feature.source_column])
    for label in spec.labels:
        if label in inputs:
            outputs[label] = tf.cast(_dense(inputs[label]), tf.float32)
    # Passthrough ids let training-path and serving-path predictions be matched row by row
    # (the skew test); the model never reads them and serving requests need not send them.
    for name in spec.passthrough:
        if name in inputs:
            outputs[name] = _dense(inputs[name])
    return outputs
