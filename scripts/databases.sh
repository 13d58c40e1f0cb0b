#!/usr/bin/env bash
# Production-style metadata databases on this machine, from Debian's packages:
#   PostgreSQL  for Airflow's metadata (needed by the LocalExecutor: parallel tasks and runs)
#   MariaDB     for ML Metadata (SQLite locks when TFX tasks run in parallel)
#
#   bash scripts/databases.sh start DIR [PG_PORT] [MYSQL_PORT]   # install if missing, init once, start
#   bash scripts/databases.sh stop DIR
#
# Each server keeps its data under DIR, listens on 127.0.0.1 only, and is started by this
# script (no system service). `start` prints the settings to export, e.g.
#   eval "$(bash scripts/databases.sh start /srv/rankpipe-db)"
# then point the pipeline at them with configs/production.yaml (see README, "Production
# metadata"). The PostgreSQL role is trusted on loopback (a local instance for one machine);
# the MariaDB user has a generated password, kept in DIR/mlmd_password (mode 600).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTION=${1:?usage: databases.sh start|stop DIR [PG_PORT] [MYSQL_PORT]}
DIR=$(realpath -m "${2:?usage: databases.sh start|stop DIR [PG_PORT] [MYSQL_PORT]}")
PG_PORT=${3:-5433}
MYSQL_PORT=${4:-3307}
log() { echo "[databases] $*" >&2; }

as_user() {  # run as the service's system user when root (neither server runs as root)
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

start_postgres() {
  local bin; bin=$(pg_bin)
  local data="$DIR/postgres"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    as_user postgres "$bin/initdb" -D "$data" -U rankpipe --auth-local=trust --auth-host=trust >/dev/null
  fi
  if ! as_user postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_user postgres "$bin/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data -c max_connections=200" start >/dev/null
  fi
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U rankpipe -d postgres -tAc "select 1 from pg_database where datname='airflow'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U rankpipe -d postgres -qc "create database airflow" >/dev/null
  fi
  log "PostgreSQL on 127.0.0.1:$PG_PORT (database airflow, log $data/server.log)"
}

stop_postgres() {
  local bin; bin=$(pg_bin)
  [ -f "$DIR/postgres/PG_VERSION" ] && as_user postgres "$bin/pg_ctl" -D "$DIR/postgres" -m fast -w stop >/dev/null 2>&1 || true
}

mysql_cli() { mariadb --protocol=socket -S "$DIR/mariadb/mysqld.sock" -uroot "$@"; }

start_mariadb() {
  local data="$DIR/mariadb/data"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown -R mysql: "$DIR/mariadb"
  if [ ! -d "$data/mysql" ]; then
    log "initialising MariaDB in $data"
    as_user mysql mariadb-install-db --no-defaults --datadir="$data" --auth-root-authentication-method=socket \
      --skip-test-db >/dev/null
  fi
  if [ ! -S "$DIR/mariadb/mysqld.sock" ] || ! mysql_cli -e "select 1" >/dev/null 2>&1; then
    as_user mysql bash -c "nohup mariadbd --no-defaults --datadir='$data' --port=$MYSQL_PORT \
      --bind-address=127.0.0.1 --socket='$DIR/mariadb/mysqld.sock' --pid-file='$DIR/mariadb/mysqld.pid' \
      --log-error='$DIR/mariadb/server.log' --skip-name-resolve --max-connections=200 >/dev/null 2>&1 &"
    for _ in $(seq 60); do mysql_cli -e "select 1" >/dev/null 2>&1 && break; sleep 1; done
    mysql_cli -e "select 1" >/dev/null || { log "MariaDB did not start: see $DIR/mariadb/server.log"; exit 1; }
  fi
  local pw_file="$DIR/mlmd_password"
  if [ ! -s "$pw_file" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pw_file")
  fi
  local pw; pw=$(cat "$pw_file")
  mysql_cli -e "create database if not exists mlmd;
    create user if not exists 'rankpipe'@'127.0.0.1' identified by '$pw';
    alter user 'rankpipe'@'127.0.0.1' identified by '$pw';
    grant all on mlmd.* to 'rankpipe'@'127.0.0.1'; flush privileges;"
  log "MariaDB on 127.0.0.1:$MYSQL_PORT (database mlmd, user rankpipe, log $DIR/mariadb/server.log)"
}

stop_mariadb() {
  local pid_file="$DIR/mariadb/mysqld.pid"
  if [ -f "$pid_file" ]; then
    local pid; pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
}

case "$ACTION" in
  start)
    bash scripts/system_packages.sh postgresql mariadb-server mariadb-client >&2
    mkdir -p "$DIR"
    start_postgres
    start_mariadb
    echo "export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN='postgresql+psycopg2://rankpipe@127.0.0.1:$PG_PORT/airflow'"
    echo "export RANKPIPE_MLMD_PASSWORD='$(cat "$DIR/mlmd_password")'"
    ;;
  stop)
    stop_mariadb
    stop_postgres
    log "stopped the servers under $DIR"
    ;;
  *) echo "usage: databases.sh start|stop DIR [PG_PORT] [MYSQL_PORT]" >&2; exit 2 ;;
esac
