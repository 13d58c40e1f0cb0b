"""The production setup driven from a real browser, on several Airflow workers: the stack of
configs/celery.yaml started and stopped by scripts/celery_stack.sh (Debian's packages, loopback
only): Airflow on PostgreSQL with the CeleryExecutor, Redis as the broker, two Celery workers
with their own working directories, the scheduler; ML Metadata on MariaDB. `rankpipe ui
--no-scheduler` is the web server; Debian's Chromium through Selenium and Debian's ChromeDriver.

1. Log in and switch the daily DAG on; two days (DAY3, DAY4) are triggered together and run
   two at a time: their ingestion overlaps, their window/baseline/push stay in order.
2. Clear the finished DAY4 in the grid (Clear > Clear existing tasks): the scheduler reruns it,
   alongside the backfill below. The rerun is idempotent: one live artifact per output (the
   first attempt's are superseded), the same labels, one pushed version.
3. Fill the backfill form for DAY1..DAY2 and submit: the two days run one after the other,
   each processing its own span; being older than the served model, they are pushed to
   serving/backfills/, never over it.
4. Check the runs in PostgreSQL (both workers ran tasks, of both parallel days), and the pushed
   models and the spans in ML Metadata (MariaDB); stopping the stack leaves no process behind.

Every wait ends on progress or on failure (tests/waits.py): the runs are waited on while their
tasks change state, and a failed task fails the test at once with its log line. Screenshots go to
$RANKPIPE_SCREENSHOTS (default: the test's tmp dir); the README's come from this test.
"""
import datetime as dt
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pandas as pd
import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2

from loggen import write_days
from pipeline_components.reporting import report
from pipeline_components.orchestration.airflow_dags import daily_run_id
from pipeline_components.orchestration.airflow_local import airflow_env, run_airflow
from configs import REPO_ROOT, load_config
from pipeline_components.orchestration.ports import free_ports
from tests.pipeline_components.components.join_helpers import read_examples
from tests.ui_process import process_group, processes_of, running_ui
from tests.waits import UNTIMED_SERVING_CHECK, scaled, wait_for

pytestmark = pytest.mark.e2e

DAY1, DAY2, DAY3, DAY4 = (dt.date(2026, 11, 20) + dt.timedelta(days=i) for i in range(4))
IMPRESSIONS = 5_000
# The longest any daily task went without a state change: the Trainer, 130 s beside the other test
# worker (before the venv was compiled to bytecode; ~70 s since). Over 3x that.
RUNS_STALL_S = 400
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
STACK = os.path.join(REPO_ROOT, "scripts", "celery_stack.sh")
CLEAR_BUTTON = "button[title='Clear tasks or add new tasks']"


@pytest.fixture
def stack(tmp_path):
    """Ports and a folder for scripts/celery_stack.sh; stopped (every process group) at the end."""
    # Not under pytest's tmp dir: that is private to root, and the servers run as postgres/mysql.
    folder = tempfile.mkdtemp(prefix="rankpipe-stack-", dir="/tmp")
    os.chmod(folder, 0o755)
    pg_port, mysql_port, redis_port = free_ports(3)
    info = {"folder": folder, "pg_port": pg_port, "mysql_port": mysql_port, "redis_port": redis_port}
    try:
        yield info
    finally:
        subprocess.run(["bash", STACK, "stop", folder], capture_output=True, timeout=scaled(300))
        # The services' and workers' logs outlive the stack, for a failure's diagnosis.
        for log in glob.glob(os.path.join(folder, "*.log")) + glob.glob(os.path.join(folder, "worker*", "*.out")):
            shutil.copy(log, tmp_path / os.path.relpath(log, folder).replace(os.sep, "-"))
        shutil.rmtree(folder, ignore_errors=True)


def _start_stack(stack, config):
    env = {**os.environ, "RANKPIPE_CONFIG": config.path, "RANKPIPE_HOME": config.home}
    out = subprocess.run(["bash", STACK, "start", stack["folder"], str(stack["pg_port"]), str(stack["mysql_port"]),
                          str(stack["redis_port"])], capture_output=True, text=True, env=env, timeout=scaled(1200))
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(re.findall(r"^export (\w+)='([^']*)'$", out.stdout, re.M))


