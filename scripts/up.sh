#!/usr/bin/env bash
# Set up a fresh machine and run the embedded default in the foreground:
# Docker engine, virtualenv, local plugin images, then `prefect-pfcon up` (flags pass through).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/prepare.sh"

prepare_machine
mkdir -p "${STOREBASE_MOUNT:-/var/local/storeBase}"
exec "$PFCON_VENV/bin/prefect-pfcon" up "$@"
