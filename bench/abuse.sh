#!/usr/bin/env bash
# Hostile clients against a release build, over loopback only, each phase bounded in time.
#   bench/abuse.sh                                                  # SQLite (temporary file)
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/abuse.sh
# With PostgreSQL, DATABASE_URL names the server only: the run creates a database of its
# own there (so that its transaction count is the server's alone) and drops it after.
# Needs curl, wrk (Debian package `wrk`) and python3 (and psql for PostgreSQL). Prints:
#   1. the server's CPU time per refused keyless 1 MiB body (declared, and chunked)
#   2. a valid key's ping latency alone, while two clients flood random unknown keys from
#      other addresses, and while two flood from the valid key's own address; and the
#      database transactions each phase cost (PostgreSQL), against the keys it sent
#   3. the size of the answer to 5 MiB of garbage NDJSON sent to the import
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in curl wrk python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required"; exit 1; }
done
DURATION=${DURATION:-10}              # seconds of each latency phase
BODIES=${BODIES:-200}                 # refused bodies of each kind
GARBAGE_MIB=${GARBAGE_MIB:-5}         # size of the garbage import
IMPORT_TIMEOUT=${IMPORT_TIMEOUT:-120} # seconds the garbage import may take
key=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bizkit-abuse.XXXXXX")
pid=
pg_admin=
db_name=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$db_name" ]; then psql "$pg_admin" -qc "drop database if exists $db_name with (force)" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE # so that cleanup runs then too

case "${DATABASE_URL:-}" in
  "") export DATABASE_URL="sqlite:$tmp/bench.db" ;;
  postgres://* | postgresql://*)
    command -v psql >/dev/null || { echo "psql is required for PostgreSQL"; exit 1; }
    pg_admin=$DATABASE_URL
    db_name="bizkit_abuse_$$"
    psql "$pg_admin" -qc "create database $db_name"
    export DATABASE_URL="${pg_admin%/*}/$db_name"
    ;;
  *) echo "DATABASE_URL must be postgres://… (or unset, for SQLite)"; exit 1 ;;
esac

