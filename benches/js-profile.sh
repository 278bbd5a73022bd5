#!/usr/bin/env bash
# Where a warm JS hello request's time goes in corral-server: callgrind
# counts instructions over a bounded number of warm requests (collection is
# switched on only after the deploy and a warm-up), and the functions with
# the most inclusive and self instructions are printed.
#
#   benches/js-profile.sh [requests, default 300]
#
# Needs valgrind (callgrind_annotate, callgrind_control). Loopback only. The
# callgrind output is left in ${PROFILE_DIR:-/tmp}/corral-js-hello.callgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-300}
command -v valgrind >/dev/null || { echo "js-profile: needs valgrind" >&2; exit 1; }
cargo build --release -q -p corral-server --bin corral-server
target=${CARGO_TARGET_DIR:-target}/release
out=${PROFILE_DIR:-/tmp}/corral-js-hello.callgrind
tmp=$(mktemp -d)
cleanup() {
  kill "$(cat "$tmp/corral.pid" 2>/dev/null)" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cp benches/bench-tier.toml "$tmp/corral.toml"
valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out" \
  "$target/corral-server" --config "$tmp/corral.toml" --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 serve > "$tmp/corral.out" 2> "$tmp/corral.err" &
echo $! > "$tmp/corral.pid"
addr=""
for _ in $(seq 600); do
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
callgrind_control -i on "$(cat "$tmp/corral.pid")" > /dev/null
requests "$requests"
callgrind_control -i off "$(cat "$tmp/corral.pid")" > /dev/null
callgrind_control -d "$(cat "$tmp/corral.pid")" > /dev/null
kill "$(cat "$tmp/corral.pid")"; wait "$(cat "$tmp/corral.pid")" 2>/dev/null || true
dump=$(ls -t "$out"* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "$requests warm JS hello requests: $total instructions, $((total / requests)) per request ($dump)"
echo
echo "== inclusive (top 40) =="
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -40
echo
echo "== self (top 30) =="
callgrind_annotate "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -30