def _stack_processes(stack):
    """Every process of the stack's services (their process groups), task processes included."""
    pids = set()
    for name in os.listdir(stack["folder"]):
        if name.endswith(".pid"):
            with open(os.path.join(stack["folder"], name)) as fh:
                pids.update(process_group(int(fh.read())))
    return pids


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    assert not missing, f"{missing} missing: run `bash scripts/system_packages.sh` (scripts/test.sh does)"
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _config(home, stack):
    with open(os.path.join(REPO_ROOT, "configs", "celery.yaml")) as fh:
        production = yaml.safe_load(fh)
    production["metadata"]["mysql"]["port"] = stack["mysql_port"]
    production["airflow"]["celery"]["broker_url"] = f"redis://127.0.0.1:{stack['redis_port']}/0"
    production["airflow"].update({
        "database_url": f"postgresql+psycopg2://rankpipe@127.0.0.1:{stack['pg_port']}/airflow",
        # No schedule (a scheduled run of "yesterday" would have no logs): the days are triggered.
        # Each poke of the backfill's sensor is a task process: 20 s keeps their CPU small.
        "schedule": None, "parallelism": 3, "backfill_poke_seconds": 20})
    # Tiny days: floors at 0, a lenient no-regression threshold and no calibration band (1,000 eval
    # impressions: noise alone moves calibration by 15 %), so every day is blessed and pushed.
    production.update({"trainer": {"epochs": 1}, "serving_check": UNTIMED_SERVING_CHECK,
                       "evaluator": {"auc_floor": 0.0, "max_auc_drop": 1.0, "calibration_band": None}})
    path = os.path.join(home, "production.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(production, fh)
    return load_config(path, home)


def _psql(databases, sql):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(databases["pg_port"]), "-U", "rankpipe", "-d",
                          "airflow", "-tAF", "|", "-c", sql], capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.strip().splitlines() if line]


def _runs(databases, dag_id):
    return dict(_psql(databases, f"select run_id, state from dag_run where dag_id = '{dag_id}'"))


def _task_spans(databases, where):
    """[(run_id, first task start, last task end)] of ranking_daily runs, by first start."""
    return [tuple(r) for r in _psql(
        databases, "select r.run_id, min(t.start_date), max(t.end_date) from dag_run r join task_instance t "
                   "on t.run_id = r.run_id and t.dag_id = r.dag_id where r.dag_id = 'ranking_daily' and " + where +
                   " group by 1 order by 2")]


def _wait(predicate, timeout_s, what, interval_s=5):
    """One UI step (a page, a button, a state flip): bounded by a ceiling scaled to this machine."""
    return wait_for(what, predicate, stall_s=timeout_s, interval_s=interval_s)


def _shot(driver, shots, name):
    os.makedirs(shots, exist_ok=True)
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def _failure_line(home, run_id, task_id):
    """The one-line reason node_runner writes when a task fails, from the task's newest log."""
    folder = os.path.join(home, "airflow", "logs", "dag_id=ranking_daily", f"run_id={run_id}", f"task_id={task_id}")
    attempts = sorted(os.listdir(folder), key=lambda n: int(re.sub(r"\D", "", n) or 0)) if os.path.isdir(folder) else []
    for name in reversed(attempts):
        with open(os.path.join(folder, name), errors="replace") as fh:
            lines = [ln.strip() for ln in fh if "failed for run_date" in ln or "Error" in ln]
        if lines:
            return f"{lines[-1][-600:]} (log: {os.path.join(folder, name)})"
    return f"no reason found in {folder}"


def _labels(examples_uri):
    """(click, conversion) by impression of a day's joined examples, whatever the split."""
    labels = read_examples(examples_uri)
    assert len(labels), f"no examples under {examples_uri}"
    return labels.set_index("impression_id")[["click", "conversion"]].sort_index()


