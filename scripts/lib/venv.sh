# Virtualenv helper, sourced by scripts/up.sh and scripts/test.sh.

PFCON_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PFCON_VENV="${PFCON_VENV:-$PFCON_REPO/.venv}"

# Create the virtualenv and install the project with its test extras, again only when
# pyproject.toml changed since the last install.
ensure_venv() {
  local stamp="$PFCON_VENV/.installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$PFCON_REPO/pyproject.toml" ]; then
    return
  fi
  [ -x "$PFCON_VENV/bin/python" ] || python3 -m venv "$PFCON_VENV"
  "$PFCON_VENV/bin/pip" install -q --disable-pip-version-check -e "$PFCON_REPO[test]"
  touch "$stamp"
}
