#!/usr/bin/env bash
# start-swift.sh - idempotent, loopback-only OpenStack Swift "all in one" for tests.
#
# Debian 12 packages (swift 2.30.x) + memcached, 1 device, 1 replica, tempauth,
# and Swift's s3api middleware: the same port also answers the S3 API (path-style,
# region us-east-1; access key = tempauth user "test:tester", secret = its key).
# Installs packages if missing (needs root + apt), (re)writes config under
# $SWIFT_BASE, builds rings if missing/changed, starts every server as a
# background process with a pidfile in $SWIFT_BASE/run, waits until auth works
# and prints the credentials. Running it again while Swift is up is a no-op
# apart from the readiness check. Stop with stop-swift.sh (same SWIFT_BASE).
#
# Env overrides:
#   SWIFT_BASE (/var/tmp/prefect-pfcon/swift)   SWIFT_DEVICES ($SWIFT_BASE/srv)
#   SWIFT_PROXY_PORT (8080)          SWIFT_OBJECT_PORT (6210)
#   SWIFT_CONTAINER_PORT (6211)      SWIFT_ACCOUNT_PORT (6212)
#   SWIFT_MEMCACHED_PORT (11311)     SWIFT_START_TIMEOUT (60 seconds)
#   SWIFT_LOG_LEVEL (INFO; WARNING drops per-request access log lines)
#   SWIFT_CONTAINER_UPDATER (0; 1 = also run swift-container-updater as a
#       daemon (5 s interval) so ACCOUNT-level object/byte counts get refreshed.
#       It forks a child per container partition each sweep and burns a lot
#       of CPU on a 2-core box, so prefer the on-demand single sweep:
#       swift-container-updater $SWIFT_BASE/etc/container-server.conf once)
# Container-level counts (HEAD container) are always immediate.
# Options:
#   --reset   wipe stored data (device dir) before starting; only when stopped
#   --env     print only shell "export ST_AUTH=... ST_USER=... ST_KEY=..." lines
#             (and the S3 API's AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#             AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)
set -euo pipefail

SWIFT_BASE=${SWIFT_BASE:-/var/tmp/prefect-pfcon/swift}
DEVICES=${SWIFT_DEVICES:-$SWIFT_BASE/srv}
DEVICE_NAME=d1
BIND_IP=127.0.0.1
PROXY_PORT=${SWIFT_PROXY_PORT:-8080}
OBJECT_PORT=${SWIFT_OBJECT_PORT:-6210}
CONTAINER_PORT=${SWIFT_CONTAINER_PORT:-6211}
ACCOUNT_PORT=${SWIFT_ACCOUNT_PORT:-6212}
MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-11311}
START_TIMEOUT=${SWIFT_START_TIMEOUT:-60}
RUN_CONTAINER_UPDATER=${SWIFT_CONTAINER_UPDATER:-0}
LOG_LEVEL=${SWIFT_LOG_LEVEL:-INFO}
PART_POWER=10

ETC=$SWIFT_BASE/etc
RUN=$SWIFT_BASE/run
LOGS=$SWIFT_BASE/logs
CACHE=$SWIFT_BASE/cache
AUTH_URL="http://$BIND_IP:$PROXY_PORT/auth/v1.0"
AUTH_USER="test:tester"
AUTH_KEY="testing"
S3_URL="http://$BIND_IP:$PROXY_PORT"
S3_REGION=us-east-1

RESET=0
ENV_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --reset) RESET=1 ;;
    --env) ENV_ONLY=1 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

