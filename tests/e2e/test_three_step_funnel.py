"""A three-step funnel (click -> add-to-cart -> conversion) through the whole pipeline: every part
reads the declared tasks (configs/three_step.yaml). The log join labels carts, the Bayesian chain
trains one loss per factor on its given rows, the Evaluator measures every head per scene (a
conditional head on the rows where its parent happened), the serving check and the gate check
every head, and the pushed model serves exactly the funnel's heads with each entire-space head
under its parent's."""
import datetime as dt
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from configs import REPO_ROOT, load_config
from loggen import write_days
from loggen.world import WorldConfig
from pipeline_components.pipeline import create_pipeline
from pipeline_components.reporting import report
from schemas import load_feature_spec, scenes
from tests.waits import UNTIMED_SERVING_CHECK

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 11, 20)
IMPRESSIONS = 8_000
HEADS = {"ctr", "cart", "cart_es", "purchase", "purchase_es"}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("three_step"))
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), DAY, 1, IMPRESSIONS,
               world_config=WorldConfig(carts=True), progress=None)
    # the chain's factors, each trained on its given rows (null removes three_step.yaml's entire-space
    # losses); floors at chance (a few hundred carts: this test is about which heads exist and where
    # they are measured, the benchmark measures quality)
    overrides = {"trainer": {"model": "bayes_chain", "epochs": 2,
                             "model_params": {"bottom_dnn_hidden_units": [32], "tower_dnn_hidden_units": [16]},
                             "loss_weights": {"ctr": 1.0, "cart": 1.0, "purchase": 1.0,
                                              "cart_es": None, "purchase_es": None}},
                 "evaluator": {"auc_floor": {"default": 0.0, "ctr": 0.0}, "calibration_band": None},
                 "serving_check": UNTIMED_SERVING_CHECK}
    config = load_config(os.path.join(REPO_ROOT, "configs", "three_step.yaml"), home, overrides=overrides)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, DAY.isoformat()))
    [run] = report.collect_runs(config)
    report.load_metrics(run, config.heads, load_feature_spec(config.feature_spec_path).scene_feature)
    return config, run


def _eval_examples(run):
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in ("click", "cart", "conversion")}
    files = sorted(glob.glob(os.path.join(run.examples_uri, "Split-eval", "*")))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    labels = tf.io.parse_example(records, spec)
    return records, {k: v.numpy() for k, v in labels.items()}


def test_the_pushed_model_serves_the_funnels_heads_each_under_its_parent(day):
    config, run = day
    assert run.blessed and run.pushed
    [version] = glob.glob(os.path.join(config.serving_dir, "*"))
    records, _ = _eval_examples(run)
    out = {k: v.numpy().ravel() for k, v in tf.saved_model.load(version).signatures["serving_default"](
        examples=tf.constant(records)).items()}
    assert set(out) == HEADS
    assert np.all(out["cart_es"] <= out["ctr"] + 1e-6) and np.all(out["purchase_es"] <= out["cart_es"] + 1e-6)
    np.testing.assert_allclose(out["purchase_es"], out["ctr"] * out["cart"] * out["purchase"], rtol=1e-4, atol=1e-8)


def test_every_head_is_measured_per_scene_and_conditional_heads_on_their_given_rows(day):
    config, run = day
    _, labels = _eval_examples(run)
    assert labels["cart"].sum() > 0 and np.all(labels["cart"] <= labels["click"])   # nested labels
    assert np.all(labels["conversion"] <= labels["cart"])
    for s in ["overall"] + scenes(config.raw_events_path):
        assert {h for (slice_, h) in run.metrics if slice_ == s} >= HEADS, s
    overall = {h: run.metrics[("overall", h)] for h in HEADS}
    assert overall["cart"]["weighted_example_count"] == labels["click"].sum()
    assert overall["purchase"]["weighted_example_count"] == labels["cart"].sum()
    assert "weighted_example_count" not in overall["cart_es"]  # entire space: every impression
    assert overall["cart_es"]["mean_label"] == pytest.approx(labels["cart"].mean())


def test_the_trainer_had_one_loss_per_factor_and_the_checks_saw_every_head(day):
    config, run = day
    [summary] = glob.glob(os.path.join(config.pipeline_root, "Trainer", "model_run", "*", "train_summary.json"))
    with open(summary) as fh:
        history = json.load(fh)["history"]
    assert {"ctr_loss", "cart_loss", "purchase_loss"} <= set(history) and "cart_es_loss" not in history
    [check] = glob.glob(os.path.join(config.pipeline_root, "ServingCheck", "blessing", "*", "serving_check.json"))
    with open(check) as fh:
        result = json.load(fh)
    assert set(result["heads"]) == HEADS and result["reasons"] == []
    with open(os.path.join(run.report_uri, "report.md")) as fh:
        table = fh.read()
    for head in HEADS:
        assert f"| overall | {head} |" in table
