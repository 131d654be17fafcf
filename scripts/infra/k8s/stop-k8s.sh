#!/bin/bash
# stop-k8s.sh - stop what start-k8s.sh started (by pidfile only), then clean up:
#   * docker containers created by this kubelet's dockershim (label io.kubernetes.docker.type)
#   * tmpfs/secret mounts under $K8S_DIR/kubelet, the isolated CNI bridge
#   * cluster state (etcd data, kubelet dir) unless K8S_KEEP_DATA=1 (PKI/token are kept)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"
BRIDGE=pfconk8s0

stop_one() {
  local n=$1 f=$PIDS/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if component_alive "$n"; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $n (pid $pid)"
  fi
  rm -f "$f"
}
# kubelet first (so it stops managing containers), control plane, etcd last
for n in kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_one "$n"; done

# pod containers/sandboxes left in docker by this kubelet (dockershim labels them)
ids=$(docker ps -aq --filter label=io.kubernetes.docker.type 2>/dev/null)
[ -n "$ids" ] && docker rm -f $ids >/dev/null && echo "removed $(echo $ids | wc -w) pod containers"

# volume mounts created by kubelet (secret tmpfs etc.), deepest first
if [ -d "$K8S_DIR/kubelet" ]; then
  awk -v d="$K8S_DIR/kubelet" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
fi
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"

if [ "${K8S_KEEP_DATA:-0}" != 1 ]; then
  rm -rf "$K8S_DIR/etcd" "$K8S_DIR/kubelet" "$K8S_DIR/cni/ipam" "$K8S_DIR/cni/cache" "$K8S_DIR/dockershim"
fi
echo "pfcon-k8s stopped"
