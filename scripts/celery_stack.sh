#!/usr/bin/env bash
# Airflow on Celery workers, on this machine: the stack of configs/celery.yaml.
#
#   export RANKPIPE_CONFIG=configs/celery.yaml RANKPIPE_HOME=/srv/rankpipe
#   eval "$(bash scripts/celery_stack.sh start DIR [PG_PORT] [MYSQL_PORT] [REDIS_PORT])"
#   bash scripts/celery_stack.sh stop DIR
#
# `start` brings up, in this order, each waited on until it serves:
#   PostgreSQL (Airflow's database and Celery's result backend) and MariaDB (ML Metadata),
#     through scripts/databases.sh, under DIR/db;
#   Redis (Debian's redis-server), the Celery broker, on 127.0.0.1:REDIS_PORT (default 6380), no disk;
#   the Airflow scheduler (`rankpipe scheduler`; SCHEDULER=0 leaves it to `rankpipe ui`);
#   WORKERS (default 2) Celery workers (`rankpipe celery-worker`), each with its own working
#     directory DIR/workerN and host name workerN (task_instance.hostname says who ran what).
# It prints the settings to export (Airflow's database URL, the broker URL, the ML Metadata
# password); the config's metadata.mysql.port must be MYSQL_PORT. Every service runs in its own
# process group with its log in DIR; `stop` ends them all, task processes included.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
USAGE="usage: celery_stack.sh start|stop DIR [PG_PORT] [MYSQL_PORT] [REDIS_PORT]"
ACTION=${1:?$USAGE}
DIR=$(realpath -m "${2:?$USAGE}")
PG_PORT=${3:-5433}
MYSQL_PORT=${4:-3307}
REDIS_PORT=${5:-6380}
WORKERS=${WORKERS:-2}
SCHEDULER=${SCHEDULER:-1}
RANKPIPE="$ROOT/.venv/bin/rankpipe"
log() { echo "[celery-stack] $*" >&2; }
# shellcheck source=lib/process_groups.sh
. "$ROOT/scripts/lib/process_groups.sh"

redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }
said_ready() { grep -q "ready: " "$DIR/$1.log"; }

case "$ACTION" in
  start)
    : "${RANKPIPE_CONFIG:?set RANKPIPE_CONFIG (e.g. configs/celery.yaml) and RANKPIPE_HOME}"
    : "${RANKPIPE_HOME:?set RANKPIPE_HOME, the pipeline home every Airflow process shares}"
    [ -x "$RANKPIPE" ] || { log "no venv at $ROOT/.venv: run bash scripts/setup.sh first"; exit 2; }
    bash scripts/system_packages.sh redis-server >&2
    mkdir -p "$DIR/redis"
    exports=$(bash scripts/databases.sh start "$DIR/db" "$PG_PORT" "$MYSQL_PORT")
    eval "$exports"
    if ! group_running redis && port_open "$REDIS_PORT"; then
      log "port $REDIS_PORT is taken: pick another REDIS_PORT"; exit 1
    fi
    start_group redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --save "" \
      --appendonly no --protected-mode yes --daemonize no
    wait_group redis redis_ping
    export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
    "$RANKPIPE" compile >&2  # once, before the processes that read it start together
    if [ "$SCHEDULER" = 1 ]; then
      start_group scheduler "$RANKPIPE" scheduler
      wait_group scheduler said_ready scheduler
    fi
    for i in $(seq "$WORKERS"); do
      mkdir -p "$DIR/worker$i"
      start_group "worker$i" "$RANKPIPE" celery-worker --name "worker$i" --workdir "$DIR/worker$i"
    done
    for i in $(seq "$WORKERS"); do wait_group "worker$i" said_ready "worker$i"; done
    echo "$exports"
    echo "export AIRFLOW__CELERY__BROKER_URL='$AIRFLOW__CELERY__BROKER_URL'"
    ;;
  stop)
    for pidfile in "$DIR"/worker*.pid; do
      [ -e "$pidfile" ] && stop_group "$(basename "$pidfile" .pid)"
    done
    stop_group scheduler
    stop_group redis
    [ -d "$DIR/db" ] && bash scripts/databases.sh stop "$DIR/db"
    log "stopped the stack under $DIR"
    ;;
  *) log "$USAGE"; exit 2 ;;
esac
