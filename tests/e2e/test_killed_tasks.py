"""A day whose worker is SIGKILLed mid-task, then rerun: through the real DAG (`airflow dags test`).

Attempt 1 is killed while Transform analyses, attempt 2 while the Trainer trains (the whole
task process group, as an OOM kill or a lost VM does it); attempt 3 runs the day to the push.
Afterwards: one live artifact per (component, output); the pushed version is the span's, holds
exactly the Trainer output of the attempt that completed; and a watcher that listed the serving
directory every few milliseconds through all three attempts never saw a version without its
complete SavedModel. Every wait ends on progress (the run's log growing) or on failure.
"""
import datetime as dt
import filecmp
import os
import signal
import subprocess
import threading

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2

from configs import load_config
from loggen import write_days
from pipeline_components.orchestration import airflow_local
from pipeline_components.reporting import report
from tests.waits import UNTIMED_SERVING_CHECK, wait_for

pytestmark = pytest.mark.e2e
DAY = dt.date(2026, 11, 20)
IMPRESSIONS = 2_500
# (task to kill, a log line its executor writes once it is working)
KILLS = [("Transform", "Not using the in-place Transform"), ("Trainer", "train file patterns (one per span")]


class ServingWatcher(threading.Thread):
    """Lists the serving directory in a loop; records any visible version that is incomplete."""

    def __init__(self, serving_dir):
        super().__init__(daemon=True)
        self.serving_dir, self.halt, self.incomplete, self.looks = serving_dir, threading.Event(), [], 0

    def run(self):
        while not self.halt.is_set():
            self.looks += 1
            try:
                names = os.listdir(self.serving_dir)
            except FileNotFoundError:
                names = []
            for name in names:
                if not name.isdigit():   # the pusher's staging copies are dot-names: never served
                    continue
                path = os.path.join(self.serving_dir, name)
                if not (os.path.exists(os.path.join(path, "saved_model.pb"))
                        and os.path.exists(os.path.join(path, "variables", "variables.index"))):
                    self.incomplete.append(sorted(os.listdir(path)) if os.path.isdir(path) else name)
            self.halt.wait(0.005)


def _dags_test(config, env, log_path, kill_after=None):
    """One `airflow dags test` of DAY; with kill_after=(task, marker): SIGKILL its process group
    once the task has started and its executor has logged the marker. Returns the exit code."""
    cmd = airflow_local._airflow_cmd() + ["dags", "test", config.pipeline_name, DAY.isoformat()]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    if kill_after is None:
        return proc.wait()
    task, marker = kill_after

    def reached():
        with open(log_path, errors="replace") as fh:
            text = fh.read()
        started = text.find(f"[DAG TEST] starting task_id={task} ")
        return started >= 0 and marker in text[started:]

    def failed():
        return proc.poll() is not None and f"the run ended (exit {proc.returncode}) before {task} started working"

    wait_for(f"{task} to start working", reached, stall_s=300, interval_s=0.1, failure=failed,
             progress=lambda: os.path.getsize(log_path))
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _live_outputs(store):
    """{(node, artifact type): number of LIVE artifacts} over every execution in the store."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    node_type = store.get_context_type("node").id
    found = {}
    for execution in store.get_executions():
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type]
        outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                   if e.type == metadata_store_pb2.Event.OUTPUT]
        for a in store.get_artifacts_by_id(outputs):
            key = (nodes[0].split(".", 1)[1], types[a.type_id])
            found[key] = found.get(key, 0) + (a.state == metadata_store_pb2.Artifact.LIVE)
    return found


def test_a_day_killed_in_transform_then_in_the_trainer_reruns_to_one_clean_push(tmp_path):
    home = str(tmp_path / "home")
    write_days(os.path.join(home, "logs"), os.path.join(home, "truth"), DAY, 1, IMPRESSIONS, progress=None)
    path = os.path.join(home, "lenient.yaml")
    with open(path, "w") as fh:  # a tiny day: floors at 0 and no calibration band, so it is blessed
        yaml.safe_dump({"trainer": {"epochs": 1}, "serving_check": UNTIMED_SERVING_CHECK,
                        "evaluator": {"auc_floor": 0.0, "max_auc_drop": 1.0, "calibration_band": None}}, fh)
    config = load_config(path, home)
    env = airflow_local.prepare(config)
    watcher = ServingWatcher(config.serving_dir)
    watcher.start()
    try:
        for attempt, kill in enumerate(KILLS, start=1):
            code = _dags_test(config, env, str(tmp_path / f"attempt{attempt}.log"), kill_after=kill)
            assert code == -signal.SIGKILL, f"attempt {attempt} was not killed (exit {code})"
            assert not os.path.isdir(config.serving_dir) or not [n for n in os.listdir(config.serving_dir)
                                                                  if n.isdigit()], "a killed run pushed"
        final_log = str(tmp_path / "attempt3.log")
        code = _dags_test(config, env, final_log)
        if code != 0:
            with open(final_log) as fh:
                pytest.fail(f"the rerun failed (exit {code}):\n" + "".join(fh.readlines()[-40:]))
    finally:
        watcher.halt.set()
        watcher.join()
    assert watcher.looks > 100 and watcher.incomplete == []

    store = report.open_store(config)
    live = _live_outputs(store)
    assert ("Trainer", "Model") in live and ("Transform", "TransformGraph") in live
    assert {k: n for k, n in live.items() if n != 1} == {}, "not one live artifact per (component, output)"
    # Each killed execution stays RUNNING (never published); the last attempt completed every task
    # (Transform also completed in attempt 2, whose outputs attempt 3 superseded).
    states = {}
    for e in sorted(store.get_executions(), key=lambda e: e.id):
        for c in store.get_contexts_by_execution(e.id):
            if c.type_id == store.get_context_type("node").id:
                states.setdefault(c.name.split(".", 1)[1], []).append(e.last_known_state)
    running, complete = metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.COMPLETE
    assert states["Transform"] == [running, complete, complete], states["Transform"]
    assert states["Trainer"] == [running, complete], states["Trainer"]

    [run] = report.collect_runs(config)
    assert run.span_date == DAY.isoformat() and run.blessed and run.pushed
    version = DAY.strftime("%Y%m%d")
    assert sorted(os.listdir(config.serving_dir)) == [version]
    [model] = [a for a in store.get_artifacts_by_type("Model") if a.state == metadata_store_pb2.Artifact.LIVE]
    trained = os.path.join(model.uri, "Format-Serving")
    pushed = os.path.join(config.serving_dir, version)
    cmp = filecmp.dircmp(trained, pushed)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    assert filecmp.cmp(os.path.join(trained, "variables", "variables.data-00000-of-00001"),
                       os.path.join(pushed, "variables", "variables.data-00000-of-00001"), shallow=False)
