"""The DAG as Airflow parses it: schedule, concurrency, and the span each logical date selects."""
import datetime as dt
import os
import types

import pytest

from pipeline_components.airflow_local import DAGS_FOLDER
from pipeline_components.log_join import date_to_span, parse_run_date, span_to_date


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    os.environ["RANKPIPE_HOME"] = str(tmp_path_factory.mktemp("home"))
    from airflow.models import DagBag
    bag = DagBag(dag_folder=DAGS_FOLDER, include_examples=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags["ranking_daily"]


def _render(dag, task_id: str, logical_date: dt.date, conf=None) -> dict:
    task = dag.get_task(task_id)
    context = {"ds": logical_date.isoformat(), "dag_run": types.SimpleNamespace(conf=conf or {})}
    return task.render_template(task.op_kwargs, context)["exec_properties"]


def _render_run_date(dag, logical_date: dt.date, conf=None) -> str:
    return _render(dag, "LogJoinExampleGen", logical_date, conf)["run_date"]


def test_dag_is_daily_one_run_at_a_time_in_topological_order(dag):
    assert dag.schedule_interval == "@daily"
    assert dag.max_active_runs == 1
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("LogJoinExampleGen") < order.index("Transform") < order.index("Trainer") \
        < order.index("Evaluator") < order.index("DeploymentGate") < order.index("SpanPusher")
    # The push waits for both halves of the gate: metrics and the serving check.
    assert {"DeploymentGate", "ServingCheck"} <= dag.get_task("SpanPusher").upstream_task_ids
    assert "Evaluator" in dag.get_task("DeploymentGate").upstream_task_ids
    # Nothing is analysed or trained before the day passed validation.
    assert "training_window_resolver" in dag.get_task("Transform").upstream_task_ids
    assert "training_window_resolver" in dag.get_task("Trainer").upstream_task_ids
    for resolver in ("training_window_resolver", "analyzer_cache_resolver"):
        assert "AnomaliesGate" in dag.get_task(resolver).upstream_task_ids


@pytest.mark.parametrize("logical", [dt.date(2026, 11, 20), dt.date(2025, 2, 28), dt.date(2026, 1, 1)])
def test_logical_date_selects_its_own_span(dag, logical):
    rendered = _render_run_date(dag, logical)
    assert rendered == logical.isoformat()
    span = date_to_span(parse_run_date(rendered))
    assert span == (logical - dt.date(1970, 1, 1)).days
    assert span_to_date(span) == logical


def test_trigger_conf_overrides_the_date(dag):
    assert _render_run_date(dag, dt.date(2026, 11, 20), conf={"run_date": "2026-10-01"}) == "2026-10-01"


@pytest.mark.parametrize("conf", [None, {"run_date": "2026-10-01"}])
def test_training_window_is_anchored_at_the_same_date_as_the_join(dag, conf):
    """The resolver's config is rendered like the join's run_date and reaches the strategy the way
    TFX's Airflow launcher passes it (update the component's exec_properties, then read them)."""
    from tfx.dsl.components.common.resolver import RESOLVER_CONFIG
    from pipeline_components.resolvers import SpanWindowStrategy
    logical = dt.date(2026, 11, 20)
    task = dag.get_task("training_window_resolver")
    component = task.python_callable.keywords["component"]
    component.exec_properties.update(_render(dag, "training_window_resolver", logical, conf))
    config = component.exec_properties[RESOLVER_CONFIG]
    assert config["run_date"] == _render_run_date(dag, logical, conf)
    strategy = SpanWindowStrategy(**config)
    anchor = date_to_span(parse_run_date(_render_run_date(dag, logical, conf)))
    assert strategy._spans[-1] == anchor and len(strategy._spans) == config["num_spans"]


def test_malformed_run_date_is_a_clear_error():
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_run_date("{{ ds }}")
