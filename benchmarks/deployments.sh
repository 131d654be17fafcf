#!/usr/bin/env bash
# lifecycle.py against deploy/compose.yaml (PostgreSQL, Prefect server and prefect-pfcon in
# containers of the image) beside the embedded default (`prefect-pfcon up`, SQLite), both
# started here on loopback and measured in the same run: CPU and RSS of each one's processes
# (the compose API's and its Prefect server's container processes; up and its server child).
#
#   bash benchmarks/deployments.sh -n 10
#   bash benchmarks/deployments.sh -n 25
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

wait_health() {  # $1: an API's URL
  for _ in $(seq 1 240); do
    curl -fsS -o /dev/null "$1health/" 2>/dev/null && return 0
    sleep 1
  done
  echo "not healthy: $1" >&2
  return 1
}

container_pid() { docker inspect -f "{{.State.Pid}}" "$("${COMPOSE[@]}" ps -q "$1")"; }

cleanup() {
  [ -n "${EMBEDDED:-}" ] && kill -TERM "$EMBEDDED" 2>/dev/null && wait "$EMBEDDED" 2>/dev/null
  "${COMPOSE[@]}" down -v --timeout 30 >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"${COMPOSE[@]}" up -d >/dev/null 2>&1
PFCON_STATE_DIR="$WORK/embedded" PREFECT_HOME="$WORK/prefect-home" PYTHONPATH="$REPO" \
  "$PYTHON" -m prefect_pfcon.cli up --port "$EMBEDDED_PORT" --prefect-port 34306 \
  --storebase "$WORK/storeBase" >"$WORK/embedded.log" 2>&1 &
EMBEDDED=$!
wait_health "http://127.0.0.1:$COMPOSE_PORT/api/v1/"
wait_health "http://127.0.0.1:$EMBEDDED_PORT/api/v1/"
sleep 3
"$PYTHON" "$REPO/benchmarks/lifecycle.py" \
  --url "http://127.0.0.1:$COMPOSE_PORT/api/v1/" --label compose --owner "$PFCON_UID" \
  --store-base "$(docker volume inspect -f '{{.Mountpoint}}' "$PROJECT-storebase")" \
  --pid "$(container_pid pfcon)" --prefect-pid "$(container_pid prefect)" \
  --compare-url "http://127.0.0.1:$EMBEDDED_PORT/api/v1/" --compare-label embedded \
  --compare-store-base "$WORK/storeBase" --compare-pid "$EMBEDDED" "$@"
echo
echo "compose containers at the end (PostgreSQL included):"
docker stats --no-stream --format '  {{.Name}}: {{.MemUsage}}, CPU {{.CPUPerc}}' $("${COMPOSE[@]}" ps -q)
