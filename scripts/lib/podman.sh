# Podman's Docker-compatible API on a unix socket for the tests, sourced by scripts/test.sh.
# start_podman installs podman (Debian's 4.3.1) if missing, runs `podman system service` with a
# containers.conf and storage of its own (nothing shared with another podman on the host), loads
# the test images from the local dockerd and exports PFCON_TEST_PODMAN_HOST (unix://…);
# stop_podman stops the service only if start_podman started it (by its PID). Needs dockerd.sh.

PODMAN_DIR="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/podman"
PODMAN_RUN_DIR="${PFCON_PODMAN_RUN_DIR:-/run/pfcon-podman}"  # runroot and tmp_dir: state that must not outlive a boot
PODMAN_SOCKET="$PODMAN_DIR/podman.sock"
PODMAN_PIDFILE="$PODMAN_DIR/service.pid"
PODMAN_IMAGES=(local/busybox:test local/pl-simpledsapp:test fnndsc/pl-simpledsapp:latest)
PODMAN_STARTED_HERE=0

ensure_podman_installed() {
  command -v podman >/dev/null && command -v runc >/dev/null && return
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends podman runc conmon >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends podman runc conmon >/dev/null; }
}

# crun fails here ("cgroups in hybrid mode not supported"), so runc. The sandbox's root lacks
# CAP_SYS_RESOURCE, so podman's default ulimits (raised to the kernel's maximum) fail: open files
# get this shell's hard limit instead (as Docker's containers inherit dockerd's), processes 4096
# (podman's own process limit may be below the shell's: pid_max, 32768, here). Soft = hard, because podman
# 4.3's Docker API swaps a default ulimit's soft and hard values (soft > hard: EINVAL). No
# systemd here: cgroupfs cgroups, events to a file.
write_podman_config() {
  mkdir -p "$PODMAN_DIR/storage" "$PODMAN_RUN_DIR"
  local nofile
  nofile="$(ulimit -Hn)"
  [ "$nofile" = unlimited ] && nofile=1048576
  cat >"$PODMAN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_RUN_DIR/events.log"
tmp_dir = "$PODMAN_RUN_DIR/libpod"
EOF
  cat >"$PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_RUN_DIR/storage"
EOF
}

_podman() {  # the podman CLI on this service's configuration and storage
  CONTAINERS_CONF="$PODMAN_DIR/containers.conf" CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf" \
    podman "$@"
}

_podman_answers() {
  curl -sf --unix-socket "$PODMAN_SOCKET" http://podman/_ping >/dev/null 2>&1
}

load_podman_images() {  # the test images, from the local dockerd (nothing can be pulled here)
  local missing=()
  for image in "${PODMAN_IMAGES[@]}"; do
    _podman image exists "$image" || missing+=("$image")
  done
  [ "${#missing[@]}" = 0 ] || docker save "${missing[@]}" | _podman load -q >/dev/null
}

start_podman() {
  ensure_podman_installed
  write_podman_config
  if ! _podman_answers; then
    rm -f "$PODMAN_SOCKET"
    # a simple command, not _podman: $! must be podman's own PID
    CONTAINERS_CONF="$PODMAN_DIR/containers.conf" CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf" \
      podman system service --time=0 "unix://$PODMAN_SOCKET" >>"$PODMAN_DIR/service.log" 2>&1 &
    echo $! >"$PODMAN_PIDFILE"
    PODMAN_STARTED_HERE=1
    for _ in $(seq 1 60); do
      _podman_answers && break
      sleep 0.5
    done
    _podman_answers || { echo "podman did not come up; see $PODMAN_DIR/service.log" >&2; return 1; }
  fi
  load_podman_images
  export PFCON_TEST_PODMAN_HOST="unix://$PODMAN_SOCKET"
}

# Stop the service only if start_podman started it in this shell.
stop_podman() {
  [ "$PODMAN_STARTED_HERE" = 1 ] && [ -f "$PODMAN_PIDFILE" ] || return 0
  stop_pidfile "$PODMAN_PIDFILE"
}
