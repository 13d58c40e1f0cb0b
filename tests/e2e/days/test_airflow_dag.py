"""Executes the real Airflow DAG (airflow dags test, SQLite, sequential) on small days.

Day 1: no baseline; the model clears the test config's floors, is blessed and
pushed; the pushed SavedModel scores raw serialized tf.Examples.
Day 2: the config demands an impossible AUC; the gate refuses and nothing new
is pushed.
"""
import glob
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline_components.orchestration import airflow_local

from pipeline_components.reporting import report
from tests.e2e.days.conftest import DAY1, DAY2, IMPRESSIONS, config_with_floor

pytestmark = pytest.mark.e2e


def _serialize(df: pd.DataFrame):
    out = []
    for row in df.to_dict("records"):
        feats = {}
        for k, v in row.items():
            if isinstance(v, str):
                feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
            elif isinstance(v, float):
                feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
            else:
                feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return tf.constant(out)


def test_no_beam_stage_tries_to_download_a_runner(day1):
    """With no runner named, Beam 2.74's DirectRunner logs "Running pipeline with PrismRunner" and
    tries to download the Prism binary before it falls back; the config names FnApiRunner."""
    with open(os.path.join(day1.home, "airflow_day1.log")) as fh:
        log = fh.read()
    for stage in ("LogJoinExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        assert f"{stage} finished for run_date {DAY1.isoformat()}" in log
    assert "prism" not in log.lower()
    assert "github.com/apache/beam/releases" not in log


def test_day1_is_joined_for_its_span_blessed_and_pushed(day1):
    runs = report.collect_runs(day1)
    assert [r.span_date for r in runs] == [DAY1.isoformat()]
    assert runs[0].trained_on == [DAY1.isoformat()]  # the window holds only the spans that exist
    assert runs[0].blessed is True and runs[0].pushed is True
    # One version, named after the span (not the wall clock).
    assert os.listdir(day1.serving_dir) == [DAY1.strftime("%Y%m%d")]
    assert runs[0].pushed_destination == os.path.join(day1.serving_dir, DAY1.strftime("%Y%m%d"))



def test_the_trainer_task_writes_its_summary_on_one_device(day1, home):
    """run_fn's train_summary.json: the strategy chosen (no TF_CONFIG, no GPU: one device) and a history."""
    with open(os.path.join(_artifact_dir(home, "Trainer", "model_run"), "train_summary.json")) as fh:
        summary = json.load(fh)
    assert summary["distribution"] == dict(summary["distribution"], strategy="default", replicas=1, chief=True)
    assert len(summary["history"]["loss"]) == day1.trainer["epochs"]
    stopping = summary["early_stopping"]  # scored on the training window's holdout after every epoch
    assert stopping["epochs_run"] == day1.trainer["epochs"] and stopping["holdout_percent"] == 10
    assert stopping["holdout_loss"] == summary["history"]["val_loss"]
    assert stopping["best_epoch"] == 1 + int(np.argmin(stopping["holdout_loss"]))
    assert summary["input_cache"] == "memory"  # epochs after the first read the transformed window from memory
    # the batch embedding penalty's id counts: one pass over the training rows (the holdout excluded), every feature
    counts = summary["id_counts"]
    assert len({c["rows"] for c in counts.values()}) == 1 and 0 < counts["user_id"]["distinct_ids"] <= counts["user_id"]["table_rows"]
    # instance selection for partner_app (the lenient config): per episode the discriminator's accuracy,
    # over the window the main_search rows kept, which the id counts include as partner_app rows
    selection = summary["instance_selection"]
    partner = selection["targets"]["partner_app"]
    assert selection["source_scene"] == "main_search" and len(partner["episodes"]) == 2
    assert all(0.0 <= e["discriminator_accuracy"] <= 1.0 for e in partner["episodes"])
    assert 0 <= partner["window_kept_rows"] <= partner["window_source_rows"] < 0.8 * IMPRESSIONS
    windowed = counts["scene"]["rows"] - partner["window_kept_rows"]
    assert counts["scene"]["distinct_ids"] == 4 and 0.85 < windowed / (0.8 * IMPRESSIONS) < 0.95


def test_first_run_is_gated_by_floors_and_serving_check_and_the_task_log_points_to_the_report(day1, home):
    [run] = report.collect_runs(day1)
    with open(os.path.join(run.report_uri, "report.json")) as fh:
        verdict = json.load(fh)
    assert verdict["blessed"] is True and verdict["has_baseline"] is False and verdict["blocking"] == []
    text = open(os.path.join(run.report_uri, "report.md")).read()
    assert "No baseline" in text and "**BLESSED**" in text
    slices = {(r[0], r[1]) for r in verdict["rows"]}
    assert {("overall", "ctr"), ("main_search", "cvr"), ("promo_feed", "ctcvr")} <= slices
    assert os.path.getsize(os.path.join(run.report_uri, "report.png")) > 10_000
    log = open(os.path.join(home, "airflow_day1.log")).read()
    assert f"Report: {os.path.join(run.report_uri, 'report.md')}" in log
    assert "serving check passed" in log
    # the run report follows the Evaluator's model to its Trainer's summary: what selection added
    notes = [line for line in report.report_for(day1).splitlines()
             if line.startswith(f"{DAY1}:") and "instance selection added" in line]
    assert len(notes) == 1 and "main_search examples" in notes[0] and "to partner_app" in notes[0]


def test_pushed_model_scores_raw_examples(day1, home):
    version = sorted(glob.glob(os.path.join(day1.serving_dir, "*")))[-1]
    serve = tf.saved_model.load(version).signatures["serving_default"]
    raw = pd.read_parquet(os.path.join(home, "logs", "impressions", f"date={DAY2:%Y-%m-%d}")).head(500)
    raw = raw.drop(columns=["timestamp"])
    raw.loc[raw.index[:5], "item_brand"] = "a-brand-never-seen"  # must map to OOV, not fail
    out = {k: v.numpy().reshape(-1) for k, v in serve(examples=_serialize(raw)).items()}
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    for v in out.values():
        assert v.shape == (500,) and np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1))
    assert np.all(out["ctcvr"] <= out["ctr"] + 1e-7)
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-5)
    assert out["ctr"].std() > 0  # the model distinguishes impressions


