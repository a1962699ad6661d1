#!/usr/bin/env bash
# Where the server's time goes during one phase of `orgs-bench writes`: builds
# the server with frame pointers and line tables (its own target directory, so
# the release build stays as it is), starts it on a fresh SQLite file or, when
# a PostgreSQL URL is given, on a fresh database next to it, runs `orgs-bench
# writes`, and records the server with `perf record -g` while the phase named
# PHASE runs. Prints the benchmark's table, the share of samples of each thread
# of the server and its CPU time per call of the phase, the frames with the
# largest inclusive shares, and, for each frame named in FRAMES, its CPU time
# per call and what its samples were spent in one level down.
# Leaves perf.data and the stacks folded for a flame graph (one line a stack,
# root first, as `inferno-flamegraph` or `flamegraph.pl` read them) in OUT.
#
# Usage: bench/profile.sh [POSTGRES_URL]
# Settings (environment): PHASE ("CreateOrganization"; the text after
#   "measuring " in the benchmark's progress: CreateMembership, RecordActivity,
#   Health/Check), SECONDS_PER (8 s per measurement; perf records the phase
#   from its second second to two seconds before its end), CONCURRENCY (32),
#   FREQUENCY (999 samples a second), FRAMES (frames to break down, separated
#   by "|"; default: the SQLite writer task, or on PostgreSQL the
#   CreateOrganization handler, and the change of CreateOrganization), OUT (a new directory under /tmp), NO_BUILD=1 to use
#   ORGS_BIN as it is.
# Needs: cargo, perf (Debian's linux-perf), python3, psql for PostgreSQL.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile_target="${PROFILE_TARGET_DIR:-$repo_root/target/profile-fp}"
if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$repo_root" &&
    CARGO_TARGET_DIR="$profile_target" RUSTFLAGS="-C force-frame-pointers=yes" \
      CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --bins)
fi
orgs="${ORGS_BIN:-$profile_target/release/orgs}"
bench="${ORGS_BENCH_BIN:-$profile_target/release/orgs-bench}"
phase="${PHASE:-CreateOrganization}"
seconds="${SECONDS_PER:-8}"
concurrency="${CONCURRENCY:-32}"
frequency="${FREQUENCY:-999}"
out="${OUT:-$(mktemp -d /tmp/orgs-profile.XXXXXX)}"
mkdir -p "$out"
postgres_url="${1:-}"
if ((seconds < 4)); then
  echo "SECONDS_PER must be at least 4" >&2
  exit 2
fi

export ORGS_AUTH_HS256_SECRET="bench-secret-0123456789abcdef-0123456789"
export ORGS_RATE_LIMIT_READS_PER_SECOND=0 ORGS_RATE_LIMIT_WRITES_PER_SECOND=0
token="$("$orgs" token --sub bench --scope "billing:write billing:read orgs:admin")"
work="$(mktemp -d)"
# shellcheck source=bench/servers.sh
source "$repo_root/bench/servers.sh"

if [[ -n "$postgres_url" ]]; then
  fresh_database "$postgres_url" orgs_profile
  url="$database_url"
  frames="${FRAMES:-OrganizationService>::create_organization|Organizations::create_in}"
else
  url="sqlite://$work/profile.db?mode=rwc"
  frames="${FRAMES:-group_commit::spawn|Organizations::create_in}"
fi
start_server "$url" --database-max-connections "$concurrency"

"$bench" --addr "$addr" --token "$token" writes --seconds "$seconds" \
  --concurrency "$concurrency" --record-activity --raw inserts --database-url "$url" \
  --server-pid "$server" >"$out/bench.txt" 2>"$work/progress" &
load=$!
also_stop="$load"
until grep -q "^measuring $phase\$" "$work/progress"; do
  if ! kill -0 "$load" 2>/dev/null; then
    cat "$work/progress" >&2
    echo "the benchmark ended before the phase \"$phase\" began" >&2
    exit 1
  fi
  sleep 0.1
done
sleep 1
recorded=$((seconds - 3))
perf record -F "$frequency" -g -p "$server" -o "$out/perf.data" -- sleep "$recorded" \
  >/dev/null 2>"$work/perf.log" || {
  cat "$work/perf.log" >&2
  exit 1
}
wait "$load"
also_stop=""
cat "$out/bench.txt"
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$work/script.txt"
python3 "$repo_root/bench/profile_report.py" "$work/script.txt" "$out/stacks.folded" "$frames" \
  --bench-table "$out/bench.txt" --phase "$phase" --seconds "$recorded" --frequency "$frequency"
echo
echo "perf.data and stacks.folded (for a flame graph) are in $out"
