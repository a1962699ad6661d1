#!/usr/bin/env bash
# Writes (and hot reads over a large data set) against Health/Check on the same
# server in the same run, with orgs-bench: builds release, starts a server on a
# fresh SQLite file and, when a PostgreSQL URL is given, on a fresh PostgreSQL
# database too, runs `orgs-bench writes` and `orgs-bench reads` (and, when
# asked, `orgs-bench memory`) against each (a new server process for each),
# prints their tables, and removes the servers, the file and the database
# again.
#
# Usage: bench/writes.sh [POSTGRES_URL]
#   POSTGRES_URL names a database the script may connect to in order to create
#   (and at the end drop) a fresh one next to it, for example
#   postgres://postgres@127.0.0.1:5432/postgres
# Settings (environment): CONCURRENCY (32 calls in flight; also the server's
#   and the raw baselines' pool size), SECONDS_PER (10 s per write
#   measurement), RAW (inserts,writes,statements), BENCHES ("writes reads"),
#   ORGANIZATIONS (100000 seeded for reads, before the reads' server starts,
#   so that it warms its cache from them), MEMBERS (5), ROUNDS (3),
#   READ_SECONDS (5), READ_CACHE_BYTES (268435456: ORGS_CACHE_MAX_BYTES of the
#   reads' server, enough for 100,000 × 5), REPLICAS (1; 2 runs the writes through two server
#   processes on the same database, calls split between them; each has a pool
#   of POOL connections), NO_BUILD=1 to use the binaries as they are, ORGS_BIN
#   and ORGS_BENCH_BIN to name them. BENCHES=memory measures the server's RSS
#   after BOGUS_CHECKS (1000000) CheckPermission calls for unknown organizations
#   and after reading MEMORY_ORGANIZATIONS (100000) organizations with
#   METADATA_BYTES (8192) of public metadata once each.
# Needs: cargo, python3 (free ports), psql for PostgreSQL.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$repo_root" && cargo build --release --bins)
fi
orgs="${ORGS_BIN:-$target_dir/release/orgs}"
bench="${ORGS_BENCH_BIN:-$target_dir/release/orgs-bench}"
concurrency="${CONCURRENCY:-32}"
pool="${POOL:-$concurrency}"
seconds="${SECONDS_PER:-10}"
raw="${RAW:-inserts,writes,statements}"
benches="${BENCHES:-writes reads}"
postgres_url="${1:-}"

export ORGS_AUTH_HS256_SECRET="bench-secret-0123456789abcdef-0123456789"
# The benchmark measures the server, not the per-principal rate limits.
export ORGS_RATE_LIMIT_READS_PER_SECOND=0 ORGS_RATE_LIMIT_WRITES_PER_SECOND=0
token="$("$orgs" token --sub bench --scope "billing:write billing:read orgs:admin")"
work="$(mktemp -d)"
# shellcheck source=bench/servers.sh
source "$repo_root/bench/servers.sh"

run_benches() {
  local name="$1" url="$2"
  echo
  # Other work on the machine moves every number; say how busy it was.
  echo "=== $name === ($(uptime | sed 's/.*load average/load average/'))"
  if [[ " $benches " == *" writes "* ]]; then
    local also=() pids=""
    if [[ "${REPLICAS:-1}" -ge 2 ]]; then
      # A second process on the same database: start it first and keep it
      # under $replica; start_server then sets $server and $addr anew.
      start_server "$url" --database-max-connections "$pool"
      replica="$server"
      also=(--also-addr "$addr")
      pids="$replica,"
    fi
    start_server "$url" --database-max-connections "$pool"
    "$bench" --addr "$addr" --token "$token" writes --seconds "$seconds" \
      --concurrency "$concurrency" --record-activity --database-url "$url" --raw "$raw" \
      --server-pid "$pids$server" "${also[@]}"
    stop_server
  fi
  if [[ " $benches " == *" reads "* ]]; then
    echo
    # Seeded first, so that the server finds the data set when it starts and
    # warms its cache from it, as a replica restarted on a database does.
    "$orgs" migrate --database-url "$url" >>"$work/server.log" 2>&1
    "$bench" --addr "http://127.0.0.1:1" --token "$token" seed \
      --organizations "${ORGANIZATIONS:-100000}" --members "${MEMBERS:-5}" \
      --database-url "$url" --ids-file "$work/seeded"
    local warmed_before
    warmed_before="$(grep -c 'access cache warmed' "$work/server.log" 2>/dev/null || true)"
    # The cache sized to hold the data set (100,000 × 5 take about 100 MiB
    # of its estimate); READ_CACHE_BYTES changes it.
    ORGS_CACHE_MAX_BYTES="${READ_CACHE_BYTES:-268435456}" \
      start_server "$url" --database-max-connections "$pool"
    local started=$SECONDS
    until [[ "$(grep -c 'access cache warmed' "$work/server.log" || true)" -gt "${warmed_before:-0}" ]]; do
      if ((SECONDS - started > 300)); then
        echo "the server did not warm its cache within 300 s" >&2
        exit 1
      fi
      sleep 0.5
    done
    grep 'access cache warmed' "$work/server.log" | tail -n 1
    "$bench" --addr "$addr" --token "$token" reads --ids-file "$work/seeded" \
      --rounds "${ROUNDS:-3}" --seconds "${READ_SECONDS:-5}" \
      --concurrency "$concurrency" --database-url "$url" --server-pid "$server"
    stop_server
  fi
  if [[ " $benches " == *" memory "* ]]; then
    echo
    start_server "$url" --database-max-connections "$pool"
    "$bench" --addr "$addr" --token "$token" memory --bogus-checks "${BOGUS_CHECKS:-1000000}" \
      --organizations "${MEMORY_ORGANIZATIONS:-100000}" --metadata-bytes "${METADATA_BYTES:-8192}" \
      --concurrency "$concurrency" --database-url "$url" --server-pid "$server"
    stop_server
  fi
}

echo "orgs-bench: $concurrency calls in flight, server pool $pool, $(nproc) cores, $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo '?')"
run_benches "SQLite (WAL, synchronous=FULL)" "sqlite://$work/bench.db?mode=rwc"

if [[ -n "$postgres_url" ]]; then
  fresh_database "$postgres_url" orgs_bench
  run_benches "PostgreSQL" "$database_url"
fi
