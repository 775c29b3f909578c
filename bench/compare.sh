#!/usr/bin/env bash
# The hot paths of a release build on SQLite and PostgreSQL with 10,000 and then 1,000,000
# customers loaded straight into the database, and on PostgreSQL pgbench beside every line:
# a plain point select / insert, and the very statements the server sends. Ends with one
# markdown table for the README. Loopback only, bounded in time.
#   bench/compare.sh
#   DURATION=10s SCALES="10000 1000000" BACKENDS="sqlite postgres" CONNECTIONS="16 64" bench/compare.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432 KEEP=1 PRISM=1 bench/compare.sh
# Other knobs: BIN, SKIP_BUILD=1, THREADS (wrk, 2), WARMUP (3s), SESSIONS (10000), PORT,
# PG_DB (bizkit_bench, dropped and recreated). KEEP=1 keeps the database and the temporary
# directory. PRISM=1 (or the path of a prism binary) also measures Stoplight Prism's mock.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
SCALES=${SCALES:-10000 1000000}
BACKENDS=${BACKENDS-sqlite postgres}  # empty: none (PRISM alone)
CONNECTIONS=${CONNECTIONS:-16 64}
WARMUP=${WARMUP:-3s}
SESSIONS=${SESSIONS:-10000}
PORT=${PORT:-18183}
PRISM_PORT=${PRISM_PORT:-18184}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
PG_DB=${PG_DB:-bizkit_bench}
KEEP=${KEEP:-}
PRISM=${PRISM:-}
BIN=${BIN:-./target/release/bizkit-mirror}
KEY=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE
base="http://127.0.0.1:$PORT"

need=(wrk curl python3)
[[ " $BACKENDS " == *" postgres "* ]] && need+=(psql pgbench)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
[ -x "$BIN" ] || { echo "no server binary at $BIN" >&2; exit 1; }

# pgbench takes whole seconds where wrk takes 10s, 1m.
seconds() {
  case $1 in
    *ms) echo 1 ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *h) echo $((${1%h} * 3600)) ;;
    *) echo "$1" ;;
  esac
}
secs=$(seconds "$DURATION")
warm_secs=$(seconds "$WARMUP")

tmp=$(mktemp -d)
pid=""
prism_pid=""
pg_created=""
results=$tmp/results.tsv
: >"$results"
notes=()
memory=()
started=$SECONDS

