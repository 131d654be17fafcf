#!/bin/bash
# start-k8s.sh - idempotent start of a single-node Kubernetes v1.20.2 cluster on loopback.
#
# Components (all bound to 127.0.0.1 or not listening at all):
#   etcd 3.4 (Debian etcd-server)            http://127.0.0.1:23790 (peer 127.0.0.1:23800)
#   kube-apiserver (built from Debian src)   https://127.0.0.1:16443  (token auth, RBAC)
#   kube-controller-manager, kube-scheduler  no listening ports (--port=0 --secure-port=0)
#   kubelet (dockershim -> local dockerd)    127.0.0.1:10250, healthz 127.0.0.1:10248
# Pods use an ISOLATED CNI bridge (no gateway, no masquerade, no default route): pod
# traffic cannot leave the node. hostNetwork pods share the host's namespace.
# Images are never pulled: only images already in the local docker engine run
# (pause = local/pause:3.2, built from kubernetes' build/pause/linux/pause.c).
#
# Env: K8S_BIN (binaries dir), K8S_DIR (state dir). Kubeconfig: $K8S_DIR/kubeconfig
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"
# Node name "localhost": kubelet 1.20 refuses a loopback --node-ip, so the apiserver reaches the
# kubelet (logs/exec) through the Hostname address "localhost" -> 127.0.0.1.
NODE=localhost
APISERVER_PORT=${K8S_APISERVER_PORT:-16443}
ETCD_PORT=${K8S_ETCD_PORT:-23790}
ETCD_PEER_PORT=${K8S_ETCD_PEER_PORT:-23800}
POD_SUBNET=${K8S_POD_SUBNET:-10.233.0.0/24}
BRIDGE=pfconk8s0
PKI=$K8S_DIR/pki LOGS=$K8S_DIR/logs
T0=$(date +%s.%N)
log() { printf '[start-k8s %6.1fs] %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{print a-b}')" "$*"; }

for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  [ -x "$K8S_BIN/$b" ] || { echo "missing $K8S_BIN/$b (run build-k8s.sh)"; exit 1; }
done
[ -x "$ETCD" ] || { echo "missing etcd (apt-get install etcd-server)"; exit 1; }
[ -x /usr/lib/cni/bridge ] || { echo "missing CNI plugins (apt-get install containernetworking-plugins)"; exit 1; }
docker image inspect local/pause:3.2 >/dev/null 2>&1 || { echo "missing docker image local/pause:3.2 (run build-k8s.sh)"; exit 1; }
mkdir -p "$PKI" "$LOGS" "$PIDS" "$K8S_DIR/etcd" "$K8S_DIR/kubelet" "$K8S_DIR/cni/net.d" "$K8S_DIR/cni/cache" "$K8S_DIR/cni/ipam" "$K8S_DIR/dockershim"

# ---------- PKI + tokens (once) ----------
if [ ! -f "$PKI/apiserver.crt" ]; then
  log "generating PKI"
  (cd "$PKI"
   openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=pfcon-k8s-ca" 2>/dev/null
   openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
   printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' > ext.cnf
   openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile ext.cnf 2>/dev/null
   openssl genrsa -out sa.key 2048 2>/dev/null
   openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
   TOKEN=$(openssl rand -hex 24)
   echo "$TOKEN,admin,admin,\"system:masters\"" > tokens.csv
   echo "$TOKEN" > admin.token
   chmod 600 *.key tokens.csv admin.token)
fi
TOKEN=$(cat "$PKI/admin.token")
cat > "$K8S_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pfcon-k8s
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: pfcon-k8s
  context: {cluster: pfcon-k8s, user: admin, namespace: default}
current-context: pfcon-k8s
EOF
chmod 600 "$K8S_DIR/kubeconfig"

