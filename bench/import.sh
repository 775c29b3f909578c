#!/usr/bin/env bash
# Bulk import throughput and memory, over loopback, on a release build.
#   bench/import.sh                          # SQLite (temporary file), 100,000 contacts
#   createdb -h 127.0.0.1 -U postgres bench1 && DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench1 bench/import.sh
#   COUNT=1000000 DATABASE_URL=postgres://…/<fresh db> bench/import.sh   # growth from empty to a million
#   COUNT=170000 PAD=1000 bench/import.sh     # ~200 MB of NDJSON: memory must stay flat
#   EVERY=5000 SKIP_CLI=1 COUNT=20000 …       # finer windows; HTTP runs only
# Streams generated NDJSON into POST /api/v1/customer/import (new contacts; the same contacts
# with another last name: every item an update; then that list again: every item found and
# left as stored), then through `bizkit-mirror import` into the sandbox space (new again). Prints contacts/s for every EVERY items (100,000 by default),
# so a slowdown as the tables grow shows, and the server's peak memory (VmHWM). On PostgreSQL
# it also times the database alone writing the same rows (bench/pgbench/import_rows.sql).
#
# Each window of EVERY items is an import call of its own, timed from the first byte sent
# to the last result received: the server reads ahead of its writes, so only a whole call
# tells how fast items were written.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh
COUNT=${COUNT:-100000}
EVERY=${EVERY:-100000}
PAD=${PAD:-0}   # bytes of padding in each contact's meta, for a larger body
PORT=${PORT:-18182}
tmp=$(mktemp -d)
export DATABASE_URL=${DATABASE_URL:-sqlite:$tmp/bench.db}
BIN=${BIN:-./target/release/bizkit-mirror}; [ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
BIND=127.0.0.1:$PORT RUST_LOG=warn "$BIN" serve --demo >"$tmp/out" 2>"$tmp/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
key=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
rss() { awk "/$1/ {print \$2}" "/proc/$pid/status"; }

# window LABEL START: items START..START+EVERY through the HTTP import, with LAST_NAME; prints
# the rate.
window() {
  local start end
  start=$(date +%s.%N)
  # The generator pipes straight into curl: the body is never on disk or in memory whole.
  python3 bench/gen_contacts.py "$EVERY" --start "$2" --pad "$PAD" --last-name "$LAST_NAME" |
    curl -fsS -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/x-ndjson' \
      -H 'Transfer-Encoding: chunked' --data-binary @- -o "$tmp/result.json" \
      "http://127.0.0.1:$PORT/api/v1/customer/import"
  end=$(date +%s.%N)
  python3 - "$1" "$2" "$tmp/result.json" "$start" "$end" <<'PY'
import json, sys
label, first, result, start, end = sys.argv[1:]
s = json.load(open(result))["summary"]
secs = float(end) - float(start)
print(f"{label:<24} items {int(first):>9} +{s['items']:<8} {s['created']:>8} created  {s['failed']} failed  "
      f"{secs:7.1f} s  {s['items'] / secs:8.0f} contacts/s")
PY
}

# http LABEL: the generated contacts through the HTTP import, EVERY items a call.
http() {
  local t0 t1 first
  t0=$(date +%s.%N)
  for ((first = 0; first < COUNT; first += EVERY)); do window "$1" "$first"; done
  t1=$(date +%s.%N)
  awk -v l="$1" -v s="$t0" -v e="$t1" -v n="$COUNT" \
    'END {printf "%-24s all %9d items  %7.1f s  %8.0f contacts/s\n", l, n, e - s, n / (e - s)}' /dev/null
  rate=$(awk -v s="$t0" -v e="$t1" -v n="$COUNT" 'END {printf "%.0f", n / (e - s)}' /dev/null)
  echo "server peak memory (VmHWM): $(rss VmHWM) kB"
}

echo "backend: ${DATABASE_URL%%:*}   contacts: $COUNT"
echo "server memory before: $(rss VmRSS) kB"
LAST_NAME=Surname http "HTTP import (new)"
new_rate=$rate
# The same contacts with another last name: every item is an update.
LAST_NAME=Renamed http "HTTP import (updates)"
# That list again: every item is found and changes nothing.
LAST_NAME=Renamed http "HTTP import (unchanged)"

# On PostgreSQL, in the same run, the database alone writing the rows of as many new
# contacts in batches of 500 (bench/pgbench/import_rows.sql): the ceiling an import's rate
# is a share of.
if [[ $DATABASE_URL == postgres* ]] && command -v pgbench >/dev/null; then
  space=$(demo_space "$DATABASE_URL")
  group=$(psql "$DATABASE_URL" -qAt -c "select id from customer_groups where space_id = $space and slug = 'import-test'")
  tps=$(pgbench -n -M prepared -c1 -t $(((COUNT + 499) / 500)) -D space="$space" -D group="$group" -D batch=500 \
    -D base=3000000000000000 -D ctr=0 -f bench/pgbench/import_rows.sql "$DATABASE_URL" 2>&1 |
    awk '/^tps = / {print $3}')
  awk -v t="${tps:-0}" -v r="$new_rate" 'END {printf "database alone, same rows:      %8.0f contacts/s   HTTP import (new) ÷ that %.2f\n", t * 500, (t > 0 ? r / (t * 500) : 0)}' /dev/null
fi

[ -z "${SKIP_CLI:-}" ] || exit 0
# The command line, from stdin, into the sandbox space so it creates rather than updates.
start=$(date +%s.%N)
python3 bench/gen_contacts.py "$COUNT" --pad "$PAD" |
  "$BIN" import --sandbox - 2>"$tmp/cli.err" >"$tmp/cli.out" || { cat "$tmp/cli.err"; exit 1; }
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$COUNT" \
  'END {printf "CLI import (new):        all %9d items  %7.1f s  %8.0f contacts/s\n", n, e - s, n / (e - s)}' /dev/null
tail -n 1 "$tmp/cli.out"
