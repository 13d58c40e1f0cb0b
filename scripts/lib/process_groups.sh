# Sourced by scripts/beam_services.sh and scripts/celery_stack.sh: long-running services, each in
# its own process group (setsid) with a pid file and a log under $DIR, so that stopping one ends
# every process it started (SDK workers, Airflow task processes) and nothing outlives `stop`.
# The caller sets DIR and defines log().

group_running() {  # name
  [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null
}

start_group() {  # name command... : starts it in the background, output to $DIR/name.log
  local name=$1; shift
  if group_running "$name"; then
    log "$name already running (pid $(cat "$DIR/$name.pid"))"; return 0
  fi
  setsid "$@" >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}

wait_group() {  # name check-command... : until the check succeeds; fails at once if the service exits
  local name=$1; shift
  local pid; pid=$(cat "$DIR/$name.pid")
  local waited=0
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited while starting (log $DIR/$name.log):"; tail -20 "$DIR/$name.log" >&2; return 1
    fi
    # A backstop only (importing TensorFlow and Airflow, migrating: ~1 min on 2 busy cores).
    if [ $((waited += 1)) -gt 900 ]; then
      log "$name did not become ready in 900 s (log $DIR/$name.log)"; return 1
    fi
    sleep 1
  done
  log "$name ready (pid $pid, log $DIR/$name.log)"
}

stop_group() {  # name: TERM the process group, wait for it to leave, then KILL what is left
  local name=$1 pidfile="$DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    pgrep -g "$pid" >/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "$name stopped"
}

port_open() {  # is something accepting connections on 127.0.0.1:$1?
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
