"""TFMA, run with the pipeline's EvalConfig, reports the numbers numpy computes from the same
predictions: every metric the gate report reads, overall and per scene, for the candidate and the
baseline (CVR weighted by click; a regression head, dwell seconds given a click, with MSE), and the
same threshold failures. Model-agnostic: the predictions are features of the examples, so no
SavedModel is needed."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions
from scipy.stats import rankdata
from tensorflow_model_analysis.api import model_eval_lib

from configs import load_config
from pipeline_components import tfma_metrics
from pipeline_components.components import gate_report
from pipeline_components.components.gate_report import OVERALL, read_failures, read_slice_metrics
from pipeline_components.eval_config import build_eval_config

HEADS = {"ctr": {"label": "click"}, "cvr": {"label": "conversion", "eval_weight": "click"},
         "ctcvr": {"label": "conversion"}, "dwell": {"label": "dwell", "eval_weight": "click", "type": "regression"}}
SCENES = ["home_feed", "shop_search", "tiny"]
TOL = 1e-4


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    scene = rng.choice(SCENES, n, p=[0.6, 0.38, 0.02])
    preds = {}
    for model in ("candidate", "baseline"):
        ctr = 1 / (1 + np.exp(-(rng.normal(-2.0, 1.0, n))))
        cvr = 1 / (1 + np.exp(-(rng.normal(-1.5, 1.0, n))))
        # rounded to 3 decimals: many ties, which AUC must count as one half
        preds[model] = {"ctr": np.round(ctr, 3).astype(np.float32), "cvr": np.round(cvr, 3).astype(np.float32)}
        preds[model]["ctcvr"] = (preds[model]["ctr"] * preds[model]["cvr"]).astype(np.float32)
        preds[model]["dwell"] = rng.gamma(2.0, 15.0, n).astype(np.float32)
    truth = preds["candidate"]
    click = (rng.random(n) < truth["ctr"]).astype(np.int64)
    conversion = click * (rng.random(n) < truth["cvr"]).astype(np.int64)
    dwell = (click * rng.gamma(2.0, 15.0, n)).astype(np.float32)
    return scene, click, conversion, dwell, preds


def _write(path, scene, click, conversion, dwell, preds):
    with tf.io.TFRecordWriter(path) as w:
        for i in range(len(scene)):
            f = {"scene": tf.train.Feature(bytes_list=tf.train.BytesList(value=[scene[i].encode()])),
                 "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[click[i]])),
                 "dwell": tf.train.Feature(float_list=tf.train.FloatList(value=[dwell[i]])),
                 "conversion": tf.train.Feature(int64_list=tf.train.Int64List(value=[conversion[i]]))}
            for model, by_head in preds.items():
                for h, p in by_head.items():
                    f[f"{model}_{h}"] = tf.train.Feature(float_list=tf.train.FloatList(value=[p[i]]))
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())


def _auc(y, p):
    """Mann-Whitney U from average ranks (ties one half)."""
    pos = y == 1
    ranks = rankdata(p)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _numpy_metrics(y, p, w, regression=False):
    if regression:
        p64 = p.astype(np.float64)
        return {"mean_squared_error": (w * (y - p64) ** 2).sum() / w.sum(),
                "calibration": (w * p64).sum() / (w * y).sum(), "mean_label": (w * y).sum() / w.sum(),
                "weighted_example_count": w.sum()}
    keep = w > 0   # the weighted head's weights are 0/1 (click): its AUC is the clicked subset's
    p64 = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p64) + (1 - y) * np.log(1 - p64))
    return {"auc": _auc(y[keep], p[keep]), "binary_crossentropy": (w * loss).sum() / w.sum(),
            "calibration": (w * p.astype(np.float64)).sum() / (w * y).sum(), "mean_label": (w * y).sum() / w.sum(),
            "weighted_example_count": w.sum()}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    scene, click, conversion, dwell, preds = _data()
    data = str(tmp / "examples.tfrecord")
    _write(data, scene, click, conversion, dwell, preds)
    config = load_config(home=str(tmp))
    evaluator = dict(config.evaluator, auc_floor={"ctr": 0.5, "cvr": 0.5, "ctcvr": 0.99},
                     max_auc_drop={"ctr": 0.5, "cvr": 0.5, "ctcvr": 0.0}, max_mse_increase={"dwell": 0.0})
    eval_config = build_eval_config(HEADS, evaluator, config.feature_spec_path)
    [spec] = eval_config.model_specs
    eval_config.ClearField("model_specs")
    for model in preds:   # the model's outputs, here read from features
        m = eval_config.model_specs.add()
        m.CopyFrom(spec)
        m.ClearField("signature_name")
        m.name, m.is_baseline = model, model == "baseline"
        m.prediction_keys.update({h: f"{model}_{h}" for h in HEADS})
    out = str(tmp / "out")
    # TFX's Evaluator marks the run as having a baseline (it has a baseline model); model-agnostic
    # TFMA would infer "no baseline" from the absent models and refuse the change thresholds.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_eval_lib, "_update_eval_config_with_defaults",
                   lambda cfg, _: tfma.utils.update_eval_config_with_defaults(cfg, has_baseline=True,
                                                                              rubber_stamp=True))
        tfma.run_model_analysis(eval_config=eval_config, data_location=data, output_path=out,
                                pipeline_options=PipelineOptions(["--runner=FnApiRunner"]))
    return scene, click, conversion, dwell, preds, out


def test_every_gate_metric_equals_numpy_overall_and_per_scene(evaluated, monkeypatch):
    scene, click, conversion, dwell, preds, out = evaluated
    # a model-agnostic run records no model locations; the Evaluator's records both models
    monkeypatch.setattr(gate_report, "evaluated_models", lambda _: list(preds))
    labels = {"ctr": click, "cvr": conversion, "ctcvr": conversion, "dwell": dwell.astype(np.float64)}
    weights = {"ctr": np.ones(len(click)), "cvr": click.astype(np.float64), "ctcvr": np.ones(len(click)),
               "dwell": click.astype(np.float64)}
    for model in preds:
        got = read_slice_metrics(out, list(HEADS), "scene", model)
        for s in [OVERALL] + SCENES:
            rows = np.ones(len(scene), bool) if s == OVERALL else scene == s
            assert got[(s, "_all")]["example_count"] == rows.sum()
            for h in HEADS:
                regression = h == "dwell"
                want = _numpy_metrics(labels[h][rows], preds[model][h][rows], weights[h][rows], regression)
                if h not in ("cvr", "dwell"):
                    want.pop("weighted_example_count")
                assert {m for m in got[(s, h)] if not m.endswith("_diff")} == set(want), (model, s, h)
                for name, value in want.items():
                    assert got[(s, h)][name] == pytest.approx(value, abs=TOL), (model, s, h, name)
                if model == "candidate":   # what the change thresholds compare
                    base = _numpy_metrics(labels[h][rows], preds["baseline"][h][rows], weights[h][rows], regression)
                    key = "mean_squared_error" if regression else "auc"
                    assert got[(s, h)][f"{key}_diff"] == pytest.approx(want[key] - base[key], abs=TOL)


def test_the_thresholds_fail_where_numpy_says_they_should(evaluated):
    scene, click, conversion, dwell, preds, out = evaluated
    ok, failures = read_failures(out, "scene")
    # the ctcvr floor (0.99) fails overall; its zero-drop threshold fails wherever the baseline's
    # AUC is above the candidate's, and dwell's zero MSE increase wherever the candidate's squared
    # error (on clicked rows) is above the baseline's (numpy decides where); ctr/cvr never fail
    want = {(OVERALL, "ctcvr", False)}
    for s in [OVERALL] + SCENES:
        rows = np.ones(len(scene), bool) if s == OVERALL else scene == s
        cand, base = (_auc(conversion[rows], preds[m]["ctcvr"][rows]) for m in ("candidate", "baseline"))
        if cand - base < 0:
            want.add((s, "ctcvr", True))
        clicked = rows & (click == 1)
        cand, base = (np.square(dwell[clicked] - preds[m]["dwell"][clicked].astype(np.float64)).mean()
                      for m in ("candidate", "baseline"))
        if cand > base:
            want.add((s, "dwell", True))
    assert not ok and any(head == "dwell" for _, head, _ in want)  # the data has MSE increases to catch
    assert {(f.slice, f.head, f.is_change) for f in failures} == want


def test_auc_stays_within_its_bound_when_the_histogram_is_coarsened(monkeypatch):
    """Past MAX_BUCKETS distinct predictions the keys drop mantissa bits: ties then span a relative
    2**-(23 - shift), which moves AUC by at most the share of positive-negative pairs so tied."""
    monkeypatch.setattr(tfma_metrics, "MAX_BUCKETS", 4096)
    rng = np.random.default_rng(1)
    p = rng.random(50_000).astype(np.float32)
    y = (rng.random(50_000) < p).astype(np.float64)
    stats = tfma_metrics._Stats()
    for i in range(0, len(p), 8192):
        stats.add(y[i:i + 8192], p[i:i + 8192], np.ones(len(p[i:i + 8192])))
    got = stats.auc()
    assert stats.shift > 0 and len(stats.keys) <= 4096
    assert got == pytest.approx(_auc(y, p), abs=1e-3)
