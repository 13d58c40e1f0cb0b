"""tf.data input: raw joined tf.Examples of the training window, transformed by the Transform graph.

The Trainer reads the LogJoinExampleGen output (one artifact per span) and
applies ``tft_layer``, the same layer the serving signature applies, so the
training path and the serving path share one implementation of every feature.
Batches before parsing and transforming: one vectorised parse and one graph
call per batch instead of per record.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from schemas import FeatureSpec, load_feature_spec
from trainer.features import InputFeature, input_features, raw_input_spec


MAX_OPEN_FILES = 64  # files read round-robin at once (each holds a gzip stream's buffers)
PARSE_ROWS = 8192  # records parsed and transformed per call (one vectorised parse, one graph call)
CACHES = ("none", "memory", "disk")


def list_files(file_patterns: Sequence[str]) -> List[str]:
    files: List[str] = []
    for pattern in file_patterns:
        files.extend(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {list(file_patterns)}")
    return sorted(files)


def make_dataset(file_patterns: Sequence[str], raw_inputs: Dict[str, tf.io.FixedLenFeature],
                 raw_extra: Dict[str, tf.io.FixedLenFeature], tft_layer, feature_names: List[str], head_labels: Dict[str, str], batch_size: int,
                 shuffle: bool, repeat: bool = False, seed: int = 0, shuffle_buffer: int = 200_000,
                 keep: Sequence[str] = (), holdout_percent: int = 0, holdout: bool = False,
                 cache: str = "none", cache_dir: str = "") -> tf.data.Dataset:
    """Yields (transformed features, {head: label}) in batches of ``batch_size`` (the last one may be short).

    ``raw_inputs`` is what ``tft_layer`` gets, the same spec the serving signature parses
    (``features.raw_input_spec``). Labels come from ``raw_extra``, read raw and cast to
    float, never transformed. ``keep`` adds raw columns from ``raw_extra`` (e.g.
    ``impression_id``) to the features, for matching rows in tests.

    Every step works on blocks of rows, never on one record at a time: tf.data pays a few
    microseconds per element, as much as a small model's training step per example here. So
    records are grouped ``PARSE_ROWS`` at a time, parsed and transformed in parallel, and
    ``shuffle`` permutes the rows of consecutive windows of ``shuffle_buffer`` examples with a
    fresh permutation every epoch (``Dataset.shuffle`` over single records cost more than
    parsing them). The log join writes each span in a hash order of the impression id,
    independent of the labels (``join_logic.write_order_key``), so a window is already a random
    sample; spans joined before that change are in Beam's group order (clicked impressions first),
    which a window smaller than the span cannot undo.

    ``cache`` keeps the transformed windows after the first pass: ``memory`` (about 100 bytes per
    example for today's features), ``disk`` (tf.data's file cache under ``cache_dir``, for windows
    larger than memory), or ``none``. Later epochs then skip reading, parsing and transforming;
    they still get a new permutation within each window.

    ``holdout_percent`` > 0 sets aside that share of the records (by a hash of each serialized
    record, so the same records every epoch and every run, with no parsing) for early stopping:
    ``holdout=False`` yields the rest, ``holdout=True`` the share."""
    if cache not in CACHES:
        raise ValueError(f"input cache must be one of {CACHES}, got {cache!r}")
    if cache == "disk" and not cache_dir:
        raise ValueError("input cache 'disk' needs a cache_dir")
    spec = dict(raw_inputs)
    spec.update({k: raw_extra[k] for k in set(head_labels.values()) | set(keep)})
    files = list_files(file_patterns)
    # Records alternate between the files (one per span, or the span's shards), read in this thread:
    # TFRecordDataset's num_parallel_reads (a parallel interleave) delivered 35-58k records/s here
    # against 490-700k for this sequential interleave, below what the models train at.
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), MAX_OPEN_FILES), block_length=1).batch(PARSE_ROWS)
    if holdout_percent:
        ds = ds.map(lambda records: tf.boolean_mask(records, tf.equal(
            tf.strings.to_hash_bucket_fast(records, 100) < int(holdout_percent), holdout)))

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        transformed = tft_layer({k: parsed[k] for k in raw_inputs})
        x = {name: transformed[name] for name in feature_names}
        x.update({k: parsed[k] for k in keep})
        y = {head: tf.cast(parsed[label], tf.float32) for head, label in head_labels.items()}
        return x, y

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.rebatch(max(int(shuffle_buffer), batch_size))
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk":
        ds = ds.cache(os.path.join(cache_dir, "window"))
    if repeat:
        ds = ds.repeat()
    if shuffle:
        # A fresh seed per window and per iteration (Keras makes one iterator per epoch); stateless
        # shuffles, because a seeded stateful op restarts its sequence with every new iterator.
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)))
        ds = ds.map(_permute_rows)
    return ds.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)


def _permute_rows(window, draw):
    x, y = window
    order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(next(iter(y.values())))[0]),
                                                    seed=tf.stack([draw, 0]))
    return tf.nest.map_structure(lambda t: tf.gather(t, order), (x, y))


@dataclasses.dataclass
class TrainingInputs:
    """Everything the model's input side derives from the feature spec and one Transform output:
    the Trainer, the benchmarks and the skew test build their datasets through this."""
    spec: FeatureSpec
    tft_output: Any
    tft_layer: Any
    features: List[InputFeature]
    raw_inputs: Dict[str, Any]
    raw_extra: Dict[str, Any]

    @property
    def names(self) -> List[str]:
        return [f.feature.name for f in self.features]

    def dataset(self, file_patterns: Sequence[str], head_labels: Dict[str, str], batch_size: int,
                shuffle: bool, **kwargs) -> tf.data.Dataset:
        return make_dataset(file_patterns, self.raw_inputs, self.raw_extra, self.tft_layer, self.names,
                            head_labels, batch_size, shuffle, **kwargs)


def training_inputs(feature_spec_path: str, transform_output: str) -> TrainingInputs:
    spec = load_feature_spec(feature_spec_path)
    tft_output = tft.TFTransformOutput(transform_output)
    raw_inputs, raw_extra = raw_input_spec(spec, tft_output)
    return TrainingInputs(spec, tft_output, tft_output.transform_features_layer(), input_features(spec, tft_output),
                          raw_inputs, raw_extra)
