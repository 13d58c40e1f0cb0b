"""tf.data input: raw joined tf.Examples of the training window, transformed by the Transform graph.

The Trainer reads the LogJoinExampleGen output (one artifact per span) and
applies ``tft_layer``, the same layer the serving signature applies, so the
training path and the serving path share one implementation of every feature.
Batches before parsing and transforming: one vectorised parse and one graph
call per batch instead of per record.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from schemas import FeatureSpec, load_feature_spec
from trainer.features import InputFeature, input_features, raw_input_spec


MAX_OPEN_FILES = 64  # files read round-robin at once (each holds a gzip stream's buffers)


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
                 keep: Sequence[str] = (), holdout_percent: int = 0, holdout: bool = False) -> tf.data.Dataset:
    """Yields (transformed features, {head: label}).

    ``raw_inputs`` is what ``tft_layer`` gets, the same spec the serving signature parses
    (``features.raw_input_spec``). Labels come from ``raw_extra``, read raw and cast to
    float, never transformed. ``keep`` adds raw columns from ``raw_extra`` (e.g.
    ``impression_id``) to the features, for matching rows in tests.

    The log join writes each span in a hash order of the impression id, independent of the
    labels (``join_logic.write_order_key``); spans joined before that change are in Beam's group
    order (clicked impressions first), which a buffer smaller than the window cannot undo.

    ``holdout_percent`` > 0 sets aside that share of the records (by a hash of each serialized
    record, so the same records every epoch and every run, with no parsing) for early stopping:
    ``holdout=False`` yields the rest, ``holdout=True`` the share."""
    spec = dict(raw_inputs)
    spec.update({k: raw_extra[k] for k in set(head_labels.values()) | set(keep)})
    files = list_files(file_patterns)
    # Records alternate between the files (one per span, or the span's shards), read in this thread:
    # TFRecordDataset's num_parallel_reads (a parallel interleave) delivered 35-58k records/s here
    # against 490-700k for this sequential interleave, below what the models train at.
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), MAX_OPEN_FILES), block_length=1)
    if holdout_percent:
        ds = ds.filter(lambda record: tf.equal(
            tf.strings.to_hash_bucket_fast(record, 100) < int(holdout_percent), holdout))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        transformed = tft_layer({k: parsed[k] for k in raw_inputs})
        x = {name: transformed[name] for name in feature_names}
        x.update({k: parsed[k] for k in keep})
        y = {head: tf.cast(parsed[label], tf.float32) for head, label in head_labels.items()}
        return x, y

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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