def _run_artifacts(store, run_name):
    """{(node, artifact type): [artifacts]} output by executions in one pipeline-run context."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    node_type = store.get_context_type("node").id
    ctx = store.get_context_by_type_and_name("pipeline_run", run_name)
    assert ctx is not None, f"no pipeline_run context {run_name}"
    found = {}
    for execution in store.get_executions_by_context(ctx.id):
        [node] = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type]
        outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                   if e.type == metadata_store_pb2.Event.OUTPUT]
        for a in store.get_artifacts_by_id(outputs):
            found.setdefault((node.split(".", 1)[1], types[a.type_id]), []).append(a)
    return found


def _clear_run(driver, ui, run_id, shots):
    """The grid's Clear > Clear existing tasks, as an operator reruns a day. The grid is a React
    app inside a shadow root (div#root), which Selenium searches with CSS selectors only."""
    from selenium.webdriver.common.by import By
    driver.get(f"{ui.url}/dags/ranking_daily/grid?dag_run_id={urllib.parse.quote(run_id)}")

    def grid():
        hosts = driver.find_elements(By.ID, "root")
        return hosts and driver.execute_script("return arguments[0].shadowRoot", hosts[0]) and hosts[0].shadow_root
    root = _wait(grid, 60, "the grid", 1)
    _wait(lambda: root.find_elements(By.CSS_SELECTOR, CLEAR_BUTTON), 60, "the run's Clear button", 1)[0].click()
    item = _wait(lambda: [e for e in root.find_elements(By.CSS_SELECTOR, "button[role=menuitem]")
                          if e.is_displayed() and e.text.strip() == "Clear existing tasks"], 30, "the Clear menu", 1)
    _shot(driver, shots, "06_clear_run")
    item[0].click()


def _task_states(databases):
    """The progress of the daily runs: every task try's state (the backfill's sensor, which flips
    between running and up_for_reschedule on every poke, is not progress)."""
    return tuple(tuple(r) for r in _psql(databases, "select run_id, task_id, state, try_number from task_instance "
                                                    "where dag_id = 'ranking_daily' order by 1, 2"))


def _failures(ui, databases, home):
    """A message naming every failed task with its reason, or None; also fails at once when
    `rankpipe ui` (the scheduler, the web server) died."""
    ui.check_alive()
    failed = _psql(databases, "select run_id, task_id, state from task_instance where dag_id = 'ranking_daily' "
                              "and state in ('failed', 'upstream_failed', 'up_for_retry')")
    failed_runs = _psql(databases, "select dag_id, run_id from dag_run where state = 'failed'")
    if not failed and not failed_runs:
        return None
    lines = [f"{task} of {run} is {state}: {_failure_line(home, run, task)}"
             for run, task, state in failed if state != "upstream_failed"]
    return "\n".join([f"failed runs {failed_runs}"] + lines)


def _wait_runs(ui, databases, home, dag_id, count, what):
    """Until `count` runs of dag_id succeeded. Fails at once on a failed task (named, with its log
    line), or when no daily task changed state for RUNS_STALL_S (scaled)."""
    def done():
        runs = _runs(databases, dag_id)
        return len(runs) == count and set(runs.values()) == {"success"} and runs
    return wait_for(what, done, stall_s=RUNS_STALL_S, interval_s=5, progress=lambda: _task_states(databases),
                    failure=lambda: _failures(ui, databases, home))


def test_two_days_in_parallel_a_rerun_and_a_backfill_from_the_browser_on_celery_workers(
        stack, browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    home, [port] = str(tmp_path / "home"), free_ports(1)
    shots = os.environ.get("RANKPIPE_SCREENSHOTS") or str(tmp_path / "screenshots")
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), DAY1, 4, IMPRESSIONS, progress=None)
    config = _config(home, stack)
    exports = _start_stack(stack, config)
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    databases = {"pg_port": stack["pg_port"]}
    env = airflow_env(config)
    assert (env["AIRFLOW__CORE__EXECUTOR"], env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"][:19],
            env["AIRFLOW__CELERY__BROKER_URL"]) == ("CeleryExecutor", "postgresql+psycopg2",
                                                    f"redis://127.0.0.1:{stack['redis_port']}/0")

    with running_ui(home, port, config=config.path, extra_args=["--no-scheduler"],
                    others=lambda: _stack_processes(stack)) as ui:
        ui.wait_ready()
        b = browser
        b.get(f"{ui.url}/login/")
        b.find_element(By.ID, "username").send_keys("admin")
        b.find_element(By.ID, "password").send_keys(ui.password)
        _shot(b, shots, "01_login")
        b.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
        _wait(lambda: b.current_url.rstrip("/").endswith("/home"), 60, "the DAG list after login", 1)

        def both_listed():
            b.get(f"{ui.url}/home")
            return b.find_elements(By.ID, "toggle-ranking_daily") and b.find_elements(
                By.ID, "toggle-ranking_daily_backfill")
        _wait(both_listed, 240, "both DAGs in the DAG list")
        toggle = b.find_element(By.ID, "toggle-ranking_daily")
        assert not toggle.is_selected(), "DAGs start paused"
        b.execute_script("arguments[0].click();", toggle)  # switch the daily DAG on
        _wait(lambda: b.find_element(By.ID, "toggle-ranking_daily").is_selected(), 30, "the toggle", 1)
        _shot(b, shots, "02_dags")

        # 1. Two days triggered together (as catchup or an operator would), two runs at a time.
        for day in (DAY3, DAY4):
            run_airflow(["dags", "trigger", "ranking_daily", "--exec-date", day.isoformat()], env)
        together = _wait_runs(ui, databases, home, "ranking_daily", 2, "the two days to succeed")
        day4_run = f"manual__{DAY4.isoformat()}T00:00:00+00:00"
        assert sorted(together) == [f"manual__{DAY3.isoformat()}T00:00:00+00:00", day4_run]
        (first, _, end3), (_, start4, _) = _task_spans(databases, "r.run_id like 'manual%'")
        assert first.startswith(f"manual__{DAY3}") and start4 < end3, "the two days did not overlap"
        transform = {run: (start, end) for run, start, end in _psql(
            databases, "select run_id, start_date, end_date from task_instance where task_id = 'Transform'")}
        assert transform[day4_run][0] > transform[first][1], "DAY4's Transform did not wait for DAY3's"

        # 2. Clear the finished DAY4: the scheduler reruns every task.
        [before] = [r for r in report.collect_runs(config) if r.span_date == DAY4.isoformat()]
        labels_before = _labels(before.examples_uri)
        _clear_run(b, ui, day4_run, shots)
        _wait(lambda: _runs(databases, "ranking_daily")[day4_run] != "success", 60, "DAY4's run to be cleared", 1)

        # 3. Backfill DAY1..DAY2 through the form.
        b.get(f"{ui.url}/dags/ranking_daily_backfill/trigger")
        for name, value in (("start", DAY1), ("end", DAY2)):
            field = b.find_element(By.ID, f"element_{name}")
            field.clear()
            field.send_keys(value.isoformat())
        b.find_element(By.TAG_NAME, "h2").click()  # leave the field: the form updates its conf
        assert b.find_element(By.ID, "element_push").is_selected()
        _shot(b, shots, "03_backfill_form")
        b.find_element(By.XPATH, "//button[@type='submit' and contains(., 'Trigger')]").click()
        _wait(lambda: _runs(databases, "ranking_daily_backfill"), 60, "the backfill run")
        _wait_runs(ui, databases, home, "ranking_daily", 4, "both backfilled days and the rerun to succeed")
        _wait_runs(ui, databases, home, "ranking_daily_backfill", 1, "the backfill run to succeed")
        b.get(f"{ui.url}/dags/ranking_daily/grid")
        time.sleep(3)
        _shot(b, shots, "04_daily_runs")
        b.get(f"{ui.url}/dags/ranking_daily_backfill/grid")
        time.sleep(3)
        _shot(b, shots, "05_backfill_run")
    assert ui.returncode == 0 and ui.leftover == []
    # Both Celery workers ran tasks (Redis hands each task to the longest-waiting worker), and
    # every task try of every run names the worker that ran it.
    ran_on = _psql(databases, "select hostname, count(*) from task_instance where dag_id = 'ranking_daily' group by 1")
    assert {host for host, _ in ran_on} == {"worker1", "worker2"}, ran_on

    # The backfill ran its days one after the other, oldest first, each as its own run.
    [backfill_run] = _runs(databases, "ranking_daily_backfill")
    backfilled = _task_spans(databases, "r.run_id like 'backfill%'")
    assert [r for r, _, _ in backfilled] == [daily_run_id(backfill_run, d) for d in (DAY1, DAY2)]
    assert backfilled[1][1] > backfilled[0][2], "the second day started before the first one ended"

    # The cleared DAY4 ran every task again (second try), alongside the backfill's first day.
    tries = dict(_psql(databases, f"select task_id, try_number from task_instance where run_id = '{day4_run}'"))
    assert len(tries) == 11 and set(tries.values()) == {"2"}, tries
    [(_, rerun_start, rerun_end)] = _task_spans(databases, f"r.run_id = '{day4_run}'")
    assert rerun_start < backfilled[0][2] and backfilled[0][1] < rerun_end, "the rerun did not overlap the backfill"
    # ... in a new pipeline-run context, superseding the first attempt's outputs: one live artifact each.
    store = report.open_store(config)
    first_attempt, rerun = _run_artifacts(store, day4_run), _run_artifacts(store, f"{day4_run}~2")
    assert set(rerun) == set(first_attempt) and ("LogJoinExampleGen", "Examples") in rerun
    for key in first_attempt:
        [live] = [a for a in first_attempt[key] + rerun[key] if a.state == a.LIVE]
        assert live in rerun[key], key
        for a in first_attempt[key]:
            assert a.state == a.MARKED_FOR_DELETION, key
            assert a.custom_properties["superseded_in_run"].string_value == f"{day4_run}~2"

    # ML Metadata (MariaDB): every span once, each trained on its own window.
    runs = {r.span_date: r for r in report.collect_runs(config)}
    assert sorted(runs) == [d.isoformat() for d in (DAY1, DAY2, DAY3, DAY4)]
    assert runs[DAY4.isoformat()].trained_on == [DAY3.isoformat(), DAY4.isoformat()]
    assert runs[DAY4.isoformat()].examples_uri != before.examples_uri  # the rerun's join ...
    pd.testing.assert_frame_equal(_labels(runs[DAY4.isoformat()].examples_uri), labels_before)  # same labels
    assert runs[DAY1.isoformat()].trained_on == [DAY1.isoformat()]
    assert runs[DAY2.isoformat()].trained_on == [DAY1.isoformat(), DAY2.isoformat()]
    assert all(r.blessed and r.pushed for r in runs.values())
    # Each run was compared with the model it replaces: the blessed model of the greatest earlier
    # span. The rerun of DAY4 ran after DAY4's first attempt and beside the backfill, both blessed
    # later than DAY3: the newest blessing (TFX's LatestBlessedModelStrategy) would be one of them.
    baselines = {d: runs[d.isoformat()].baseline_span for d in (DAY1, DAY2, DAY3, DAY4)}
    assert baselines == {DAY1: "", DAY2: DAY1.isoformat(), DAY3: "", DAY4: DAY3.isoformat()}
    with open(os.path.join(runs[DAY4.isoformat()].report_uri, "report.md")) as fh:
        assert f"baseline: the model of span {DAY3.isoformat()}, " in fh.read()
    # Pushed: the two newest days are served (the rerun replaced DAY4's version, no second copy),
    # the backfilled (older) days are kept aside.
    version = {d: d.strftime("%Y%m%d") for d in (DAY1, DAY2, DAY3, DAY4)}
    assert sorted(os.listdir(config.serving_dir)) == [version[DAY3], version[DAY4]]
    backfills = os.path.join(config.serving_root, "backfills", config.model_name)
    assert sorted(os.listdir(backfills)) == [version[DAY1], version[DAY2]]
    for d in (DAY1, DAY2):
        assert runs[d.isoformat()].pushed_destination == os.path.join(backfills, version[d])
        assert os.path.exists(os.path.join(backfills, version[d], "saved_model.pb"))
    assert not os.path.exists(config.metadata_path), "ML Metadata must not fall back to SQLite"

    # Stopping the stack ends every scheduler, worker and task process of this home.
    stop = subprocess.run(["bash", STACK, "stop", stack["folder"]], capture_output=True, text=True,
                          timeout=scaled(300))
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert processes_of(home) == [], "the stack's scheduler or workers outlived `celery_stack.sh stop`"
