"""`rankpipe celery-worker` and `rankpipe scheduler`: Airflow past one process, on Celery.

Why these wrap ``airflow celery worker`` / ``airflow scheduler`` instead of leaving them to
the user: every Airflow process of this product needs the same environment (the config's
executor, database and broker, ``RANKPIPE_HOME``/``RANKPIPE_CONFIG``, TensorFlow's settings:
``airflow_local.airflow_env``), a current compiled pipeline and a migrated database. Several
workers on one host also need their own working directory, temp directory, log-server port and
host name (``worker_hostname``), or they would collide or be indistinguishable in
``task_instance.hostname``. On a cluster each worker is its own pod and the same command runs
in each (``deploy/kubernetes/``).
"""
from __future__ import annotations

import os
import re
from typing import List

from configs import PipelineConfig
from pipeline_components.orchestration import airflow_local, worker_hostname
from pipeline_components.orchestration.airflow_ui import supervise, wait_until
from pipeline_components.orchestration.ports import free_ports


def _wait_for_log(pattern: str, what: str, timeout_s: float):
    """A ``ready`` for ``supervise``: until the pattern is in the first process's log."""
    def in_log(logs: List[str]) -> bool:
        with open(logs[0], errors="replace") as fh:
            return re.search(pattern, fh.read()) is not None
    return lambda procs, logs: wait_until(lambda: in_log(logs), procs, logs, timeout_s,
                                          f"{what} did not report ready", interval_s=1)


def _celery_only(config: PipelineConfig) -> None:
    executor = airflow_local.settings(config)["executor"]
    if executor != "CeleryExecutor":
        raise ValueError(f"celery-worker needs airflow.executor: CeleryExecutor (this config has {executor}); "
                         f"use configs/celery.yaml")


def run_worker(config: PipelineConfig, name: str, workdir: str, start_timeout_s: float = 600) -> int:
    """One Celery worker named ``name``, working in ``workdir`` (its temp files and its own logs)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"worker name {name!r}: use letters, digits, '.', '_' and '-' (it becomes a host name)")
    _celery_only(config)
    env = airflow_local.prepare(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    env.update({
        worker_hostname.ENV: name,
        "TMPDIR": os.path.join(workdir, "tmp"),
        # Each worker serves its tasks' logs to the UI; the default port (8793) is one per host.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_ports()[0]),
    })
    print(f"[worker {name}] {airflow_local.describe(config)}; broker {_redact(env['AIRFLOW__CELERY__BROKER_URL'])}, "
          f"{env['AIRFLOW__CELERY__WORKER_CONCURRENCY']} task processes, working directory {workdir}", flush=True)
    command = f"celery worker --celery-hostname {name}@%h --concurrency {env['AIRFLOW__CELERY__WORKER_CONCURRENCY']}"
    return supervise([command], env, workdir, _wait_for_log(r"@\S+ ready\.", f"worker {name}", start_timeout_s),
                     "ready: taking tasks from the queue. Ctrl-C stops it (running tasks are lost).",
                     prefix=f"[worker {name}]", cwd=workdir)


def run_scheduler(config: PipelineConfig, start_timeout_s: float = 600) -> int:
    """The scheduler alone, for executors whose tasks run elsewhere (Celery, Kubernetes)."""
    env = airflow_local.prepare(config)
    env.setdefault("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_ports()[0]))
    env.setdefault("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL", "60")  # as `rankpipe ui`: DAG files change rarely
    log_dir = os.path.join(env["AIRFLOW_HOME"], "logs")
    os.makedirs(log_dir, exist_ok=True)
    print(f"[scheduler] {airflow_local.describe(config)}", flush=True)
    return supervise(["scheduler"], env, log_dir,
                     _wait_for_log(r"Starting the scheduler|Launched DagFileProcessorManager", "the scheduler",
                                   start_timeout_s),
                     f"ready: scheduling {config.pipeline_name} and {config.pipeline_name}_backfill. Ctrl-C stops it.",
                     prefix="[scheduler]")


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)
