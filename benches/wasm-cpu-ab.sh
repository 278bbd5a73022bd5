#!/usr/bin/env bash
# Two corral-server builds on the WAGI hello, by the server's own CPU time per
# request: `wrk -t2 -c16` on loopback, alternating A / B each round; each run
# reads the server's utime+stime from /proc before and after and divides by
# the requests wrk counted. On a shared box this moves far less than
# requests/s (which also depends on how much of the CPU wrk and other work
# took), so it shows per-request savings of a few percent.
#
#   benches/wasm-cpu-ab.sh A_BIN B_BIN [ROUNDS] [SECONDS]
#
# FIXTURE=path.wasm serves another app; JS=1 serves the JS hello instead.
set -euo pipefail
a_bin=${1:?A_BIN} b_bin=${2:?B_BIN} rounds=${3:-4} secs=${4:-6}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill $(cat $tmp/*.pid 2>/dev/null) 2>/dev/null; rm -rf $tmp' EXIT
cp benches/bench-tier.toml $tmp/c.toml
if [ -n "${JS:-}" ]; then
  printf '%s\n' 'export default { fetch() { return new Response("Hello, world!\n") } }' > $tmp/app
  ctype=application/javascript
else
  cp "${FIXTURE:-bindings/python/tests/fixtures/hello.wasm}" $tmp/app
  ctype=application/wasm
fi
start() { local n=$1; shift; "$@" > $tmp/$n.out 2>$tmp/$n.err & echo $! > $tmp/$n.pid;
  for _ in $(seq 100); do a=$(grep -o 'listening on http://[0-9.:]*' $tmp/$n.out | head -1 | cut -d/ -f3 || true); [ -n "$a" ] && { echo $a; return; }; sleep 0.1; done; exit 1; }
for v in a b; do
  bin=$v\_bin; bin=${!bin}
  addr=$(start $v $bin --config $tmp/c.toml --data-dir $tmp/$v --listen 127.0.0.1:0 serve)
  t=$(grep -o 'corral_[0-9a-f]*' $tmp/$v.out)
  curl -sf -X PUT --data-binary @$tmp/app -H "content-type: $ctype" -H "authorization: Bearer $t" http://$addr/api/apps/h >/dev/null
  curl -sf http://$addr/apps/h/ >/dev/null
  eval "ADDR_$v=$addr"
done
hz=$(getconf CLK_TCK)
# Prints "requests/s cpu-µs-per-request" for server $1.
run() { local pid=$(cat $tmp/$1.pid) addr=ADDR_$1; addr=${!addr}
  local c0=$(awk '{print $14+$15}' /proc/$pid/stat)
  local out=$(wrk -t2 -c16 -d${secs}s http://$addr/apps/h/)
  local c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  local n=$(echo "$out" | awk '/requests in/ {print $1}') r=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  python3 -c "print(f'{$r:.0f}/s {($c1-$c0)/$hz*1e6/$n:.2f} us/req')"; }
for r in $(seq $rounds); do
  x=$(run a); y=$(run b)
  echo "round $r: A $x  B $y"
done
