"""`rankpipe ui`: the Airflow UI and scheduler on the embedded defaults (SQLite, sequential executor).

Why not `airflow standalone`: it also starts a triggerer, writes the admin
password to a file in AIRFLOW_HOME where it stays readable, and binds to every
interface. Here the web server binds to 127.0.0.1 by default, the admin
password is generated, printed once and never written anywhere (Airflow keeps
only its hash), and both processes stop together on Ctrl-C.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, List, Optional

from configs import PipelineConfig
from pipeline_components.orchestration.airflow_local import (_airflow_cmd, airflow_env, compile_if_stale, describe,
                                                           migrate_db)
from pipeline_components.orchestration.ports import free_ports

ADMIN = "admin"


def ui_env(config: PipelineConfig, host: str, port: int) -> Dict[str, str]:
    env = airflow_env(config)
    home = env["AIRFLOW_HOME"]
    env.update({
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": host,
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port),
        "AIRFLOW__WEBSERVER__SECRET_KEY": _secret_key(home),  # the scheduler's log server and the UI share it
        "AIRFLOW__WEBSERVER__WORKERS": "1",                   # two cores: one gunicorn worker is plenty
        "AIRFLOW__WEBSERVER__WORKER_REFRESH_INTERVAL": "86400",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "60",
        # The scheduler's log server (the UI reads running tasks' logs from it) defaults to port
        # 8793 machine-wide: a second `rankpipe ui` (another home or config) would lose its own.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": env.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT")
        or str(free_ports()[0]),
    })
    return env


def _secret_key(airflow_home: str) -> str:
    """A random Flask secret, kept across restarts (sessions survive), readable by the owner only."""
    path = os.path.join(airflow_home, "webserver_secret_key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    with open(path) as fh:
        return fh.read().strip()


# Runs in Airflow's environment; the password arrives on stdin, never in argv, where any
# local user could read it with `ps` (and where `airflow users create` would take a
# generated password that starts with "-" for an option).
_SET_ADMIN = """
import sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
username, reset = sys.argv[1], sys.argv[2] == "reset"
password = sys.stdin.readline().rstrip("\\n")
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    user = sm.find_user(username=username)
    if user is not None and not reset:
        print("EXISTS")
    elif user is not None:
        sm.reset_password(user.id, password)
        print("RESET")
    else:
        if not sm.add_user(username, "Ranking", "Admin", f"{username}@localhost", sm.find_role("Admin"),
                           password=password):
            sys.exit("could not create the admin user (see the messages above)")
        print("CREATED")
