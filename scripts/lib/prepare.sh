# Prepare this machine for the service or its tests: Docker engine (installed and started),
# the virtualenv, and the local plugin images. Sourced by scripts/up.sh and scripts/test.sh.
# Backends only the tests need (Swift, Slurm) are started by scripts/test.sh.

PFCON_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$PFCON_LIB/dockerd.sh"
source "$PFCON_LIB/venv.sh"

prepare_machine() {
  ensure_docker_installed
  ensure_venv
  start_dockerd
  bash "$PFCON_REPO/tests/images/build.sh"
}
