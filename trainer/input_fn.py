"""tf.data input: raw joined tf.Examples of the training window, transformed by the Transform graph.

The Trainer reads the LogJoinExampleGen output (one artifact per span) and
applies ``tft_layer``, the same layer the serving signature applies, so the
training path and the serving path share one implementation of every feature.
Batches before parsing and transforming: one vectorised parse and one graph
call per batch instead of per record.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf


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
                 keep: Sequence[str] = ()) -> tf.data.Dataset:
    """Yields (transformed features, {head: label}).

    ``raw_inputs`` is what ``tft_layer`` gets, the same spec the serving signature parses
    (``features.raw_input_spec``). Labels come from ``raw_extra``, read raw and cast to
    float, never transformed. ``keep`` adds raw columns from ``raw_extra`` (e.g.
    ``impression_id``) to the features, for matching rows in tests.

    Beam writes joined examples in group order, not at random (clicked impressions
    cluster), so the shuffle buffer must cover a large share of a day."""
    spec = dict(raw_inputs)
    spec.update({k: raw_extra[k] for k in set(head_labels.values()) | set(keep)})
    ds = tf.data.TFRecordDataset(list_files(file_patterns), compression_type="GZIP",
                                 num_parallel_reads=tf.data.AUTOTUNE)
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
