"""The DAGs as Airflow parses them: built from the compiled pipeline, light to parse, and the
span each run selects (logical date or the trigger's/backfill's conf)."""
import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from pipeline_components.orchestration import compiled, node_runner
from pipeline_components.orchestration.airflow_dags import as_bool, date_range, daily_run_id
from pipeline_components.orchestration.airflow_local import DAGS_FOLDER, airflow_env
from configs import load_config


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = load_config(home=str(tmp_path_factory.mktemp("home")))
    compiled.compile_pipeline(config)
    return config


def _dagbag(config):
    from airflow.models import DagBag
    saved = {k: os.environ.get(k) for k in ("RANKPIPE_HOME", "RANKPIPE_CONFIG")}
    os.environ.update(RANKPIPE_HOME=config.home, RANKPIPE_CONFIG=config.path)
    try:
        return DagBag(dag_folder=DAGS_FOLDER, include_examples=False)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def bag(config):
    bag = _dagbag(config)
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="module")
def dag(bag):
    return bag.dags["ranking_daily"]


def _render(dag, task_id, logical_date, params=None):
    task = dag.get_task(task_id)
    context = {"ds": logical_date.isoformat(), "run_id": "scheduled__x",
               "params": dict({"run_date": None, "push": True}, **(params or {}))}
    return task.render_template(task.op_kwargs, context)


def test_dag_is_daily_one_run_at_a_time_one_task_per_component(dag, config):
    assert dag.schedule_interval == "@daily"
    assert dag.max_active_runs == 1 and dag.catchup is False
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("LogJoinExampleGen") < order.index("Transform") < order.index("Trainer") \
        < order.index("Evaluator") < order.index("DeploymentGate") < order.index("SpanPusher")
    # The push waits for both halves of the gate: metrics and the serving check.
    assert {"DeploymentGate", "ServingCheck"} <= dag.get_task("SpanPusher").upstream_task_ids
    assert "Evaluator" in dag.get_task("DeploymentGate").upstream_task_ids
    # Nothing is analysed or trained before the day passed validation: the window resolver runs
    # inside the Transform task, which waits for the gate.
    assert "AnomaliesGate" in dag.get_task("Transform").upstream_task_ids
    assert dag.get_task("Transform").op_kwargs["node_ids"] == [
        "analyzer_cache_resolver", "training_window_resolver", "Transform"]
    assert dag.get_task("Evaluator").op_kwargs["node_ids"] == ["latest_blessed_model_resolver", "Evaluator"]
    # Every compiled node runs in exactly one task.
    ran = [n for t in dag.tasks for n in t.op_kwargs["node_ids"]]
    assert sorted(ran) == sorted(compiled.node_ids(compiled.load(config)))


@pytest.mark.parametrize("logical", [dt.date(2026, 11, 20), dt.date(2025, 2, 28), dt.date(2026, 1, 1)])
def test_logical_date_selects_its_own_span(dag, logical):
    for task in dag.tasks:
        rendered = _render(dag, task.task_id, logical)
        assert rendered["run_date"] == logical.isoformat()
        assert rendered["run_id"] == "scheduled__x" and as_bool(rendered["push"]) is True


def test_trigger_form_overrides_the_date_and_the_push(dag):
    rendered = _render(dag, "SpanPusher", dt.date(2026, 11, 20), {"run_date": "2026-10-01", "push": False})
    assert rendered["run_date"] == "2026-10-01"
    assert as_bool(rendered["push"]) is False


def _strings(message):
    from google.protobuf import text_format
    return text_format.MessageToString(message)


@pytest.mark.parametrize("run_date", ["2026-11-20", "2026-10-01"])
def test_binding_puts_the_date_in_the_join_and_the_training_window(config, run_date):
    ir = compiled.load(config)
    assert "${run_date}" in _strings(ir)
    node_runner.bind(ir, run_date, "manual__run", push=False)
    text = _strings(ir)
    assert "${run_date}" not in text and "runtime_parameter" not in text
    join = compiled.find_node(ir, "LogJoinExampleGen").parameters.parameters["run_date"]
    assert join.field_value.string_value == run_date
    window = _strings(compiled.find_node(ir, "training_window_resolver").inputs)
    assert f'string_value: "{run_date}"' in window and "SpanWindowStrategy" in window
    push = compiled.find_node(ir, "SpanPusher").parameters.parameters["push"]
    assert push.field_value.int_value == 0
    assert ir.runtime_spec.pipeline_run_id.field_value.string_value == "manual__run"


