# Virtualenv helper, sourced by scripts/up.sh and scripts/test.sh.

PFCON_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PFCON_VENV="${PFCON_VENV:-$PFCON_REPO/.venv}"
LEGACY_PFCONCLIENT=3.3.0

# Create the virtualenv and install the project with its test extras, again only when
# pyproject.toml changed since the last install. python-pfconclient 3.3.0 (the legacy API's
# client; the same package as the 4.0.0 the tests import) goes into its own directory,
# $PFCON_VENV/pfconclient-3.3.0, which the legacy API tests put on PYTHONPATH.
ensure_venv() {
  local stamp="$PFCON_VENV/.installed" legacy="$PFCON_VENV/pfconclient-$LEGACY_PFCONCLIENT"
  if ! { [ -f "$stamp" ] && [ "$stamp" -nt "$PFCON_REPO/pyproject.toml" ]; }; then
    [ -x "$PFCON_VENV/bin/python" ] || python3 -m venv "$PFCON_VENV"
    "$PFCON_VENV/bin/pip" install -q --disable-pip-version-check -e "$PFCON_REPO[test]"
    touch "$stamp"
  fi
  if [ ! -d "$legacy/pfconclient" ]; then
    "$PFCON_VENV/bin/pip" install -q --disable-pip-version-check --no-deps --target "$legacy" \
      "python-pfconclient==$LEGACY_PFCONCLIENT"
  fi
}
