# Servers and databases for the bench scripts, sourced by them (not run).
#
# Before sourcing, a script sets `orgs` (the server binary) and `work` (a
# directory of its own, removed at exit). It gets:
#   start_server URL [SERVE_OPTION...]  a server on URL, its log in
#                                       $work/server.log; sets $server, $port
#                                       and $addr (http://127.0.0.1:$port)
#   stop_server                         stops $replica (when set) and $server
#   fresh_database ADMIN_URL PREFIX     creates a database next to ADMIN_URL's,
#                                       dropped at exit; sets $database_url
#   free_port                           a free TCP port on 127.0.0.1
# and an exit trap that stops the servers (and whatever pids the script keeps
# in $also_stop), shows the end of the server log when the script failed,
# drops the database and removes $work.

server=""
replica=""
port=""
addr=""
also_stop=""
pg_admin_url=""
pg_database=""
database_url=""

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stop_server() {
  if [[ -n "$replica" ]]; then
    stop_pid "$replica"
    replica=""
  fi
  if [[ -n "$server" ]]; then
    stop_pid "$server"
    server=""
  fi
}

start_server() {
  local url="$1" metrics_port
  shift
  port="$(free_port)"
  metrics_port="$(free_port)"
  "$orgs" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
    --database-url "$url" "$@" >>"$work/server.log" 2>&1 &
  server=$!
  addr="http://127.0.0.1:$port"
  # The listener opens once migrations have run.
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$server" 2>/dev/null; then
      cat "$work/server.log" >&2
      echo "the server did not start" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "the server did not listen within 20 s" >&2
  exit 1
}

fresh_database() {
  pg_admin_url="$1"
  pg_database="$2_$(date +%s)_$$"
  psql "$pg_admin_url" -qc "CREATE DATABASE \"$pg_database\"" >/dev/null
  database_url="${pg_admin_url%/*}/$pg_database"
}

cleanup_servers() {
  local status=$?
  for pid in $also_stop; do
    stop_pid "$pid"
  done
  stop_server
  if [[ $status -ne 0 && -s "$work/server.log" ]]; then
    echo "--- the end of the server log ---" >&2
    tail -n 20 "$work/server.log" >&2
  fi
  if [[ -n "$pg_database" ]]; then
    psql "$pg_admin_url" -qc "DROP DATABASE IF EXISTS \"$pg_database\" WITH (FORCE)" >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup_servers EXIT
