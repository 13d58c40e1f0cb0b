"""`rankpipe`: the project's command line.

  rankpipe generate-logs --start 2026-11-20 --days 3 --impressions 200000
  rankpipe run --date 2026-11-20          # one day with TFX's LocalDagRunner (development)
  rankpipe airflow-run --dates 2026-11-20 2026-11-21   # through the real Airflow DAG
  rankpipe report                         # per-scene table of every run day
  rankpipe vocab                          # Transform vocabularies of the latest run, with sizes
  rankpipe demo                           # generate 3 days, run each through Airflow, report
  rankpipe compile                        # the pipeline IR the Airflow DAGs read (automatic in airflow-run/ui)
  rankpipe ui                             # the Airflow UI + scheduler on 127.0.0.1:8080, admin password printed once
  rankpipe serve                          # the local model server (TF Serving's REST API) on 127.0.0.1:8501
  rankpipe rollback --version 20261121    # pin a pushed version; `rankpipe rollback --unpin` serves the newest again

Every command reads --config (default $RANKPIPE_CONFIG or configs/pipeline.yaml, which holds every
default) and --home (default $RANKPIPE_HOME or ./work), including the schemas: paths it names.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import List, Optional  # noqa: E402

from configs import load_config  # noqa: E402


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def cmd_generate(args) -> int:
    from loggen import World, WorldConfig, write_days
    from loggen.shift import describe_lines
    config = load_config(args.config, args.home)
    t0 = time.time()
    world = WorldConfig(seed=args.seed, task_correlation=args.task_correlation, covariate_shift=args.covariate_shift,
                        carts=args.carts)
    for line in describe_lines(World(world)):
        print(line)
    counts = write_days(config.logs_root, config.truth_root, args.start, args.days, args.impressions,
                        world, raw_schema_path=config.raw_events_path)
    print(f"[loggen] wrote {counts} to {config.logs_root} (truth: {config.truth_root}) in {time.time() - t0:.1f}s")
    return 0


def cmd_run(args) -> int:
    from tfx import v1 as tfx
    from pipeline_components.pipeline import create_pipeline
    config = load_config(args.config, args.home)
    t0 = time.time()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, args.date.isoformat()))
    print(f"[run] {args.date} finished in {time.time() - t0:.1f}s")
    return 0


def _airflow_days(config, dates: List[dt.date]) -> List[float]:
    from pipeline_components.orchestration import airflow_local
    t0 = time.time()
    env = airflow_local.prepare(config)
    print(f"[airflow] AIRFLOW_HOME={env['AIRFLOW_HOME']} ({airflow_local.describe(config)}): "
          f"ready in {time.time() - t0:.1f}s")
    times = []
    for date in dates:
        log = os.path.join(config.home, "logs_airflow", f"dags_test_{date}.log")
        print(f"[airflow] dags test {config.pipeline_name} {date} (log: {log}) ...", flush=True)
        seconds = airflow_local.dags_test(config.pipeline_name, date.isoformat(), env, log,
                                          progress=lambda line: print(line, flush=True))
        times.append(seconds)
        print(f"[airflow] {date} succeeded in {seconds:.1f}s", flush=True)
    return times


def cmd_airflow_run(args) -> int:
    config = load_config(args.config, args.home)
    _airflow_days(config, args.dates)
    return 0


def print_report(config) -> None:
    from pipeline_components.reporting import report
    print(report.report_for(config))


def cmd_vocab(args) -> int:
    from pipeline_components.reporting import vocab
    config = load_config(args.config, args.home)
    uri = args.transform_graph or vocab.latest_transform_graph(config)
    print(vocab.format_vocabularies(vocab.vocabularies(uri, config.feature_spec_path), uri))
    return 0


def cmd_report(args) -> int:
    print_report(load_config(args.config, args.home))
    return 0


def _clean_home(config) -> None:
    """The demo owns these folders under its home; everything else is left alone."""
    import shutil
    for sub in ("logs", "truth", "tfx", "serving", "airflow", "logs_airflow"):
        shutil.rmtree(os.path.join(config.home, sub), ignore_errors=True)


def cmd_demo(args) -> int:
    from loggen import write_days
    config = load_config(args.config, args.home)
    t0 = time.time()
    if not args.keep:
        _clean_home(config)
    print(f"[demo] home {config.home}: {args.days} days x {args.impressions:,} impressions from {args.start}")
    dates = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    write_days(config.logs_root, config.truth_root, args.start, args.days, args.impressions,
               raw_schema_path=config.raw_events_path)
    t_gen = time.time() - t0
    times = _airflow_days(config, dates)
    print()
    print_report(config)
    print()
    print(f"[demo] wall time: {time.time() - t0:.0f}s total; log generation {t_gen:.0f}s; "
          + ", ".join(f"{d}: {s:.0f}s" for d, s in zip(dates, times)))
    return 0


def cmd_serve(args) -> int:
    import logging
    from model_server.http import serve
    config = load_config(args.config, args.home)
    opts = dict(config.model_server)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port, poll = opts.pop("host"), opts.pop("port"), opts.pop("poll_seconds")
    server, stop = serve(config.serving_dir, config.model_name, host=args.host or host,
                         port=args.port if args.port is not None else int(port), poll_seconds=float(poll), **opts)
    print(f"[serve] {config.model_name} from {config.serving_dir} at {server.url}/v1/models/{config.model_name} "
          f"(metrics: {server.url}/monitoring/prometheus/metrics; SIGTERM stops gracefully)", flush=True)
    try:
        server.serve_forever(handle_signals=True)
    finally:
        stop.set()
        server.server_close()
    return 0


def cmd_rollback(args) -> int:
    from model_server import versions
    config = load_config(args.config, args.home)
    if args.unpin:
        removed = versions.unpin(config.serving_dir)
        print(f"[rollback] {'unpinned' if removed else 'no pin was set'}: the server serves the newest version, "
              f"{versions.target_version(config.serving_dir)}")
        return 0
    versions.pin(config.serving_dir, args.version)
    print(f"[rollback] pinned version {args.version} in {config.serving_dir}; a running server switches within "
          f"{config.model_server['poll_seconds']}s. Newer pushes are not served until `rankpipe rollback --unpin`.")
    return 0


def cmd_compile(args) -> int:
    from pipeline_components.orchestration import compiled
    config = load_config(args.config, args.home)
    t0 = time.time()
    path = compiled.compile_pipeline(config, force=args.force)
    print(f"[compile] {'wrote ' + path if path else 'up to date: ' + compiled.ir_path(config)} "
          f"({time.time() - t0:.1f}s)")
    return 0


def cmd_ui(args) -> int:
    from pipeline_components.orchestration.airflow_ui import run_ui
    return run_ui(load_config(args.config, args.home), host=args.host, port=args.port,
                  reset_password=args.reset_password, scheduler=args.scheduler)


def cmd_celery_worker(args) -> int:
    from pipeline_components.orchestration.airflow_celery import run_worker
    return run_worker(load_config(args.config, args.home), args.name, args.workdir)


def cmd_scheduler(args) -> int:
    from pipeline_components.orchestration.airflow_celery import run_scheduler
    return run_scheduler(load_config(args.config, args.home))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankpipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="pipeline config YAML (default: $RANKPIPE_CONFIG or configs/pipeline.yaml)")
    p.add_argument("--home", help="working directory for logs, metadata, models (default: $RANKPIPE_HOME or ./work)")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate-logs", help="write N days of synthetic raw logs as Parquet")
    g.add_argument("--start", type=_date, required=True)
    g.add_argument("--days", type=int, default=3)
    g.add_argument("--impressions", type=int, default=200_000, help="impressions per day")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--task-correlation", type=float, default=0.6, help="correlation of the CTR and CVR signals")
    g.add_argument("--covariate-shift", action="store_true",
                   help="scenes differ in population: user mixtures, item pools and one scene's affinities "
                        "(loggen/shift.py); prints each scene's distance from the main scene")
    g.add_argument("--carts", action="store_true",
                   help="a three-step funnel: a `carts` log (add to cart after a click; every conversion follows "
                        "a cart) and p_cart, p_purchase, p_ctcart in the truth files; join it with log_join.funnel")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="run the pipeline for one day with TFX's LocalDagRunner")
    r.add_argument("--date", type=_date, required=True)
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("airflow-run", help="run the Airflow DAG for each date (airflow dags test)")
    a.add_argument("--dates", type=_date, nargs="+", required=True)
    a.set_defaults(func=cmd_airflow_run)

    rep = sub.add_parser("report", help="per-scene AUC per head for every run day")
    rep.set_defaults(func=cmd_report)

    v = sub.add_parser("vocab", help="list the Transform vocabularies (sizes, top values) of the latest run")
    v.add_argument("--transform-graph", help="a TransformGraph artifact directory (default: the latest run's)")
    v.set_defaults(func=cmd_vocab)

    s = sub.add_parser("serve", help="serve the pushed model over TF Serving's REST API (local model server)")
    s.add_argument("--host", help="bind address (default: model_server.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: model_server.port, 8501)")
    s.set_defaults(func=cmd_serve)

    rb = sub.add_parser("rollback", help="pin a pushed version (the server serves it instead of the newest)")
    g2 = rb.add_mutually_exclusive_group(required=True)
    g2.add_argument("--version", type=int, help="the version (YYYYMMDD) to serve")
    g2.add_argument("--unpin", action="store_true", help="remove the pin: serve the newest version again")
    rb.set_defaults(func=cmd_rollback)

    c = sub.add_parser("compile", help="compile the pipeline (TFX IR) that the Airflow DAGs are built from")
    c.add_argument("--force", action="store_true", help="compile even if the compiled pipeline is current")
    c.set_defaults(func=cmd_compile)

    u = sub.add_parser("ui", help="start the Airflow UI and scheduler locally (SQLite, sequential executor)")
    u.add_argument("--host", default="127.0.0.1", help="bind address of the web server (default 127.0.0.1)")
    u.add_argument("--port", type=int, default=8080)
    u.add_argument("--reset-password", action="store_true", help="give the admin user a new generated password")
    u.add_argument("--no-scheduler", dest="scheduler", action="store_false",
                   help="the web server only (a scheduler runs elsewhere: `rankpipe scheduler`)")
    u.set_defaults(func=cmd_ui)

    w = sub.add_parser("celery-worker", help="an Airflow Celery worker for this pipeline (configs/celery.yaml)")
    w.add_argument("--name", required=True, help="the worker's name, recorded as the host of each task it runs")
    w.add_argument("--workdir", required=True, help="its working directory (temp files, its log)")
    w.set_defaults(func=cmd_celery_worker)

    sc = sub.add_parser("scheduler", help="the Airflow scheduler alone (tasks run on Celery or Kubernetes workers)")
    sc.set_defaults(func=cmd_scheduler)

    d = sub.add_parser("demo", help="generate logs, run each day through Airflow, print the report")
    d.add_argument("--start", type=_date, default=dt.date(2026, 11, 20))
    d.add_argument("--days", type=int, default=3)
    d.add_argument("--impressions", type=int, default=200_000)
    d.add_argument("--keep", action="store_true", help="keep earlier logs, metadata and models under --home")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
