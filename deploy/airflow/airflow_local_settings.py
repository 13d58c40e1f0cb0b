"""Airflow local settings for the ranking pipeline (on PYTHONPATH of every rankpipe-started Airflow).

Why: each task of this pipeline imports TFX and TensorFlow before it can launch its
component, ~17 s of CPU on 2 cores, and a day has 11 tasks. The LocalExecutor forks
every task from the scheduler process (Airflow's default, execute_tasks_new_python_interpreter
= False), so importing them once in the scheduler makes each forked task start in about
a second. A Celery worker forks its tasks too (from its pool processes, themselves forked
from the worker), so ``airflow celery worker`` preloads under the CeleryExecutor. Only those
two preload: the web server, the CLI, a Celery scheduler (it runs no task) and the
SequentialExecutor (which starts a new interpreter per task) stay light.
RANKPIPE_PRELOAD_TFX=0 turns it off.

Forking after the import is safe here: importing TensorFlow, Beam and TFX starts no
TensorFlow runtime; each task initialises its own after the fork (tested by the
production-metadata e2e test, which runs whole days this way).
"""
import os
import sys


def _preload() -> None:
    if os.environ.get("RANKPIPE_PRELOAD_TFX", "1") != "1":
        return
    executor, role = os.environ.get("AIRFLOW__CORE__EXECUTOR"), sys.argv[1:3]
    if not ((executor == "LocalExecutor" and role[:1] == ["scheduler"])
            or (executor == "CeleryExecutor" and role == ["celery", "worker"])):
        return
    if os.environ.get("AIRFLOW__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER", "False").lower() == "true":
        return
    from configs import tf_env  # noqa: F401,E402  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    import time
    t0 = time.time()
    from pipeline_components.orchestration import node_runner  # noqa: F401  (every component and executor)
    from pipeline_components import pipeline  # noqa: F401  (every component and executor)
    from tfx.orchestration.portable import launcher  # noqa: F401
    from tfx.orchestration.local import runner_utils  # noqa: F401
    print(f"[rankpipe] {' '.join(role)} preloaded TFX and TensorFlow for forked tasks ({time.time() - t0:.1f}s)",
          file=sys.stderr, flush=True)


_preload()
