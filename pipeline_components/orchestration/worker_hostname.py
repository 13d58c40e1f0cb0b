"""The host name an Airflow task records (``[core] hostname_callable``).

Why: Airflow stores the name of the host that ran each task try in ``task_instance.hostname``;
it is how an operator finds the worker (and its logs) behind a failed task. Several Celery
workers on one machine would all report the same name, so a worker started by
``rankpipe celery-worker`` sets ``RANKPIPE_WORKER_HOSTNAME`` to its own; elsewhere (a pod,
a VM) this is Airflow's default, the fully qualified domain name.
"""
import os
import socket

ENV = "RANKPIPE_WORKER_HOSTNAME"


def hostname() -> str:
    return os.environ.get(ENV) or socket.getfqdn()
