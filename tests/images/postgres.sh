#!/usr/bin/env bash
# The PostgreSQL image the deployment tests run (deploy/ names postgres:15; nothing is pulled):
# Debian's PostgreSQL 15 in a root made by mmdebstrap, started as the official image starts
# (postgres-entrypoint), imported as local/postgres:test and tagged postgres:15. Kept if it exists.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../../deploy/image/debian_root.sh"

if ! docker image inspect local/postgres:test >/dev/null 2>&1; then
  root="$(mktemp -d)"
  tar -C "$root" -xf "$(debian_root_tar postgresql-15)"
  install -m 0755 "$HERE/postgres-entrypoint" "$root/usr/local/bin/docker-entrypoint"
  install -d -m 0700 -o "$(chroot "$root" id -u postgres)" -g "$(chroot "$root" id -g postgres)" \
    "$root/var/lib/postgresql/data" "$root/run/postgresql"
  tar -C "$root" -c . | docker import --change 'USER postgres' \
    --change 'ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin' \
    --change 'ENTRYPOINT ["docker-entrypoint"]' --change 'CMD ["postgres"]' - local/postgres:test >/dev/null
  rm -rf "$root"
  echo "built local/postgres:test"
fi
docker tag local/postgres:test postgres:15
