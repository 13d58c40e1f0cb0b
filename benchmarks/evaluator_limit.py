"""The floor under the Evaluator stage: one pass of the serving signature over the eval split, then
the gate's metrics per head, overall and per scene, in numpy. What TFMA adds on top (per-example
extracts, slicing, Beam) is the Evaluator's wall time divided by this.

    python -m benchmarks.evaluator_limit --examples <LogJoinExampleGen/examples/N/Split-eval> \
        --model <Trainer/model/M> [--baseline <Trainer/model/K>] [--evaluator-seconds 80]
"""
from __future__ import annotations

import os

from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import numpy as np  # noqa: E402

BATCH = 4096
OVERALL = "overall"


def auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Weighted Mann-Whitney statistic, ties one half."""
    order = np.argsort(p, kind="stable")
    p, pos, neg = p[order], (w * y)[order], (w * (1 - y))[order]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    pos, neg = np.add.reduceat(pos, starts), np.add.reduceat(neg, starts)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    return float(pos @ (np.cumsum(neg) - neg + 0.5 * neg) / (total_pos * total_neg))


def metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> Dict[str, float]:
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"auc": auc(y, p, w),
                "binary_crossentropy": float(-(w @ (y * np.log(q) + (1 - y) * np.log1p(-q))) / w.sum()),
                "calibration": float(w @ p.astype(np.float64) / (w @ y)),
                "mean_label": float(w @ y / w.sum()), "weighted_example_count": float(w.sum())}


def _cpu_seconds() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _serving_dir(model_dir: str) -> str:
    sub = os.path.join(model_dir, "Format-Serving")
    return sub if os.path.isdir(sub) else model_dir


def evaluator_limit(examples_eval_dir: str, model_dir: str, heads: Dict[str, Any], scene_feature: str,
                    weights: Optional[Dict[str, str]] = None, baseline_dir: Optional[str] = None,
                    batch_size: int = BATCH) -> Dict[str, Any]:
    """Seconds to load the model (and the baseline, if given), score every eval example and compute
    the gate's metrics in numpy.

    ``heads``: head -> label feature (or the config's {label: ...} mapping); ``weights``: head ->
    weight feature for weighted heads (CVR: click). Returns the seconds (total, CPU and per phase),
    the example count and the metrics as {model: {"<slice>/<head>": {...}}}, model "candidate" or
    "baseline"."""
    import tensorflow as tf
    labels = {h: (a["label"] if isinstance(a, dict) else a) for h, a in heads.items()}
    weights = dict(weights or {})
    columns = sorted({scene_feature, *labels.values(), *weights.values()})
    spec = {c: tf.io.FixedLenFeature([], tf.string if c == scene_feature else tf.int64) for c in columns}
    files = sorted(glob.glob(os.path.join(examples_eval_dir, "*")))
    if not files:
        raise FileNotFoundError(f"no files in {examples_eval_dir}")
    dirs = {"candidate": model_dir, **({"baseline": baseline_dir} if baseline_dir else {})}

    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    serve = {m: tf.saved_model.load(_serving_dir(d)).signatures["serving_default"] for m, d in dirs.items()}
    t_load = time.perf_counter()
    parse = tf.function(lambda batch: tf.io.parse_example(batch, spec))
    preds: Dict[str, Dict[str, List[np.ndarray]]] = {m: {h: [] for h in labels} for m in dirs}
    cols: Dict[str, List[np.ndarray]] = {c: [] for c in columns}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size).prefetch(1):
        for m, fn in serve.items():
            out = fn(examples=batch)
            for h in labels:
                preds[m][h].append(out[h].numpy().reshape(-1))
        for c, v in parse(batch).items():
            cols[c].append(v.numpy())
    t_infer = time.perf_counter()
    c = {k: np.concatenate(v) for k, v in cols.items()}
    scene = c[scene_feature]
    slices = {OVERALL: np.ones(len(scene), bool)}
    for s in np.unique(scene):
        slices[s.decode()] = scene == s
    result: Dict[str, Dict[str, Dict[str, float]]] = {m: {} for m in dirs}
    for m in dirs:
        p = {h: np.concatenate(v) for h, v in preds[m].items()}
        for name, rows in slices.items():
            for h, label in labels.items():
                y = c[label][rows].astype(np.float64)
                w = c[weights[h]][rows].astype(np.float64) if h in weights else np.ones(len(y))
                result[m][f"{name}/{h}"] = metrics(y, p[h][rows], w)
    t_end = time.perf_counter()
    return {"seconds": round(t_end - t0, 3), "cpu_seconds": round(_cpu_seconds() - cpu0, 3),
            "seconds_load": round(t_load - t0, 3),
            "seconds_inference_and_parse": round(t_infer - t_load, 3), "seconds_numpy": round(t_end - t_infer, 3),
            "examples": int(len(scene)), "models": list(dirs), "metrics": result}


def main(argv: Optional[List[str]] = None) -> None:
    from configs import load_config
    from schemas import load_feature_spec
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", required=True, help="the eval split's directory (Split-eval, gzip TFRecords)")
    p.add_argument("--model", required=True, help="a Model artifact's uri or a SavedModel directory")
    p.add_argument("--baseline", help="the baseline's Model artifact uri or SavedModel directory")
    p.add_argument("--config", help="pipeline config (default: configs/pipeline.yaml)")
    p.add_argument("--evaluator-seconds", type=float, help="the Evaluator's wall time: prints the ratio")
    p.add_argument("--evaluator-cpu-seconds", type=float, help="the Evaluator's CPU time: prints that ratio")
    p.add_argument("--metrics", action="store_true", help="print the metrics too")
    a = p.parse_args(argv)
    config = load_config(a.config)
    weights = {h: s["eval_weight"] for h, s in config.heads.items() if s.get("eval_weight")}
    out = evaluator_limit(a.examples, a.model, config.heads, load_feature_spec(config.feature_spec_path).scene_feature,
                          weights, a.baseline)
    if a.evaluator_seconds:
        out["evaluator_seconds"] = a.evaluator_seconds
        out["ratio"] = round(a.evaluator_seconds / out["seconds"], 2)
    if a.evaluator_cpu_seconds:
        out["evaluator_cpu_seconds"] = a.evaluator_cpu_seconds
        out["cpu_ratio"] = round(a.evaluator_cpu_seconds / out["cpu_seconds"], 2)
    if not a.metrics:
        out.pop("metrics")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
