#!/usr/bin/env bash
# The test command: install and start everything the tests need, then run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k fslink`).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/lib/dockerd.sh"
source "$REPO/scripts/lib/venv.sh"

ensure_docker_installed
ensure_venv
start_dockerd
trap stop_dockerd EXIT
bash "$REPO/tests/images/build.sh"

cd "$REPO"
"$PFCON_VENV/bin/python" -m pytest "$@"
