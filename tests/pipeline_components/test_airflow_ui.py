"""`rankpipe ui`: the real Airflow web server and scheduler on 127.0.0.1, logged into over HTTP."""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from pipeline_components.airflow_ui import ensure_admin, ui_env
from pipeline_components.config import REPO_ROOT, load_config
from tests.ports import free_ports

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 360


def read_lines(proc):
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    return lines


def wait_for(lines, pattern, seen, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    pytest.fail(f"no line matching {pattern!r} within {timeout_s}s; output so far:\n{''.join(seen)}")


def login(url, password):
    session = requests.Session()
    page = session.get(f"{url}/login/", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    resp = session.post(f"{url}/login/", data={"username": "admin", "password": password, "csrf_token": token},
                        timeout=30)
    return session, resp


def processes_of(home):
    """PIDs whose environment names this home's Airflow (the UI's scheduler, web server and their children)."""
    marker = f"AIRFLOW_HOME={os.path.join(home, 'airflow')}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def files_containing(root, needle):
    hits = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                if needle.encode() in fh.read():
                    hits.append(path)
    return hits


def test_ui_starts_with_a_generated_password_shows_the_dag_and_stops_cleanly(tmp_path):
    home, [port] = str(tmp_path / "home"), free_ports(1)
    url = f"http://127.0.0.1:{port}"
    cli = os.path.join(os.path.dirname(sys.executable), "rankpipe")
    proc = subprocess.Popen([cli, "--home", home, "ui", "--port", str(port)], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    try:
        lines = read_lines(proc)
        password = wait_for(lines, r"admin user 'admin', password: (\S+)", seen, START_TIMEOUT_S).group(1)
        assert password != "admin" and len(password) >= 12
        wait_for(lines, r"\[ui\] ready: " + re.escape(url), seen, START_TIMEOUT_S)

        _, refused = login(url, "admin")
        assert "Invalid login" in refused.text and not refused.url.endswith("/home")
        session, resp = login(url, password)
        assert resp.url.endswith("/home")
        deadline = time.time() + 180  # the scheduler's DAG processor serialises the DAG file
        while True:
            dags = session.get(f"{url}/api/v1/dags", timeout=30).json()["dags"]
            if any(d["dag_id"] == "ranking_daily" for d in dags) or time.time() > deadline:
                break
            time.sleep(5)
        assert [d["dag_id"] for d in dags] == ["ranking_daily"] and dags[0]["is_paused"] is True
        assert "ranking_daily" in session.get(f"{url}/home", timeout=30).text
        assert files_containing(home, password) == [], "the admin password must not be written anywhere"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        left = processes_of(home)
        for pid in left:  # never leak a scheduler into the rest of the suite
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert rc == 0, "rankpipe ui did not stop within 90 s of Ctrl-C"
    assert left == [], "the scheduler or the web server outlived rankpipe ui"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)  # the web server went down with it

    env = ui_env(load_config(home=home), "127.0.0.1", port)
    assert ensure_admin(env) is None  # exists: no new password, nothing printed
    fresh = ensure_admin(env, reset=True)
    assert fresh and fresh != password
    assert accepted(env, [password, fresh]) == [False, True]  # the reset replaced the old password


def accepted(env, passwords):
    """Which passwords Airflow's own login check accepts for admin (no web server needed)."""
    code = ("import sys\nfrom airflow.www.app import create_app\napp = create_app(testing=True)\n"
            "with app.test_request_context():\n"
            "    print('ACCEPTED', *[bool(app.appbuilder.sm.auth_user_db('admin', p)) for p in sys.argv[1:]])\n")
    out = subprocess.run([sys.executable, "-c", code, *passwords], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ACCEPTED"))
    return [word == "True" for word in line.split()[1:]]
