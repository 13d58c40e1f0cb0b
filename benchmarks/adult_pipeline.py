"""Shared-Bottom, MMoE and Cross-Stitch on UCI Adult through the pipeline's labelled-sample input.

    python -m benchmarks.adult_pipeline --data ../shared/datasets/adult --seeds 3 --epochs 10

The whole set (adult.data + adult.test, 48,842 rows) is written as one day of samples
(benchmarks/adult_samples.py) and run through the real pipeline of configs/adult.yaml with
TFX's LocalDagRunner: sample import (hash split 80/20 of each row's content) -> StatisticsGen /
ExampleValidator -> Transform -> Trainer -> Evaluator. Import, statistics and Transform run once
and come from TFX's cache for every later model and seed; each model is trained with
``peer_models.CONFIGS``' sizes (those of benchmarks/adult_quality.py) and a concat bottom. The table
gives per task the Evaluator's AUC on the eval split (mean ± std over seeds, worst seed) and the
Trainer's seconds; writes ``adult_pipeline.md`` to ``--out``.

Not the same split as adult_quality.py (a random 50/50 of adult.data per seed): here the split is
the importer's, fixed, and the seeds vary only the weights and the shuffle.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import adult_samples  # noqa: E402
from benchmarks.output import write_markdown  # noqa: E402
from benchmarks.peer_models import CONFIGS  # noqa: E402
from benchmarks.stage_times import stage_times  # noqa: E402
from configs import REPO_ROOT, load_config  # noqa: E402

MODELS = ("shared_bottom", "mmoe", "cross_stitch")
LABELS = {"shared_bottom": "Shared-Bottom", "mmoe": "MMoE", "cross_stitch": "Cross-Stitch"}
TASKS = {"income": "income > 50K", "marital": "never married"}


def evaluator_auc(pipeline_root: str) -> Dict[str, float]:
    """The overall AUC per head of the newest Evaluator run."""
    import tensorflow_model_analysis as tfma
    runs = glob.glob(os.path.join(pipeline_root, "Evaluator", "evaluation", "*"))
    newest = max(runs, key=lambda p: int(os.path.basename(p)))
    overall = dict(tfma.load_eval_result(newest).slicing_metrics)[()]
    return {head: overall[head][""]["auc"]["doubleValue"] for head in TASKS}


def run_one(home: str, model: str, seed: int, epochs: int, batch_size: int, learning_rate: float) -> Dict[str, float]:
    from tfx import v1 as tfx
    from pipeline_components.pipeline import create_pipeline
    config = load_config(os.path.join(REPO_ROOT, "configs", "adult.yaml"), home,
                         overrides={"trainer": {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                                                "learning_rate": learning_rate, "model": model}})
    config.raw["trainer"]["model_params"] = dict(CONFIGS[model][0], bottom="concat")
    t0 = time.perf_counter()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, adult_samples.DEFAULT_DATE.isoformat(),
                                                           enable_cache=True, until="Evaluator"))
    wall = time.perf_counter() - t0
    trainer_s = dict(stage_times(config.metadata_path)[-1]).get("Trainer", float("nan"))
    return dict(evaluator_auc(config.pipeline_root), trainer_s=trainer_s, wall_s=wall)


def _cell(values: List[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.4f} ± {v.std():.4f} ({v.min():.4f})" if len(v) > 1 else f"{v[0]:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(REPO_ROOT, "..", "shared", "datasets", "adult"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(CONFIGS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--learning-rate", type=float, default=0.001)
    ap.add_argument("--home", default=None, help="the pipeline's home (default: a new temporary directory)")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results"))
    args = ap.parse_args(argv)
    home = args.home or tempfile.mkdtemp(prefix="adult-pipeline-")
    path = adult_samples.convert(args.data, os.path.join(home, "samples"))
    print(f"[adult] samples at {path}; home {home}", flush=True)
    results: Dict[str, List[Dict[str, float]]] = {m: [] for m in args.models}
    t_all = time.perf_counter()
    for seed in range(args.seeds):          # models alternate within a seed: each sees the same machine
        for model in args.models:
            r = run_one(home, model, seed, args.epochs, args.batch_size, args.learning_rate)
            results[model].append(r)
            print(f"[adult] {model} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
    os.makedirs(args.out, exist_ok=True)
    lines = [f"# Multi-task models on UCI Adult through the pipeline's sample input "
             f"(`python -m benchmarks.adult_pipeline --seeds {args.seeds} --epochs {args.epochs}`)", "",
             f"machine: {platform.machine()}, {os.cpu_count()} cores; adult.data + adult.test as one day of samples "
             f"(48,842 rows; the importer's content-hash split, 20 % eval); configs/adult.yaml: sample import -> "
             f"StatisticsGen/ExampleValidator -> Transform -> Trainer -> Evaluator (TFMA, the eval split); "
             f"batch {args.batch_size}, lazy_adam {args.learning_rate}, {args.epochs} epochs, {args.seeds} seed(s); "
             f"model_params as peer_models.py, concat bottom. AUC mean ± std (worst seed); Trainer seconds "
             f"(mean); the whole run {time.perf_counter() - t_all:.0f} s.", "",
             "| model | " + " | ".join(f"{h} AUC ({d})" for h, d in TASKS.items()) + " | Trainer s |",
             "|---|" + "---|" * len(TASKS) + "---|"]
    for model, rs in results.items():
        lines.append(f"| {LABELS.get(model, model)} | " + " | ".join(_cell([r[h] for r in rs]) for h in TASKS)
                     + f" | {np.mean([r['trainer_s'] for r in rs]):.1f} |")
    write_markdown(args.out, "adult_pipeline", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
