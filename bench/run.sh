#!/usr/bin/env bash
# Load on the hot paths of a release build, over loopback only, bounded in time.
#   bench/run.sh                       # SQLite (temporary file)
#   DATABASE_URL=postgres://… bench/run.sh
# Needs wrk (Debian package `wrk`). Prints requests/s and latency per endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18181}
tmp=$(mktemp -d)
export DATABASE_URL=${DATABASE_URL:-sqlite:$tmp/bench.db}
BIN=${BIN:-./target/release/bizkit-mirror}; [ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 BIND=127.0.0.1:$PORT RUST_LOG=warn "$BIN" serve --demo >"$tmp/out" 2>"$tmp/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$PORT"
key=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
run() {
  local name=$1; shift
  printf '%-28s ' "$name"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" 2>&1 |
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
         END {printf "%10s req/s   p50 %8s   p99 %8s   non-2xx %s\n", rps, p50, p99, (bad == "" ? 0 : bad)}'
}
echo "backend: ${DATABASE_URL%%:*}   connections: $CONNECTIONS   duration: $DURATION"
run "healthz (no database)" "$base/healthz"
run "ping (key only)" "$base/ping/v1?apiKey=$key"
run "detail (logged in)" "$base/api/v1/customer/detail?apiKey=$key&identityId=Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg&cuRefNo=1cGIHvFoQDGLAbcA&customerRealIp=1.1.1.1"
BODY='{"email":"jan@barasek.com","customerRealIp":"1.1.1.1"}' run "create (existing)" -s bench/post.lua "$base/api/v1/customer/create?apiKey=$key"
run "create (new customer)" -s bench/create.lua "$base/api/v1/customer/create?apiKey=$key"
BODY='{"managerCuRefNo":"1cGIHvFoQDGLAbcA","customerCuRefNo":"5CmsaVNgAQqRqoen","notice":"bench"}' \
  run "match (by cuRefNo)" -s bench/post.lua "$base/api/v1/customer/customer-match-customer?apiKey=$key"
echo "server RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
