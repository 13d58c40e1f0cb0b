"""One generated day with known truth, prepared by the real pipeline, and how the quality benchmarks score it.

``prepare`` generates a day and runs the pipeline up to Transform (join, validation, vocabularies);
``aucs`` scores predictions per slice and head against the eval split's labels (and counterfactual
conversions drawn from the true pCVR); ``oracle`` scores the generator's own probabilities. Shared by
``model_quality``, ``matched_form``, ``gbdt``, ``epochs_quality`` and the throughput benchmarks.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import os
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

DAY = dt.date(2026, 11, 20)
HEADS = ("ctr", "cvr_clicked", "cvr_entire", "ctcvr")
# model_params every family takes, kept from a benchmark's --config (and configs/pipeline.yaml under it)
GENERIC_PARAMS = ("l2_embedding", "l2_embedding_scope", "initializers", "bottom", "bottom_params")


@dataclasses.dataclass
class Prepared:
    home: str
    train_files: List[str]
    eval_files: List[str]
    transform_dir: str
    eval_frame: pd.DataFrame  # impression_id, scene, click, conversion, p_ctr, p_cvr, p_ctcvr, cf_conversion


def prepare(work: str, rho: float, impressions: int, covariate_shift: bool = False, create: bool = True):
    """Generate a day with task correlation rho (and, if asked, scenes that differ in population,
    ``loggen/shift.py``) and run the pipeline up to Transform; with ``create`` off, None for a day
    not prepared yet."""
    from tfx import v1 as tfx

    from loggen import write_days
    from loggen.world import WorldConfig
    from configs import load_config
    from pipeline_components.pipeline import create_pipeline

    # a day is reused only at its own size and generator setting
    home = os.path.join(work, f"rho_{rho:+.1f}_n{impressions}" + ("_shift" if covariate_shift else ""))
    config = load_config(home=home, overrides={"training_window": {"num_spans": 1}})
    root = config.pipeline_root
    if not glob.glob(os.path.join(root, "Transform", "transform_graph", "*")):
        if not create:
            return None
        write_days(config.logs_root, config.truth_root, DAY, 1, impressions,
                   world_config=WorldConfig(task_correlation=rho, covariate_shift=covariate_shift), progress=None)
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat(), until="Transform"))
    [examples] = glob.glob(os.path.join(root, "LogJoinExampleGen", "examples", "*"))
    [transform_dir] = glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))
    eval_files = sorted(glob.glob(os.path.join(examples, "Split-eval", "*")))
    frame = _eval_frame(eval_files, config.truth_root)
    return Prepared(home, [os.path.join(examples, "Split-train", "*")], eval_files, transform_dir, frame)


def _eval_frame(eval_files: List[str], truth_root: str) -> pd.DataFrame:
    frame = eval_frame(eval_files, truth_root, ("click", "conversion"), ("p_ctr", "p_cvr", "p_ctcvr"))
    rng = np.random.default_rng(12345)  # the same counterfactual labels for every model
    frame["cf_conversion"] = (rng.random(len(frame)) < frame["p_cvr"].to_numpy()).astype(int)
    return frame


def eval_frame(eval_files: List[str], truth_root: str, labels: Sequence[str], truth: Sequence[str]) -> pd.DataFrame:
    """The eval split's impression ids, scenes and ``labels``, with the generator's ``truth`` columns."""
    import tensorflow as tf
    spec = {"impression_id": tf.io.FixedLenFeature([], tf.string), "scene": tf.io.FixedLenFeature([], tf.string)}
    spec.update({k: tf.io.FixedLenFeature([], tf.int64) for k in labels})
    cols: Dict[str, list] = {k: [] for k in spec}
    for batch in tf.data.TFRecordDataset(eval_files, compression_type="GZIP").batch(8192):
        parsed = tf.io.parse_example(batch, spec)
        for k in spec:
            v = parsed[k].numpy()
            cols[k].extend([x.decode() for x in v] if v.dtype == object else v.tolist())
    probabilities = pd.read_parquet(os.path.join(truth_root, f"date={DAY:%Y-%m-%d}"))[["impression_id"] + list(truth)]
    frame = pd.DataFrame(cols).merge(probabilities, on="impression_id", how="left", validate="one_to_one")
    if frame[truth[0]].isna().any():
        raise RuntimeError("some eval impressions have no ground truth")
    return frame


def score(model_dir: str, eval_files: List[str], heads: Sequence[str] = ("ctr", "cvr", "ctcvr")) -> Dict[str, np.ndarray]:
    import tensorflow as tf
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    out: Dict[str, list] = {h: [] for h in heads}
    for batch in tf.data.TFRecordDataset(eval_files, compression_type="GZIP").batch(8192):
        pred = serve(examples=batch)
        for k in out:
            out[k].append(pred[k].numpy().ravel())
    return {k: np.concatenate(v) for k, v in out.items()}


def aucs(frame: pd.DataFrame, pred: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
    """slice -> head -> AUC, for slices overall and each scene."""
    from sklearn.metrics import roc_auc_score
    result: Dict[str, Dict[str, float]] = {}
    for name, mask in [("overall", np.ones(len(frame), bool))] + [
            (s, (frame["scene"] == s).to_numpy()) for s in sorted(frame["scene"].unique())]:
        f = frame[mask]
        clicked = (f["click"] == 1).to_numpy()
        cases = {"ctr": (f["click"], pred["ctr"][mask]),
                 "cvr_clicked": (f["conversion"][clicked], pred["cvr"][mask][clicked]),
                 "cvr_entire": (f["cf_conversion"], pred["cvr"][mask]),
                 "ctcvr": (f["conversion"], pred["ctcvr"][mask])}
        result[name] = {h: (float(roc_auc_score(y, p)) if 0 < np.mean(y) < 1 else float("nan"))
                        for h, (y, p) in cases.items()}
    return result


def oracle(frame: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    return aucs(frame, {"ctr": frame["p_ctr"].to_numpy(), "cvr": frame["p_cvr"].to_numpy(),
                        "ctcvr": frame["p_ctcvr"].to_numpy()})


def summarise(runs: List[Dict[str, Dict[str, float]]], heads: Sequence[str] = HEADS) -> Dict[str, Dict[str, tuple]]:
    return {s: {h: (float(np.nanmean([r[s][h] for r in runs])), float(np.nanstd([r[s][h] for r in runs])))
                for h in heads} for s in runs[0]}
