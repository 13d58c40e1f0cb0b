"""Runs the DAG through a real, embedded Airflow: SQLite metadata DB, sequential executor.

Everything is passed through environment variables so that nothing is written
to a global ~/airflow: AIRFLOW_HOME lives under the pipeline home.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from pipeline_components.orchestration import compiled
from pipeline_components.orchestration.progress import follow
from configs import REPO_ROOT, PipelineConfig, tf_env

DAGS_FOLDER = os.path.join(REPO_ROOT, "dags")
LOCAL_SETTINGS_DIR = os.path.join(REPO_ROOT, "deploy", "airflow")


PARALLEL_EXECUTORS = ("LocalExecutor", "CeleryExecutor", "KubernetesExecutor")


def settings(config: PipelineConfig, env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Executor and database of this config's Airflow, checked: a parallel executor needs a
    database server for Airflow and MySQL for ML Metadata (SQLite locks under parallel tasks).
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in the environment wins over airflow.database_url, so
    a URL with a password need not be written into the config."""
    env = os.environ if env is None else env
    airflow = config.airflow
    executor = str(airflow["executor"])
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or airflow["database_url"] or \
        f"sqlite:///{os.path.join(config.home, 'airflow', 'airflow.db')}"
    parallel = executor in PARALLEL_EXECUTORS or int(airflow["max_active_runs"]) > 1
    if executor in PARALLEL_EXECUTORS and url.startswith("sqlite"):
        raise ValueError(f"airflow.executor {executor} runs tasks in parallel, which Airflow's SQLite database "
                         f"cannot: set airflow.database_url (or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) to PostgreSQL; "
                         f"scripts/databases.sh starts one")
    if parallel and config.metadata_backend == "sqlite":
        raise ValueError(f"airflow.executor {executor} with max_active_runs {airflow['max_active_runs']} "
                         f"runs TFX tasks in parallel, and ML Metadata on SQLite locks under parallel writers: set "
                         f"metadata.backend: mysql (see configs/production.yaml), or use SequentialExecutor and "
                         f"max_active_runs: 1")
    chosen = {"executor": executor, "url": url, "parallelism": str(int(airflow["parallelism"])),
              "database": url.split(":", 1)[0].split("+", 1)[0]}
    if executor == "CeleryExecutor":
        chosen.update(_celery(airflow.get("celery") or {}, env, url))
    return chosen


def _celery(celery: Dict, env: Dict[str, str], url: str) -> Dict[str, str]:
    """The Celery broker and result backend, checked: without a broker every task would wait
    forever in the queued state, which Airflow reports nowhere a user looks first."""
    broker = env.get("AIRFLOW__CELERY__BROKER_URL") or celery.get("broker_url")
    if not broker:
        raise ValueError("airflow.executor CeleryExecutor needs a message broker: set airflow.celery.broker_url "
                         "(or AIRFLOW__CELERY__BROKER_URL), e.g. redis://127.0.0.1:6380/0; "
                         "scripts/celery_stack.sh starts Redis with the rest of the stack")
    # Airflow's own fallback, made explicit: the task states go to Airflow's database.
    backend = env.get("AIRFLOW__CELERY__RESULT_BACKEND") or celery.get("result_backend") or f"db+{url}"
    return {"broker_url": broker, "result_backend": backend,
            "worker_concurrency": str(int(celery.get("worker_concurrency") or 2))}


def describe(config: PipelineConfig) -> str:
    s = settings(config)
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL"}
    mlmd = "SQLite" if config.metadata_backend == "sqlite" else "MySQL"
    return f"Airflow on {names.get(s['database'], s['database'])}, {s['executor']}; ML Metadata on {mlmd}"


def _prepend(entry: str, search_path: str) -> str:
    return os.pathsep.join([entry] + [p for p in search_path.split(os.pathsep) if p and p != entry])


