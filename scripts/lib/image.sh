# The prefect-pfcon image (deploy/image/build.sh: rebuilt only when its sources changed) and
# Debian's docker-compose, for the deployment and work-pool tests; sourced by scripts/test.sh.

ensure_image() {
  if ! command -v docker-compose >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
  fi
  local log="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/image-build.log"
  PFCON_VENV="$PFCON_VENV" bash "$PFCON_REPO/deploy/image/build.sh" >"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; return 1; }
}
