#!/usr/bin/env bash
# Server load figures for BENCHMARKS.md: requests/s and p50/p99 latency under
# `wrk` on loopback for
#   1. a bare hyper hello-world server (servers/platform/examples/bare_hello.rs),
#   2. corral-server serving a warm JavaScript hello tenant (the demo app),
#   3. corral-server serving a warm WebAssembly hello tenant (WAGI),
#   4. the bare server again (brackets the run: the machine is shared and noisy),
# all release builds, same wrk settings, one after another in the same run.
# The figure that matters is corral / bare.
#
#   benches/server-load.sh [seconds per run, default 10] [connections, default 16]
#
# Needs wrk (Debian: apt-get install wrk). Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-16}
command -v wrk >/dev/null || { echo "server-load: wrk not found (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p corral-server --bin corral-server --example bare_hello
target=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# A tier with no rate limit and no monthly quota, so every request is served.
cat > "$tmp/corral.toml" <<'TOML'
default_tier = "bench"
[thresholds]          # deploy whatever the shared machine's disk looks like
disk = { fire = 1.0, rearm = 1.0 }
ram = { fire = 1.0, rearm = 1.0 }
[tiers.bench]
compute_shares = 64
memory_bytes = 1073741824
fuel_per_request = 100000000
wall_clock = "5s"
burst = 0
max_body_bytes = 1048576
max_bundle_bytes = 5242880
idle_timeout = "1h"
max_streams = 8
TOML

# Starts "$@" with stdout to $2.out and waits for its "listening on http://ADDR" line.
start() {
  local name=$1; shift
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$tmp/$name.out" | head -1 | cut -d/ -f3 || true)
    [ -n "$addr" ] && { echo "$addr"; return; }
    sleep 0.1
  done
  echo "server-load: $name did not start" >&2; cat "$tmp/$name.err" >&2; exit 1
}

bare=$(start bare "$target/examples/bare_hello" 127.0.0.1:0)
corral=$(start corral "$target/corral-server" --config "$tmp/corral.toml" --data-dir "$tmp/data" --listen 127.0.0.1:0 serve)
token=$(grep -o 'corral_[0-9a-f]*' "$tmp/corral.out")
curl -sf -X PUT --data-binary @bindings/python/tests/fixtures/hello.wasm \
  -H 'content-type: application/wasm' -H "authorization: Bearer $token" \
  "http://$corral/api/apps/hello-wasm" > /dev/null
for url in "http://$corral/apps/demo/" "http://$corral/apps/hello-wasm/"; do
  curl -sf "$url" > /dev/null   # warm: compiled and instantiated before measuring
done

# run LABEL URL: one wrk run; prints a table row and checks every response was 2xx.
run() {
  local label=$1 url=$2 out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$url")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "server-load: errors in $label:" >&2; echo "$out" >&2; exit 1
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  printf '| %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p99"
  echo "$rps" > "$tmp/rps.$label"
}

echo "wrk -t2 -c$conns -d${secs}s, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| server | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
run bare-1 "http://$bare/"
run corral-js "http://$corral/apps/demo/"
run corral-wasm "http://$corral/apps/hello-wasm/"
run bare-2 "http://$bare/"
echo
awk -v b1="$(cat "$tmp/rps.bare-1")" -v b2="$(cat "$tmp/rps.bare-2")" \
    -v js="$(cat "$tmp/rps.corral-js")" -v wasm="$(cat "$tmp/rps.corral-wasm")" 'BEGIN {
  bare = (b1 + b2) / 2
  printf "requests/s ratio to bare hyper (mean of both bare runs, %.0f/s): JS %.3f, WebAssembly %.3f\n", bare, js / bare, wasm / bare
}'
