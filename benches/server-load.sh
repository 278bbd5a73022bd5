#!/usr/bin/env bash
# Server load figures for BENCHMARKS.md: requests/s and p50/p99 latency under
# `wrk` on loopback for
#   1. a bare hyper hello-world server (servers/platform/examples/bare_hello.rs),
#   2. corral-server serving a warm JavaScript hello tenant (the demo app),
#   3. corral-server serving a warm WebAssembly hello tenant (WAGI),
#   4. Cloudflare's workerd (npm package `workerd`, installed by this script into
#      ${XDG_CACHE_HOME:-~/.cache}/corral-bench) serving the same JS module,
#   5. the bare server again (brackets the run: the machine is shared and noisy),
# all release builds, same wrk settings, one after another in the same run.
# The figures that matter are corral / bare and corral JS / workerd.
#
#   benches/server-load.sh [seconds per run, default 10] [connections, default 16]
#
# Needs wrk (installed from Debian with apt-get when missing and we may) and npm.
# Loopback only; bounded in time.
# SKIP_WORKERD=1 leaves workerd out. PROFILE=1 profiles corral-server with perf
# during its runs and prints how many samples have a SQLite frame. RUNS=N runs the
# whole sequence N times over the same servers and prints the median of each ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-16}
if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq wrk >/dev/null 2>&1; }; } ||
    { echo "server-load: wrk not found and apt-get could not install it" >&2; exit 1; }
fi
workerd=""
if [ -z "${SKIP_WORKERD:-}" ]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/corral-bench
  mkdir -p "$cache"
  [ -x "$cache/node_modules/.bin/workerd" ] ||
    npm install --prefix "$cache" --no-audit --no-fund --silent workerd >&2
  workerd=$(readlink -f "$cache/node_modules/@cloudflare/workerd-linux-64/bin/workerd")
  [ -x "$workerd" ] || { echo "server-load: no workerd binary under $cache" >&2; exit 1; }
fi

cargo build --release -q -p corral-server --bin corral-server --example bare_hello
target=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$tmp"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A tier with no rate limit and no monthly quota, so every request is served.
cp benches/bench-tier.toml "$tmp/corral.toml"

# Starts "$@" with stdout to $2.out and waits for its "listening on http://ADDR" line.
start() {
  local name=$1; shift
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  # Called in $(...): the pid goes to a file, where cleanup finds it.
  echo $! > "$tmp/$name.pid"
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
# The JS module both Corral and workerd serve.
cat > "$tmp/hello.js" <<'JS'
export default { fetch() { return new Response("Hello, world!\n") } }
JS
curl -sf -X PUT --data-binary @"$tmp/hello.js" \
  -H 'content-type: application/javascript' -H "authorization: Bearer $token" \
  "http://$corral/api/apps/hello-js" > /dev/null
if [ -n "$workerd" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$tmp/workerd.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:$port", http = (), service = "main") ],
);
const hello :Workerd.Worker = (
  modules = [ (name = "hello.js", esModule = embed "hello.js") ],
  compatibilityDate = "2024-09-23",
);
CAPNP
  "$workerd" serve "$tmp/workerd.capnp" > "$tmp/workerd.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" > /dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/" > /dev/null || { echo "server-load: workerd did not start" >&2; cat "$tmp/workerd.out" >&2; exit 1; }
fi
for url in "http://$corral/apps/hello-js/" "http://$corral/apps/hello-wasm/"; do
  curl -sf "$url" > /dev/null   # warm: compiled and instantiated before measuring
done

# PROFILE=1: `perf record` samples corral-server during its two runs, and the
# share of samples in SQLite (any frame) is printed after each.
corral_pid=$(cat "$tmp/corral.pid")
profile() {
  local label=$1
  [ -n "${PROFILE:-}" ] && [[ $label == corral-* ]] && command -v perf >/dev/null || return 0
  perf record -q -F 999 -g -p "$corral_pid" -o "$tmp/perf.$label" -- sleep "$secs" 2>/dev/null &
  echo $! > "$tmp/perf.wait"
}
profile_report() {
  local label=$1 total sqlite
  [ -f "$tmp/perf.wait" ] || return 0
  wait "$(cat "$tmp/perf.wait")" 2>/dev/null || true
  rm -f "$tmp/perf.wait"
  # One line per sample (its stack folded): how many samples, how many touch SQLite.
  total=$(perf script -i "$tmp/perf.$label" -F ip 2>/dev/null | awk 'NF == 0 {n++} END {print n + 0}')
  sqlite=$(perf script -i "$tmp/perf.$label" -F ip,sym 2>/dev/null |
    awk 'NF == 0 { if (hit) n++; hit = 0; next } tolower($0) ~ /sqlite/ { hit = 1 } END {print n + 0}')
  echo "profile $label: $sqlite of $total samples (perf record -F 999 -g, whole process) have a SQLite frame" >&2
  cp "$tmp/perf.$label" "${PROFILE_DIR:-/tmp}/corral-$label.perf.data" 2>/dev/null || true
}

# run LABEL URL: one wrk run; prints a table row and checks every response was 2xx.
run() {
  local label=$1 url=$2 out
  profile "$label"
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$url")
  profile_report "$label"
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

runs=${RUNS:-1}
for r in $(seq "$runs"); do
  [ "$runs" -gt 1 ] && echo "## run $r of $runs"
  echo "wrk -t2 -c$conns -d${secs}s, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| server | requests/s | p50 | p99 |"
  echo "|---|---|---|---|"
  run bare-1 "http://$bare/"
  run corral-js "http://$corral/apps/hello-js/"
  run corral-wasm "http://$corral/apps/hello-wasm/"
  [ -n "$workerd" ] && run workerd "http://127.0.0.1:$port/"
  run bare-2 "http://$bare/"
  echo
  awk -v b1="$(cat "$tmp/rps.bare-1")" -v b2="$(cat "$tmp/rps.bare-2")" \
      -v js="$(cat "$tmp/rps.corral-js")" -v wasm="$(cat "$tmp/rps.corral-wasm")" \
      -v wd="$(cat "$tmp/rps.workerd" 2>/dev/null || echo 0)" -v out="$tmp/ratios" 'BEGIN {
    bare = (b1 + b2) / 2
    printf "requests/s ratio to bare hyper (mean of both bare runs, %.0f/s): JS %.3f, WebAssembly %.3f", bare, js / bare, wasm / bare
    if (wd > 0) printf ", workerd %.3f; Corral JS / workerd %.2f", wd / bare, js / wd
    printf "\n"
    printf "%.3f %.3f %.3f\n", js / bare, wasm / bare, (wd > 0 ? js / wd : 0) >> out
  }'
done
# RUNS=N: the whole sequence N times over the same servers, then the median of
# each ratio (the box is shared and noisy: one run can land on either side of a goal).
if [ "$runs" -gt 1 ]; then
  median() { cut -d' ' -f"$1" "$tmp/ratios" | sort -g | awk '{v[NR] = $1} END {
    printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  echo
  printf 'median of %d runs: JS / bare %s, WebAssembly / bare %s' "$runs" "$(median 1)" "$(median 2)"
  [ -n "$workerd" ] && printf ', Corral JS / workerd %s' "$(median 3)"
  printf '\n'
fi
