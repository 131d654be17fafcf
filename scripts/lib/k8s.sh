# Single-node Kubernetes 1.20 on 127.0.0.1 (kubelet on the local dockerd) for the tests,
# sourced by scripts/test.sh. Its binaries are built once from Debian's source package into
# a cache outside the repository (K8S_CACHE) and rebuilt only when missing.
# start_k8s exports KUBECONFIG; stop_k8s stops the cluster only if start_k8s started it.

K8S_SCRIPTS="$PFCON_REPO/scripts/infra/k8s"
export K8S_HELPER_HOME="${K8S_CACHE:-/var/cache/prefect-pfcon/k8s}"
export K8S_BIN="$K8S_HELPER_HOME/bin"
export K8S_DIR="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/k8s"
K8S_STARTED_HERE=0

start_k8s() {
  if ! command -v kubectl >/dev/null; then  # the deployment tests apply deploy/kubernetes with it
    apt-get install -y -qq kubernetes-client >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null; }
  fi
  bash "$K8S_SCRIPTS/build-k8s.sh" >"${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/k8s-build.log" 2>&1 \
    || { echo "building Kubernetes failed; see the log" >&2; return 1; }
  if ! (source "$K8S_SCRIPTS/pids.sh" && component_alive kube-apiserver); then
    K8S_STARTED_HERE=1
    bash "$K8S_SCRIPTS/stop-k8s.sh" >/dev/null 2>&1  # a clean slate: leftovers of a run that was killed
  fi
  local start_log="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/k8s-start.log"
  bash "$K8S_SCRIPTS/start-k8s.sh" >"$start_log" 2>&1 \
    || { tail -n 20 "$start_log" >&2; return 1; }
  export KUBECONFIG="$K8S_DIR/kubeconfig"
}

stop_k8s() {
  if [ "$K8S_STARTED_HERE" = 1 ]; then
    bash "$K8S_SCRIPTS/stop-k8s.sh" >/dev/null 2>&1
  fi
}
