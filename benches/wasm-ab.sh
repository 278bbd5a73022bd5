#!/usr/bin/env bash
# Two corral-server builds side by side on the WAGI hello, beside bare hyper:
# `wrk -t2 -c16` on loopback, alternating bare / A / B each round, each as a ratio
# to the bare run of its round (BENCHMARKS.md, "keep_resident, measured").
#
#   benches/wasm-ab.sh A_BIN B_BIN BARE_BIN [ROUNDS] [SECONDS]
#
# BARE_BIN is `cargo build --release -p corral-server --example bare_hello`.
# FIXTURE=path.wasm serves another app instead (for example the hello component,
# sandbox-core/tests/fixtures/components/hello.wasm).
set -euo pipefail
base=${1:?A_BIN} new=${2:?B_BIN} bare=${3:?BARE_BIN} rounds=${4:-3} secs=${5:-8}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
# `start` runs in $(...): its pids go to files, where the trap finds them.
trap 'kill $(cat $tmp/*.pid 2>/dev/null) 2>/dev/null; rm -rf $tmp' EXIT
cp benches/bench-tier.toml $tmp/c.toml
start() { local n=$1; shift; "$@" > $tmp/$n.out 2>$tmp/$n.err & echo $! > $tmp/$n.pid;
  for _ in $(seq 100); do a=$(grep -o 'listening on http://[0-9.:]*' $tmp/$n.out | head -1 | cut -d/ -f3 || true); [ -n "$a" ] && { echo $a; return; }; sleep 0.1; done; exit 1; }
B=$(start bare $bare 127.0.0.1:0)
for v in base new; do
  bin=${!v}
  a=$(start $v $bin --config $tmp/c.toml --data-dir $tmp/$v --listen 127.0.0.1:0 serve)
  t=$(grep -o 'corral_[0-9a-f]*' $tmp/$v.out)
  curl -sf -X PUT --data-binary @${FIXTURE:-bindings/python/tests/fixtures/hello.wasm} -H 'content-type: application/wasm' -H "authorization: Bearer $t" http://$a/api/apps/h >/dev/null
  curl -sf http://$a/apps/h/ >/dev/null
  eval "A_$v=$a"
done
rps() { wrk -t2 -c16 -d${secs}s "$1" | awk '/Requests\/sec/ {print $2}'; }
for r in $(seq $rounds); do
  b=$(rps http://$B/); x=$(rps http://$A_base/apps/h/); y=$(rps http://$A_new/apps/h/)
  echo "round $r: bare $b  base $x ($(python3 -c "print(round($x/$b,3))")x)  new $y ($(python3 -c "print(round($y/$b,3))")x)"
done
