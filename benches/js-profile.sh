#!/usr/bin/env bash
# Where a warm JS hello request's time goes in corral-server: `perf record`
# samples the server over a bounded number of warm requests (sent one after
# another on one keep-alive connection, after the deploy and a warm-up), and
# the functions with the most samples, self and with their callees, are
# printed. (Not callgrind: under valgrind, wasmtime's pooling allocator
# cannot reserve its address space and corral-server does not start.)
#
#   benches/js-profile.sh [requests, default 20000]
#
# Needs perf. Loopback only. The perf data is left in
# ${PROFILE_DIR:-/tmp}/corral-js-hello.perf.data.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-20000}
command -v perf >/dev/null || { echo "js-profile: needs perf" >&2; exit 1; }
cargo build --release -q -p corral-server --bin corral-server
target=${CARGO_TARGET_DIR:-target}/release
out=${PROFILE_DIR:-/tmp}/corral-js-hello.perf.data
tmp=$(mktemp -d)
cleanup() {
  kill "$(cat "$tmp/corral.pid" 2>/dev/null)" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cp benches/bench-tier.toml "$tmp/corral.toml"
"$target/corral-server" --config "$tmp/corral.toml" --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 serve > "$tmp/corral.out" 2> "$tmp/corral.err" &
echo $! > "$tmp/corral.pid"
addr=""
for _ in $(seq 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$tmp/corral.out" | head -1 | cut -d/ -f3 || true)
  [ -n "$addr" ] && break
  sleep 0.2
done
[ -n "$addr" ] || { echo "js-profile: corral-server did not start" >&2; cat "$tmp/corral.err" >&2; exit 1; }
token=$(grep -o 'corral_[0-9a-f]*' "$tmp/corral.out")
cat > "$tmp/hello.js" <<'JS'
export default { fetch() { return new Response("Hello, world!\n") } }
JS
curl -sf -X PUT --data-binary @"$tmp/hello.js" \
  -H 'content-type: application/javascript' -H "authorization: Bearer $token" \
  "http://$addr/api/apps/hello-js" > /dev/null
# requests N: N sequential GETs on one keep-alive connection, each checked.
requests() {
  python3 - "$addr" "$1" <<'PY'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port), timeout=60)
for _ in range(int(sys.argv[2])):
    c.request("GET", "/apps/hello-js/")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, world!\n", r.status
PY
}
requests 20
pid=$(cat "$tmp/corral.pid")
perf record -q -F 999 -g -p "$pid" -o "$out" 2>/dev/null &
perf_pid=$!
sleep 1
start=$(date +%s.%N)
requests "$requests"
end=$(date +%s.%N)
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
awk -v n="$requests" -v a="$start" -v b="$end" \
  'BEGIN {printf "%d warm JS hello requests, one at a time: %.1f s, %.0f us each (client included)\n", n, b - a, (b - a) * 1e6 / n}'
echo
echo "== self (top 30, share of all samples of the server) =="
perf report -i "$out" --no-children -g none --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30 || true
echo
echo "== with callees (top 40) =="
perf report -i "$out" --children -g none --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+% +[0-9.]+%' | head -40 || true