# keep going (and keep servers consistent) even if our stdout is a closed pipe
trap '' PIPE
if [ "$ENV_ONLY" = 1 ]; then exec 3>&2; else exec 3>&1; fi   # progress channel
say() { printf '%s\n' "$*" >&3 2>/dev/null || true; }
die() { echo "start-swift: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- install ---
PKGS=(swift swift-proxy swift-account swift-container swift-object memcached attr curl)
missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root or install them"
  say "installing: ${missing[*]}"
  mkdir -p "$LOGS"
  # Never let package postinst scripts start system-wide daemons (they would
  # bind 0.0.0.0 / default ports). Only add a policy-rc.d if none exists.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1; then
    apt-get update -q -o DPkg::Lock::Timeout=300 >>"$LOGS/apt.log" 2>&1 || true
    apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 \
      || { [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed, see $LOGS/apt.log"; }
  fi
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# --------------------------------------------------------------- helpers ---
# pid_alive NAME PATTERN -> 0 if pidfile exists, process alive and its
# command line contains PATTERN (guards against PID reuse)
pid_alive() {
  local pf="$RUN/$1.pid" pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -r "/proc/$pid/cmdline" ] || return 1
  local cmd; cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$2"* ]]
}

port_in_use() {
  [ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ]
}

# start_bg NAME PATTERN PORT CMD... : start CMD in its own session
start_bg() {
  local name=$1 pattern=$2 port=$3; shift 3
  if pid_alive "$name" "$pattern"; then
    say "  $name already running (pid $(cat "$RUN/$name.pid"))"
    return 0
  fi
  rm -f "$RUN/$name.pid"
  if [ -n "$port" ] && port_in_use "$port"; then
    die "port $port needed by $name is already in use by a process not started by this script (servers started so far keep running; stop them with stop-swift.sh)"
  fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 3>&- &   # no fd 3: do not hold the caller's pipes open
  echo $! > "$RUN/$name.pid"
  say "  started $name (pid $!)"
}

all_running() {
  pid_alive memcached "memcached -l $BIND_IP -p $MEMCACHED_PORT " &&
  pid_alive account-server "swift-account-server $ETC/account-server.conf" &&
  pid_alive container-server "swift-container-server $ETC/container-server.conf" &&
  pid_alive object-server "swift-object-server $ETC/object-server.conf" &&
  pid_alive proxy-server "swift-proxy-server $ETC/proxy-server.conf" &&
  { [ "$RUN_CONTAINER_UPDATER" != 1 ] || pid_alive container-updater "swift-container-updater $ETC/container-server.conf"; }
}

any_running() {
  local n
  for n in memcached account-server container-server object-server proxy-server container-updater; do
    [ -s "$RUN/$n.pid" ] && [ -s "/proc/$(cat "$RUN/$n.pid")/cmdline" ] && return 0  # zombies have empty cmdline
  done
  return 1
}

# ---------------------------------------------------------------- layout ---
mkdir -p "$ETC" "$RUN" "$LOGS" "$CACHE" "$DEVICES"

if [ "$RESET" = 1 ]; then
  any_running && die "--reset requested but Swift is running; run stop-swift.sh first"
  rm -rf "${DEVICES:?}/$DEVICE_NAME"
  say "reset: wiped $DEVICES/$DEVICE_NAME"
fi
mkdir -p "$DEVICES/$DEVICE_NAME"

# Swift keeps object metadata in user xattrs.
probe="$DEVICES/$DEVICE_NAME/.xattr-probe.$$"
touch "$probe"
if ! setfattr -n user.swift.probe -v 1 "$probe" 2>/dev/null || ! getfattr -n user.swift.probe "$probe" >/dev/null 2>&1; then
  rm -f "$probe"
  die "filesystem of $DEVICES lacks user xattrs; set SWIFT_DEVICES to an ext4/xfs/tmpfs (kernel>=6.6) directory"
fi
rm -f "$probe"

# The hash prefix/suffix and storage policies are ALWAYS read from
# /etc/swift/swift.conf (hard-coded in swift 2.30 servers). The Debian package
# ships one; only create it if absent.
if [ ! -f /etc/swift/swift.conf ] || ! grep -q '^swift_hash_path_suffix' /etc/swift/swift.conf; then
  [ -w /etc/swift ] || [ "$(id -u)" = 0 ] || die "/etc/swift/swift.conf missing and not root"
  mkdir -p /etc/swift
  cat > /etc/swift/swift.conf <<'EOF'
[swift-hash]
swift_hash_path_suffix = changeme
swift_hash_path_prefix = changeme

[storage-policy:0]
name = Policy-0
default = yes
EOF
fi

RUN_USER=$(id -un)

# ---------------------------------------------------------------- config ---
common_default() {  # $1 port $2 log name
  cat <<EOF
[DEFAULT]
devices = $DEVICES
mount_check = false
bind_ip = $BIND_IP
bind_port = $1
workers = 0
user = $RUN_USER
swift_dir = $ETC
log_name = $2
log_level = $LOG_LEVEL
# no /dev/log here: swift then sends syslog datagrams to UDP :514; pin that to
# loopback explicitly (nothing listens; console copy goes to \$SWIFT_BASE/logs)
log_udp_host = $BIND_IP
log_udp_port = 514
recon_cache_path = $CACHE
EOF
}

write_if_changed() {  # $1 path, content on stdin
  local tmp; tmp=$(mktemp "$1.XXXX")
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; touch "$RUN/config-changed"; fi
}

{ common_default "$ACCOUNT_PORT" account-server; cat <<EOF

[pipeline:main]
pipeline = healthcheck account-server

[app:account-server]
use = egg:swift#account

[filter:healthcheck]
use = egg:swift#healthcheck

[account-replicator]
[account-auditor]
[account-reaper]
EOF
} | write_if_changed "$ETC/account-server.conf"

{ common_default "$CONTAINER_PORT" container-server; cat <<EOF

[pipeline:main]
pipeline = healthcheck container-server

[app:container-server]
use = egg:swift#container
allow_versions = true

[filter:healthcheck]
use = egg:swift#healthcheck

[container-updater]
interval = 5
[container-replicator]
[container-auditor]
[container-sync]
[container-sharder]
EOF
} | write_if_changed "$ETC/container-server.conf"

{ common_default "$OBJECT_PORT" object-server; cat <<EOF

[pipeline:main]
pipeline = healthcheck object-server

[app:object-server]
use = egg:swift#object

[filter:healthcheck]
use = egg:swift#healthcheck

[object-replicator]
[object-reconstructor]
[object-updater]
[object-auditor]
EOF
} | write_if_changed "$ETC/object-server.conf"

cat <<EOF | write_if_changed "$ETC/proxy-server.conf"
[DEFAULT]
bind_ip = $BIND_IP
bind_port = $PROXY_PORT
workers = 0
user = $RUN_USER
swift_dir = $ETC
log_name = proxy-server
log_level = $LOG_LEVEL
log_udp_host = $BIND_IP
log_udp_port = 514

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

# S3 API: just before the auth filter, with slo after it (multipart uploads)
[filter:s3api]
use = egg:swift#s3api
location = $S3_REGION

[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test_tester2 = testing2 .admin
user_test_tester3 = testing3
user_test2_tester2 = testing2 .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = $BIND_IP:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:ratelimit]
use = egg:swift#ratelimit
[filter:copy]
use = egg:swift#copy
[filter:container-quotas]
use = egg:swift#container_quotas
[filter:account-quotas]
use = egg:swift#account_quotas
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
[filter:symlink]
use = egg:swift#symlink
EOF

# ----------------------------------------------------------------- rings ---
RING_STAMP="ports=$ACCOUNT_PORT,$CONTAINER_PORT,$OBJECT_PORT dev=$DEVICE_NAME pp=$PART_POWER ip=$BIND_IP"
if [ ! -f "$ETC/rings.stamp" ] || [ "$(cat "$ETC/rings.stamp")" != "$RING_STAMP" ] ||
   [ ! -f "$ETC/account.ring.gz" ] || [ ! -f "$ETC/container.ring.gz" ] || [ ! -f "$ETC/object.ring.gz" ]; then
  say "building rings"
  # one python process instead of 9 swift-ring-builder calls (saves seconds)
  /usr/bin/python3 - "$ETC" "$PART_POWER" "$BIND_IP" "$DEVICE_NAME" \
      "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT" <<'PY' || die "ring build failed"
import os, sys
from swift.common.ring import RingBuilder
etc, pp, ip, dev = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for name, port in zip(("account", "container", "object"), map(int, sys.argv[5:8])):
    b = RingBuilder(pp, 1, 1)  # part_power, 1 replica, min_part_hours=1
    b.add_dev({"region": 1, "zone": 1, "ip": ip, "port": port,
               "replication_ip": ip, "replication_port": port,
               "device": dev, "weight": 100, "meta": ""})
    b.rebalance()
    for suffix in (".builder", ".ring.gz"):
        path = os.path.join(etc, name + suffix)
        if os.path.exists(path):
            os.unlink(path)
    b.save(os.path.join(etc, name + ".builder"))
    b.get_ring().save(os.path.join(etc, name + ".ring.gz"))
PY
  rm -rf "$ETC/backups"
  echo "$RING_STAMP" > "$ETC/rings.stamp"
fi

# ----------------------------------------------------------------- start ---
MEMCACHED_USER_OPT=()
[ "$(id -u)" = 0 ] && MEMCACHED_USER_OPT=(-u root)

if all_running; then
  say "swift already running"
  [ -f "$RUN/config-changed" ] && say "  WARNING: config changed since start; run stop-swift.sh then start-swift.sh to apply"
else
  rm -f "$RUN/config-changed"
  say "starting swift (base $SWIFT_BASE)"
  start_bg memcached "memcached -l $BIND_IP -p $MEMCACHED_PORT " "$MEMCACHED_PORT" \
    /usr/bin/memcached -l "$BIND_IP" -p "$MEMCACHED_PORT" -U 0 -m 64 -c 1024 "${MEMCACHED_USER_OPT[@]}"
  start_bg account-server "swift-account-server $ETC/account-server.conf" "$ACCOUNT_PORT" \
    /usr/bin/swift-account-server "$ETC/account-server.conf" -v
  start_bg container-server "swift-container-server $ETC/container-server.conf" "$CONTAINER_PORT" \
    /usr/bin/swift-container-server "$ETC/container-server.conf" -v
  start_bg object-server "swift-object-server $ETC/object-server.conf" "$OBJECT_PORT" \
    /usr/bin/swift-object-server "$ETC/object-server.conf" -v
  start_bg proxy-server "swift-proxy-server $ETC/proxy-server.conf" "$PROXY_PORT" \
    /usr/bin/swift-proxy-server "$ETC/proxy-server.conf" -v
  if [ "$RUN_CONTAINER_UPDATER" = 1 ]; then
    start_bg container-updater "swift-container-updater $ETC/container-server.conf" "" \
      /usr/bin/swift-container-updater "$ETC/container-server.conf" -v
  fi
fi

# ------------------------------------------------------------- readiness ---
deadline=$((SECONDS + START_TIMEOUT))
ready=0
while [ "$SECONDS" -lt "$deadline" ]; do
  hdrs=$(curl -s --noproxy '*' -m 5 -D - -o /dev/null \
           -H "X-Auth-User: $AUTH_USER" -H "X-Auth-Key: $AUTH_KEY" "$AUTH_URL" 2>/dev/null || true)
  if [[ "${hdrs%%$'\n'*}" == *" 200"* ]]; then
    url=$(echo "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-storage-url"{print $2}')
    tok=$(echo "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-auth-token"{print $2}')
    code=$(curl -s --noproxy '*' -m 5 -o /dev/null -w '%{http_code}' -I -H "X-Auth-Token: $tok" "$url" || true)
    if [ "$code" = 204 ] || [ "$code" = 200 ]; then ready=1; break; fi
  fi
  all_running || break
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "start-swift: Swift did not become ready within ${START_TIMEOUT}s; logs in $LOGS:" >&2
  tail -n 5 "$LOGS"/*.log >&2 || true
  exit 1
fi

if [ "$ENV_ONLY" = 1 ]; then
  echo "export ST_AUTH=$AUTH_URL ST_USER=$AUTH_USER ST_KEY=$AUTH_KEY"
  echo "export AWS_ENDPOINT_URL=$S3_URL AWS_ACCESS_KEY_ID=$AUTH_USER AWS_SECRET_ACCESS_KEY=$AUTH_KEY AWS_DEFAULT_REGION=$S3_REGION"
else
  cat 2>/dev/null <<EOF || true
swift is ready (${SECONDS}s)
  auth URL : $AUTH_URL   (tempauth v1.0)
  user     : $AUTH_USER   key: $AUTH_KEY   (.admin of account AUTH_test)
  others   : test:tester2/testing2 (.admin), test:tester3/testing3 (no admin),
             test2:tester2/testing2 (.admin, AUTH_test2), admin:admin/admin (.reseller_admin)
  storage  : $url
  S3 API   : $S3_URL   (path-style, region $S3_REGION; access key $AUTH_USER, secret $AUTH_KEY)
  export ST_AUTH=$AUTH_URL ST_USER=$AUTH_USER ST_KEY=$AUTH_KEY
  export AWS_ENDPOINT_URL=$S3_URL AWS_ACCESS_KEY_ID=$AUTH_USER AWS_SECRET_ACCESS_KEY=$AUTH_KEY AWS_DEFAULT_REGION=$S3_REGION
  pids in $RUN, logs in $LOGS, data in $DEVICES/$DEVICE_NAME
EOF
fi
