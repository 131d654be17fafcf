# OpenStack Swift all-in-one on 127.0.0.1:8080 for the tests, sourced by scripts/test.sh.
# Its S3 API (Swift's s3api middleware) answers on the same port. start_swift exports
# ST_AUTH, ST_USER and ST_KEY, and AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION for S3; stop_swift stops Swift only if
# start_swift started it (by the PIDs in its own pidfiles).

SWIFT_SCRIPTS="$PFCON_REPO/scripts/infra/swift"
export SWIFT_BASE="${SWIFT_BASE:-${PFCON_STATE_DIR:-/var/tmp/prefect-pfcon}/swift}"
SWIFT_STARTED_HERE=0

start_swift() {
  local proxy_pidfile="$SWIFT_BASE/run/proxy-server.pid"
  if ! { [ -s "$proxy_pidfile" ] && [ -d "/proc/$(cat "$proxy_pidfile")" ]; }; then
    SWIFT_STARTED_HERE=1
  fi
  eval "$(bash "$SWIFT_SCRIPTS/start-swift.sh" --env)"
}

stop_swift() {
  if [ "$SWIFT_STARTED_HERE" = 1 ]; then
    bash "$SWIFT_SCRIPTS/stop-swift.sh" >/dev/null
  fi
}
