# Headless Chromium and its WebDriver (Debian's packages) for the Prefect UI test, sourced by
# scripts/test.sh. ensure_browser_installed installs them only when missing and exports
# PFCON_TEST_CHROMIUM and PFCON_TEST_CHROMEDRIVER (their paths) for the test.

ensure_browser_installed() {
  if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
  fi
  export PFCON_TEST_CHROMIUM="$(command -v chromium)"
  export PFCON_TEST_CHROMEDRIVER="$(command -v chromedriver)"
}
