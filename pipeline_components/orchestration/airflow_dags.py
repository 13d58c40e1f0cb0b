"""The Airflow DAGs: the daily pipeline (one task per TFX component) and the backfill form.

Both are built at parse time from the compiled pipeline and the YAML config
only; TFX and TensorFlow are imported inside the tasks when they run (see
compiled.py for why). The DAG files in ``dags/`` only call these builders.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Optional

from airflow import DAG
from airflow.exceptions import AirflowFailException
from airflow.models.param import Param
from airflow.operators.python import PythonOperator
from airflow.sensors.base import BaseSensorOperator

from configs import PipelineConfig
from pipeline_components.orchestration import compiled

log = logging.getLogger("rankpipe.backfill")

RUN_DATE_TEMPLATE = "{{ params.run_date or ds }}"
PUSH_TEMPLATE = "{{ params.push }}"


def as_bool(value: Any) -> bool:
    """A rendered template is a string: "True"/"False" (and what a user types in conf)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "none", ""):
        return False
    raise ValueError(f"push must be true or false, got {value!r}")


def run_task(node_ids: List[str], run_date: str, push: Any, run_id: str,
             config_path: str, home: str) -> None:
    from pipeline_components.orchestration import node_runner
    node_runner.run_nodes(node_ids, run_date, run_id, push=as_bool(push), config_path=config_path, home=home)


DAILY_DOC = """\
### The daily ranking pipeline

Each run processes one day (span): its logical date, or `run_date` from the
trigger form / conf. `push=false` blesses without pushing. Each task is one TFX
component launched from the compiled pipeline (`rankpipe compile`); resolvers run
inside the first task that consumes them. Clearing a task (or a whole run) reruns
it: the earlier attempt's outputs are marked superseded in ML Metadata, so
downstream tasks see one artifact per output. Backfills: the `ranking_backfill` DAG.
"""


def daily_dag(config: PipelineConfig) -> DAG:
    """One run per logical date; each TFX component is a task (resolvers run inside their consumer)."""
    settings = config.airflow
    ir = compiled.load(config)
    dag = DAG(
        dag_id=config.pipeline_name,
        schedule=settings["schedule"],
        start_date=dt.datetime.fromisoformat(str(settings["start_date"])),
        catchup=bool(settings["catchup"]),
        # ML Metadata on SQLite locks under parallel TFX tasks; with MySQL several days may run at once.
        max_active_runs=int(settings["max_active_runs"]),
        default_args={"retries": int(settings["retries"]), "owner": "ranking"},
        params={
            "run_date": Param(None, type=["null", "string"], format="date", title="Run date",
                              description="the day (span) to process; empty: the run's logical date"),
            "push": Param(True, type="boolean", title="Push",
                          description="push the model if it is blessed (false: bless only)"),
        },
        tags=["tfx", "ranking"],
        doc_md=DAILY_DOC,
    )
    tasks = {}
    in_order = ordered_tasks(int(settings["max_active_runs"]))
    for task in compiled.task_layout(ir):
        tasks[task.task_id] = PythonOperator(
            task_id=task.task_id, dag=dag, python_callable=run_task, **in_order.get(task.task_id, {}),
            op_kwargs={"node_ids": task.node_ids, "run_date": RUN_DATE_TEMPLATE, "push": PUSH_TEMPLATE,
                       "run_id": "{{ run_id }}", "config_path": config.path, "home": config.home},
            doc_md=f"TFX node(s): {', '.join(task.node_ids)}")
        for up in task.upstream:
            tasks[up] >> tasks[task.task_id]
    return dag


def ordered_tasks(max_active_runs: int) -> Dict[str, Dict[str, bool]]:
    """With several days running at once, the tasks whose result depends on the previous day
    wait for it: Transform (its training window and analyzer cache hold the previous days),
    the Evaluator (its baseline is the previous day's blessed model: it waits for the previous
    DeploymentGate) and the Pusher (versions must be pushed in day order, or an earlier day
    would land in backfills/). Ingestion and validation of all days overlap. The price: a day
    whose Transform never succeeds (bad data) holds the later days' training until it is
    cleared and succeeds, or marked success, which a sequential DAG would not. Airflow decides
    what "previous" is: the previous run by logical date, or with catchup the previous
    *scheduled* run (so with catchup on, overlapping manually triggered runs are not ordered)."""
    if max_active_runs <= 1:
        return {}
    return {"Transform": {"depends_on_past": True},
            "Evaluator": {"depends_on_past": True, "wait_for_downstream": True},
            "SpanPusher": {"depends_on_past": True}}


