"""Transform time per day with and without the analyzer cache, over a sliding training window.

    python -m benchmarks.transform_cache --impressions 200000 --days 4 --window 3

Runs the pipeline up to Transform (join, statistics, validation, window,
Transform) with TFX's LocalDagRunner for each of ``--days`` consecutive days,
twice: once with the analyzer cache (the default config) and once without
(``training_window.analyzer_cache: false``). Day N analyses min(N, window)
spans; with the cache, only the newest one is read. Prints the Transform
seconds per day for both and the speed-up.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import List  # noqa: E402

START = dt.date(2026, 11, 20)


def transform_seconds(home: str, logs_root: str, days: int, window: int, cache: bool) -> List[float]:
    from tfx import v1 as tfx

    from benchmarks.stage_times import stage_times
    from configs import load_config
    from pipeline_components.pipeline import create_pipeline

    config = load_config(home=home, overrides={
        "paths": {"logs": logs_root},
        "training_window": {"num_spans": window, "analyzer_cache": cache}})
    for i in range(days):
        date = START + dt.timedelta(days=i)
        t0 = time.time()
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, date.isoformat(), until="Transform"))
        print(f"[{'cache' if cache else 'no cache'}] {date}: run up to Transform in {time.time() - t0:.1f}s",
              flush=True)
    return [s for run in stage_times(config.metadata_path) for name, s in run if name == "Transform"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from loggen import write_days
    work = args.workdir or tempfile.mkdtemp(prefix="transform-cache-bench-")
    logs = os.path.join(work, "logs")
    if not os.path.isdir(logs):
        write_days(logs, os.path.join(work, "truth"), START, args.days, args.impressions, progress=None)
    cached = transform_seconds(os.path.join(work, "cache"), logs, args.days, args.window, True)
    uncached = transform_seconds(os.path.join(work, "nocache"), logs, args.days, args.window, False)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {args.impressions:,} impressions/day, "
          f"window {args.window} spans, DirectRunner in memory")
    print("| day | spans analysed | Transform without cache (s) | with cache (s) | speed-up |")
    print("|---|---|---|---|---|")
    for i, (u, c) in enumerate(zip(uncached, cached)):
        print(f"| {START + dt.timedelta(days=i)} | {min(i + 1, args.window)} | {u:.1f} | {c:.1f} | {u / c:.2f}x |")


if __name__ == "__main__":
    main()