def test_a_malformed_run_date_is_refused_before_anything_runs(config):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        node_runner.bind(compiled.load(config), "{{ ds }}", "manual__run", push=True)


def test_parsing_imports_neither_tfx_nor_tensorflow(config):
    code = ("import sys, time; from airflow.models import DagBag; t = time.time(); "
            f"b = DagBag(dag_folder={DAGS_FOLDER!r}, include_examples=False); "
            "heavy = sorted(m for m in ('tensorflow', 'tfx.types', 'tfx.v1', 'apache_beam') if m in sys.modules); "
            "print(__import__('json').dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, "
            "'dags': sorted(b.dag_ids), 'heavy': heavy}))")
    out = subprocess.run([sys.executable, "-c", code], env=airflow_env(config), capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"errors": {}, "dags": ["ranking_daily", "ranking_daily_backfill"], "heavy": []}


def test_a_stale_compiled_pipeline_is_an_import_error_naming_the_fix(config, tmp_path):
    changed = tmp_path / "changed.yaml"
    changed.write_text("training_window: {num_spans: 5}\n")
    stale = load_config(str(changed), config.home)
    assert not compiled.is_current(stale)
    bag = _dagbag(stale)
    [error] = [v for k, v in bag.import_errors.items() if k.endswith("ranking_daily.py")]
    assert "rankpipe compile" in error and "older than the config" in error
    assert "ranking_daily_backfill" in bag.dag_ids  # the backfill form does not need the IR


def test_backfill_form_has_start_end_and_push(bag):
    backfill = bag.dags["ranking_daily_backfill"]
    assert backfill.schedule_interval is None and backfill.max_active_runs == 1
    params = backfill.params.dump()
    assert set(params) == {"start", "end", "push"} and params["push"] is True
    task = backfill.get_task("run_days")
    assert task.mode == "reschedule" and task.daily_dag_id == "ranking_daily"


def test_backfill_days_are_in_order_and_bad_ranges_say_what_to_change():
    from airflow.exceptions import AirflowFailException
    today = dt.date(2026, 11, 25)
    assert date_range("2026-11-20", "2026-11-22", 10, today) == [
        dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)]
    assert date_range("2026-11-20", "2026-11-20", 10, today) == [dt.date(2026, 11, 20)]
    for start, end, match in [("2026-11-22", "2026-11-20", "swap"), ("2026-11-20", "2026-11-26", "future"),
                              ("2026-01-01", "2026-11-20", "backfill_max_days"), ("20-11-2026", "x", "YYYY-MM-DD")]:
        with pytest.raises(AirflowFailException, match=match):
            date_range(start, end, 10, today)
    assert daily_run_id("manual__2026", dt.date(2026, 11, 20)) != daily_run_id("manual__2026", dt.date(2026, 11, 21))


@pytest.mark.parametrize("value,expected", [("True", True), ("False", False), (True, True), ("0", False)])
def test_push_flag_parsing(value, expected):
    assert as_bool(value) is expected


def test_push_flag_refuses_anything_else():
    with pytest.raises(ValueError, match="true or false"):
        as_bool("maybe")


def test_catchup_and_the_schedule_come_from_the_config(config, tmp_path):
    """airflow.catchup: true lets the scheduler create a run per missed day since start_date."""
    from pipeline_components.orchestration.airflow_dags import daily_dag
    path = tmp_path / "catchup.yaml"
    path.write_text("airflow: {catchup: true, start_date: '2026-11-10', schedule: '0 3 * * *'}\n")
    catchup = load_config(str(path), str(tmp_path / "home"))
    compiled.compile_pipeline(catchup)
    dag = daily_dag(catchup)
    assert dag.catchup is True and dag.schedule_interval == "0 3 * * *"
    assert dag.start_date.date() == dt.date(2026, 11, 10) and dag.max_active_runs == 1
    assert not any(t.depends_on_past for t in dag.tasks)  # one day at a time: nothing waits on the past