def _artifact_dir(home, component, output):
    """The first run's output of a component (artifact directories are named by execution id)."""
    dirs = glob.glob(os.path.join(home, "tfx", "pipeline_root", component, output, "*"))
    return min(dirs, key=lambda d: int(os.path.basename(d)))


def test_training_path_and_serving_path_predict_the_same(day1, home):
    """No skew: the Trainer's input pipeline (raw examples -> tft_layer) + the model ==
    serving_default on raw serialized tf.Examples, row by row."""
    from trainer.input_fn import training_inputs
    version = sorted(glob.glob(os.path.join(day1.serving_dir, "*")))[-1]
    loaded = tf.saved_model.load(version)
    inputs = training_inputs(day1.feature_spec_path, _artifact_dir(home, "Transform", "transform_graph"))
    pattern = os.path.join(_artifact_dir(home, "LogJoinExampleGen", "examples"), "Split-eval", "*")
    ds = inputs.dataset([pattern], {"ctr": "click"}, 400, shuffle=False, keep=["impression_id"])
    features, _ = next(iter(ds))
    ids = [i.decode() for i in features.pop("impression_id").numpy().ravel()]
    offline = loaded(features, training=False)

    raw = {}
    for rec in tf.data.TFRecordDataset(glob.glob(pattern), compression_type="GZIP"):
        ex = tf.train.Example.FromString(rec.numpy())
        raw[ex.features.feature["impression_id"].bytes_list.value[0].decode()] = rec.numpy()
    served = loaded.signatures["serving_default"](examples=tf.constant([raw[i] for i in ids]))
    assert len(ids) == 400
    for head in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_allclose(served[head].numpy().ravel(), offline[head].numpy().ravel(), rtol=1e-5, atol=1e-7)


