"""Single-pass limits of the data stages: the same rows, the same result, one process, no Beam.

Each function does the work its pipeline stage does, as directly as pyarrow and
numpy allow, and returns (seconds, what it computed). The pipeline-throughput
benchmark divides a stage's wall time by its limit: the ratio is what Beam, TFX
and the components' generality cost on one machine.
"""
from __future__ import annotations

import glob
import os
import time
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _partition_files(logs_root: str, log: str, date: str) -> List[str]:
    return sorted(glob.glob(os.path.join(logs_root, log, f"date={date}", "*.parquet")))


def join_limit(logs_root: str, date: str, out_dir: str, window_us: int, eval_percent: int = 20
               ) -> Tuple[float, float, Dict[str, int]]:
    """The log join in one pass: read the three Parquet partitions, hash-join them with the same
    pyarrow kernels the pipeline runs per bucket (join_logic.join_tables, over the whole day at
    once), split, encode tf.Examples and write gzip TFRecords (TF's C++ writer). Validation and
    quarantine are left out: the limit is lower than the pipeline can ever be.
    Returns (seconds, seconds of the join alone, counts)."""
    import tensorflow as tf

    from pipeline_components.components import join_logic
    from pipeline_components.components.log_join import encode_table

    t0 = time.perf_counter()
    tables = {}
    for log in ("impressions", "clicks", "conversions"):
        cols = None if log == "impressions" else ["impression_id", "timestamp"]
        t = pa.concat_tables([pq.read_table(f, columns=cols) for f in _partition_files(logs_root, log, date)])
        tables[log] = t.set_column(t.schema.get_field_index("timestamp"), "timestamp",
                                   t.column("timestamp").cast(pa.int64()))
    t1 = time.perf_counter()
    joined, counts = join_logic.join_tables(tables["impressions"], tables["clicks"], tables["conversions"], window_us)
    splits = join_logic.in_write_order(joined, eval_percent)
    t_join = time.perf_counter() - t1
    os.makedirs(out_dir, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for split, table in splits.items():
        with tf.io.TFRecordWriter(os.path.join(out_dir, f"{split}.gz"), options) as writer:
            for example in encode_table(table):
                writer.write(example)
    return time.perf_counter() - t0, t_join, dict(counts)


def read_examples(paths: List[str], columns: List[str] = None) -> pa.Table:
    """Gzip TFRecords of tf.Examples to an Arrow table of list columns (tfx_bsl's C++ decoder)."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batches = []
    for path in paths:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(8192)]
        batches.extend(decoder.DecodeBatch(list(chunk)) for chunk in records)
    table = pa.Table.from_batches(batches) if len(set(b.schema for b in batches)) <= 1 else \
        pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote=True)
    return table.select(columns) if columns else table


def _flat(col: pa.ChunkedArray) -> pa.Array:
    col = col.combine_chunks()
    return pc.list_flatten(col) if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) else col


def statistics_limit(split_dirs: List[str]) -> Tuple[float, int]:
    """What StatisticsGen computes, in one pass: per split and feature, the present and missing
    counts and, numeric features, mean, std, min, max, zeros and a 10-bucket quantile histogram;
    string features, the unique count and the top values. Returns (seconds, rows)."""
    t0 = time.perf_counter()
    rows = 0
    for d in split_dirs:
        table = read_examples(sorted(glob.glob(os.path.join(d, "*.gz"))))
        rows += table.num_rows
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            _ = col.null_count
            values = _flat(table.column(name))
            if any(check(values.type) for check in (pa.types.is_binary, pa.types.is_large_binary,
                                                    pa.types.is_string, pa.types.is_large_string)):
                counts = pc.value_counts(values).flatten()
                order = np.argsort(-counts[1].to_numpy())[:10]
                _ = [counts[0][int(i)] for i in order]
            else:
                x = values.to_numpy(zero_copy_only=False).astype(np.float64)
                if x.size:
                    _ = (x.mean(), x.std(), x.min(), x.max(), (x == 0).sum(), np.quantile(x, np.linspace(0, 1, 11)))
    return time.perf_counter() - t0, rows


def transform_limit(train_dir: str, feature_spec_path: str) -> Tuple[float, float, int, Dict[str, object]]:
    """What the Transform analysers compute for one span's train split: every vocabulary
    (frequency threshold, top_k), the z-score moments and the bucket boundaries, in pyarrow.
    Returns (seconds with decoding the examples, seconds of the analysis alone, rows, results)."""
    from schemas import load_feature_spec

    spec = load_feature_spec(feature_spec_path)
    t0 = time.perf_counter()
    table = read_examples(sorted(glob.glob(os.path.join(train_dir, "*.gz"))),
                          sorted({f.source_column for f in spec.features}))
    t1 = time.perf_counter()
    out: Dict[str, object] = {}
    for f in spec.features:
        col = _flat(table.column(f.source_column))
        if f.kind in ("categorical", "scene"):
            counts = pc.value_counts(col).flatten()
            values, freqs = counts[0].to_pylist(), counts[1].to_numpy()
            order = np.argsort(-freqs, kind="stable")
            vocab = [values[i] for i in order if freqs[i] >= max(f.frequency_threshold, 1)]
            out[f.name] = vocab[: f.top_k] if f.top_k else vocab
        elif f.kind == "numeric":
            x = col.to_numpy(zero_copy_only=False).astype(np.float64)
            if f.log1p:
                x = np.log1p(np.maximum(x, 0.0))
            out[f.name] = (float(x.mean()), float(x.var()))
        elif f.kind == "bucketized":
            x = col.to_numpy(zero_copy_only=False).astype(np.float64)
            out[f.name] = np.quantile(x, np.linspace(0, 1, f.num_buckets + 1)[1:-1])
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, table.num_rows, out
