# pids.sh - sourced by start-k8s.sh, stop-k8s.sh and scripts/lib/k8s.sh.
# A component counts as ours only while its pidfile names a live process running the
# component's own binary, so a pidfile left by a machine restart (dead or reused PID) is stale.
K8S_BIN=${K8S_BIN:-/var/cache/prefect-pfcon/k8s/bin}
K8S_DIR=${K8S_DIR:-/var/tmp/prefect-pfcon/k8s}
PIDS=$K8S_DIR/pids
ETCD=${ETCD:-$(command -v etcd || echo /usr/bin/etcd)}

component_binary() {  # name -> the binary it runs
  if [ "$1" = etcd ]; then readlink -f "$ETCD"; else readlink -f "$K8S_BIN/$1"; fi
}

component_alive() {  # name: its pidfile names a live process running its binary
  local pid
  pid=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(component_binary "$1")" ]
}

forget_stale_pidfiles() {
  local f
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    component_alive "$(basename "$f" .pid)" || rm -f "$f"
  done
}
