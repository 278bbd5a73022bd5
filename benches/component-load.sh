#!/usr/bin/env bash
# Corral vs `wasmtime serve` on the same wasi:http/proxy component (issue 17):
# the C hello fixture, `wrk` on loopback, one after the other in the same run,
# and a check that both answer the same body bytes.
#
#   benches/component-load.sh [SECONDS] [CONNECTIONS]
#
# Builds wasmtime-cli 48 from crates.io into $CARGO_TARGET_DIR/wasmtime-cli the
# first time (long on 2 cores: it is not part of CI), or takes it from
# $WASMTIME_CLI_ROOT (a `cargo install --root` holding bin/wasmtime), so it can
# be built beforehand in another target dir. Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-16}
command -v wrk >/dev/null || { echo "component-load: wrk not found (apt-get install wrk)" >&2; exit 1; }

component=sandbox-core/tests/fixtures/components/hello.wasm
tools=${WASMTIME_CLI_ROOT:-${CARGO_TARGET_DIR:-target}/wasmtime-cli}
if [ ! -x "$tools/bin/wasmtime" ]; then
  cargo install --locked --quiet wasmtime-cli --version '^48' --root "$tools"
fi
cargo build --release -q -p corral-server --bin corral-server
target=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

cp benches/bench-tier.toml "$tmp/corral.toml"

corral_out="$tmp/corral.out"
"$target/corral-server" --config "$tmp/corral.toml" --data-dir "$tmp/data" --listen 127.0.0.1:0 serve \
  > "$corral_out" 2> "$tmp/corral.err" &
pids+=($!)
for _ in $(seq 100); do
  corral=$(grep -o 'listening on http://[0-9.:]*' "$corral_out" | head -1 | cut -d/ -f3 || true)
  [ -n "$corral" ] && break
  sleep 0.1
done
token=$(grep -o 'corral_[0-9a-f]*' "$corral_out")
curl -sf -X PUT --data-binary @"$component" -H 'content-type: application/wasm' \
  -H "authorization: Bearer $token" "http://$corral/api/apps/hello-c" > /dev/null

# wasmtime serve: its defaults, plus stdio (the fixture logs to stderr).
port=$((20000 + RANDOM % 20000))
"$tools/bin/wasmtime" serve -S cli --addr "127.0.0.1:$port" "$component" \
  > "$tmp/wasmtime.out" 2> "$tmp/wasmtime.err" &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/" > /dev/null 2>&1 && break; sleep 0.1; done

a=$(curl -sf "http://$corral/apps/hello-c/" | sha256sum)
b=$(curl -sf "http://127.0.0.1:$port/" | sha256sum)
[ "$a" = "$b" ] || { echo "component-load: the two answer different bytes" >&2; exit 1; }
echo "same body from both: $a"

run() {
  local label=$1 url=$2 out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$url")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "component-load: errors in $label:" >&2; echo "$out" >&2; exit 1
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
run wasmtime-serve-1 "http://127.0.0.1:$port/"
run corral "http://$corral/apps/hello-c/"
run wasmtime-serve-2 "http://127.0.0.1:$port/"
echo
awk -v w1="$(cat "$tmp/rps.wasmtime-serve-1")" -v w2="$(cat "$tmp/rps.wasmtime-serve-2")" \
    -v c="$(cat "$tmp/rps.corral")" 'BEGIN {
  w = (w1 + w2) / 2
  printf "corral / wasmtime serve (mean of both runs, %.0f/s): %.3f (goal: >= 1.2)\n", w, c / w
}'
