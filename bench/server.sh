# Sourced by the bench scripts: the server they start in the background, its process id in
# $pid and its standard error in $tmp/server.err; and the stores they load, named by the
# server's DATABASE_URL (`sqlite:FILE` or a PostgreSQL URL).

# await_ready BASE [LOG]: returns once BASE/readyz answers; if the server ($pid) exits
# first, or does not answer within 30 s, prints what it logged (LOG, by default
# $tmp/server.err) and exits.
await_ready() {
  for _ in $(seq 1 300); do
    curl -fs "$1/readyz" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start:" >&2
  cat "${2:-$tmp/server.err}" >&2
  exit 1
}

stop_server() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}

# store_sql URL SQL: the first column of the first row SQL gives in the store at URL.
store_sql() {
  case $1 in
    sqlite:*)
      python3 -c 'import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
print((con.execute(sys.argv[2]).fetchone() or [""])[0])' "${1#sqlite:}" "$2"
      ;;
    *) psql "$1" -qAt -c "$2" ;;
  esac
}

# demo_space URL: the id of the demo organisation's live space in the store at URL.
demo_space() {
  store_sql "$1" "select s.id from spaces s join organisations o on o.id = s.organisation_id \
    where o.slug = 'demo' and s.mode = 'live'"
}

# load_customers URL SPACE LO HI SESSIONS: bench/bench_data.py's customers LO..HI, loaded
# straight into SPACE of the store at URL (bench/load_sqlite.sql, bench/load.sql).
load_customers() {
  case $1 in
    sqlite:*) python3 bench/bench_data.py sqlite "${1#sqlite:}" "$2" "$3" "$4" "$5" ;;
    *) psql "$1" -qAt -v space="$2" -v lo="$3" -v hi="$4" -v sessions="$5" -f bench/load.sql >/dev/null ;;
  esac
}
