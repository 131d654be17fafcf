#!/usr/bin/env bash
# Set up a fresh machine and run the embedded default in the foreground:
# Docker engine, virtualenv, local plugin images, then `prefect-pfcon up` (flags pass through).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/lib/dockerd.sh"
source "$REPO/scripts/lib/venv.sh"

ensure_docker_installed
ensure_venv
start_dockerd
bash "$REPO/tests/images/build.sh"
mkdir -p "${STOREBASE_MOUNT:-/var/local/storeBase}"
exec "$PFCON_VENV/bin/prefect-pfcon" up "$@"