"""


def ensure_admin(env: Dict[str, str], reset: bool = False, password: Optional[str] = None) -> Optional[str]:
    """Creates the admin user with a generated password and returns it; None if it exists already
    (its password was shown when it was created). ``reset`` gives it a new password."""
    password = password or secrets.token_urlsafe(12)
    out = subprocess.run([sys.executable, "-c", _SET_ADMIN, ADMIN, "reset" if reset else "create"], env=env,
                         input=password + "\n", capture_output=True, text=True)
    status = out.stdout.strip().splitlines()[-1:] or [""]
    if out.returncode != 0 or status[0] not in ("EXISTS", "RESET", "CREATED"):
        raise RuntimeError(f"setting up the Airflow admin user failed (exit {out.returncode}):\n"
                           f"{(out.stdout + out.stderr)[-3000:]}")
    return None if status[0] == "EXISTS" else password


def wait_until(ready: Callable[[], bool], procs: List[subprocess.Popen], logs: List[str], timeout_s: float,
               what: str, interval_s: float = 2) -> None:
    """Until ``ready()``; fails at once, with its log's tail, when one of ``procs`` exits, and with
    "<what> within <timeout_s>s" when the time is up (a backstop: a start takes a minute or two)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for p, log in zip(procs, logs):
            if p.poll() is not None:
                raise RuntimeError(f"{os.path.basename(log)[:-4]} exited with {p.returncode} while starting; "
                                   f"see {log}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(interval_s)
    raise RuntimeError(f"{what} within {timeout_s:.0f}s; see {logs[-1]}")


def wait_healthy(url: str, procs: List[subprocess.Popen], logs: List[str], timeout_s: float) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
    wait_until(answers, procs, logs, timeout_s, f"the Airflow web server did not answer on {url}/health")


def _tail(path: str, lines: int = 20) -> str:
    with open(path, errors="replace") as fh:
        return "".join(fh.readlines()[-lines:])


def stop(procs: List[subprocess.Popen], grace_s: float = 30) -> None:
    """SIGTERM to each (Airflow stops its own children), then SIGKILL to whatever is left of each
    process group (each was started as a session leader), so nothing outlives the command."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def supervise(names: List[str], env: Dict[str, str], log_dir: str, ready: Callable[[List[subprocess.Popen],
              List[str]], None], ready_line: str, prefix: str = "[ui]", cwd: Optional[str] = None) -> int:
    """Starts ``airflow <name>`` for each name, each in its own session with its output in
    ``<log_dir>/<name>.out``; ``ready`` waits until they serve; then runs until Ctrl-C/SIGTERM
    (exit 0) or until one of them dies (exit 1, with its log's tail). Nothing outlives it."""
    procs: List[subprocess.Popen] = []
    logs: List[str] = []

    def on_signal(_signum, _frame):
        raise KeyboardInterrupt

    # Both handled explicitly (a process started in the background inherits SIGINT ignored), and
    # before the children start, so no signal can leave them running without us.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"{prefix} starting {' and '.join(names)} (logs: {', '.join(os.path.join(log_dir, n.split()[0] + '.out') for n in names)})",
              flush=True)
        for name in names:
            log = os.path.join(log_dir, f"{name.split()[0]}.out")
            with open(log, "w") as fh:
                procs.append(subprocess.Popen(_airflow_cmd() + name.split(), env=env, stdout=fh, cwd=cwd,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            logs.append(log)
        ready(procs, logs)
        print(f"{prefix} {ready_line}", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        dead = next(log for p, log in zip(procs, logs) if p.poll() is not None)
        print(f"{prefix} {os.path.basename(dead)[:-4]} stopped unexpectedly; see {dead}:\n{_tail(dead)}",
              file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix} stopping", flush=True)
        return 0
    finally:
        stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_ui(config: PipelineConfig, host: str = "127.0.0.1", port: int = 8080, reset_password: bool = False,
           start_timeout_s: float = 300, scheduler: bool = True) -> int:
    """``scheduler=False``: the web server alone, where a scheduler runs elsewhere
    (scripts/celery_stack.sh starts one, as a cluster runs it as its own service)."""
    env = ui_env(config, host, port)
    print(f"[ui] Airflow home {env['AIRFLOW_HOME']} ({describe(config)})", flush=True)
    compile_if_stale(config)
    migrate_db(env)
    password = ensure_admin(env, reset=reset_password)
    if password:
        print(f"[ui] admin user '{ADMIN}', password: {password}", flush=True)
        print("[ui] this password is shown once and not stored; `rankpipe ui --reset-password` makes a new one",
              flush=True)
    else:
        print(f"[ui] admin user '{ADMIN}' exists (its password was shown when it was created; "
              "`rankpipe ui --reset-password` makes a new one)", flush=True)
    log_dir = os.path.join(env["AIRFLOW_HOME"], "logs")
    os.makedirs(log_dir, exist_ok=True)
    url = f"http://{host}:{port}"
    names = ["scheduler", "webserver"] if scheduler else ["webserver"]
    return supervise(names, env, log_dir, lambda procs, logs: wait_healthy(url, procs, logs, start_timeout_s),
                     f"ready: {url} (DAGs: {config.pipeline_name}, {config.pipeline_name}_backfill; new DAGs start "
                     f"paused). Ctrl-C stops {'both' if scheduler else 'it'}.")
