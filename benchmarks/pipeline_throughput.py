"""Data-stage throughput of whole days through Airflow, each stage against its single-pass limit.

    python -m benchmarks.pipeline_throughput --impressions 1000000

Generates two days of logs, runs day 1 (no baseline) and day 2 (a baseline model,
a training window of 2 spans) through the Airflow DAG (`airflow dags test`, the
default config: SQLite, FnApiRunner in memory), and after each day computes the
single-pass limits of its data stages on the same rows (benchmarks/stage_limits.py,
benchmarks/evaluator_limit.py). Per stage it prints wall time, rows/s, the limit
and the ratio, and the day's end-to-end time from the first Airflow task's start
to the push's end; it writes the tables to benchmarks/results/pipeline_throughput.md.

Each limit is measured right after its stage, in the same process tree and on the
same machine state, so their ratio survives the machine's day-to-day speed.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional  # noqa: E402

DAYS = (dt.date(2026, 11, 20), dt.date(2026, 11, 21))
TARGETS = {"LogJoinExampleGen": 10.0, "Transform": 20.0, "Evaluator": 20.0}
DAY2_TARGET_S = 240.0
RESULTS = os.path.join(os.path.dirname(__file__), "results", "pipeline_throughput.md")


def _latest(store, type_name: str, n: int = 1):
    types = {t.name: t.id for t in store.get_artifact_types()}
    arts = [a for a in store.get_artifacts_by_type(type_name)] if type_name in types else []
    arts.sort(key=lambda a: a.id)
    return arts[-n:]


def _join_report(uri: str) -> Dict:
    with open(os.path.join(uri, "join_report.json")) as fh:
        return json.load(fh)


def _row(stage: str, seconds: Optional[float], rows: Optional[int], limit: Optional[float], note: str = ""):
    return {"stage": stage, "seconds": seconds, "rows": rows, "limit": limit, "note": note}


def measure_day(config, date: dt.date, env, day_index: int) -> Dict:
    from benchmarks import stage_limits
    from benchmarks.evaluator_limit import evaluator_limit
    from pipeline_components.orchestration import airflow_local
    from pipeline_components.orchestration.progress import task_spans
    from pipeline_components.reporting.report import open_store
    from schemas import load_feature_spec

    log = os.path.join(config.home, "logs_airflow", f"dags_test_{date}.log")
    wall = airflow_local.dags_test(config.pipeline_name, date.isoformat(), env, log,
                                   progress=lambda line: print(line, flush=True))
    with open(log, errors="replace") as fh:
        spans = task_spans(fh)
    tasks = {s.task: s.seconds for s in spans}
    end_to_end = (spans[-1].end - spans[0].start).total_seconds()

    store = open_store(config)
    [report_art] = _latest(store, "rankpipe.JoinReport")
    join = _join_report(report_art.uri)
    [examples] = _latest(store, "Examples")
    models = _latest(store, "Model", 2)
    model, baseline = models[-1], (models[0] if len(models) == 2 else None)
    from pipeline_components.reporting.report import collect_runs
    [run] = [r for r in collect_runs(config) if r.span_date == f"{date}"]
    if day_index and not run.baseline_span:
        raise SystemExit(f"{date} ran without a baseline model: day 2 must evaluate one (was day 1 blessed?)")
    if not run.baseline_span:
        baseline = None
    train_rows, eval_rows = join["examples"]["train"], join["examples"]["eval"]
    input_rows = sum(a["input"] for a in join["accounting"].values())
    window_train_rows = sum(_join_report(a.uri)["examples"]["train"]
                            for a in _latest(store, "rankpipe.JoinReport", config.training_window["num_spans"])
                            [-min(day_index + 1, config.training_window["num_spans"]):])
    split = lambda s: os.path.join(examples.uri, f"Split-{s}")  # noqa: E731
    limits_dir = os.path.join(config.home, "limits", f"{date}")
    shutil.rmtree(limits_dir, ignore_errors=True)

    print(f"[bench] {date}: limits on the same rows ...", flush=True)
    window_us = int(float(config.log_join["attribution_window_days"]) * 86400 * 1_000_000)
    t_join, t_join_only, _ = stage_limits.join_limit(config.logs_root, f"{date}", limits_dir, window_us,
                                                     int(config.log_join["eval_percent"]))
    t_stats, stats_rows = stage_limits.statistics_limit([split("train"), split("eval")])
    t_tft, t_tft_only, _, _ = stage_limits.transform_limit(split("train"), config.feature_spec_path)
    spec = load_feature_spec(config.feature_spec_path)
    weights = {h: a["eval_weight"] for h, a in config.heads.items() if a.get("eval_weight")}
    labels = {h: a["label"] for h, a in config.heads.items()}
    t_eval = evaluator_limit(split("eval"), os.path.join(model.uri, "Format-Serving"), labels, spec.scene_feature,
                             weights, baseline_dir=os.path.join(baseline.uri, "Format-Serving") if baseline else None
                             )["seconds"]

    models_evaluated = 2 if baseline else 1
    rows = [
        _row("LogJoinExampleGen", tasks.get("LogJoinExampleGen"), input_rows, t_join,
             f"limit: read + pyarrow join + encode + gzip write, one process (join alone {t_join_only:.1f}s)"),
        _row("StatisticsGen", tasks.get("StatisticsGen"), stats_rows, t_stats,
             "limit: decode + per-feature counts, moments, quantiles, top values (both splits)"),
        _row("ExampleValidator + AnomaliesGate",
             (tasks.get("ExampleValidator") or 0) + (tasks.get("AnomaliesGate") or 0), None, None),
        _row("Transform", tasks.get("Transform"), train_rows, t_tft,
             f"analyses the new span (older spans from the cache); limit: decode + pyarrow analysers "
             f"(analysers alone {t_tft_only:.2f}s)"),
        _row("Trainer", tasks.get("Trainer"), window_train_rows, None, f"1 epoch over {day_index + 1} span(s)"),
        _row("Evaluator", tasks.get("Evaluator"), eval_rows * models_evaluated, t_eval,
             f"{models_evaluated} model(s); limit: SavedModel inference + numpy metrics per slice"),
        _row("ServingCheck", tasks.get("ServingCheck"), None, None),
        _row("DeploymentGate + SpanPusher", (tasks.get("DeploymentGate") or 0) + (tasks.get("SpanPusher") or 0),
             None, None),
    ]
    return {"date": f"{date}", "wall": wall, "end_to_end": end_to_end, "rows": rows, "tasks": tasks,
            "baseline": baseline is not None}


def format_day(day: Dict, title: str) -> str:
    out = [f"### {title}: {day['date']}, end to end {day['end_to_end']:.0f} s "
           f"(first Airflow task's start to the push's end; `airflow dags test` process {day['wall']:.0f} s)", "",
           "| stage | wall s | rows | rows/s | limit s | ratio | target | note |", "|---|---|---|---|---|---|---|---|"]
    for r in day["rows"]:
        s, n, lim = r["seconds"], r["rows"], r["limit"]
        ratio = s / lim if (s and lim) else None
        target = TARGETS.get(r["stage"])
        verdict = "" if target is None or ratio is None else f"≤ {target:g}x: {'met' if ratio <= target else 'NOT met'}"
        cells = [r["stage"], "" if s is None else f"{s:.1f}", f"{n:,}" if n else "",
                 f"{n / s:,.0f}" if (n and s) else "", "" if lim is None else f"{lim:.2f}",
                 "" if ratio is None else f"{ratio:.1f}x", verdict, r["note"]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--workdir", default=None, help="home of the runs (default /tmp/pipeline-throughput-N); its "
                    "logs are kept, its runs are deleted first")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    args = ap.parse_args()

    from configs import load_config
    from loggen import write_days
    from pipeline_components.orchestration import airflow_local

    work = args.workdir or f"/tmp/pipeline-throughput-{args.impressions}"
    # A throughput run, not a quality gate: day 1 must be blessed so that day 2 evaluates a baseline.
    os.makedirs(work, exist_ok=True)
    config_path = os.path.join(work, "throughput.yaml")
    with open(config_path, "w") as fh:
        json.dump({"evaluator": {"auc_floor": 0.5, "max_auc_drop": 1.0, "calibration_band": None}}, fh)
    config = load_config(config_path, home=work)
    for sub in ("tfx", "airflow", "logs_airflow", "serving", "limits"):
        shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
    if not all(os.path.isdir(os.path.join(config.logs_root, "impressions", f"date={d}")) for d in DAYS):
        t0 = time.time()
        write_days(config.logs_root, config.truth_root, DAYS[0], len(DAYS), args.impressions, progress=None)
        print(f"[bench] generated {len(DAYS)} x {args.impressions:,} impressions in {time.time() - t0:.0f}s")
    env = airflow_local.prepare(config)
    days = []
    for i, d in enumerate(DAYS):
        days.append(measure_day(config, d, env, i))
        with open(os.path.join(work, "pipeline_throughput.json"), "w") as fh:   # kept if a later step fails
            json.dump(days, fh, indent=1, default=str)

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    head = (f"`python -m benchmarks.pipeline_throughput --impressions {args.impressions}` on "
            f"{dt.date.today()}: {platform.node()}, {os.cpu_count()} cores ({cpu}), "
            f"Beam args {' '.join(config.beam_pipeline_args)}, window {config.training_window['num_spans']} spans.")
    tables = [format_day(days[0], "Day 1, no baseline"), format_day(days[1], "Day 2, baseline + 2-span window")]
    verdict = (f"Day 2 end to end: {days[1]['end_to_end']:.0f} s against the {DAY2_TARGET_S:.0f} s target: "
               f"{'met' if days[1]['end_to_end'] <= DAY2_TARGET_S else 'NOT met'}.")
    text = "\n\n".join([head] + tables + [verdict])
    print("\n" + text)
    if not args.no_write:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as fh:
            fh.write("# Pipeline throughput: data stages against their single-pass limits\n\n" + text + "\n")
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
