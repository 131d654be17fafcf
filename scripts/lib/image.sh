# The prefect-pfcon image (deploy/image/build.sh: rebuilt only when its sources changed), the
# PostgreSQL image deploy/ runs (tests/images/postgres.sh) and Debian's docker-compose, for the
# deployment and work-pool tests; sourced by scripts/test.sh.

ensure_deploy_images() {
  if ! command -v docker-compose >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
  fi
  local log="${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/image-build.log"
  PFCON_VENV="$PFCON_VENV" bash "$PFCON_REPO/deploy/image/build.sh" >"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; return 1; }
  bash "$PFCON_REPO/tests/images/postgres.sh"
}
