#!/usr/bin/env bash
# Two builds of the server side by side: detail (the demo customer, with its session) on
# PostgreSQL, each build in turn within one run, at 16 and 64 connections, and pgbench's
# point select of the same customer row in every round, so each build's rate reads as a
# share of what the database alone serves at that moment. Loopback only, bounded in time.
#   bench/binaries.sh OLD_BINARY NEW_BINARY
#   DURATION=10s ROUNDS=3 CONNECTIONS="16 64" bench/binaries.sh /tmp/old /tmp/new
# Other knobs: THREADS (wrk, 2), WARMUP (3s), PORT, PG_URL, PG_DB (bizkit_bench_binaries,
# dropped and recreated).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

[ $# -eq 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
declare -A bins=([old]=$1 [new]=$2)
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16 64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
PORT=${PORT:-18186}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
PG_DB=${PG_DB:-bizkit_bench_binaries}
KEY=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
CU=1cGIHvFoQDGLAbcA
url="http://127.0.0.1:$PORT/api/v1/customer/detail?apiKey=$KEY&identityId=Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg&cuRefNo=$CU&customerRealIp=1.1.1.1"

for tool in wrk curl psql pgbench; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
for b in old new; do [ -x "${bins[$b]}" ] || { echo "no server binary at ${bins[$b]}" >&2; exit 1; }; done

tmp=$(mktemp -d)
pid=""
cleanup() {
  stop_server
  psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" -c "create database $PG_DB" >/dev/null

start_server() {
  RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 BIND=127.0.0.1:$PORT RUST_LOG=warn \
    DATABASE_URL="$PG_URL/$PG_DB" "$1" serve --demo >"$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  await_ready "http://127.0.0.1:$PORT"
  curl -fsS "$url" | grep -q '"loggedIn":true' || { echo "detail failed" >&2; exit 1; }
}

# The demo customer's row, as a point select (the reference of detail).
start_server "${bins[old]}"
stop_server
space=$(psql "$PG_URL/$PG_DB" -qAt -c "select c.space_id from customers c join spaces s on s.id = c.space_id \
  where c.cu_ref_no = '$CU' and s.mode = 'live'")
echo "select * from customers where space_id = $space and cu_ref_no = '$CU';" >"$tmp/point.sql"

# measure NAME CONNECTIONS COMMAND…: runs it, prints and adds up its rate.
declare -A total
measure() {
  local name=$1 c=$2 out rate p99
  shift 2
  out=$("$@" 2>&1) || true
  rate=$(awk '/^Requests\/sec/ {print $2} /^tps = / {print $3; exit}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  printf '  %-8s c=%-3s %10s/s   %s\n' "$name" "$c" "${rate:-0}" "${p99:+p99 $p99}"
  total[$name.$c]=$(awk -v a="${total[$name.$c]:-0}" -v b="${rate:-0}" 'BEGIN {print a + b}')
}

secs=${DURATION%s}
echo "detail of one customer, builds old and new in turns, $ROUNDS rounds of $DURATION; $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  for b in old new; do
    start_server "${bins[$b]}"
    wrk -t"$THREADS" -c16 -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    for c in $CONNECTIONS; do
      measure "$b" "$c" wrk -t"$THREADS" -c"$c" -d"$DURATION" --timeout 10s --latency "$url"
    done
    stop_server
  done
  for c in $CONNECTIONS; do
    measure point "$c" pgbench -M prepared -n -j2 -c"$c" -T"$secs" -f "$tmp/point.sql" "$PG_URL/$PG_DB"
  done
done
echo
echo "| connections | point select (tps) | old (req/s) | old ÷ point | new (req/s) | new ÷ point | new ÷ old |"
echo "|---|---|---|---|---|---|---|"
for c in $CONNECTIONS; do
  awk -v c="$c" -v p="${total[point.$c]}" -v o="${total[old.$c]}" -v n="${total[new.$c]}" -v r="$ROUNDS" \
    'BEGIN {printf "| %s | %.0f | %.0f | %.2f | %.0f | %.2f | %.2f |\n", c, p / r, o / r, o / p, n / r, n / p, n / o}'
done
