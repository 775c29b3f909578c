#!/usr/bin/env bash
# Bulk import throughput and memory, over loopback, on a release build.
#   bench/import.sh                          # SQLite (temporary file), 100,000 contacts
#   createdb -h 127.0.0.1 -U postgres bench1 && DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench1 bench/import.sh
#   COUNT=1000000 DATABASE_URL=postgres://…/<fresh db> bench/import.sh   # growth from empty to a million
#   COUNT=170000 PAD=1000 bench/import.sh     # ~200 MB of NDJSON: memory must stay flat
#   EVERY=5000 SKIP_CLI=1 COUNT=20000 …       # finer windows; HTTP runs only
# Streams generated NDJSON into POST /api/v1/customer/import (new contacts, then the same
# contacts again: every item an update), then through `bizkit-mirror import` into the
# sandbox space (new again). Prints contacts/s for every EVERY items (100,000 by default),
# so a slowdown as the tables grow shows, and the server's peak memory (VmHWM).
#
# The response carries the results only once every item is written, so progress is taken
# from the input side: the generator stamps the time each EVERY items have been taken by
# the importer (the pipe, curl and the socket hold a roughly constant few thousand items).
set -euo pipefail
cd "$(dirname "$0")/.."
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

# report LABEL [SUMMARY_JSON]: the rate of each EVERY items from $tmp/stamps (the last
# window ends at $end, when every item was written), and the overall rate.
report() {
  python3 - "$1" "$tmp/stamps" "$end" "$COUNT" "${2:-}" <<'PY'
import json, sys
label, stamps, end, total, result = sys.argv[1:]
marks = [tuple(map(float, line.split())) for line in open(stamps) if line.strip()]
start = marks[0][1]
total = int(total)
extra = ""
if result:
    s = json.load(open(result))["summary"]
    total = s["items"]
    extra = f"  {s['created']} created  {s['failed']} failed"
if total > marks[-1][0]:
    marks.append((total, float(end)))
else:
    marks[-1] = (marks[-1][0], float(end))
secs = float(end) - start
print(f"{label:<24} {total:>9} items  {secs:7.1f} s  {total / secs:8.0f} contacts/s{extra}")
for (n0, t0), (n1, t1) in zip(marks, marks[1:]):
    print(f"    items {int(n0):>9} - {int(n1):<9} {t1 - t0:7.1f} s  {(n1 - n0) / (t1 - t0):8.0f} contacts/s")
PY
}

# http LABEL: the generated contacts through the HTTP import.
http() {
  : >"$tmp/stamps"
  # The generator pipes straight into curl: the body is never on disk or in memory whole.
  python3 bench/gen_contacts.py "$COUNT" --pad "$PAD" --stamp "$tmp/stamps" --every "$EVERY" |
    curl -fsS -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/x-ndjson' \
      -H 'Transfer-Encoding: chunked' --data-binary @- -o "$tmp/result.json" \
      "http://127.0.0.1:$PORT/api/v1/customer/import"
  end=$(date +%s.%N)
  report "$1" "$tmp/result.json"
  echo "server peak memory (VmHWM): $(rss VmHWM) kB   response: $(du -h "$tmp/result.json" | cut -f1)"
}

echo "backend: ${DATABASE_URL%%:*}   contacts: $COUNT"
echo "server memory before: $(rss VmRSS) kB"
http "HTTP import (new)"
# The same contacts again: every item is an update now.
http "HTTP import (existing)"

[ -z "${SKIP_CLI:-}" ] || exit 0
# The command line, from stdin, into the sandbox space so it creates rather than updates.
: >"$tmp/stamps"
python3 bench/gen_contacts.py "$COUNT" --pad "$PAD" --stamp "$tmp/stamps" --every "$EVERY" |
  "$BIN" import --sandbox - 2>"$tmp/cli.err" >"$tmp/cli.out" || { cat "$tmp/cli.err"; exit 1; }
end=$(date +%s.%N)
report "CLI import (new)"
tail -n 1 "$tmp/cli.out"
