#!/usr/bin/env bash
# Compute shares of a JavaScript app, measured (issue 16): the same module
# deployed twice on one corral-server, once on a 1-share tier and once on a
# 4-share tier (the same memory per runtime), loaded with
# `wrk -t2 -c16` on loopback in alternating rounds; prints requests/s per
# round and the 4-share / 1-share ratio of the means.
#
#   benches/js-shares.sh [seconds per run, default 10] [rounds, default 3]
#
# Two modules:
#   cpu   - a handler that spins ~1 ms of JavaScript before answering, so the
#           app's runtimes, not the HTTP path, are what runs out: the figure
#           the shares are about;
#   hello - the JS hello of server-load.sh, where the HTTP path and the
#           request objects share the cores with the handler.
# The box has 2 cores (wrk takes some of them too): the ceiling is about 2x.
# Needs wrk (installed from Debian with apt-get when missing and we may).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
conns=16
if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq wrk >/dev/null 2>&1; }; } ||
    { echo "js-shares: wrk not found and apt-get could not install it" >&2; exit 1; }
fi

cargo build --release -q -p corral-server --bin corral-server
target=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp -d)
cleanup() {
  kill "$(cat "$tmp/corral.pid" 2>/dev/null)" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The bench tier twice, with 1 and with 4 compute shares; each runtime gets
# 256 MiB either way (the platform splits a tier's memory across its shares).
# A request waits up to 10 s for a share instead of 100 ms, so the 1-share
# app queues its 16 connections instead of refusing them.
{
  echo 'queue_wait = "10s"'
  cat benches/bench-tier.toml
  for n in 1 4; do
    sed -n '/^\[tiers.bench\]/,$p' benches/bench-tier.toml |
      sed -e "s/^\[tiers.bench\]/[tiers.share$n]/" \
        -e "s/^compute_shares = .*/compute_shares = $n/" \
        -e "s/^memory_bytes = .*/memory_bytes = $((n * 268435456))/"
  done
} > "$tmp/corral.toml"

"$target/corral-server" --config "$tmp/corral.toml" --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 serve > "$tmp/corral.out" 2> "$tmp/corral.err" &
echo $! > "$tmp/corral.pid"
addr=""
for _ in $(seq 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$tmp/corral.out" | head -1 | cut -d/ -f3 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "js-shares: corral-server did not start" >&2; cat "$tmp/corral.err" >&2; exit 1; }
token=$(grep -o 'corral_[0-9a-f]*' "$tmp/corral.out")

cat > "$tmp/cpu.js" <<'JS'
export default { fetch() {
  let h = 0;
  for (let i = 0; i < 60000; i++) h = (h * 31 + i) | 0;
  return new Response(h + "\n");
} }
JS
cat > "$tmp/hello.js" <<'JS'
export default { fetch() { return new Response("Hello, world!\n") } }
JS
for module in cpu hello; do
  for n in 1 4; do
    curl -sf -X PUT --data-binary @"$tmp/$module.js" \
      -H 'content-type: application/javascript' -H "authorization: Bearer $token" \
      "http://$addr/api/apps/$module-s$n?tier=share$n" > /dev/null
    curl -sf "http://$addr/apps/$module-s$n/" > /dev/null   # warm
  done
done

# run URL: one wrk run; prints its requests/s, fails on any non-2xx.
run() {
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" "$1")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "js-shares: errors from $1:" >&2; echo "$out" >&2; exit 1
  fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), wrk -t2 -c$conns -d${secs}s, $rounds rounds, load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo
echo "| module | round | 1 share req/s | 4 shares req/s | ratio |"
echo "|---|---|---|---|---|"
for module in cpu hello; do
  s1=0; s4=0
  for r in $(seq "$rounds"); do
    # Alternate which goes first, so drift in the machine's load falls on both.
    if [ $((r % 2)) = 1 ]; then
      a=$(run "http://$addr/apps/$module-s1/"); b=$(run "http://$addr/apps/$module-s4/")
    else
      b=$(run "http://$addr/apps/$module-s4/"); a=$(run "http://$addr/apps/$module-s1/")
    fi
    printf '| %s | %s | %s | %s | %s |\n' "$module" "$r" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')"
    s1=$(awk -v s="$s1" -v x="$a" 'BEGIN {print s + x}')
    s4=$(awk -v s="$s4" -v x="$b" 'BEGIN {print s + x}')
  done
  awk -v m="$module" -v a="$s1" -v b="$s4" -v r="$rounds" \
    'BEGIN {printf "| %s | mean | %.0f | %.0f | **%.2f** |\n", m, a / r, b / r, b / a}'
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
