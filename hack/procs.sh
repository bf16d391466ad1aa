# Process bookkeeping for the local control plane: one pid file per process under .local/run.
# Sourced, not run. Processes start in their own session, so a Ctrl-C in the shell that started
# them does not take them down; `make dev-down` stops them by pid.
# shellcheck shell=bash

# proc_running NAME: the process recorded for NAME is alive, and it is still the program we
# started (a recycled pid does not count).
proc_running() {
  local pidfile=$RUN_DIR/$1.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat "$RUN_DIR/$1.cmd" 2>/dev/null)" = "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | awk '{print $1}')" ]
}

# proc_start NAME COMMAND...: runs COMMAND in the background, logging to .local/logs/NAME.log.
proc_start() {
  local name=$1; shift
  log "starting $name (log: ${LOG_DIR#"$ROOT_DIR"/}/$name.log)"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$RUN_DIR/$name.pid"
  # A console script (moto_server) is run by its interpreter: record what /proc will show.
  local exe=$1
  if head -c2 "$exe" 2>/dev/null | grep -q '#!'; then
    exe=$(head -1 "$exe" | sed 's/^#! *//' | awk '{print $1}')
  fi
  echo "$exe" > "$RUN_DIR/$name.cmd"
}

# proc_stop NAME: TERM, then KILL after a grace period; removes the pid file.
proc_stop() {
  local name=$1 pidfile=$RUN_DIR/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if proc_running "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 5s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile" "$RUN_DIR/$name.cmd"
}

# wait_for WHAT SECONDS COMMAND...: retries COMMAND until it succeeds; fails with the last output.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds)) out
  until out=$("$@" 2>&1); do
    if [ $SECONDS -ge $deadline ]; then
      printf '%s\n' "$out" >&2
      die "$what not ready after ${seconds}s; see .local/logs/"
    fi
    sleep 0.3
  done
}
