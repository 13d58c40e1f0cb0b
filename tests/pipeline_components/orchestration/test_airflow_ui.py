"""`rankpipe ui`: the real Airflow web server and scheduler on 127.0.0.1 (embedded defaults:
SQLite, SequentialExecutor), logged into over HTTP. Switching the daily DAG on in an empty home
makes the scheduler run the latest day, whose logs are missing: the task fails and its log,
read through the UI, states why in one line."""
import os
import re
import subprocess
import sys

import pytest
import requests

from pipeline_components.orchestration.airflow_ui import ensure_admin, ui_env
from configs import load_config
from pipeline_components.orchestration.ports import free_ports
from tests.ui_process import running_ui
from tests.waits import scaled, wait_for

pytestmark = pytest.mark.e2e


def login(url, password):
    session = requests.Session()
    page = session.get(f"{url}/login/", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    resp = session.post(f"{url}/login/", data={"username": "admin", "password": password, "csrf_token": token},
                        timeout=30)
    return session, resp


def _both(payload):
    return len(payload["dags"]) == 2 and payload["dags"]


def files_containing(root, needle):
    hits = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                if needle.encode() in fh.read():
                    hits.append(path)
    return hits


def test_ui_logs_in_with_a_generated_password_runs_a_missing_day_to_a_one_line_failure_and_stops(tmp_path):
    home, [port] = str(tmp_path / "home"), free_ports(1)
    with running_ui(home, port) as ui:
        password = ui.wait_ready().password
        url = ui.url
        assert password != "admin" and len(password) >= 12

        _, refused = login(url, "admin")
        assert "Invalid login" in refused.text and not refused.url.endswith("/home")
        session, resp = login(url, password)
        assert resp.url.endswith("/home")
        # The scheduler's DAG processor serialises the DAG files.
        dags = wait_for("both DAGs in the API", lambda: _both(session.get(f"{url}/api/v1/dags", timeout=30).json()),
                        stall_s=180, interval_s=2, failure=ui.check_alive)
        assert {d["dag_id"]: d["is_paused"] for d in dags} == {"ranking_daily": True, "ranking_daily_backfill": True}
        assert "ranking_daily" in session.get(f"{url}/home", timeout=30).text

        api = f"{url}/api/v1/dags/ranking_daily"
        resp = session.patch(api, json={"is_paused": False}, timeout=30)
        assert resp.status_code == 200 and resp.json()["is_paused"] is False, resp.text
        # The scheduler creates the latest interval's run and executes it: waited on while the
        # run's and its first task's states change (scheduled, queued, running, failed).
        def join_state():
            runs = session.get(f"{api}/dagRuns", timeout=30).json()["dag_runs"]
            if not runs:
                return runs, None
            task = session.get(f"{api}/dagRuns/{runs[0]['dag_run_id']}/taskInstances/LogJoinExampleGen",
                               timeout=30).json()
            return runs, task.get("state")
        last = {}

        def join_failed():
            last["runs"], last["state"] = join_state()
            return last["state"] == "failed"
        wait_for("the scheduled run's LogJoinExampleGen to fail", join_failed, stall_s=240, interval_s=3,
                 progress=lambda: (len(last["runs"]), last["state"]), failure=ui.check_alive)
        runs, run_id = last["runs"], last["runs"][0]["dag_run_id"]
        day = runs[0]["logical_date"][:10]
        log = session.get(f"{api}/dagRuns/{run_id}/taskInstances/LogJoinExampleGen/logs/1",
                          headers={"Accept": "text/plain"}, timeout=60).text
        reason = [line for line in log.splitlines() if f"LogJoinExampleGen failed for run_date {day}" in line]
        assert len(reason) == 1, log[-3000:]
        assert re.search(rf"MissingLogsError: no \w+ logs for {day}: directory .* does not exist\. Land that day's "
                         r"logs .* and rerun", reason[0])
        assert files_containing(home, password) == [], "the admin password must not be written anywhere"
    assert ui.returncode == 0, "rankpipe ui did not stop within 90 s of Ctrl-C"
    assert ui.leftover == [], "the scheduler or the web server outlived rankpipe ui"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)  # the web server went down with it

    env = ui_env(load_config(home=home), "127.0.0.1", port)
    assert ensure_admin(env) is None  # exists: no new password, nothing printed
    # --reset-password; a password starting with "-" (once read as an option by `airflow users create`).
    fresh = ensure_admin(env, reset=True, password="-starts-with-a-dash")
    assert fresh == "-starts-with-a-dash"
    assert accepted(env, [password, fresh]) == [False, True]  # the reset replaced the old password


def accepted(env, passwords):
    """Which passwords Airflow's own login check accepts for admin (no web server needed)."""
    code = ("import sys\nfrom airflow.www.app import create_app\napp = create_app(testing=True)\n"
            "with app.test_request_context():\n"
            "    print('ACCEPTED', *[bool(app.appbuilder.sm.auth_user_db('admin', p)) for p in sys.argv[1:]])\n")
    out = subprocess.run([sys.executable, "-c", code, *passwords], env=env, capture_output=True, text=True,
                         timeout=scaled(180))
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ACCEPTED"))
    return [word == "True" for word in line.split()[1:]]
