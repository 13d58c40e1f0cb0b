#!/usr/bin/env bash
# Sets up the venv and the Debian packages the tests need, then runs the whole test suite
# (unit, end-to-end Airflow DAG, real-browser backfill).
# Two pytest workers (pytest-xdist): the suite alternates CPU-bound training with waiting on
# Airflow, so one process keeps ~1 of the 2 cores busy. The tests that share the e2e days
# (tests/e2e/days) run on one worker (tests/conftest.py). RANKPIPE_TEST_WORKERS=0 runs everything in-process.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system_packages.sh   # Debian's Chromium + ChromeDriver for the browser test
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${RANKPIPE_TEST_WORKERS:-2}" "$@"