cleanup() {
  stop_server
  if [ -n "$prism_pid" ]; then
    kill -TERM "$prism_pid" 2>/dev/null || true
    wait "$prism_pid" 2>/dev/null || true
  fi
  if [ -n "$pg_created" ] && [ -z "$KEEP" ]; then
    psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" >/dev/null 2>&1 || true
  fi
  if [ -n "$KEEP" ]; then
    echo "kept: $tmp${pg_created:+ and database $PG_DB}" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {
  RATE_LIMIT_PROD_PER_HOUR=4000000000 RATE_LIMIT_PROD_BURST=4000000000 BIND=127.0.0.1:$PORT RUST_LOG=warn \
    DATABASE_URL=$1 "$BIN" serve --demo >"$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  await_ready "$base"
}

# Runs CMD; how long it took (seconds) goes to $took.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0 && a != "") printf "%.2f", a / b; else printf "-"}'; }

# A few sampled customers over HTTP: a loader that drifted from bench_data.py shows here.
check_samples() {
  local dir=$1 cu id email got
  for line in 1 "$(wc -l <"$dir/sessions.txt")"; do
    read -r cu id < <(sed -n "${line}p" "$dir/sessions.txt")
    got=$(curl -sS "$base/api/v1/customer/detail?apiKey=$KEY&identityId=$id&cuRefNo=$cu&customerRealIp=1.1.1.1")
    [[ $got == *'"loggedIn":true'* ]] || { echo "sample session $cu $id: $got" >&2; exit 1; }
  done
  read -r cu email <"$dir/customers.txt"
  got=$(curl -sS -X POST -H 'Content-Type: application/json' -d "{\"email\":\"$email\"}" \
    "$base/api/v1/customer/create?apiKey=$KEY")
  [[ $got == *"\"cuRefNo\":\"$cu\""* && $got == *'"newAccount":false'* ]] ||
    { echo "sample customer $cu $email: $got" >&2; exit 1; }
}

# wrk LABEL MODE CONNECTIONS [DURATION] [quiet]: sets rps p50 p99 bad; prints the line.
run_wrk() {
  local label=$1 mode=$2 c=$3 d=${4:-$DURATION} quiet=${5:-} out errors statuses
  out=$(BENCH_MODE=$mode BENCH_DATA=$data BENCH_KEY=$KEY \
    wrk -t"$THREADS" -c"$c" -d"$d" --timeout 10s --latency -s bench/compare.lua "$target" 2>&1) || true
  [ -n "$quiet" ] && return 0
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '/^ +50%/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  bad=${bad:-0}
  errors=$(awk '/Socket errors/ {gsub(",", ""); e = $4 + $6 + $8 + $10; if (e) print e}' <<<"$out")
  statuses=$(awk '/^statuses / {sub("^statuses ", ""); print}' <<<"$out")
  if [ -z "$rps" ]; then
    echo "wrk failed: $out" >&2
    rps=0
  fi
  printf '  %-24s c=%-3s %10s req/s   p50 %8s   p99 %8s   non-2xx %s%s%s\n' "$label" "$c" "$rps" "$p50" "$p99" \
    "$bad" "${statuses:+ ($statuses)}" "${errors:+   socket errors $errors}"
  if [ "$bad" != 0 ] || [ -n "$errors" ]; then
    notes+=("$backend $label n=$n c=$c: non-2xx $bad${statuses:+ ($statuses)}${errors:+, socket errors $errors}")
  fi
}

pgb_run=0
# pgbench LABEL SCRIPT CONNECTIONS [SECONDS] [quiet]: sets tps; prints the line with p50/p99.
run_pgbench() {
  local label=$1 script=$2 c=$3 d=${4:-$secs} quiet=${5:-} out failed lat file
  file=bench/pgbench/$script.sql
  [ -f "$file" ] || file=$tmp/$script.sql
  pgb_run=$((pgb_run + 1))
  rm -f "$tmp"/pgblog*
  # base: the first cuRefNo of this run's new customers, apart from every other run's.
  out=$(pgbench -M prepared -n -j2 -c"$c" -T"$d" -l --log-prefix="$tmp/pgblog" \
    -D space="$space" -D n="$n" -D s="$sample" -D now="$(date -u '+%Y-%m-%d %H:%M:%S.%6N+00')" \
    -D base=$((2000000000000000 + pgb_run * 10000000000)) -D ctr=0 -D rules=1 -D f=false -D meta='{}' \
    -D ip=1.1.1.1 -f "$file" "$PG_URL/$PG_DB" 2>&1) || true
  [ -n "$quiet" ] && return 0
  tps=$(awk '/^tps = / {print $3; exit}' <<<"$out")
  failed=$(awk '/number of failed transactions/ {print $5}' <<<"$out")
  if [ -z "$tps" ] || grep -q 'aborted' <<<"$out"; then
    echo "pgbench $script failed:" >&2
    grep -i 'error\|abort' <<<"$out" | head -5 >&2
    notes+=("$backend pgbench $label n=$n c=$c: aborted")
    tps=${tps:-0}
  fi
  # Per-transaction latencies (µs, third field) from pgbench's log.
  lat=$({ cat "$tmp"/pgblog* 2>/dev/null || true; } | awk '{print $3}' | sort -n |
    awk '{v[NR] = $1} END {if (NR) printf "%.2fms %.2fms", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000}')
  printf '  %-24s c=%-3s %10.2f tps     p50 %8s   p99 %8s   failed %s\n' "pgbench $label" "$c" "$tps" \
    "${lat%% *}" "${lat##* }" "${failed:-0}"
}

# record WORK CONNECTIONS [PLAIN_TPS OWN_TPS]: one row of the final table.
record() {
  local plain=- own=- r1=- r2=-
  if [ $# -gt 2 ]; then
    plain=$(printf '%.0f' "$3") own=$(printf '%.0f' "$4") r1=$(ratio "$rps" "$3") r2=$(ratio "$rps" "$4")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$1" "$n" "$2" "$rps" "$p50" "$p99" "$bad" \
    "$plain" "$r1" "$own" "$r2" >>"$results"
}

# The customers that create-new runs add are removed again, so that every line runs on the
# customers loaded: a run of thousands of creates a second would otherwise grow the 10,000
# several times over before the lines after it.
mark() { last_id=$(sql "select max(id) from customers"); }
forget_new() {
  local delete="delete from customers where space_id = $space and id > $last_id"
  case $backend in
    sqlite) sql "$delete" >/dev/null ;;
    postgres)
      # Without foreign-key checks (superuser only): each would scan the tables that refer to
      # customers. The vacuum keeps the dead rows out of the lines that follow.
      psql "$PG_URL/$PG_DB" -qAt -v ON_ERROR_STOP=1 \
        -c "begin; set local session_replication_role = replica; $delete; commit;" \
        -c "vacuum analyze customers" >/dev/null 2>&1 ||
        notes+=("postgres n=$n c=$c: the created customers were left in place (not a superuser?)")
      ;;
  esac
}

