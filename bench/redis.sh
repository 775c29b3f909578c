#!/usr/bin/env bash
# What shared rate limits cost: detail on a release build over PostgreSQL (the demo data),
# with every key's limit kept in the process and then in Redis (REDIS_URL), in turns within
# one run, at 16 and 64 connections. Limits are set high enough that nothing is refused:
# this measures the Lua step each request takes. Loopback only, bounded in time.
#   bench/redis.sh
#   DURATION=10s ROUNDS=2 CONNECTIONS="16 64" REDIS_URL=redis://127.0.0.1:6379 bench/redis.sh
# Other knobs: BIN, SKIP_BUILD=1, THREADS (wrk, 2), WARMUP (5s), PORT, PG_URL, PG_DB
# (bizkit_bench_redis, dropped and recreated).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-16 64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-5s}
PORT=${PORT:-18185}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
PG_DB=${PG_DB:-bizkit_bench_redis}
BIN=${BIN:-./target/release/bizkit-mirror}
KEY=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
url="http://127.0.0.1:$PORT/api/v1/customer/detail?apiKey=$KEY&identityId=Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg&cuRefNo=1cGIHvFoQDGLAbcA&customerRealIp=1.1.1.1"

for tool in wrk curl psql redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "no Redis at $REDIS_URL" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
[ -x "$BIN" ] || { echo "no server binary at $BIN" >&2; exit 1; }

tmp=$(mktemp -d)
pid=""
prefix="bizkit-bench-$$:"
cleanup() {
  stop_server
  psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" -c "create database $PG_DB" >/dev/null

# start_server on|off
start_server() {
  local redis=()
  [ "$1" = on ] && redis=(REDIS_URL="$REDIS_URL" REDIS_PREFIX="$prefix")
  env "${redis[@]}" RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 \
    BIND=127.0.0.1:$PORT RUST_LOG=warn DATABASE_URL="$PG_URL/$PG_DB" "$BIN" serve --demo \
    >"$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  await_ready "http://127.0.0.1:$PORT"
  curl -fsS "$url" | grep -q '"loggedIn":true' || { echo "detail failed" >&2; exit 1; }
}

# wrk_line LABEL CONNECTIONS: prints req/s and p99; sets rps.
wrk_line() {
  local out p99 bad
  out=$(wrk -t"$THREADS" -c"$2" -d"$DURATION" --timeout 10s --latency "$url" 2>&1) || true
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '  %-14s c=%-3s %10s req/s   p99 %8s   non-2xx %s\n' "$1" "$2" "${rps:-0}" "$p99" "${bad:-0}"
}

echo "detail, limits in the process (off) and in Redis (on), $ROUNDS rounds of $DURATION; $(nproc) cores"
declare -A total
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    start_server "$mode"
    wrk -t"$THREADS" -c16 -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    for c in $CONNECTIONS; do
      wrk_line "redis $mode #$round" "$c"
      total[$mode.$c]=$(awk -v a="${total[$mode.$c]:-0}" -v b="${rps:-0}" 'BEGIN {print a + b}')
    done
    stop_server
  done
done
echo
echo "| connections | limits in the process | limits in Redis | Redis ÷ process |"
echo "|---|---|---|---|"
for c in $CONNECTIONS; do
  awk -v c="$c" -v off="${total[off.$c]}" -v on="${total[on.$c]}" -v r="$ROUNDS" \
    'BEGIN {printf "| %s | %.0f req/s | %.0f req/s | %.2f |\n", c, off / r, on / r, on / off}'
done
