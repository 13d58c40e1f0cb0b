"""Log-join throughput on one generated day, and the join's share of a whole pipeline run.

    python -m benchmarks.join_throughput --impressions 1000000
    python -m benchmarks.join_throughput --impressions 1000000 --full-run   # also runs the whole pipeline

Rows/s counts every input row of the three logs (impressions + clicks +
conversions). The DirectRunner runs in-memory on one process, as the default
config does (on 2 cores the multi-process runner was slower end to end).
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

DAY = dt.date(2026, 11, 20)


def run_join(logs_root: str, out: str, run_date: str, beam_args) -> dict:
    from tfx.types import standard_artifacts
    from pipeline_components.components import log_join
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out, "examples")
    report = log_join.JoinReport()
    report.uri = os.path.join(out, "report")
    os.makedirs(report.uri, exist_ok=True)
    executor = log_join.Executor(log_join.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=out))
    executor.Do({}, {"examples": [examples], "join_report": [report]},
                {"logs_root": logs_root, "run_date": run_date, "label_delay_days": 0,
                 "attribution_window_days": 3.0, "eval_percent": 20, "max_quarantine_fraction": 0.01})
    with open(os.path.join(report.uri, "join_report.json")) as fh:
        return json.load(fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--full-run", action="store_true", help="also run the whole pipeline (LocalDagRunner) on the day")
    args = ap.parse_args()

    from loggen import write_days
    from configs import load_config
    work = args.workdir or tempfile.mkdtemp(prefix="join-bench-")
    config = load_config(home=work)
    if not os.path.isdir(os.path.join(config.logs_root, "impressions", f"date={DAY}")):
        t0 = time.time()
        write_days(config.logs_root, config.truth_root, DAY, 1, args.impressions, progress=None)
        print(f"generated {args.impressions:,} impressions in {time.time() - t0:.1f}s")

    t0 = time.time()
    report = run_join(config.logs_root, os.path.join(work, "join"), DAY.isoformat(), config.beam_pipeline_args)
    seconds = time.time() - t0
    rows = sum(a["input"] for a in report["accounting"].values())
    print()
    print(f"machine: {platform.node()} ({os.cpu_count()} cores), Beam args {config.beam_pipeline_args}")
    print("| impressions | input rows (all logs) | join seconds | rows/s | impressions/s |")
    print("|---|---|---|---|---|")
    print(f"| {args.impressions:,} | {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | "
          f"{report['accounting']['impressions']['input'] / seconds:,.0f} |")

    if args.full_run:
        from tfx import v1 as tfx
        from pipeline_components.pipeline import create_pipeline
        from benchmarks.stage_times import format_table, stage_times
        t0 = time.time()
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat()))
        wall = time.time() - t0
        runs = stage_times(config.metadata_path)
        join_s = dict(runs[-1]).get("LogJoinExampleGen", 0.0)
        print()
        print(format_table(runs[-1:]))
        print(f"\nwhole run (LocalDagRunner) wall {wall:.0f}s; log join {join_s:.0f}s = {join_s / wall:.0%} of it")


if __name__ == "__main__":
    main()
