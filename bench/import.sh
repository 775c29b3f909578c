#!/usr/bin/env bash
# Bulk import throughput and memory, over loopback, on a release build.
#   bench/import.sh                          # SQLite (temporary file), 100,000 contacts
#   DATABASE_URL=postgres://… bench/import.sh
#   COUNT=170000 PAD=1000 bench/import.sh     # ~200 MB of NDJSON: memory must stay flat
# Streams generated NDJSON into POST /api/v1/customer/import, then the same file through
# `bizkit-mirror import`, and prints contacts/s and the server's peak memory (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
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
# report LABEL: the summary of $tmp/result.json and the rate between $start and $end.
report() {
  python3 - "$1" "$tmp/result.json" "$start" "$end" <<'PY'
import json, sys
label, path, start, end = sys.argv[1:]
s = json.load(open(path))["summary"]
secs = float(end) - float(start)
print(f"{label:<24} {s['items']:>9} items  {s['created']:>9} created  {s['failed']} failed  "
      f"{secs:6.1f} s  {s['items'] / secs:8.0f} contacts/s")
PY
}

echo "backend: ${DATABASE_URL%%:*}   contacts: $COUNT"
echo "server memory before: $(rss VmRSS) kB"
# The generator pipes straight into curl: the body is never on disk or in memory whole.
start=$(date +%s.%N)
python3 bench/gen_contacts.py "$COUNT" --pad "$PAD" |
  curl -fsS -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/x-ndjson' \
    -H 'Transfer-Encoding: chunked' --data-binary @- -o "$tmp/result.json" \
    -w '' "http://127.0.0.1:$PORT/api/v1/customer/import"
end=$(date +%s.%N)
report "HTTP import (new)"
echo "server peak memory (VmHWM): $(rss VmHWM) kB   response: $(du -h "$tmp/result.json" | cut -f1)"

# The same contacts again: every item is an update now.
python3 bench/gen_contacts.py "$COUNT" --pad "$PAD" > "$tmp/contacts.ndjson"
echo "input file: $(du -h "$tmp/contacts.ndjson" | cut -f1)"
start=$(date +%s.%N)
curl -fsS -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/x-ndjson' \
  --data-binary @"$tmp/contacts.ndjson" -o "$tmp/result.json" "http://127.0.0.1:$PORT/api/v1/customer/import"
end=$(date +%s.%N)
report "HTTP import (existing)"
echo "server peak memory (VmHWM): $(rss VmHWM) kB"

# The command line, into the sandbox space so it creates rather than updates.
start=$(date +%s.%N)
"$BIN" import --sandbox "$tmp/contacts.ndjson" 2>"$tmp/cli.err" >"$tmp/cli.out" || { cat "$tmp/cli.err"; exit 1; }
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$COUNT" 'END {printf "CLI import (new):       %9d items  %6.1f s  %8.0f contacts/s\n", n, e - s, n / (e - s)}' /dev/null
tail -n 1 "$tmp/cli.out"
