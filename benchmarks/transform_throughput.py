"""TF Transform analysis throughput against a single-pass pyarrow computation of the same statistics.

    python -m benchmarks.transform_throughput --impressions 1000000

Both read the same generated day (the impressions Parquet partition) and
compute what the pipeline's ``preprocessing_fn`` analyses: every vocabulary
(with its frequency threshold and top_k), the z-score means and variances and
the bucket boundaries. Transform runs ``tft_beam.AnalyzeDataset`` with the
DirectRunner in multi-process mode (``--direct_num_workers``, default 2); pyarrow
runs in this process. The script checks that the vocabularies agree, then
prints a table: rows/s of each and the ratio. The ratio is the price of Beam's
portability (the same code runs on Dataflow, Flink or Spark) on one machine.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

DAY = dt.date(2026, 11, 20)


def pyarrow_statistics(files: List[str], spec) -> Dict[str, object]:
    """One pass over the columns: vocabularies (frequency desc), mean/var, quantile boundaries."""
    columns = sorted({f.source_column for f in spec.features})
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    out: Dict[str, object] = {}
    for f in spec.features:
        col = table.column(f.source_column)
        if f.kind in ("categorical", "scene"):
            counts = pc.value_counts(col).flatten()
            values = counts[0].to_pylist()
            freqs = counts[1].to_numpy()
            order = np.argsort(-freqs, kind="stable")
            vocab = [values[i] for i in order if freqs[i] >= max(f.frequency_threshold, 1)]
            out[f.name] = vocab[: f.top_k] if f.top_k else vocab
        elif f.kind == "numeric":
            x = col.to_numpy().astype(np.float64)
            if f.log1p:
                x = np.log1p(np.maximum(x, 0.0))
            out[f.name] = (float(x.mean()), float(x.var()))
        elif f.kind == "bucketized":
            x = col.to_numpy().astype(np.float64)
            out[f.name] = np.quantile(x, np.linspace(0, 1, f.num_buckets + 1)[1:-1])
    return out


def transform_analyze(files: List[str], spec_path: str, tfdv_schema_path: str, workers: int, tmp: str):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.utils import io_utils
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio.tf_example_record import TFExampleRecord

    from pipeline_components.components.log_join import list_column

    from schemas import load_feature_spec
    from transforms.preprocessing import preprocessing_fn

    spec = load_feature_spec(spec_path)
    columns = sorted({f.source_column for f in spec.features})
    schema = io_utils.parse_pbtxt_file(tfdv_schema_path, schema_pb2.Schema())
    keep = [feat for feat in schema.feature if feat.name in columns]
    del schema.feature[:]
    schema.feature.extend(keep)
    # The tf.Example TFXIO only supplies the Arrow schema and tensor adapter; the rows come
    # from the Parquet files, converted to the same list columns the log join encodes.
    adapter_source = TFExampleRecord(file_pattern=files, schema=schema)
    arrow_schema = adapter_source.ArrowSchema()

    def to_record_batch(table: pa.Table) -> pa.RecordBatch:
        arrays = [list_column(table.column(name).combine_chunks()) for name in arrow_schema.names]
        return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)

    options = PipelineOptions(["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"])
    out_dir = os.path.join(tmp, "transform_fn")
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=os.path.join(tmp, "tft_tmp")):
        raw = (p | "Read" >> beam.io.ReadFromParquetBatched(
                   os.path.join(os.path.dirname(files[0]), "*.parquet"), columns=arrow_schema.names)
               | "ToRecordBatch" >> beam.Map(to_record_batch))
        transform_fn = (raw, adapter_source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, {"feature_spec_path": spec_path}))
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="DirectRunner processes")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    import tensorflow_transform as tft

    from loggen import write_days
    from configs import load_config
    from schemas import load_feature_spec, partition_dir
    work = args.workdir or tempfile.mkdtemp(prefix="transform-bench-")
    config = load_config(home=work)
    part = partition_dir(config.logs_root, "impressions", DAY)
    if not os.path.isdir(part):
        t0 = time.time()
        write_days(config.logs_root, config.truth_root, DAY, 1, args.impressions, progress=None)
        print(f"generated {args.impressions:,} impressions in {time.time() - t0:.1f}s")
    files = sorted(glob.glob(os.path.join(part, "*.parquet")))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    spec = load_feature_spec(config.feature_spec_path)

    t0 = time.time()
    reference = pyarrow_statistics(files, spec)
    t_arrow = time.time() - t0

    t0 = time.time()
    out_dir = transform_analyze(files, config.feature_spec_path, config.tfdv_schema_path, args.workers,
                                os.path.join(work, "tft"))
    t_tft = time.time() - t0

    tft_out = tft.TFTransformOutput(out_dir)
    mismatched = []
    for f in spec.by_kind("categorical", "scene"):
        got = [v.decode() if isinstance(v, bytes) else v for v in tft_out.vocabulary_by_name(f.name)]
        if sorted(got) != sorted(reference[f.name]) or len(got) != len(reference[f.name]):
            mismatched.append(f"{f.name}: transform {len(got)} values, pyarrow {len(reference[f.name])}")
    if mismatched:
        raise SystemExit("vocabularies differ: " + "; ".join(mismatched))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {rows:,} rows; "
          f"{len(spec.features)} features ({len(spec.by_kind('categorical', 'scene'))} vocabularies)")
    print("| computation | seconds | rows/s |")
    print("|---|---|---|")
    print(f"| TF Transform AnalyzeDataset, DirectRunner multi_processing x{args.workers} | {t_tft:.1f} | "
          f"{rows / t_tft:,.0f} |")
    print(f"| pyarrow single pass (1 process) | {t_arrow:.1f} | {rows / t_arrow:,.0f} |")
    print(f"| **ratio: Transform time / pyarrow time** | | **{t_tft / t_arrow:.1f}x** |")
    print("vocabularies identical (same values, same sizes): yes")


if __name__ == "__main__":
    main()
