#!/usr/bin/env bash
# The test command: install and start everything the tests need, then run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k fslink`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/prepare.sh"
source "$PFCON_LIB/swift.sh"
source "$PFCON_LIB/slurm.sh"
source "$PFCON_LIB/postgres.sh"
source "$PFCON_LIB/k8s.sh"
source "$PFCON_LIB/podman.sh"
source "$PFCON_LIB/browser.sh"
source "$PFCON_LIB/image.sh"

trap 'stop_podman; stop_k8s; stop_postgres; stop_slurm; stop_swift; stop_dockerd' EXIT
prepare_machine
ensure_browser_installed
ensure_deploy_images
start_swift
start_slurm
start_postgres
start_k8s
start_podman
cd "$PFCON_REPO"
"$PFCON_VENV/bin/python" -m pytest "$@"
