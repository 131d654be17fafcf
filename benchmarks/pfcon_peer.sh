#!/usr/bin/env bash
# Real pfcon (FNNDSC/pfcon, its own repository) as a benchmark peer, served by gunicorn on
# loopback with fslink storage, Docker compute and host volumes. Nothing of pfcon is kept in
# this project: its source is exported from a checkout you give, into a cache outside the repo.
#
#   benchmarks/pfcon_peer.sh prepare   # idempotent: source, virtualenv, op image
#   benchmarks/pfcon_peer.sh serve     # prepare, then gunicorn in the foreground (exec: $! is its PID)
#
# PFCON_PEER_SOURCE  a git repository or checkout of FNNDSC/pfcon (needed once; later runs reuse
#                    the exported source; its HEAD is exported again when it changes)
# PFCON_PEER_CACHE   cache directory (default /var/cache/prefect-pfcon/pfcon-peer)
# PFCON_PEER_PORT    port on 127.0.0.1 (default 30005)
# PFCON_PEER_STOREBASE  its own storeBase (default /var/local/storeBase-pfcon)
# PFCON_PEER_WORKERS gunicorn workers (default 2)
# PFCON_PEER_BASE_IMAGE  a local image with python3 under /usr/bin (default
#                    local/pl-simpledsapp:test, built by tests/images/build.sh)
#
# pfcon runs its copy, upload and delete steps as containers of its "op image" (python -m
# pfcon.copy_worker ...). Nothing can be pulled here, so the op image is made with docker
# import: the base image's root filesystem plus pfcon's worker modules in /app (what its
# opjob.Dockerfile copies; fslink needs no third-party module), tagged local/pfcon-opjob:<commit>.
set -euo pipefail

CACHE="${PFCON_PEER_CACHE:-/var/cache/prefect-pfcon/pfcon-peer}"
PORT="${PFCON_PEER_PORT:-30005}"
STOREBASE="${PFCON_PEER_STOREBASE:-/var/local/storeBase-pfcon}"
WORKERS="${PFCON_PEER_WORKERS:-2}"
BASE_IMAGE="${PFCON_PEER_BASE_IMAGE:-local/pl-simpledsapp:test}"
PYTHON="${PFCON_PEER_PYTHON:-python3}"
# pfcon's own pins (pyproject.toml, pixi dependencies), as pip requirements
REQUIREMENTS=(flask==3.1.* flask-restful==0.3.10 requests==2.32.* python-swiftclient==4.9.*
              boto3==1.42.* pyjwt==2.11.* environs==14.6.* jinja2==3.1.* "docker>=7.1.0,<8"
              "kubernetes>=35.0.0,<36" gunicorn==23.0.*)

# Export the source's HEAD into $CACHE/src (again only when the commit changed).
export_source() {
  mkdir -p "$CACHE"
  if [ -n "${PFCON_PEER_SOURCE:-}" ]; then
    local commit
    commit="$(git -C "$PFCON_PEER_SOURCE" rev-parse HEAD)"
    if [ "$(cat "$CACHE/src.commit" 2>/dev/null)" != "$commit" ]; then
      rm -rf "$CACHE/src.new" && mkdir -p "$CACHE/src.new"
      git -C "$PFCON_PEER_SOURCE" archive "$commit" | tar -C "$CACHE/src.new" -x
      rm -rf "$CACHE/src" && mv "$CACHE/src.new" "$CACHE/src"
      echo "$commit" >"$CACHE/src.commit"
      rm -f "$CACHE/venv/.installed"
    fi
  fi
  if [ ! -f "$CACHE/src/pfcon/wsgi.py" ]; then
    echo "no pfcon source in $CACHE/src: set PFCON_PEER_SOURCE to a checkout of FNNDSC/pfcon" >&2
    exit 1
  fi
}

# pfcon's dependencies and pfcon itself (it reads its version from its installed metadata).
ensure_venv() {
  [ -f "$CACHE/venv/.installed" ] && return
  [ -x "$CACHE/venv/bin/python" ] || "$PYTHON" -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check --no-deps "$CACHE/src"
  touch "$CACHE/venv/.installed"
}

op_image() { echo "local/pfcon-opjob:$(cut -c1-12 "$CACHE/src.commit" 2>/dev/null || echo src)"; }

ensure_op_image() {
  local image root container
  image="$(op_image)"
  docker image inspect "$image" >/dev/null 2>&1 && return
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || {
    echo "base image $BASE_IMAGE is missing (tests/images/build.sh builds it)" >&2; exit 1; }
  root="$(mktemp -d)"
  container="$(docker create "$BASE_IMAGE" true)"
  docker export "$container" | tar -C "$root" -x
  docker rm "$container" >/dev/null
  [ -e "$root/usr/bin/python" ] || ln -s python3 "$root/usr/bin/python"
  mkdir -p "$root/app/pfcon"
  cp "$CACHE/src/pfcon/"{__init__,copy_worker,upload_worker,delete_worker}.py "$root/app/pfcon/"
  cp -r "$CACHE/src/pfcon/storage" "$root/app/pfcon/storage"
  tar -C "$root" -c . | docker import --change 'WORKDIR /app' - "$image" >/dev/null
  rm -rf "$root"
  echo "built $image" >&2
}

prepare() {
  export_source
  ensure_venv
  ensure_op_image
  mkdir -p "$STOREBASE"
}

serve() {
  prepare
  cd "$CACHE"
  export APPLICATION_MODE=production SECRET_KEY="${PFCON_PEER_SECRET_KEY:-peer-$(hostname)-secret}" \
    PFCON_USER=pfcon PFCON_PASSWORD=pfcon1234 PFCON_INNETWORK=true STORAGE_ENV=fslink \
    CONTAINER_ENV=docker COMPUTE_VOLUME_TYPE=host STOREBASE="$STOREBASE" STOREBASE_MOUNT="$STOREBASE" \
    PFCON_OP_IMAGE="$(op_image)"
  exec "$CACHE/venv/bin/gunicorn" --bind "127.0.0.1:$PORT" --workers "$WORKERS" --timeout 3600 \
    pfcon.wsgi:application
}

case "${1:-}" in
  prepare) prepare ;;
  serve) serve ;;
  *) echo "usage: $0 prepare|serve" >&2; exit 2 ;;
esac
