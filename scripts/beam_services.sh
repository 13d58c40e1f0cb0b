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

listening() {  # is something accepting connections on 127.0.0.1:$1?
  "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1', $1)))"
}

start_one() {  # name port command...
  local name=$1 port=$2; shift 2
  if [ -f "$DIR/$name.pid" ] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
    log "$name already running (pid $(cat "$DIR/$name.pid"))"; return 0
  fi
  if listening "$port"; then
    log "port $port is taken: pick another ($name)"; exit 1
  fi
  setsid "$@" >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
  local pid; pid=$(cat "$DIR/$name.pid")
  # Ready when it accepts connections; fails at once if it exits (importing Beam takes ~10-30 s).
  until listening "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before listening on $port:"; tail -20 "$DIR/$name.log" >&2; exit 1
    fi
    sleep 1
  done
  log "$name on 127.0.0.1:$port (pid $pid, log $DIR/$name.log)"
}

stop_one() {  # name: TERM the process group, then KILL whatever is left of it
  local name=$1 pidfile="$DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    pgrep -g "$pid" >/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "$name stopped"
}

case "$ACTION" in
  start)
    [ -x "$PY" ] || { log "no venv at $ROOT/.venv: run bash scripts/setup.sh first"; exit 2; }
    mkdir -p "$DIR/staging"
    start_one beam-worker-pool "$POOL_PORT" "$PY" -m pipeline_components.beam_worker_pool --host 127.0.0.1 \
      --port "$POOL_PORT"
    start_one beam-job-service "$JOB_PORT" "$PY" -m apache_beam.runners.portability.local_job_service_main \
      --port "$JOB_PORT" --staging_dir "$DIR/staging"
    echo "--job_endpoint=localhost:$JOB_PORT --environment_config=127.0.0.1:$POOL_PORT"
    ;;
  stop)
    stop_one beam-job-service
    stop_one beam-worker-pool
    ;;
  *) log "unknown action $ACTION (start|stop)"; exit 2 ;;
esac
