"""The Trainer's fixed cost per run (tracing, export) with and without AutoGraph skipping tf_keras.

    python -m benchmarks.trainer_fixed_cost --impressions 5000 --rounds 3

Generates one day, runs the pipeline up to Transform once (LocalDagRunner),
then trains the configured model on it in fresh processes, alternating the two
settings each round: tf_keras left to AutoGraph (``RANKPIPE_AUTOGRAPH_CONVERT_KERAS=1``,
what TF 2.16 does by default) and skipped (trainer/autograph_rules.py). Each
process reports the seconds to build the datasets and the model, the first
epoch (which traces the train and eval steps), the remaining epochs, and the
SavedModel export; the table gives the median per setting and the ratio.
Small days are the point: the fixed cost is what a daily run pays whatever the
day's size, and what every test that trains pays.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

DAY = dt.date(2026, 11, 20)
PHASES = ("inputs_and_model", "first_epoch", "other_epochs", "export", "process")
SETTINGS = {"converted (TF default)": "1", "skipped (rankpipe)": "0"}


def prepare(work: str, impressions: int) -> Dict[str, str]:
    """The day's examples and Transform output, made once."""
    from loggen import write_days
    from configs import load_config, trainer_config
    from pipeline_components.pipeline import create_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    logs = os.path.join(work, "logs")
    write_days(logs, os.path.join(work, "truth"), DAY, 1, impressions, progress=None)
    config = load_config(home=work, overrides={"paths": {"logs": logs}})
    print(f"running the pipeline up to Transform on {impressions:,} impressions ...", flush=True)
    LocalDagRunner().run(create_pipeline(config, DAY.isoformat(), until="Transform"))
    root = config.pipeline_root
    [examples] = glob.glob(os.path.join(root, "LogJoinExampleGen", "examples", "*"))
    [transform] = glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))
    trainer = trainer_config(config)
    return {"examples": examples, "transform": transform, "trainer": json.dumps(trainer)}


def worker(args: argparse.Namespace) -> None:
    """One training run in this process; prints one JSON line of phase seconds."""
    t_start = time.time()
    import tf_keras as keras

    from trainer import run
    trainer = dict(json.loads(args.trainer), epochs=args.epochs)
    marks: Dict[str, float] = {}

    class Marks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks["fit_start"] = time.time()

        def on_epoch_end(self, epoch, logs=None):
            marks.setdefault("first_epoch_end", time.time())
            marks["fit_end"] = time.time()

    fit = keras.Model.fit

    def fit_with_marks(self, *a, **k):
        k["callbacks"] = list(k.get("callbacks") or []) + [Marks()]
        return fit(self, *a, **k)

    keras.Model.fit = fit_with_marks
    t0 = time.time()
    run.train([os.path.join(args.examples, "Split-train", "*")], [os.path.join(args.examples, "Split-eval", "*")],
              args.transform, tempfile.mkdtemp(prefix="trainer-fixed-cost-"), trainer)
    t_end = time.time()
    print(json.dumps({"inputs_and_model": marks["fit_start"] - t0,
                      "first_epoch": marks["first_epoch_end"] - marks["fit_start"],
                      "other_epochs": marks["fit_end"] - marks["first_epoch_end"],
                      "export": t_end - marks["fit_end"], "process": t_end - t_start}))


def one_run(prepared: Dict[str, str], epochs: int, convert: str) -> Dict[str, float]:
    env = dict(os.environ, RANKPIPE_AUTOGRAPH_CONVERT_KERAS=convert)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "benchmarks.trainer_fixed_cost", "--worker",
                          "--examples", prepared["examples"], "--transform", prepared["transform"],
                          "--trainer", prepared["trainer"], "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"training process failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.time() - t0  # imports included
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impressions", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--examples", help=argparse.SUPPRESS)
    ap.add_argument("--transform", help=argparse.SUPPRESS)
    ap.add_argument("--trainer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    prepared = prepare(args.workdir or tempfile.mkdtemp(prefix="trainer-fixed-cost-bench-"), args.impressions)
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in SETTINGS}
    for r in range(args.rounds):
        for name, convert in (SETTINGS.items() if r % 2 == 0 else reversed(list(SETTINGS.items()))):
            results[name].append(one_run(prepared, args.epochs, convert))
            print(f"round {r + 1}/{args.rounds}, {name}: " + ", ".join(
                f"{k} {v:.1f}s" for k, v in results[name][-1].items()), flush=True)

    (base, base_runs), (ours, our_runs) = results.items()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; model {json.loads(prepared['trainer'])['model']}, "
          f"{args.impressions:,} impressions, {args.epochs} epochs; median of {args.rounds} fresh processes "
          "per setting, alternating")
    print(f"| phase | tf_keras {base} (s) | tf_keras {ours} (s) | ratio |")
    print("|---|---|---|---|")
    for phase in PHASES:
        b = statistics.median(x[phase] for x in base_runs)
        o = statistics.median(x[phase] for x in our_runs)
        print(f"| {phase} | {b:.1f} | {o:.1f} | {b / o:.2f}x |")


if __name__ == "__main__":
    main()
