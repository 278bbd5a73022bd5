#!/usr/bin/env bash
# Cold requests to a parked WebAssembly component over HTTP (issue 17): the C
# hello fixture on a release corral-server whose tier parks it after 1 s idle;
# each request comes 2.5 s after the last, so each is a cold start from the
# stored artifact (the app status printed at the end counts them), timed at the
# client with curl (new connection each time), then 20 warm requests the same
# way for comparison.
#
#   benches/component-cold.sh [REQUESTS]   (needs a release corral-server in
#   $CARGO_TARGET_DIR/release, e.g. from benches/component-load.sh, and curl)
set -euo pipefail
n=${1:-20}
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/corral-server
tmp=$(mktemp -d)
cat > "$tmp/corral.toml" <<'TOML'
default_tier = "bench"
[thresholds]
disk = { fire = 1.0, rearm = 1.0 }
ram = { fire = 1.0, rearm = 1.0 }
[tiers.bench]
compute_shares = 4
memory_bytes = 268435456
fuel_per_request = 100000000
wall_clock = "5s"
burst = 0
max_body_bytes = 1048576
max_bundle_bytes = 5242880
idle_timeout = "1s"
max_streams = 8
TOML
"$bin" --config "$tmp/corral.toml" --data-dir "$tmp/data" --listen 127.0.0.1:0 serve > "$tmp/out" 2> "$tmp/err" &
pid=$!
trap 'kill $pid; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do addr=$(grep -o 'listening on http://[0-9.:]*' "$tmp/out" | head -1 | cut -d/ -f3 || true); [ -n "$addr" ] && break; sleep 0.1; done
token=$(grep -o 'corral_[0-9a-f]*' "$tmp/out")
curl -sf -X PUT --data-binary @sandbox-core/tests/fixtures/components/hello.wasm -H 'content-type: application/wasm' \
  -H "authorization: Bearer $token" "http://$addr/api/apps/hello-c" > /dev/null
curl -sf "http://$addr/apps/hello-c/" > /dev/null
for i in $(seq "$n"); do
  sleep 2.5
  curl -s -o /dev/null -w '%{time_total}\n' "http://$addr/apps/hello-c/"
done > "$tmp/times"
curl -s -H "authorization: Bearer $token" "http://$addr/api/apps/hello-c/status"; echo
sort -n "$tmp/times" | awk '{a[NR]=$1} END {printf "cold requests: %d, p50 %.3f ms, min %.3f ms, max %.3f ms\n", NR, a[int((NR+1)/2)]*1000, a[1]*1000, a[NR]*1000}'
echo "warm, a new connection each, 20 requests:"
for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://$addr/apps/hello-c/"; done | sort -n | awk '{a[NR]=$1} END {printf "warm p50 %.3f ms\n", a[int((NR+1)/2)]*1000}'