# ---------- isolated pod network ----------
cat > "$K8S_DIR/cni/net.d/10-pfcon-k8s.conflist" <<EOF
{"cniVersion": "0.3.1", "name": "pfcon-k8s", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "isDefaultGateway": false,
   "ipMasq": false, "hairpinMode": false,
   "ipam": {"type": "host-local", "dataDir": "$K8S_DIR/cni/ipam",
            "ranges": [[{"subnet": "$POD_SUBNET"}]]}},
  {"type": "loopback"}]}
EOF

forget_stale_pidfiles
launch() { # name cmd...
  local n=$1; shift
  if component_alive "$n"; then log "$n already running (pid $(cat "$PIDS/$n.pid"))"; return; fi
  setsid "$@" >>"$LOGS/$n.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$n.pid"
  for _ in $(seq 1 20); do component_alive "$n" && break; sleep 0.1; done  # until it has exec'd
  log "$n started (pid $!)"
}
wait_for() { # desc timeout cmd...
  local d=$1 t=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { log "TIMEOUT waiting for $d"; exit 1; }
    for f in "$PIDS"/*.pid; do component_alive "$(basename "$f" .pid)" || { log "$(basename "$f" .pid) died; see $LOGS/$(basename "$f" .pid).log"; exit 1; }; done
    sleep 0.3
  done
  log "$d ok"
}
api() { curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT$1"; }

launch etcd "$ETCD" --name pfcon-k8s --data-dir "$K8S_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "pfcon-k8s=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --quota-backend-bytes 2147483648 --unsafe-no-fsync=false
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

launch kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" --insecure-port 0 \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
  --authorization-mode RBAC --allow-privileged=true \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range 10.96.0.0/24 --endpoint-reconciler-type none \
  --kubelet-preferred-address-types Hostname \
  --feature-gates TTLAfterFinished=true --profiling=false -v 1
wait_for kube-apiserver 90 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz"

launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$K8S_DIR/kubeconfig" --leader-elect=false --port 0 --secure-port 0 \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=false --feature-gates TTLAfterFinished=true \
  --controllers '*,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner,-nodeipam,-cloud-node-lifecycle,-service,-route' \
  --profiling=false -v 1

launch kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$K8S_DIR/kubeconfig" --leader-elect=false --port 0 --secure-port 0 --profiling=false -v 1

launch kubelet "$K8S_BIN/kubelet" \
  --kubeconfig "$K8S_DIR/kubeconfig" --root-dir "$K8S_DIR/kubelet" --cert-dir "$K8S_DIR/kubelet/pki" \
  --hostname-override "$NODE" \
  --address 127.0.0.1 --port 10250 --read-only-port 0 --healthz-bind-address 127.0.0.1 --healthz-port 10248 \
  --anonymous-auth=true --authorization-mode AlwaysAllow \
  --container-runtime docker --docker-endpoint unix:///var/run/docker.sock \
  --experimental-dockershim-root-directory "$K8S_DIR/dockershim" \
  --pod-infra-container-image local/pause:3.2 \
  --network-plugin cni --cni-conf-dir "$K8S_DIR/cni/net.d" --cni-bin-dir /usr/lib/cni --cni-cache-dir "$K8S_DIR/cni/cache" \
  --cgroup-driver cgroupfs --cgroups-per-qos=false --enforce-node-allocatable "" \
  --fail-swap-on=false --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
  --eviction-hard 'memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' \
  --volume-plugin-dir "$K8S_DIR/kubelet/volume-plugins" \
  --serialize-image-pulls=false --registry-qps 0 --pod-max-pids -1 -v 1

node_ready() { api "/api/v1/nodes/$NODE" | python3 -c 'import json,sys; c=json.load(sys.stdin)["status"].get("conditions",[]); sys.exit(0 if any(x["type"]=="Ready" and x["status"]=="True" for x in c) else 1)'; }
sa_ready() { api /api/v1/namespaces/default/serviceaccounts/default | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("secrets") else 1)'; }
wait_for "node $NODE Ready" 120 node_ready
wait_for "default serviceaccount token" 60 sa_ready
log "cluster ready: export KUBECONFIG=$K8S_DIR/kubeconfig"
