#!/usr/bin/env bash
# What webhooks cost, on a release build over PostgreSQL (the demo data), within one run:
#  0. an import by the command line (IMPORT_ITEMS new contacts per run) with no endpoint,
#     the outbox's triggers enabled and then disabled, in turns: what they cost a space
#     that subscribes nothing;
#  1. create (a new address each request) in turns at the given connections: with no
#     endpoint; with one endpoint subscribed to every event on a server that delivers
#     none (WEBHOOK_CONCURRENCY=0, as an API-only instance): the outbox's cost on the
#     write path; and with the endpoint on a server whose worker delivers meanwhile to
#     the receiver, on the same two cores (each run's queue is drained before the next);
#  2. the worker alone draining a backlog (EVENTS contacts imported by the command line
#     while the server is stopped, one `customer.created` each) to a local receiver that
#     answers 204 at once: deliveries per second, from the server's start to an empty queue.
# Loopback only, bounded in time.
#   bench/webhooks.sh
#   DURATION=10s ROUNDS=2 CONNECTIONS=16 bench/webhooks.sh
# Other knobs: BIN, SKIP_BUILD=1, THREADS (wrk, 2), WARMUP (3s), PORT, RECEIVER_PORT,
# PG_URL, PG_DB (bizkit_bench_webhooks, dropped and recreated), IMPORT_ITEMS (20000), EVENTS (20000),
# DRAIN_LIMIT (600 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
PORT=${PORT:-18187}
RECEIVER_PORT=${RECEIVER_PORT:-18188}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
PG_DB=${PG_DB:-bizkit_bench_webhooks}
DRAIN_LIMIT=${DRAIN_LIMIT:-600}
EVENTS=${EVENTS:-20000}
IMPORT_ITEMS=${IMPORT_ITEMS:-20000}
BIN=${BIN:-./target/release/bizkit-mirror}
KEY=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
ROOT=ROOTPGrFxpGEtrOZfuWhnoJohUYBXuOE
base="http://127.0.0.1:$PORT"

for tool in wrk curl psql python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
[ -x "$BIN" ] || { echo "no server binary at $BIN" >&2; exit 1; }

