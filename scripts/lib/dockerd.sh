# Docker engine helpers, sourced by scripts/up.sh and scripts/test.sh.
# Only a daemon these helpers started is ever stopped (by its PID).

PFCON_STATE_DIR="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}"
DOCKERD_PIDFILE="$PFCON_STATE_DIR/dockerd.pid"
DOCKERD_STARTED_HERE=0

ensure_docker_installed() {
  if command -v dockerd >/dev/null && command -v busybox >/dev/null; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io busybox-static >/dev/null
}

start_dockerd() {
  if docker version >/dev/null 2>&1; then
    return
  fi
  mkdir -p "$PFCON_STATE_DIR"
  dockerd >"$PFCON_STATE_DIR/dockerd.log" 2>&1 &
  echo $! >"$DOCKERD_PIDFILE"
  DOCKERD_STARTED_HERE=1
  for _ in $(seq 1 120); do
    docker version >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "dockerd did not come up; see $PFCON_STATE_DIR/dockerd.log" >&2
  return 1
}

# Stop the process whose PID pidfile $1 holds (TERM, then up to 30 s for it to exit); remove $1.
stop_pidfile() {
  local pid
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$1"
}

# Stop the daemon only if start_dockerd started it in this shell.
stop_dockerd() {
  [ "$DOCKERD_STARTED_HERE" = 1 ] && [ -f "$DOCKERD_PIDFILE" ] || return 0
  stop_pidfile "$DOCKERD_PIDFILE"
}
