#!/usr/bin/env bash
# Console latency under tenant load, for BENCHMARKS.md (issue 19): p50/p99 of
#   - a console page load (GET /console/, app.js, app.css, /console/session, a
#     new connection each, as a browser's first visit), and
#   - a console login (POST /console/login with the admin token),
# first on an idle node, then while `wrk` saturates every runtime slot with a
# CPU-bound tenant (a JS app spinning ~20 ms a request), in the same run.
# The tenant's own p99 under that load is printed beside them, to show the
# node was saturated.
#
#   benches/console-load.sh [seconds of load, default 20] [wrk connections, default 64]
#
# BIN=path uses that corral-server (default: a release build). Loopback only;
# bounded in time and count (300 samples of each).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
conns=${2:-64}
command -v wrk >/dev/null || { echo "console-load: needs wrk (apt-get install wrk)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p corral-server --bin corral-server
  BIN=${CARGO_TARGET_DIR:-target}/release/corral-server
fi
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

cp benches/bench-tier.toml "$tmp/corral.toml"
"$BIN" --config "$tmp/corral.toml" --data-dir "$tmp/data" --listen 127.0.0.1:0 serve > "$tmp/out" 2> "$tmp/err" &
pid=$!
for _ in $(seq 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$tmp/out" | head -1 | cut -d/ -f3 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "console-load: server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
token=$(grep -o 'corral_[0-9a-f]*' "$tmp/out" | head -1)
cat > "$tmp/spin.js" <<'JS'
export default { fetch() { const end = Date.now() + 20; let n = 0; while (Date.now() < end) n++; return new Response("spun " + n + "\n") } }
JS
curl -sf -X PUT --data-binary @"$tmp/spin.js" -H 'content-type: application/javascript' \
  -H "authorization: Bearer $token" "http://$addr/api/apps/spin" > /dev/null
curl -sf "http://$addr/apps/spin/" > /dev/null

measure() {
  python3 - "$addr" "$token" "$1" <<'PY'
import http.client, json, sys, time
addr, token, label = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
def req(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, r.getheader("set-cookie"), data
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000
logins, pages = [], []
body = json.dumps({"token": token})
for i in range(300):
    t = time.perf_counter()
    st, cookie, data = req("POST", "/console/login", body, {"content-type": "application/json"})
    logins.append(time.perf_counter() - t)
    assert st == 200, (st, data)
    sid = cookie.split(";")[0]
    t = time.perf_counter()
    for path in ("/console/", "/console/app.js", "/console/app.css", "/console/session"):
        st, _, _ = req("GET", path, headers={"cookie": sid})
        assert st == 200, (path, st)
    pages.append(time.perf_counter() - t)
    req("POST", "/console/logout", headers={"cookie": sid, "x-csrf-token": json.loads(data)["csrf"]})
    time.sleep(0.01)
print(f"{label}: page load p50 {pct(pages, .5):.1f} ms p99 {pct(pages, .99):.1f} ms; "
      f"login p50 {pct(logins, .5):.1f} ms p99 {pct(logins, .99):.1f} ms (300 each)")
PY
}

echo "console-load: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
measure idle
wrk -t2 -c"$conns" -d"${secs}s" --latency "http://$addr/apps/spin/" > "$tmp/wrk" &
wrk_pid=$!
sleep 2
slots=$(curl -sf -H "authorization: Bearer $token" "http://$addr/api/host" |
  python3 -c 'import json,sys; h=json.load(sys.stdin); print(str(h["runtime_slots_in_use"]) + "/" + str(h["runtime_slots"]))')
echo "console-load: runtime slots in use under load: $slots"
measure "under load"
wait "$wrk_pid"
echo "console-load: tenant under wrk -c$conns: $(grep -E 'Requests/sec' "$tmp/wrk" | tr -s ' '); p99 $(grep -E '^ +99%' "$tmp/wrk" | tr -s ' '); $(grep -E 'Non-2xx' "$tmp/wrk" || echo 'all 2xx')"
echo "console-load: load average after $(cut -d' ' -f1-3 /proc/loadavg)"
