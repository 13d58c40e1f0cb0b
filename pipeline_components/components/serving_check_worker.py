"""Runs in a fresh process for ServingCheck: load a SavedModel as a server would, score, time.

A fresh interpreter is the point: nothing the Trainer's process still holds
(Python objects, registered Keras classes, the Transform graph in memory) can
mask a model that would not load or run in a model server.

    python -m pipeline_components.components.serving_check_worker MODEL_DIR SAMPLE.tfrecord [--repeats N]
        [--heads JSON]

``--heads`` is the task funnel's head config ({head: {type, parent?}}, schemas/tasks.py; default:
ctr, cvr, ctcvr): every head must be served; a probability head's outputs lie in [0, 1], a
regression head's are finite, and an entire-space head never exceeds its parent's.

Prints one JSON line: load time, per-head statistics, checks, latencies (ms).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def funnel_problems(out: dict, heads: dict, n: int) -> list:
    """What the served outputs break of the funnel's rules (see the module docstring)."""
    problems = []
    missing = sorted(set(heads) - set(out))
    if missing:
        problems.append(f"the model does not serve the heads {missing} of the declared tasks (it serves {sorted(out)})")
    for head, attrs in sorted(heads.items()):
        v = out.get(head)
        if v is None or len(v) != n:
            continue
        if not np.all(np.isfinite(v)):
            problems.append(f"head {head!r}: {int(np.sum(~np.isfinite(v)))} non-finite outputs")
        elif attrs.get("type", "binary") == "binary" and (v.min() < 0 or v.max() > 1):
            problems.append(f"head {head!r}: outputs outside [0, 1] (min {v.min():.4g}, max {v.max():.4g})")
        parent = attrs.get("parent")
        if parent in out and len(out[parent]) == n:
            bad = int(np.sum(v > out[parent] + 1e-6))
            if bad:
                problems.append(f"{head} > {parent} for {bad} of {n} examples (an entire-space probability "
                                f"never exceeds its parent step's)")
    return problems


def check(model_dir: str, sample_path: str, repeats: int, heads: dict = None) -> dict:
    import tensorflow as tf
    if heads is None:
        from schemas.tasks import DEFAULT_FUNNEL
        heads = DEFAULT_FUNNEL.head_config()
    t0 = time.perf_counter()
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    load_s = time.perf_counter() - t0
    records = [r.numpy() for r in tf.data.TFRecordDataset(sample_path)]
    if not records:
        raise ValueError(f"no examples in {sample_path}")
    batch = tf.constant(records, tf.string)
    out = {k: np.asarray(v).reshape(-1) for k, v in serve(examples=batch).items()}
    problems = [f"head {head!r} returned {len(v)} values for {len(records)} examples"
                for head, v in sorted(out.items()) if len(v) != len(records)]
    problems += funnel_problems(out, heads, len(records))
    single = []
    for i in range(repeats):
        one = batch[i % len(records):i % len(records) + 1]
        t = time.perf_counter()
        serve(examples=one)
        single.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    serve(examples=batch)
    full_ms = (time.perf_counter() - t) * 1e3
    return {"examples": len(records), "load_s": round(load_s, 3), "heads": sorted(out),
            "mean": {k: float(np.mean(v)) for k, v in out.items()},
            "problems": problems,
            "latency_ms": {"batch_1_p50": float(np.percentile(single, 50)),
                           "batch_1_p99": float(np.percentile(single, 99)),
                           f"batch_{len(records)}": full_ms}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("sample")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--heads", type=json.loads, default=None, help="the funnel's head config, JSON")
    args = ap.parse_args(argv)
    try:
        result = check(args.model_dir, args.sample, args.repeats, args.heads)
    except Exception as e:  # noqa: BLE001 - the parent turns this into a readable verdict
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
