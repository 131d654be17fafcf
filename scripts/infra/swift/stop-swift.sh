#!/usr/bin/env bash
# stop-swift.sh - stop ONLY the processes started by start-swift.sh.
# Reads $SWIFT_BASE/run/<name>.pid, checks the PID still belongs to the
# process we started (command line contains our config path / memcached port),
# sends SIGTERM, waits, then SIGKILL if needed. Data and config are kept.
#   SWIFT_BASE (/var/tmp/prefect-pfcon/swift)  SWIFT_MEMCACHED_PORT (11311)
#   SWIFT_STOP_TIMEOUT (10 seconds per process)
set -uo pipefail
trap '' PIPE   # keep stopping even if our stdout is a closed pipe

SWIFT_BASE=${SWIFT_BASE:-/var/tmp/prefect-pfcon/swift}
MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-11311}
STOP_TIMEOUT=${SWIFT_STOP_TIMEOUT:-10}
ETC=$SWIFT_BASE/etc
RUN=$SWIFT_BASE/run
say() { printf '%s\n' "$*" 2>/dev/null || true; }

stop_one() {  # NAME PATTERN
  local name=$1 pattern=$2 pf="$RUN/$1.pid" pid cmd i
  [ -f "$pf" ] || { say "  $name: no pidfile"; return 0; }
  pid=$(cat "$pf")
  if ! [[ "$pid" =~ ^[0-9]+$ ]] || [ ! -r "/proc/$pid/cmdline" ]; then
    say "  $name: not running (stale pidfile)"; rm -f "$pf"; return 0
  fi
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
  if [[ "$cmd" != *"$pattern"* ]]; then
    say "  $name: pid $pid is not ours ($cmd); leaving it alone"; rm -f "$pf"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    [ -d "/proc/$pid" ] || break
    # reap-safe check: zombie counts as gone
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    say "  $name: pid $pid ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pf"
  say "  stopped $name (pid $pid)"
}

say "stopping swift (base $SWIFT_BASE)"
stop_one proxy-server "swift-proxy-server $ETC/proxy-server.conf"
stop_one container-updater "swift-container-updater $ETC/container-server.conf"
stop_one object-server "swift-object-server $ETC/object-server.conf"
stop_one container-server "swift-container-server $ETC/container-server.conf"
stop_one account-server "swift-account-server $ETC/account-server.conf"
stop_one memcached "memcached -l 127.0.0.1 -p $MEMCACHED_PORT "
