#!/usr/bin/env bash
# Two corral-server builds side by side on the warm JavaScript hello, beside
# workerd serving the same module: `wrk -t2 -c16` on loopback, alternating
# A / B / workerd each round; prints each run's requests/s and B/A, A/workerd
# and B/workerd per round.
#
#   benches/js-ab.sh A_BIN B_BIN [ROUNDS] [SECONDS]
#
# workerd is the npm package benches/server-load.sh installs into
# ${XDG_CACHE_HOME:-~/.cache}/corral-bench (run that once first); without it
# the workerd column is left out. Loopback only; bounded by ROUNDS x SECONDS.
set -euo pipefail
base=${1:?A_BIN} new=${2:?B_BIN} rounds=${3:-3} secs=${4:-8}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
# `start` runs in $(...): its pids go to files, where the trap finds them.
trap 'kill $(cat $tmp/*.pid 2>/dev/null) 2>/dev/null; rm -rf $tmp' EXIT
cp benches/bench-tier.toml $tmp/c.toml
cat > $tmp/hello.js <<'JS'
export default { fetch() { return new Response("Hello, world!\n") } }
JS
start() { local n=$1; shift; "$@" > $tmp/$n.out 2>$tmp/$n.err & echo $! > $tmp/$n.pid;
  for _ in $(seq 100); do a=$(grep -o 'listening on http://[0-9.:]*' $tmp/$n.out | head -1 | cut -d/ -f3 || true); [ -n "$a" ] && { echo $a; return; }; sleep 0.1; done; exit 1; }
for v in base new; do
  bin=${!v}
  a=$(start $v $bin --config $tmp/c.toml --data-dir $tmp/$v --listen 127.0.0.1:0 serve)
  t=$(grep -o 'corral_[0-9a-f]*' $tmp/$v.out)
  curl -sf -X PUT --data-binary @$tmp/hello.js -H 'content-type: application/javascript' -H "authorization: Bearer $t" http://$a/api/apps/h >/dev/null
  curl -sf http://$a/apps/h/ >/dev/null
  eval "A_$v=$a"
done
wd=""
workerd=$(readlink -f "${XDG_CACHE_HOME:-$HOME/.cache}/corral-bench/node_modules/@cloudflare/workerd-linux-64/bin/workerd" || true)
if [ -x "$workerd" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > $tmp/workerd.capnp <<CAPNP
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
  "$workerd" serve $tmp/workerd.capnp > $tmp/workerd.out 2>&1 & echo $! > $tmp/workerd.pid
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/ >/dev/null && break; sleep 0.1; done
  wd=http://127.0.0.1:$port/
fi
rps() { wrk -t2 -c16 -d${secs}s "$1" | awk '/Requests\/sec/ {print $2}'; }
echo "wrk -t2 -c16 -d${secs}s, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq $rounds); do
  a=$(rps http://$A_base/apps/h/); b=$(rps http://$A_new/apps/h/)
  w=0; [ -n "$wd" ] && w=$(rps $wd)
  awk -v r=$r -v a=$a -v b=$b -v w=$w 'BEGIN { printf "round %d: A %.0f/s  B %.0f/s  workerd %.0f/s  B/A %.2f", r, a, b, w, b / a;
    if (w > 0) printf "  A/workerd %.2f  B/workerd %.2f", a / w, b / w; printf "\n" }'
done
