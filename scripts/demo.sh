#!/usr/bin/env bash
# The main job on embedded defaults: set up the venv, generate 3 days of logs,
# run the Airflow DAG for each day (airflow dags test, SQLite), print the
# per-scene report. Extra arguments go to `rankpipe demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS="ignore::FutureWarning,ignore::DeprecationWarning"
exec .venv/bin/rankpipe demo "$@"
