# Sourced by the bench scripts: the server they start in the background, its process id in
# $pid and its standard error in $tmp/server.err.

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
