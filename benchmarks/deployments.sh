#!/usr/bin/env bash
# lifecycle.py against a deployment of the image beside the embedded default (`prefect-pfcon
# up`, SQLite), both started here on loopback and measured in the same run, with CPU and RSS of
# each one's processes (the deployment's API and Prefect server containers; up and its child):
#   compose     deploy/compose.yaml (PostgreSQL, Prefect server and prefect-pfcon containers)
#   kubernetes  deploy/kubernetes on the test cluster (its loopback overlay, in a new namespace;
#               KUBECONFIG as the test command exports it)
#
#   bash benchmarks/deployments.sh compose -n 10
#   bash benchmarks/deployments.sh kubernetes -n 25
#
# Extra arguments go to lifecycle.py. Needs the image (deploy/image/build.sh), docker-compose
# and the test images (tests/images/build.sh). Everything it starts, it stops.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PFCON_VENV:-$REPO/.venv}/bin/python"
WORK="$(mktemp -d /var/tmp/pfcon-deployments.XXXXXX)"
PROJECT="pfcon-bench-$(basename "$WORK" | cut -d. -f2 | tr 'A-Z' 'a-z')"
COMPOSE=(docker-compose -p "$PROJECT" -f "$REPO/deploy/compose.yaml" --env-file "$WORK/compose.env")
COMPOSE_PORT=31205 EMBEDDED_PORT=31206 PFCON_UID=1001

cat >"$WORK/compose.env" <<EOF
PFCON_PASSWORD=pfcon1234
SECRET_KEY=$(openssl rand -hex 24)
PREFECT_AUTH_STRING=admin:$(openssl rand -hex 16)
DB_PASSWORD=$(openssl rand -hex 16)
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
PFCON_PORT=$COMPOSE_PORT
PREFECT_PORT=34305
DB_PORT=35405
STOREBASE_VOLUME=$PROJECT-storebase
KEYS_VOLUME=$PROJECT-keys
EOF
chmod 600 "$WORK/compose.env"

wait_health() {  # $1: an API's URL, $2: the log to show if it does not come up
  for _ in $(seq 1 240); do
    curl -fsS -o /dev/null "$1health/" 2>/dev/null && return 0
    sleep 1
  done
  echo "not healthy: $1" >&2
  tail -n 20 "$2" >&2
  return 1
}

container_pid() { docker inspect -f "{{.State.Pid}}" "$("${COMPOSE[@]}" ps -q "$1")"; }

cleanup() {
  [ -n "${EMBEDDED:-}" ] && kill -TERM "$EMBEDDED" 2>/dev/null && wait "$EMBEDDED" 2>/dev/null
  [ -n "${CLUSTER:-}" ] && kill -TERM "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null
  "${COMPOSE[@]}" down -v --timeout 30 >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

TARGET="$1"; shift
case "$TARGET" in
  compose)
    "${COMPOSE[@]}" up -d >/dev/null 2>&1
    URL="http://127.0.0.1:$COMPOSE_PORT/api/v1/" USER_NAME=pfcon PASSWORD=pfcon1234
    STOREBASE="$(docker volume inspect -f '{{.Mountpoint}}' "$PROJECT-storebase")" ;;
  kubernetes)
    "$PYTHON" "$REPO/benchmarks/cluster_deployment.py" "$WORK" "$WORK/cluster.json" >"$WORK/cluster.log" 2>&1 &
    CLUSTER=$!
    for _ in $(seq 1 300); do [ -s "$WORK/cluster.json" ] && break; sleep 1; done
    [ -s "$WORK/cluster.json" ] || { tail -20 "$WORK/cluster.log" >&2; exit 1; }
    field() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/cluster.json" "$1"; }
    URL="$(field url)" USER_NAME="$(field user)" PASSWORD="$(field password)" STOREBASE="$(field store_base)" ;;
  *) echo "usage: $0 compose|kubernetes [lifecycle.py options]" >&2; exit 2 ;;
esac
PFCON_STATE_DIR="$WORK/embedded" PREFECT_HOME="$WORK/prefect-home" PYTHONPATH="$REPO" \
  "$PYTHON" -m prefect_pfcon.cli up --port "$EMBEDDED_PORT" --prefect-port 34306 \
  --storebase "$WORK/storeBase" >"$WORK/embedded.log" 2>&1 &
EMBEDDED=$!
wait_health "$URL" "$WORK/cluster.log"
wait_health "http://127.0.0.1:$EMBEDDED_PORT/api/v1/" "$WORK/embedded.log"
if [ "$TARGET" = compose ]; then
  PIDS=(--pid "$(container_pid pfcon)" --prefect-pid "$(container_pid prefect)")
else
  PIDS=(--pid "$(field pid)" --prefect-pid "$(field prefect_pid)")
fi
sleep 3
"$PYTHON" "$REPO/benchmarks/lifecycle.py" \
  --url "$URL" --label "$TARGET" --owner "$PFCON_UID" --user "$USER_NAME" --password "$PASSWORD" \
  --store-base "$STOREBASE" "${PIDS[@]}" \
  --compare-url "http://127.0.0.1:$EMBEDDED_PORT/api/v1/" --compare-label embedded \
  --compare-user pfcon --compare-password pfcon1234 \
  --compare-store-base "$WORK/storeBase" --compare-pid "$EMBEDDED" "$@"
if [ "$TARGET" = compose ]; then
  echo
  echo "compose containers at the end (PostgreSQL included):"
  docker stats --no-stream --format '  {{.Name}}: {{.MemUsage}}, CPU {{.CPUPerc}}' $("${COMPOSE[@]}" ps -q)
fi
