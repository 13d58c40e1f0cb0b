"""The zoo against DeepCTR 0.9.4 on a real two-task data set (UCI Adult: income, never married).

    python -m benchmarks.adult_quality --seeds 5 --epochs 10 --out benchmarks/results

Per seed, a fresh 50/50 random split; every model is fitted for ``--epochs`` at batch 1024 with Adam
and scored by AUC on the held-out half. The project's models go through ``build_model`` and
``MultiTaskModel`` (the Trainer's path; heads ``ctr`` and ``cvr`` carry the two tasks), DeepCTR's
through its own ``compile``/``fit``. Fits alternate between the two libraries within each seed, so
both see the same machine. The table gives per task the mean AUC, the worst seed and the fit time;
a project model passes when its mean is at least its reference's (its DeepCTR namesake, else the
best DeepCTR model of the run) on both tasks and its worst seed is within 0.003 of its mean.
Writes ``adult_quality.md`` to ``--out``.
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import adult, peers  # noqa: E402
from benchmarks.peer_models import CONFIGS, build_deepctr, build_project, deepctr_features  # noqa: E402

HEADS = ("ctr", "cvr")  # the project's heads that carry adult.TASKS
SPREAD = 0.003


def _column(x: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v.reshape(-1, 1) for k, v in x.items()}


def fit_project(name: str, data: adult.Split, seed: int, epochs: int, batch: int, lr: float,
                model_params: Dict = None, optimizer: str = "lazy_adam") -> Tuple[List[float], float]:
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.metrics import roc_auc_score

    from trainer import optimizers
    from trainer.balancing import MultiTaskModel

    keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    dense = [adult.key(c) for c in adult.NUMERIC]
    model = build_project(name, data.cardinality, dense, adult.EMBEDDING_DIM, model_params)
    trainable = MultiTaskModel(model, {h: 1.0 for h in HEADS})
    trainable.compile(optimizer=optimizers.make(optimizer, lr))
    y = {h: data.train_y[t] for h, t in zip(HEADS, adult.TASKS)}
    t0 = time.perf_counter()
    trainable.fit(_column(data.train_x), y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    pred = model.predict(_column(data.test_x), batch_size=8192, verbose=0)
    return [float(roc_auc_score(data.test_y[t], pred[h].ravel())) for h, t in zip(HEADS, adult.TASKS)], seconds


def fit_deepctr(name: str, data: adult.Split, seed: int, epochs: int, batch: int, lr: float
                ) -> Tuple[List[float], float]:
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.metrics import roc_auc_score

    keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    dense = [adult.key(c) for c in adult.NUMERIC]
    model = build_deepctr(name, deepctr_features(data.cardinality, dense, adult.EMBEDDING_DIM), adult.TASKS, seed)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=["binary_crossentropy"] * 2)
    t0 = time.perf_counter()
    model.fit(data.train_x, [data.train_y[t] for t in adult.TASKS], batch_size=batch, epochs=epochs,
              shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    pred = model.predict(data.test_x, batch_size=8192, verbose=0)
    return [float(roc_auc_score(data.test_y[t], p.ravel())) for t, p in zip(adult.TASKS, pred)], seconds


def _row(label: str, runs: List[Tuple[List[float], float]]) -> Tuple[str, np.ndarray]:
    auc = np.array([r[0] for r in runs])  # (seeds, tasks)
    cells = [f"{auc[:, i].mean():.4f} ± {auc[:, i].std():.4f} ({auc[:, i].min():.4f})" for i in range(auc.shape[1])]
    return f"| {label} | " + " | ".join(cells) + f" | {np.mean([r[1] for r in runs]):.1f} |", auc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--learning-rate", type=float, default=0.001)
    ap.add_argument("--models", nargs="+", default=list(CONFIGS))
    ap.add_argument("--no-peer", action="store_true", help="only the project's models (faster iteration)")
    ap.add_argument("--project-params", type=json.loads, default={},
                    help='extra model_params for every project model, JSON (e.g. \'{"l2_embedding": 1e-5}\')')
    ap.add_argument("--optimizer", default="lazy_adam", help="the project's trainer.optimizer")
    ap.add_argument("--raw-numeric", action="store_true",
                    help="numeric columns as in the file, not standardised (a trainability stress test)")
    ap.add_argument("--data", default=adult.DATA)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    unknown = sorted(set(args.models) - set(CONFIGS))
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(CONFIGS)}")
    if not args.no_peer:
        peers.ensure("deepctr")
    frame = adult.load(args.data)
    peer_names = [] if args.no_peer else [m for m in args.models if CONFIGS[m][1] and m != "esmm"]
    project: Dict[str, list] = {m: [] for m in args.models}
    deepctr: Dict[str, list] = {m: [] for m in peer_names}
    for seed in range(args.seeds):
        data = adult.split(frame, seed, standardise=not args.raw_numeric)
        for name in args.models:
            project[name].append(fit_project(name, data, seed, args.epochs, args.batch, args.learning_rate,
                                             args.project_params, args.optimizer))
            if name in deepctr:
                deepctr[name].append(fit_deepctr(name, data, seed, args.epochs, args.batch, args.learning_rate))
            print(f"[adult] seed {seed} {name}: project {project[name][-1][0]}"
                  + (f", deepctr {deepctr[name][-1][0]}" if name in deepctr else ""), flush=True)

    lines = [f"# Zoo vs DeepCTR 0.9.4 on UCI Adult (`python -m benchmarks.adult_quality --seeds {args.seeds} "
             f"--epochs {args.epochs}`)", "",
             f"machine: {platform.machine()}, {os.cpu_count()} cores; {len(frame):,} rows, 50/50 split per seed; "
             f"batch {args.batch}, Adam {args.learning_rate} (project: {args.optimizer}), {args.epochs} epochs, "
             f"{args.seeds} seeds; project model_params {args.project_params or 'as peer_models.py'}. "
             "AUC mean ± std (worst seed); fit seconds.", "",
             f"| model | {adult.TASKS[0]} AUC | {adult.TASKS[1]} AUC | fit s |", "|---|---|---|---|"]
    peer_auc = {}
    for name, runs in deepctr.items():
        line, peer_auc[name] = _row(f"DeepCTR {CONFIGS[name][1]}", runs)
        lines.append(line)
    best = max(peer_auc.values(), key=lambda a: a.mean()) if peer_auc else None
    verdicts = []
    for name, runs in project.items():
        line, auc = _row(f"project {name}", runs)
        lines.append(line)
        ref = peer_auc.get(name, best)
        if name == "aitm":
            verdicts.append("- aitm: a funnel model (cvr = ctcvr / ctr), not built for two independent tasks; "
                            "reported, not judged (peer_models.py)")
            continue
        spread_ok = all(auc[:, i].mean() - auc[:, i].min() <= SPREAD for i in range(auc.shape[1]))
        if ref is None:
            verdicts.append(f"- {name}: worst seed within {SPREAD} of the mean: {'yes' if spread_ok else 'NO'}")
            continue
        gaps = auc.mean(axis=0) - ref.mean(axis=0)
        which = "its namesake" if name in peer_auc else "the best DeepCTR model"
        ok = bool((gaps >= 0).all()) and spread_ok
        # Both sides see the same split per seed: the per-seed difference's standard error says whether a
        # gap is more than the noise of training (the splits' own spread cancels out).
        paired = auc - ref
        se = paired.std(axis=0, ddof=1) / np.sqrt(len(paired)) if len(paired) > 1 else np.full(2, np.nan)
        verdicts.append(f"- {name}: mean − {which}'s = {gaps[0]:+.4f} (paired s.e. {se[0]:.4f}) / {gaps[1]:+.4f} "
                        f"(s.e. {se[1]:.4f}); worst seed within {SPREAD} of the mean: "
                        f"{'yes' if spread_ok else 'NO'} → {'met' if ok else 'NOT met'}")
    text = "\n".join(lines + ["", "Target (mean ≥ the reference on both tasks, worst seed within "
                              f"{SPREAD} of the mean):"] + verdicts) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "adult_quality.md"), "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