def date_range(start: Any, end: Any, max_days: int, today: Optional[dt.date] = None) -> List[dt.date]:
    """The backfill's days, oldest first; errors say what to change in the form."""
    try:
        first, last = dt.date.fromisoformat(str(start)[:10]), dt.date.fromisoformat(str(end)[:10])
    except ValueError:
        raise AirflowFailException(f"start and end must be dates YYYY-MM-DD, got start={start!r} end={end!r}") from None
    if last < first:
        raise AirflowFailException(f"end ({last}) is before start ({first}): swap them")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if last > today:
        raise AirflowFailException(f"end ({last}) is in the future (today is {today}): a day can only be "
                                   f"processed once its logs have landed")
    days = (last - first).days + 1
    if days > max_days:
        raise AirflowFailException(f"{days} days requested, more than airflow.backfill_max_days={max_days}: "
                                   f"split the range or raise the limit in the config")
    return [first + dt.timedelta(days=i) for i in range(days)]


def daily_run_id(backfill_run_id: str, day: dt.date) -> str:
    return f"backfill_{day.isoformat()}__{backfill_run_id}"


class BackfillDays(BaseSensorOperator):
    """Runs the daily DAG for each day of the range, one after the other, oldest first.

    Why a rescheduling sensor and not TriggerDagRunOperator(wait_for_completion=True):
    a waiting task holds an executor slot, and the embedded setup's SequentialExecutor
    has one, so the daily runs it waits for could never start; the deferrable variant
    needs a triggerer process. Here every poke reads the state from the database (the
    daily runs have deterministic run ids), triggers the next day when the previous one
    succeeded, and gives the slot back between pokes. Clearing this task resumes the
    backfill where it stopped; a failed day stops it with a message saying what to do.
    """

    template_fields = ("start", "end", "push")

    def __init__(self, *, daily_dag_id: str, start: str, end: str, push: str, max_days: int, **kwargs):
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        self.daily_dag_id, self.start, self.end, self.push, self.max_days = daily_dag_id, start, end, push, max_days

    def poke(self, context) -> bool:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.models import DagModel, DagRun
        from airflow.utils import timezone
        from airflow.utils.state import DagRunState

        days = date_range(self.start, self.end, self.max_days)
        push = as_bool(self.push)
        done = []
        for day in days:
            run_id = daily_run_id(context["run_id"], day)
            runs = DagRun.find(dag_id=self.daily_dag_id, run_id=run_id)
            if not runs:
                if DagModel.get_dagmodel(self.daily_dag_id).is_paused:
                    raise AirflowFailException(
                        f"{self.daily_dag_id} is paused, so its runs would never start: unpause it "
                        f"(toggle in the DAG list), then clear this task to resume the backfill")
                trigger_dag(self.daily_dag_id, run_id=run_id, conf={"run_date": day.isoformat(), "push": push},
                            execution_date=timezone.utcnow(), replace_microseconds=False)
                log.info("backfill %s..%s: triggered %s for %s (push=%s); done: %s",
                         days[0], days[-1], run_id, day, push, [str(d) for d in done] or "none")
                return False
            run = runs[0]
            if run.state == DagRunState.SUCCESS:
                done.append(day)
                continue
            if run.state == DagRunState.FAILED:
                failed = sorted(ti.task_id for ti in run.get_task_instances(state=["failed", "upstream_failed"]))
                raise AirflowFailException(
                    f"{day} failed in {self.daily_dag_id} run {run_id} (tasks: {', '.join(failed) or '?'}): open "
                    f"the failed task's log for the reason, fix it and clear that task; once the run succeeds, "
                    f"clear this task to go on with the remaining days")
            log.info("backfill: waiting for %s (%s, %s)", day, run_id, run.state)
            return False
        log.info("backfill %s..%s done: %d day(s) succeeded", days[0], days[-1], len(done))
        return True


BACKFILL_DOC = """\
### Backfill the daily ranking pipeline

Trigger this DAG with the form (▶ → *Trigger DAG*): `start` and `end` (inclusive)
and whether to `push`. It runs the daily DAG once per day, oldest first, each run
processing exactly its own day (span); the next day starts when the previous one
succeeded. The daily DAG must be unpaused. Days older than the model being served
are pushed to `serving/backfills/`, never over today's model.
"""


def backfill_dag(config: PipelineConfig) -> DAG:
    settings = config.airflow
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    dag = DAG(
        dag_id=f"{config.pipeline_name}_backfill",
        schedule=None,
        start_date=dt.datetime(2020, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "ranking"},
        params={
            "start": Param(yesterday, type="string", format="date", title="Start date",
                           description="first day to process (inclusive)"),
            "end": Param(yesterday, type="string", format="date", title="End date",
                         description="last day to process (inclusive)"),
            "push": Param(True, type="boolean", title="Push",
                          description="push blessed models; older days land in serving/backfills"),
        },
        tags=["tfx", "ranking", "backfill"],
        doc_md=BACKFILL_DOC,
        render_template_as_native_obj=False,
    )
    BackfillDays(task_id="run_days", dag=dag, daily_dag_id=config.pipeline_name,
                 start="{{ params.start }}", end="{{ params.end }}", push="{{ params.push }}",
                 max_days=int(settings["backfill_max_days"]),
                 poke_interval=float(settings["backfill_poke_seconds"]),
                 timeout=float(settings["backfill_timeout_hours"]) * 3600)
    return dag