# beside WORK SCRIPT C PLAIN OWN [EXTRA]: runs wrk on SCRIPT, then on PostgreSQL pgbench on
# the PLAIN reference and on the server's OWN statement (and on EXTRA, printed only), and
# records the row with both ratios.
beside() {
  local work=$1 script=$2 c=$3 plain=$4 own=$5 extra=${6:-} point mine
  run_wrk "$work" "$script" "$c"
  if [ "$backend" != postgres ]; then
    record "$work" "$c"
    return
  fi
  local r_rps=$rps r_p50=$p50 r_p99=$p99 r_bad=$bad
  run_pgbench "$plain" "$plain" "$c"; point=$tps
  run_pgbench "$own" "$own" "$c"; mine=$tps
  if [ -n "$extra" ]; then
    run_pgbench "$extra" "$extra" "$c"
    printf '  %-24s c=%-3s %s ÷ %s %s\n' "ratio" "$c" "$work" "$extra" "$(ratio "$r_rps" "$tps")"
  fi
  rps=$r_rps p50=$r_p50 p99=$r_p99 bad=$r_bad
  printf '  %-24s c=%-3s %s ÷ %s %s   %s ÷ %s %s\n' "ratio" "$c" "$work" "$plain" "$(ratio "$rps" "$point")" \
    "$work" "$own" "$(ratio "$rps" "$mine")"
  record "$work" "$c" "$point" "$mine"
}

# The detail statement followed by what sqlx sends on a connection's way back to the pool.
{ cat bench/pgbench/detail.sql; echo '/* SQLx ping */;'; } >"$tmp/detail_released.sql"

measure() {
  local c=$1
  # detail_released: the detail statement and the round trip sqlx's pool makes when a
  # connection goes back to it, so the server's share of the gap shows apart from sqlx's.
  beside detail detail "$c" point_select detail detail_released
  run_wrk "account-info" account "$c"
  record account-info "$c"
  mark
  beside "create (new)" create_new "$c" insert_customer create
  forget_new
  run_wrk "create (existing)" create_existing "$c"
  record "create (existing)" "$c"
  run_wrk "match" match "$c"
  record match "$c"
  run_wrk "list" list "$c"
  record list "$c"
  run_wrk "search (q)" search "$c"
  record "search (q)" "$c"
  run_wrk "search (group, premium)" search_group "$c"
  record "search (group, premium)" "$c"
}

load() { load_customers "$store" "$space" "$1" "$2" "$SESSIONS"; }

sql() { store_sql "$store" "$1"; }

