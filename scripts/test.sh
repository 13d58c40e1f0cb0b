#!/usr/bin/env bash
# Sets up the venv and the Debian packages the tests need, then runs the whole test suite
# (unit, end-to-end Airflow DAG, real-browser backfill on PostgreSQL + MariaDB).
# Two pytest workers (pytest-xdist): the suite alternates CPU-bound training with waiting on
# Airflow, so one process keeps ~1 of the 2 cores busy. The tests that share the e2e days
# (tests/e2e/days) run on one worker (tests/conftest.py). RANKPIPE_TEST_WORKERS=0 runs everything in-process.
# Prints the 25 slowest tests and the total wall time (setup included), so CI shows where the time goes.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
bash scripts/setup.sh
# Debian's Chromium + ChromeDriver (browser test), PostgreSQL + MariaDB + Redis (the Celery stack,
# started by the browser test through scripts/celery_stack.sh): installed here, once, not inside a test.
bash scripts/system_packages.sh chromium chromium-driver postgresql mariadb-server mariadb-client redis-server
export TF_CPP_MIN_LOG_LEVEL=2
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${RANKPIPE_TEST_WORKERS:-2}" --durations=25 "$@" || status=$?
elapsed=$(( $(date +%s) - START ))
echo "[test] total wall time: $((elapsed / 60)) min $((elapsed % 60)) s (setup included); exit status $status"
exit "$status"
