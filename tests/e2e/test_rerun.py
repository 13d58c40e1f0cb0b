"""Rerunning a finished day in the same Airflow run (what clearing it in the UI does) really
reruns it and leaves one live artifact per output, the same labels, one pushed version. (A
failed task's one-line reason, read from the scheduler's task log through the UI, is in
tests/pipeline_components/test_airflow_ui.py.)

Runs after the other e2e modules (file order): it reruns the shared day 1.
"""
import glob
import os
import re

import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from pipeline_components import airflow_local, report
from tests.e2e.conftest import DAY1

pytestmark = pytest.mark.e2e

RUN_ID = f"manual__{DAY1.isoformat()}T00:00:00+00:00"  # `airflow dags test`'s run id for DAY1


def _labels(examples_uri):
    out = {}
    files = glob.glob(os.path.join(examples_uri, "Split-*", "*.gz"))
    assert files
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        out[f["impression_id"].bytes_list.value[0]] = (f["click"].int64_list.value[0],
                                                       f["conversion"].int64_list.value[0])
    return out


def _day_artifacts(store, run_names):
    """{(node, artifact type): [artifacts]} produced by executions in the given pipeline-run contexts."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = {}
    for name in run_names:
        ctx = store.get_context_by_type_and_name("pipeline_run", name)
        if ctx is None:
            continue
        for execution in store.get_executions_by_context(ctx.id):
            node = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id ==
                    store.get_context_type("node").id]
            outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                       if e.type == metadata_store_pb2.Event.OUTPUT]
            for a in store.get_artifacts_by_id(outputs):
                found.setdefault((node[0].split(".", 1)[1], types[a.type_id]), []).append(a)
    return found


@pytest.fixture(scope="module")
def rerun(day1, home):
    store = report.open_store(day1)
    [examples] = [a for a in store.get_artifacts_by_type("Examples") if a.state == a.LIVE
                  and a.custom_properties["span_date"].string_value == DAY1.isoformat()]
    before = {"examples": examples, "labels": _labels(examples.uri), "served": sorted(os.listdir(day1.serving_dir))}
    env = airflow_local.prepare(day1)
    log = os.path.join(home, "airflow_day1_rerun.log")
    airflow_local.dags_test(day1.pipeline_name, DAY1.isoformat(), env, log)
    return before, log


def test_the_rerun_executes_every_component_again_in_a_new_attempt(day1, rerun):
    _, log = rerun
    with open(log) as fh:
        text = fh.read()
    for node in ("LogJoinExampleGen", "Transform", "Trainer", "Evaluator", "SpanPusher"):
        assert re.search(rf"{node} reruns in {re.escape(RUN_ID)}~2: \d+ output", text), node
    store = report.open_store(day1)
    second = _day_artifacts(store, [f"{RUN_ID}~2"])
    assert ("LogJoinExampleGen", "Examples") in second and ("Trainer", "Model") in second


def test_one_live_artifact_per_output_and_the_earlier_ones_superseded(day1, rerun):
    store = report.open_store(day1)
    both = _day_artifacts(store, [RUN_ID, f"{RUN_ID}~2"])
    for (node, kind), artifacts in both.items():
        live = [a for a in artifacts if a.state == a.LIVE]
        assert len(live) == 1, (node, kind, [(a.id, a.state) for a in artifacts])
        for a in artifacts:
            if a.state != a.LIVE:
                assert a.state == a.MARKED_FOR_DELETION
                assert a.custom_properties["superseded_in_run"].string_value == f"{RUN_ID}~2"
    [live] = [a for a in store.get_artifacts_by_type("Examples") if a.state == a.LIVE
              and a.custom_properties["span_date"].string_value == DAY1.isoformat()]
    before, _ = rerun
    assert live.id != before["examples"].id


def test_the_rerun_joins_the_same_labels_and_keeps_one_version(day1, rerun):
    before, _ = rerun
    [run] = [r for r in report.collect_runs(day1) if r.span_date == DAY1.isoformat()]
    assert run.examples_uri != before["examples"].uri
    assert _labels(run.examples_uri) == before["labels"]
    assert sorted(os.listdir(day1.serving_dir)) == before["served"]
    assert run.trained_on == [DAY1.isoformat()] and run.blessed is True and run.pushed is True
