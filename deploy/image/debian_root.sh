# debian_root_tar PACKAGES: the path of a tar of a minimal Debian bookworm root holding
# PACKAGES (comma-separated), made by mmdebstrap from Debian's packages and cached in
# $PFCON_IMAGE_CACHE (/var/cache/prefect-pfcon/image). Sourced by the image builders.

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
PFCON_IMAGE_CACHE="${PFCON_IMAGE_CACHE:-/var/cache/prefect-pfcon/image}"

debian_root_tar() {
  local tar; tar="$PFCON_IMAGE_CACHE/debian-$DEBIAN_SUITE-$(echo "$DEBIAN_SUITE $1" | sha256sum | cut -c1-12).tar"
  if [ ! -s "$tar" ]; then
    command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
    mkdir -p "$PFCON_IMAGE_CACHE"
    mmdebstrap --quiet --format=tar --variant=essential --include="$1" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' "$DEBIAN_SUITE" "$tar.part" "$DEBIAN_MIRROR" >&2
    mv "$tar.part" "$tar"
  fi
  echo "$tar"
}