def airflow_env(config: PipelineConfig, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(base if base is not None else os.environ)
    airflow_home = os.path.join(config.home, "airflow")
    chosen = settings(config, env)
    # Executors start `airflow tasks run ...` by name: this venv's airflow must come first on PATH.
    env["PATH"] = _prepend(os.path.dirname(sys.executable), env.get("PATH", ""))
    # deploy/airflow/airflow_local_settings.py: the scheduler preloads TFX for the tasks it forks.
    env["PYTHONPATH"] = _prepend(LOCAL_SETTINGS_DIR, env.get("PYTHONPATH", ""))
    env.update(tf_env.ENV)  # a base without them (tests pass one) still gets TensorFlow's settings
    env.update({
        "RANKPIPE_HOME": config.home,
        "RANKPIPE_CONFIG": config.path,
        "AIRFLOW_HOME": airflow_home,
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS_FOLDER,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": chosen["executor"],
        "AIRFLOW__CORE__PARALLELISM": chosen["parallelism"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": chosen["url"],
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "1"),
        "PYTHONWARNINGS": env.get("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning"),
    })
    if chosen["executor"] == "CeleryExecutor":
        env.update({
            "AIRFLOW__CELERY__BROKER_URL": chosen["broker_url"],
            "AIRFLOW__CELERY__RESULT_BACKEND": chosen["result_backend"],
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": chosen["worker_concurrency"],
            # Each task records the worker that ran it (task_instance.hostname): the pod's name on
            # a cluster, RANKPIPE_WORKER_HOSTNAME where several workers share one host.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pipeline_components.orchestration.worker_hostname.hostname",
        })
    os.makedirs(airflow_home, exist_ok=True)
    return env


def _airflow_cmd() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "airflow")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "airflow"]


def run_airflow(args: List[str], env: Dict[str, str], log_path: Optional[str] = None,
                check: bool = True, progress: Optional[Callable[[str], None]] = None,
                prefix: str = "") -> subprocess.CompletedProcess:
    """Runs an Airflow CLI command. With ``log_path`` its output goes there; with ``progress`` too,
    each task's start and end (and a heartbeat while one runs) is passed to ``progress``."""
    cmd = _airflow_cmd() + args
    if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w") as fh:
            if progress is None:
                proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
            else:
                popen = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
                proc = subprocess.CompletedProcess(cmd, follow(popen, log_path, progress, prefix=prefix))
    else:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = ""
        if log_path:
            with open(log_path) as fh:
                tail = "".join(fh.readlines()[-40:])
        else:
            tail = (proc.stdout or "")[-4000:] + (proc.stderr or "")[-4000:]
        raise RuntimeError(f"`airflow {' '.join(args)}` failed (exit {proc.returncode})"
                           f"{' - full log: ' + log_path if log_path else ''}\n{tail}")
    return proc


def migrate_db(env: Dict[str, str]) -> None:
    run_airflow(["db", "migrate"], env)


def compile_if_stale(config: PipelineConfig) -> None:
    t0 = time.time()
    path = compiled.compile_pipeline(config)
    if path:
        print(f"[airflow] compiled the pipeline to {path} ({time.time() - t0:.1f}s)", flush=True)


def prepare(config: PipelineConfig) -> Dict[str, str]:
    """What every Airflow command needs first: a current compiled pipeline (the DAG files read
    it) and a migrated metadata database. Returns the Airflow environment."""
    compile_if_stale(config)
    env = airflow_env(config)
    migrate_db(env)
    return env


def dags_test(dag_id: str, date: str, env: Dict[str, str], log_path: str,
              progress: Optional[Callable[[str], None]] = None) -> float:
    """Executes one DAG run for the logical date in-process (`airflow dags test`); returns seconds.
    ``progress`` gets a line per task start and end (see orchestration/progress.py)."""
    t0 = time.time()
    run_airflow(["dags", "test", dag_id, date], env, log_path=log_path, progress=progress,
                prefix=f"[airflow] {date}   ")
    return time.time() - t0