BIN=${BIN:-./target/release/bizkit-mirror}; [ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 BIND=127.0.0.1:0 LOG_FORMAT=json \
  RUST_LOG=warn,bizkit_mirror::server=info "$BIN" serve --demo >"$tmp/out" 2>"$tmp/err" &
pid=$!
addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*"message":"listening","address":"\([0-9.:]*\)".*/\1/p' "$tmp/err" | head -n1)
  [ -n "$addr" ] && curl -fs "http://$addr/readyz" >/dev/null && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start:"; cat "$tmp/err"; exit 1; }
base="http://$addr"
port=${addr##*:}

hz=$(getconf CLK_TCK)
# The server's user + system CPU time so far, in milliseconds (all its threads).
cpu_ms() { awk -v hz="$hz" '{printf "%d\n", ($14 + $15) * 1000 / hz}' "/proc/$pid/stat"; }
# Answers by status, e.g. "401×200"; 000 is a connection that ended without one.
tally() { sort | uniq -c | awk '{printf "%s%s×%s", (NR > 1 ? " " : ""), $2, $1} END {print ""}'; }

echo "backend: ${DATABASE_URL%%:*}   cores: $(nproc)   server: $addr"

# ---- 1. refused keyless bodies ----
python3 - "$tmp/big.json" <<'PY'
import json, sys
body = {"email": "big@example.com", "pad": ""}
body["pad"] = "x" * (1024 * 1024 - len(json.dumps(body, separators=(",", ":"))))
open(sys.argv[1], "w").write(json.dumps(body, separators=(",", ":")))
PY
# cpu_per LABEL CURL-ARGS…: BODIES requests, the server's CPU per request, the answers.
cpu_per() {
  local label=$1; shift
  local before after
  before=$(cpu_ms)
  for _ in $(seq "$BODIES"); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -H 'Expect:' "$@" || true
  done >"$tmp/codes"
  after=$(cpu_ms)
  printf '%-40s %7.3f ms CPU per request   answers: %s\n' "$label" \
    "$(awk -v a="$after" -v b="$before" -v n="$BODIES" 'BEGIN {print (a - b) / n}')" "$(tally <"$tmp/codes")"
}
echo
echo "1. server CPU per request ($BODIES each)"
cpu_per "keyless 1 MiB JSON, Content-Length" -H 'Content-Type: application/json' \
  --data-binary @"$tmp/big.json" "$base/api/v1/customer/create"
cpu_per "keyless 1 MiB JSON, chunked" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$tmp/big.json" "$base/api/v1/customer/create"
cpu_per "(for scale: ping with the valid key)" "$base/ping/v1?apiKey=$key"

# ---- 2. a valid key's latency under floods of unknown keys, and their database cost ----
# The database's committed transactions so far; PostgreSQL only. Each reading is itself
# one transaction, counted in the next.
xact() {
  if [ -n "$db_name" ]; then
    psql "$DATABASE_URL" -Atqc "select xact_commit from pg_stat_database where datname = current_database()"
  else echo n/a; fi
}
# PostgreSQL publishes a backend's counts some seconds after it goes idle (up to 10 s, or
# later when busy): wait before each reading, so that it holds the phase before it.
settle() { if [ -n "$db_name" ]; then sleep "${SETTLE:-15}"; fi; }
to_ms() { awk '{v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; printf "%.3f", v}'; }
# measure: wrk on ping with the valid key for DURATION; sets p50, p99, bad, rps, and
# cpu (the server's CPU time meanwhile, as a percentage of one core).
measure() {
  local before
  before=$(cpu_ms)
  wrk -t1 -c4 -d"${DURATION}s" --latency "$base/ping/v1?apiKey=$key" >"$tmp/wrk.out" 2>&1
  p50=$(awk '/^ +50%/ {print $2}' "$tmp/wrk.out" | to_ms)
  p99=$(awk '/^ +99%/ {print $2}' "$tmp/wrk.out" | to_ms)
  bad=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.out"); bad=${bad:-0}
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$tmp/wrk.out")
  cpu=$(awk -v a="$(cpu_ms)" -v b="$before" -v d="$DURATION" 'BEGIN {printf "%d%%", (a - b) / d / 10}')
}
transactions() { # BEFORE AFTER
  if [ "$1" = n/a ]; then echo n/a; else echo $(($2 - $1 - 1)); fi
}
# Adds up "status:count" words from the files named, e.g. "401:150 429:58000".
answers() { cat "$@" | tr ' ' '\n' | awk -F: 'NF == 2 && $2 ~ /^[0-9]+$/ {n[$1] += $2}
  END {for (s in n) printf "%s:%d\n", s, n[s]}' | sort | paste -sd' '; }
format='%-30s %7s %7s %5s %5s %7s %7s %8s  %7s  %-22s %s\n'
row() { # LABEL FLOOD-KEYS FLOOD-ANSWERS TRANSACTIONS
  printf "$format" "$1" "$p50" "$p99" \
    "$(awk -v a="$p50" -v b="$p50_alone" 'BEGIN {printf "%.2f", a / b}')" \
    "$(awk -v a="$p99" -v b="$p99_alone" 'BEGIN {printf "%.2f", a / b}')" "$rps" "$bad" "$cpu" "$2" "$3" "$4"
}
echo
echo "2. GET /ping/v1 with the valid key (wrk, 4 connections, ${DURATION} s per phase; ms)"
echo "   srv CPU: the server's, in % of one core; flood: keys sent, each a fresh random one,"
echo "   and their answers (a 401 is a lookup); db transactions: committed during the phase"
printf "$format" phase p50 p99 'p50×' 'p99×' 'req/s' non-2xx 'srv CPU' flood 'flood answers' 'db transactions'
wrk -t1 -c4 -d2s "$base/ping/v1?apiKey=$key" >/dev/null 2>&1 # warm-up, not counted
settle # the demo seed's transactions, counted before the first phase starts
c0=$(xact)
measure
p50_alone=$p50; p99_alone=$p99
settle
c1=$(xact)
row "alone" - - "$(transactions "$c0" "$c1")"

# Two clients on addresses of their own: each is refused lookups once past its budget.
# The flooding clients run at the lowest CPU priority: on a machine that also runs the
# server and the measuring client, they would otherwise show what they take from the
# shared cores rather than what their flood costs the server.
flood=$((DURATION + 2))
nice -n 19 python3 bench/unknown_keys.py 127.0.0.2 "$port" "$flood" >"$tmp/flood2" &
f1=$!
nice -n 19 python3 bench/unknown_keys.py 127.0.0.3 "$port" "$flood" >"$tmp/flood3" &
f2=$!
sleep 1
measure
wait "$f1" "$f2"
settle
c2=$(xact)
keys=$(( $(cut -d' ' -f1 "$tmp/flood2") + $(cut -d' ' -f1 "$tmp/flood3") ))
row "flood from 127.0.0.2 and .3" "$keys" "$(answers "$tmp/flood2" "$tmp/flood3")" "$(transactions "$c1" "$c2")"

# Two clients on the valid key's own address (a shared NAT or proxy).
nice -n 19 wrk -t1 -c8 -d"${flood}s" -s bench/unknown_keys.lua "$base" >"$tmp/wrk1" 2>&1 &
f1=$!
nice -n 19 wrk -t1 -c8 -d"${flood}s" -s bench/unknown_keys.lua "$base" >"$tmp/wrk2" 2>&1 &
f2=$!
sleep 1
measure
wait "$f1" "$f2"
settle
c3=$(xact)
sent() { awk '/requests in/ {print $1}' "$1"; }
keys=$(( $(sent "$tmp/wrk1") + $(sent "$tmp/wrk2") ))
row "flood from 127.0.0.1 (own)" "$keys" "$(grep -h '^answers' "$tmp/wrk1" "$tmp/wrk2" | answers)" \
  "$(transactions "$c2" "$c3")"

# ---- 3. garbage import (last: its transactions would blur the counts above) ----
# The flood above left 127.0.0.1 refused lookups until its budget has room again (at most
# a second by default); the valid key may have left the key cache meanwhile.
sleep 2
echo
echo "3. import of ${GARBAGE_MIB} MiB of garbage (\"x\" lines)"
python3 -c 'import sys; sys.stdout.write("x\n" * (int(sys.argv[1]) * 1024 * 1024 // 2))' "$GARBAGE_MIB" >"$tmp/garbage.ndjson"
start=$(date +%s.%N)
# The answer is counted as it streams in, never stored whole.
curl -s --max-time "$IMPORT_TIMEOUT" -H 'Expect:' -D "$tmp/import.head" -H 'Content-Type: application/x-ndjson' \
  --data-binary @"$tmp/garbage.ndjson" "$base/api/v1/customer/import?apiKey=$key" |
  python3 -c '
import json, sys
data = sys.stdin.buffer
head = data.read(4096)
size = len(head)
while chunk := data.read(1 << 20):
    size += len(chunk)
print(size, end=" ")
text = head.decode(errors="replace")
cut = text.find(",\"results\"")
try:
    print(json.dumps(json.loads(text[:cut] + "}" if cut > 0 else text)["summary" if cut > 0 else "error"]))
except Exception:
    print(repr(text[:200]))
' >"$tmp/import.out" || true
end=$(date +%s.%N)
read -r answer_bytes summary <"$tmp/import.out" || true
status=$(awk 'NR == 1 {print $2}' "$tmp/import.head" 2>/dev/null || true)
printf 'sent %d bytes; answer: HTTP %s, %s bytes (%.1f× the input) in %.1f s%s\n' \
  "$(stat -c %s "$tmp/garbage.ndjson")" "${status:-none}" "${answer_bytes:-0}" \
  "$(awk -v a="${answer_bytes:-0}" -v b="$(stat -c %s "$tmp/garbage.ndjson")" 'BEGIN {print a / b}')" \
  "$(awk -v s="$start" -v e="$end" 'BEGIN {print e - s}')" \
  "$(awk -v s="$start" -v e="$end" -v t="$IMPORT_TIMEOUT" 'BEGIN {if (e - s >= t) print " (cut off by the time limit)"}')"
echo "summary: ${summary:-none}"
