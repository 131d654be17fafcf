#!/usr/bin/env bash
# Build the local images the tests use, with `docker import` only (nothing is pulled):
#   local/busybox:test                    static busybox
#   local/pl-simpledsapp:test             Debian's python3.11 + busybox + simpledsapp.py,
#     also tagged fnndsc/pl-simpledsapp   (the name pfconclient's own tests use)
# An image that exists is kept unless --force is given.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FORCE="${1:-}"

have_image() { [ "$FORCE" != "--force" ] && docker image inspect "$1" >/dev/null 2>&1; }

busybox_tree() {  # $1: root of the tree
  mkdir -p "$1/bin" "$1/tmp" "$1/etc"
  chmod 1777 "$1/tmp"
  cp /bin/busybox "$1/bin/busybox"
  for applet in $("$1/bin/busybox" --list); do
    [ -e "$1/bin/$applet" ] || ln -s busybox "$1/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

copy_libraries() {  # $1: root, rest: binaries whose shared libraries to copy
  local root="$1"; shift
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' \
    | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

import_tree() {  # $1: root, $2: image
  tar -C "$1" -c . | docker import - "$2" >/dev/null
  echo "built $2"
}

build_busybox() {
  have_image local/busybox:test && return
  local root; root="$(mktemp -d)"
  busybox_tree "$root"
  import_tree "$root" local/busybox:test
  rm -rf "$root"
}

build_simpledsapp() {
  if ! have_image local/pl-simpledsapp:test; then
    [ -x /usr/bin/python3.11 ] || apt-get install -y -qq python3-minimal >/dev/null
    local root stdlib=/usr/lib/python3.11
    root="$(mktemp -d)"
    busybox_tree "$root"
    mkdir -p "$root/usr/bin" "$root/usr/local/bin" "$root$stdlib"
    cp /usr/bin/python3.11 "$root/usr/bin/python3.11"
    ln -s python3.11 "$root/usr/bin/python3"
    ln -s /bin/busybox "$root/usr/bin/env"
    ln -s /usr/bin/python3.11 "$root/usr/local/bin/python3"
    tar -C "$stdlib" --exclude=test --exclude=__pycache__ --exclude=idlelib --exclude=tkinter \
        --exclude=ensurepip --exclude=lib2to3 --exclude=pydoc_data -c . | tar -C "$root$stdlib" -x
    copy_libraries "$root" /usr/bin/python3.11 "$stdlib"/lib-dynload/*.so
    install -m 0755 "$HERE/simpledsapp.py" "$root/usr/local/bin/simpledsapp"
    import_tree "$root" local/pl-simpledsapp:test
    rm -rf "$root"
  fi
  docker tag local/pl-simpledsapp:test fnndsc/pl-simpledsapp:latest
}

build_busybox
build_simpledsapp