tmp=$(mktemp -d)
pid=""
receiver=""
cleanup() {
  stop_server
  [ -z "$receiver" ] || kill "$receiver" 2>/dev/null || true
  psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" -c "create database $PG_DB" >/dev/null
python3 bench/receiver.py "$RECEIVER_PORT" &
receiver=$!

sql() { psql "$PG_URL/$PG_DB" -qAt -c "$1"; }

serve() {
  WEBHOOK_CONCURRENCY=${1:-32} RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 \
    BIND=127.0.0.1:$PORT RUST_LOG=warn \
    DATABASE_URL="$PG_URL/$PG_DB" "$BIN" serve --demo >"$tmp/server.out" 2>>"$tmp/server.err" &
  pid=$!
  await_ready "$base"
}
serve

endpoint=""
subscribe() {
  endpoint=$(curl -fsS "$base/admin/v1/webhooks?apiKey=$ROOT" -H 'content-type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$RECEIVER_PORT/hook\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
}
unsubscribe() {
  [ -z "$endpoint" ] || curl -fsS "$base/admin/v1/webhooks/delete?apiKey=$ROOT" -H 'content-type: application/json' \
    -d "{\"id\":$endpoint}" >/dev/null
  endpoint=""
}
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }

triggers() {
  for t in customers credit_ledger customer_matches; do sql "alter table $t $1 trigger user"; done
}
imported=0
import_rate() {
  python3 bench/gen_contacts.py "$IMPORT_ITEMS" --start "$((1000000 + imported))" >"$tmp/import.ndjson"
  imported=$((imported + IMPORT_ITEMS))
  local t0 t1
  t0=$(date +%s.%N)
  DATABASE_URL="$PG_URL/$PG_DB" RUST_LOG=warn "$BIN" import --org demo "$tmp/import.ndjson" >/dev/null
  t1=$(date +%s.%N)
  awk -v n="$IMPORT_ITEMS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}'
}
echo "import by the command line, $IMPORT_ITEMS new contacts per run, no endpoint, $ROUNDS rounds in turns"
declare -A isum=([on]=0 [off]=0)
for r in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    if [ "$mode" = off ]; then triggers disable; else triggers enable; fi
    isum[$mode]=$(( ${isum[$mode]} + $(import_rate) ))
  done
done
triggers enable
printf 'triggers off %s/s, on %s/s: ratio %.2f\n' "$(( ${isum[off]} / ROUNDS ))" "$(( ${isum[on]} / ROUNDS ))" \
  "$(awk -v a="${isum[on]}" -v b="${isum[off]}" 'BEGIN {print a / b}')"

wrk -t"$THREADS" -c16 -d"$WARMUP" -s bench/create.lua "$base/api/v1/customer/create?apiKey=$KEY" >/dev/null
pending() { sql "select count(*) from webhook_deliveries where state = 'pending'"; }
# Waits (bounded) until the worker has delivered everything queued.
drain() {
  local waited=0
  while [ "$(pending)" -gt 0 ] && [ "$waited" -lt "$DRAIN_LIMIT" ]; do sleep 1; waited=$((waited + 1)); done
}
echo "create (new address) on PostgreSQL, $DURATION per run, $ROUNDS rounds in turns"
printf '%-6s %-13s %-24s %-24s\n' conns "no endpoint" "one, recorded only" "one, delivered meanwhile"
for c in $CONNECTIONS; do
  declare -A sum=([none]=0 [recorded]=0 [delivered]=0)
  for r in $(seq 1 "$ROUNDS"); do
    for mode in none recorded delivered; do
      case $mode in
        none) unsubscribe ;;
        recorded) stop_server; serve 0; subscribe ;;
        delivered) stop_server; sql "delete from webhook_deliveries where state = 'pending'" >/dev/null; serve ;;
      esac
      wrk -t"$THREADS" -c"$c" -d"$DURATION" -s bench/create.lua "$base/api/v1/customer/create?apiKey=$KEY" >"$tmp/wrk"
      sum[$mode]=$(awk -v a="${sum[$mode]}" -v b="$(rate "$tmp/wrk")" 'BEGIN {print a + b}')
      [ "$mode" != delivered ] || drain
    done
  done
  avg() { awk -v s="${sum[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}'; }
  none=$(avg none)
  share() { awk -v a="$(avg "$1")" -v b="$none" 'BEGIN {printf "%.0f/s (%.2f)", a, a / b}'; }
  printf '%-6s %-13s %-24s %-24s\n' "$c" "$none/s" "$(share recorded)" "$(share delivered)"
done

# A backlog written while no server runs: the queue the worker finds at its start.
[ -n "$endpoint" ] || subscribe
stop_server
python3 bench/gen_contacts.py "$EVENTS" >"$tmp/contacts.ndjson"
DATABASE_URL="$PG_URL/$PG_DB" RUST_LOG=warn "$BIN" import --org demo "$tmp/contacts.ndjson" >/dev/null
start_pending=$(pending)
start_received=$(curl -fsS "http://127.0.0.1:$RECEIVER_PORT/count")
start=$(date +%s.%N)
serve
while [ "$(pending)" -gt 0 ]; do
  sleep 0.2
  elapsed=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {print n - s}')
  awk -v e="$elapsed" -v l="$DRAIN_LIMIT" 'BEGIN {exit !(e > l)}' && { echo "still pending after ${DRAIN_LIMIT}s" >&2; break; }
done
elapsed=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {print n - s}')
received=$(( $(curl -fsS "http://127.0.0.1:$RECEIVER_PORT/count") - start_received ))
failed=$(sql "select count(*) from webhook_deliveries where state = 'failed'")
printf 'delivery: %s queued, %s received in %.1f s (from the start of the server): %.0f deliveries/s; %s failed\n' \
  "$start_pending" "$received" "$elapsed" "$(awk -v n="$received" -v e="$elapsed" 'BEGIN {print n / e}')" "$failed"
