#!/usr/bin/env bash
# Delivery latency of changes to many open WatchEvents streams under a
# CreateMembership load, next to the Health/Check round trip of the same run,
# and the server's memory with the streams open: builds release, starts a
# server on a fresh SQLite file and, when a PostgreSQL URL is given, on a
# fresh PostgreSQL database too, runs `orgs-bench watch-events` against each,
# and removes the servers, the file and the database again.
#
# Usage: bench/events.sh [POSTGRES_URL]
#   POSTGRES_URL names a database the script may connect to in order to create
#   (and at the end drop) a fresh one next to it, for example
#   postgres://postgres@127.0.0.1:5432/postgres
# Settings (environment): STREAMS (1000), RATE (20 CreateMembership/s),
#   SECONDS_PER (10 s of load), NO_BUILD=1 to use the binaries as they are,
#   ORGS_BIN and ORGS_BENCH_BIN to name them.
# Needs: cargo, python3 (free ports), psql for PostgreSQL.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$repo_root" && cargo build --release --bins)
fi
orgs="${ORGS_BIN:-$target_dir/release/orgs}"
bench="${ORGS_BENCH_BIN:-$target_dir/release/orgs-bench}"
streams="${STREAMS:-1000}"
rate="${RATE:-20}"
seconds="${SECONDS_PER:-10}"
postgres_url="${1:-}"

export ORGS_AUTH_HS256_SECRET="bench-secret-0123456789abcdef-0123456789"
# Every stream is opened by the bench principal: let it hold them all.
export ORGS_WATCHES_PER_PRINCIPAL=$((streams + 16))
token="$("$orgs" token --sub bench --scope "orgs:admin")"
work="$(mktemp -d)"
# shellcheck source=bench/servers.sh
source "$repo_root/bench/servers.sh"

run_bench() {
  local name="$1" url="$2"
  echo
  # Other work on the machine moves every number; say how busy it was.
  echo "=== $name === ($(uptime | sed 's/.*load average/load average/'))"
  start_server "$url"
  "$bench" --addr "$addr" --token "$token" watch-events --streams "$streams" \
    --rate "$rate" --seconds "$seconds" --server-pid "$server"
  stop_server
}

echo "orgs-bench watch-events: $streams streams, $rate writes/s for $seconds s, $(nproc) cores, $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo '?')"
run_bench "SQLite (WAL, synchronous=FULL)" "sqlite://$work/bench.db?mode=rwc"

if [[ -n "$postgres_url" ]]; then
  fresh_database "$postgres_url" orgs_bench
  run_bench "PostgreSQL" "$database_url"
fi
