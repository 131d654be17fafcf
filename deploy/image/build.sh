#!/usr/bin/env bash
# Build the prefect-pfcon image with no registry, in two parts:
#   prefect-pfcon-base:<key>  a Debian root made by mmdebstrap from Debian's packages (python3),
#                             the project's dependencies installed into it by this machine's pip,
#                             the user pfcon (1001), imported with `docker import`;
#   prefect-pfcon:<source>    the project on top of it (deploy/image/Dockerfile: COPY only),
#                             tagged $PFCON_IMAGE (prefect-pfcon:latest).
# The Debian root is cached in $PFCON_IMAGE_CACHE (debian_root.sh) and each
# part is rebuilt only when what it is made of changed; --force rebuilds both.
# Needs root, a running Docker engine and the project's virtualenv (Python 3.11, as bookworm's).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
IMAGE="${PFCON_IMAGE:-prefect-pfcon:latest}"
PYTHON="${PFCON_VENV:-$REPO/.venv}/bin/python"
PACKAGES=python3,ca-certificates,libstdc++6
SITE=/usr/local/lib/python3.11/dist-packages
PFCON_UID=1001
FORCE="${1:-}"
source "$HERE/debian_root.sh"

have_image() { [ "$FORCE" != "--force" ] && docker image inspect "$1" >/dev/null 2>&1; }
digest() { sha256sum | cut -c1-12; }

project_dependencies() {
  "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$REPO/pyproject.toml"
}

# pip install into $2 (a site-packages folder of the image) what the rest of the arguments name;
# byte-compiled for the image's paths, console scripts moved to $1 for the image's python3.
install_into_root() {
  local scripts="$1" target="$2"; shift 2
  # (this machine's pip configuration may name local indexes that are absent: not news)
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile --target "$target" "$@" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
  if [ -d "$target/bin" ]; then
    mkdir -p "$scripts"
    for script in "$target"/bin/*; do
      sed '1s|^#!.*|#!/usr/bin/python3|' "$script" >"$scripts/$(basename "$script")"
      chmod 0755 "$scripts/$(basename "$script")"
    done
    rm -rf "$target/bin"
  fi
  "$PYTHON" -m compileall -q -j 0 -s "$target" -p "$SITE" "$target" >/dev/null
}

build_base() {  # $1: the base image's name
  local work root; work="$(mktemp -d)"; root="$work/root"
  mkdir -p "$root"
  tar -C "$root" -xf "$(debian_root_tar "$PACKAGES")"
  project_dependencies >"$work/requirements.txt"
  # pip evaluates dependency markers for this machine's Python, not the image's 3.11.2: name
  # what only a Python before 3.11.3 needs (redis, a Prefect server dependency: async-timeout)
  echo "async-timeout>=4.0.3" >>"$work/requirements.txt"
  install_into_root "$root/usr/local/bin" "$root$SITE" -r "$work/requirements.txt"
  echo "pfcon:x:$PFCON_UID:$PFCON_UID:prefect-pfcon:/var/lib/prefect-pfcon:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "pfcon:x:$PFCON_UID:" >>"$root/etc/group"
  install -d -m 0700 -o "$PFCON_UID" -g "$PFCON_UID" "$root/var/lib/prefect-pfcon"
  install -d -m 0755 -o "$PFCON_UID" -g "$PFCON_UID" "$root/var/local/storeBase" "$root/opt/prefect-pfcon" \
    "$root/run/pfcon-keys"
  tar -C "$root" -c . | docker import - "$1" >/dev/null
  rm -rf "$work"
  echo "built $1" >&2
}

build_project() {  # $1: the base image, $2: the project image
  local context; context="$(mktemp -d)"
  install_into_root "$context/bin" "$context/site" --no-deps "$REPO"
  install -m 0755 "$HERE/docker-entrypoint" "$HERE/pfcon-docker-pool" "$context/bin/"
  cp "$REPO/prefect.yaml" "$context/prefect.yaml"
  cp -r "$REPO/workpools" "$context/workpools"
  local output  # shown only on failure: the legacy builder (no container runs) warns it is legacy
  output="$(DOCKER_BUILDKIT=0 docker build -q --network none --build-arg "BASE=$1" -t "$2" \
    -f "$HERE/Dockerfile" "$context" 2>&1)" || { echo "$output" >&2; return 1; }
  rm -rf "$context"
  echo "built $2" >&2
}

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the image has Debian bookworm'"'"'s Python 3.11"'
base="prefect-pfcon-base:$( { cat "$HERE/build.sh" "$HERE/debian_root.sh"; project_dependencies; } | digest)"
source_key="$( { echo "$base"; cd "$REPO" && git ls-files -co --exclude-standard prefect_pfcon pyproject.toml \
  prefect.yaml workpools deploy/image | grep -v '\.pyc$' | sort | xargs sha256sum; } | digest)"
project="prefect-pfcon:src-$source_key"
have_image "$base" || build_base "$base"
have_image "$project" || build_project "$base" "$project"
docker tag "$project" "$IMAGE"
echo "$IMAGE"
