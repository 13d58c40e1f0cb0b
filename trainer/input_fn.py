"""tf.data input from Transform's transformed TFRecords.

Batches before parsing (one vectorised parse_example per batch instead of one
per record); this is what keeps the file pipeline close to in-memory speed.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf


def make_dataset(file_patterns: Sequence[str], feature_spec: Dict[str, tf.io.FixedLenFeature],
                 feature_names: List[str], head_labels: Dict[str, str], batch_size: int,
                 shuffle: bool, repeat: bool = False, seed: int = 0,
                 shuffle_buffer: int = 200_000) -> tf.data.Dataset:
    """Beam writes joined examples in group order, not at random (clicked impressions
    cluster), so the shuffle buffer must cover a large share of a day."""
    files: List[str] = []
    for pattern in file_patterns:
        files.extend(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}")
    spec = {k: v for k, v in feature_spec.items() if k in feature_names or k in head_labels.values()}
    ds = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        x = {name: parsed[name] for name in feature_names}
        y = {head: parsed[label] for head, label in head_labels.items()}
        return x, y

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