# Other work on the machine skews every number: its load average is printed at both ends.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bizkit-mirror compare: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, duration $DURATION, wrk $THREADS threads, load average $load_start"
for backend in $BACKENDS; do
  case $backend in
    sqlite)
      store=sqlite:$tmp/bench.db
      start_server "$store"
      ;;
    postgres)
      PGOPTIONS="-c client_min_messages=warning" psql "$PG_URL/postgres" -qAt -c "drop database if exists $PG_DB with (force)" \
        -c "create database $PG_DB" >/dev/null
      pg_created=1
      store=$PG_URL/$PG_DB
      start_server "$store"
      ;;
    *) echo "unknown backend $backend" >&2; exit 1 ;;
  esac
  target=$base
  space=$(demo_space "$store")
  echo
  echo "== $backend (demo live space $space)"
  loaded=0
  for n in $SCALES; do
    [ "$n" -gt "$loaded" ] || { echo "SCALES must grow: $n after $loaded" >&2; exit 1; }
    timed load $((loaded + 1)) "$n"
    total=$(sql "select count(*) from customers where space_id = $space")
    echo "-- $n customers: loaded $((n - loaded)) in $took s (with ANALYZE), $total in the space"
    notes+=("$backend load to $n: $took s")
    loaded=$n
    sample=$((SESSIONS < n ? SESSIONS : n))
    data=$tmp/data-$n
    python3 bench/bench_data.py samples "$data" "$n" "$SESSIONS"
    check_samples "$data"
    for mode in detail account create_existing list; do run_wrk warmup "$mode" 16 "$WARMUP" quiet; done
    if [ "$backend" = postgres ]; then
      run_pgbench warmup point_select 16 "$warm_secs" quiet
      run_pgbench warmup detail 16 "$warm_secs" quiet
    fi
    for c in $CONNECTIONS; do measure "$c"; done
  done
  hwm=$(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")
  echo "-- server peak memory (VmHWM): $hwm"
  memory+=("$backend server $hwm")
  # Beyond the two warnings every demo start gives (CORS, DEMO MODE).
  sed 's/\x1b\[[0-9;]*m//g' "$tmp/server.err" | grep -v 'CORS: any origin\|DEMO MODE' >"$tmp/server.warn" || true
  if [ -s "$tmp/server.warn" ]; then
    warns=$(grep -c WARN "$tmp/server.warn" || true)
    errs=$(grep -c ERROR "$tmp/server.warn" || true)
    slow=$(grep -c 'slow statement' "$tmp/server.warn" || true)
    echo "-- server log: $warns warnings ($slow slow statements), $errs errors; the last:"
    tail -n 3 "$tmp/server.warn" | cut -c 1-240 | sed 's/^/   /'
    notes+=("$backend server log: $warns warnings ($slow slow statements), $errs errors")
  fi
  stop_server
done

if [ -n "$PRISM" ]; then
  prism_bin=$PRISM
  if [ "$PRISM" = 1 ]; then
    if command -v prism >/dev/null; then
      prism_bin=prism
    else
      npm install --prefix "$tmp/prism" --no-audit --no-fund --loglevel=error @stoplight/prism-cli >/dev/null
      prism_bin=$tmp/prism/node_modules/.bin/prism
    fi
  fi
  backend=prism n=- data=$tmp/data-prism target=http://127.0.0.1:$PRISM_PORT
  python3 bench/bench_data.py samples "$data" 10000 "$SESSIONS"
  "$prism_bin" mock -h 127.0.0.1 -p "$PRISM_PORT" openapi.yaml >"$tmp/prism.log" 2>&1 &
  prism_pid=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$target/ping/v1?apiKey=$KEY" && break
    sleep 0.2
  done
  echo
  echo "== Stoplight Prism mock ($("$prism_bin" --version 2>/dev/null || echo '?'))"
  run_wrk warmup detail 16 "$WARMUP" quiet
  run_wrk "detail" detail 16
  record detail 16
  # Prism may run as a tree of node processes: the sum of their peak RSS.
  rss=$(for p in $prism_pid $(pgrep -P "$prism_pid" || true); do awk '/VmHWM/ {print $2}' "/proc/$p/status"; done |
    awk '{s += $1} END {printf "%.1f MiB", s / 1024}' || true)
  echo "-- Prism peak memory (VmHWM): $rss"
  memory+=("Prism $rss")
fi

elapsed=$((SECONDS - started))
echo
echo "## Results"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo));" \
  "wrk $THREADS threads, pgbench -M prepared -j2, $DURATION per line; whole run $((elapsed / 60)) min $((elapsed % 60)) s;" \
  "load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
echo "| backend | work | customers | conns | server req/s | p50 | p99 | non-2xx | pgbench plain (tps) | server ÷ plain | pgbench own statement (tps) | server ÷ own |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
awk -F'\t' '
  function grouped(v,   s) {
    if (v !~ /^[0-9]+$/) return v
    s = ""
    while (length(v) > 3) { s = "," substr(v, length(v) - 2) s; v = substr(v, 1, length(v) - 3) }
    return v s
  }
  {
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, grouped($3), $4,
      grouped(sprintf("%.0f", $5)), $6, $7, $8, grouped($9), $10, grouped($11), $12
  }' "$results"
echo
mem=$(printf '%s, ' "${memory[@]}")
echo "Peak memory (VmHWM): ${mem%, }."
echo "pgbench plain: a point select of one customer row by cuRefNo (detail) or the customer insert"
echo "alone (create); own statement: the server's detail / create statement (bench/pgbench/)."
if [ "${#notes[@]}" -gt 0 ]; then
  echo
  echo "Notes:"
  printf -- '- %s\n' "${notes[@]}"
fi