def test_vocab_lists_each_vocabulary_with_its_size(day1, home):
    from pipeline_components.reporting import vocab
    rows = {name: (size, top) for name, _, size, _, top in vocab.vocabularies(vocab.latest_transform_graph(day1), day1.feature_spec_path)}
    raw = pd.read_parquet(os.path.join(home, "logs", "impressions", f"date={DAY1:%Y-%m-%d}"))
    assert rows["scene"][0] == raw["scene"].nunique() == 4
    assert rows["device"][0] == raw["device"].nunique()
    assert rows["scene"][1][0] == raw["scene"].value_counts().index[0]  # most frequent first
    # item_brand has a frequency threshold of 5: rarer brands are left to OOV.
    counts = raw["item_brand"].value_counts()
    assert rows["item_brand"][0] == int((counts >= 5).sum())


def test_a_model_below_the_floor_is_not_blessed_and_not_pushed(day1, home):
    strict = config_with_floor(home, "strict", 0.999, epochs=1)  # no epoch count reaches 0.999
    env = airflow_local.prepare(strict)
    before = sorted(os.listdir(day1.serving_dir))
    airflow_local.dags_test(strict.pipeline_name, DAY2.isoformat(), env, os.path.join(home, "airflow_day2.log"))
    runs = {r.span_date: r for r in report.collect_runs(strict)}
    # The Airflow-rendered run date anchors the training window: day 2 trains on both days.
    assert runs[DAY2.isoformat()].trained_on == [DAY1.isoformat(), DAY2.isoformat()]
    assert runs[DAY2.isoformat()].blessed is False
    assert runs[DAY2.isoformat()].pushed is not True
    assert sorted(os.listdir(day1.serving_dir)) == before
    with open(os.path.join(runs[DAY2.isoformat()].report_uri, "report.json")) as fh:
        verdict = json.load(fh)
    assert verdict["has_baseline"] is True
    assert verdict["baseline"].startswith(f"baseline: the model of span {DAY1.isoformat()}, ")
    assert runs[DAY2.isoformat()].baseline_span == DAY1.isoformat() and runs[DAY1.isoformat()].baseline_span == ""
    assert any("ctr AUC overall" in r and "below the floor 0.999" in r for r in verdict["blocking"])


def test_report_and_vocab_read_the_schemas_their_config_names(day1, home, tmp_path, capsys):
    """`rankpipe report` and `rankpipe vocab` list the scenes and features of the config's own
    schemas: files, not the repository's defaults (a team with its own schemas sees its own)."""
    import yaml

    from pipeline_components import cli
    with open(day1.raw_events_path) as fh:
        raw_events = yaml.safe_load(fh)
    raw_events["scenes"] = ["promo_feed", "main_search"]  # a team that reports two of the four
    with open(day1.feature_spec_path) as fh:
        features = yaml.safe_load(fh)
    del features["features"]["device"]
    paths = {"raw_events": str(tmp_path / "raw_events.yaml"), "features": str(tmp_path / "features.yaml")}
    for key, body in (("raw_events", raw_events), ("features", features)):
        with open(paths[key], "w") as fh:
            yaml.safe_dump(body, fh)
    config_path = str(tmp_path / "own_schemas.yaml")
    with open(config_path, "w") as fh:
        yaml.safe_dump({"schemas": paths}, fh)

    assert cli.main(["--config", config_path, "--home", home, "report"]) == 0
    scenes = {line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
              if line.startswith("2026-") and "|" in line}  # table rows; the notes below it have no "|"
    assert scenes == {"overall", "promo_feed", "main_search"}

    assert cli.main(["--config", config_path, "--home", home, "vocab"]) == 0
    listed = {line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "scene" in listed and "item_brand" in listed and "device" not in listed
