#!/usr/bin/env bash
# Beam's portable runner path on this machine: Beam's local job service and an external SDK
# worker pool, both on loopback, for deploy/beam/portable.yaml.
#
#   bash scripts/beam_services.sh start DIR [JOB_PORT] [POOL_PORT]   # defaults 8099 50000
#   bash scripts/beam_services.sh stop DIR
#
# The job service (python -m apache_beam.runners.portability.local_job_service_main) receives
# each Beam stage as a pipeline proto and runs it on SDK workers that the pool
# (python -m pipeline_components.beam_worker_pool) starts as separate processes of this venv.
# Each service runs in its own process group, so `stop` ends it together with every worker it
# started. Logs, pid files and the job service's staging area live under DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ACTION=${1:?usage: beam_services.sh start|stop DIR [JOB_PORT] [POOL_PORT]}
DIR=$(realpath -m "${2:?usage: beam_services.sh start|stop DIR [JOB_PORT] [POOL_PORT]}")
JOB_PORT=${3:-8099}
POOL_PORT=${4:-50000}
PY="$ROOT/.venv/bin/python"
log() { echo "[beam-services] $*" >&2; }

# shellcheck source=lib/process_groups.sh
. "$ROOT/scripts/lib/process_groups.sh"

start_service() {  # name port command...
  local name=$1 port=$2; shift 2
  if ! group_running "$name" && port_open "$port"; then
    log "port $port is taken: pick another ($name)"; exit 1
  fi
  start_group "$name" "$@"
  wait_group "$name" port_open "$port" || exit 1
}

case "$ACTION" in
  start)
    [ -x "$PY" ] || { log "no venv at $ROOT/.venv: run bash scripts/setup.sh first"; exit 2; }
    mkdir -p "$DIR/staging"
    start_service beam-worker-pool "$POOL_PORT" "$PY" -m pipeline_components.beam_worker_pool --host 127.0.0.1 \
      --port "$POOL_PORT"
    start_service beam-job-service "$JOB_PORT" "$PY" -m apache_beam.runners.portability.local_job_service_main \
      --port "$JOB_PORT" --staging_dir "$DIR/staging"
    echo "--job_endpoint=localhost:$JOB_PORT --environment_config=127.0.0.1:$POOL_PORT"
    ;;
  stop)
    stop_group beam-job-service
    stop_group beam-worker-pool
    ;;
  *) log "unknown action $ACTION (start|stop)"; exit 2 ;;
esac
