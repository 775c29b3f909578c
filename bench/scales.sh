#!/usr/bin/env bash
# Detail at two sizes of a space, in turns within one run: a store of SMALL customers and
# one of LARGE (bench/bench_data.py's customers, loaded straight into the database), each
# served by its own server, measured alternately for ROUNDS rounds so that the machine's
# drift falls on both alike. Prints each round and the ratio LARGE ÷ SMALL of the rates, and
# each server's peak memory. Loopback only, bounded in time.
#   bench/scales.sh
#   BACKENDS="sqlite postgres" SMALL=10000 LARGE=1000000 ROUNDS=3 DURATION=10s CONNECTIONS="16 64" bench/scales.sh
# Other knobs: BIN, SKIP_BUILD=1, THREADS (wrk, 2), WARMUP (3s), SESSIONS (10000), PORT
# (and PORT+1), PG_URL, PG_DB (bizkit_scales; _small and _large are dropped and recreated).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

BACKENDS=${BACKENDS:-sqlite postgres}
SMALL=${SMALL:-10000}
LARGE=${LARGE:-1000000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16 64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
SESSIONS=${SESSIONS:-10000}
PORT=${PORT:-18187}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
PG_DB=${PG_DB:-bizkit_scales}
BIN=${BIN:-./target/release/bizkit-mirror}
KEY=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE

need=(wrk curl python3)
[[ " $BACKENDS " == *" postgres "* ]] && need+=(psql)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
[ -x "$BIN" ] || { echo "no server binary at $BIN" >&2; exit 1; }

tmp=$(mktemp -d)
declare -A pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for size in small large; do
    psql "$PG_URL/postgres" -qAt -c "drop database if exists ${PG_DB}_$size with (force)" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# serve SIZE URL PORT: a server of its own for the store at URL.
serve() {
  RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 BIND=127.0.0.1:$3 RUST_LOG=warn \
    DATABASE_URL=$2 "$BIN" serve --demo >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pid=$!
  pids[$1]=$pid
  await_ready "http://127.0.0.1:$3" "$tmp/$1.err"
}

# wrk on detail (random loaded customers with their sessions) of the server at PORT; sets rps p99.
detail() {
  local out
  out=$(BENCH_MODE=detail BENCH_DATA=$tmp/data-$1 BENCH_KEY=$KEY \
    wrk -t"$THREADS" -c"$3" -d"$4" --timeout 10s --latency -s bench/compare.lua "http://127.0.0.1:$2" 2>&1) || true
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  rps=${rps:-0}
}

echo "bizkit-mirror scales: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $SMALL and $LARGE customers," \
  "detail, $ROUNDS rounds of $DURATION, load average $(cut -d' ' -f1-3 /proc/loadavg)"
summary=()
for backend in $BACKENDS; do
  declare -A url=() port=([small]=$PORT [large]=$((PORT + 1))) count=([small]=$SMALL [large]=$LARGE)
  for size in small large; do
    case $backend in
      sqlite) url[$size]=sqlite:$tmp/$size.db ;;
      postgres)
        PGOPTIONS="-c client_min_messages=warning" psql "$PG_URL/postgres" -qAt \
          -c "drop database if exists ${PG_DB}_$size with (force)" -c "create database ${PG_DB}_$size" >/dev/null
        url[$size]=$PG_URL/${PG_DB}_$size
        ;;
      *) echo "unknown backend $backend" >&2; exit 1 ;;
    esac
    serve "$size" "${url[$size]}" "${port[$size]}"
    t0=$SECONDS
    load_customers "${url[$size]}" "$(demo_space "${url[$size]}")" 1 "${count[$size]}" "$SESSIONS"
    python3 bench/bench_data.py samples "$tmp/data-$size" "${count[$size]}" "$SESSIONS"
    echo "== $backend: $size store, ${count[$size]} customers loaded in $((SECONDS - t0)) s"
  done
  for c in $CONNECTIONS; do
    declare -A all=([small]="" [large]="")
    for round in $(seq 1 "$ROUNDS"); do
      line="  c=$c round $round:"
      declare -A now=()
      for size in small large; do
        detail "$size" "${port[$size]}" "$c" "$WARMUP"
        detail "$size" "${port[$size]}" "$c" "$DURATION"
        all[$size]+="$rps "
        now[$size]=$rps
        line+="  $size $rps req/s (p99 $p99)"
      done
      echo "$line  large ÷ small $(awk -v s="${now[small]}" -v l="${now[large]}" 'BEGIN {printf "%.2f", (s > 0 ? l / s : 0)}')"
    done
    ratio=$(awk -v s="${all[small]}" -v l="${all[large]}" \
      'BEGIN {n = split(s, a, " "); split(l, b, " "); for (i = 1; i <= n; i++) {ts += a[i]; tl += b[i]} printf "%.2f", (ts > 0 ? tl / ts : 0)}')
    summary+=("$backend c=$c: small ${all[small]}/ large ${all[large]}req/s; large ÷ small over all rounds $ratio")
  done
  for size in small large; do
    hwm=$(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/${pids[$size]}/status")
    summary+=("$backend $size server peak memory (VmHWM): $hwm")
    kill -TERM "${pids[$size]}" 2>/dev/null || true
    wait "${pids[$size]}" 2>/dev/null || true
    unset "pids[$size]"
  done
  unset url port count
done
echo
printf '%s\n' "${summary[@]}"
