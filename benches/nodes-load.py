#!/usr/bin/env python3
"""Requests/s of 1, 2 and 3 corral-server nodes behind HAProxy (issue 20), for
BENCHMARKS.md, one after another in the same run on this box.

Each node is a release corral-server on loopback with every app deployed (a
JS hello app, `deploy/apps/hello.js` without its KV write, 100 apps); HAProxy
runs deploy/nodes/haproxy.cfg as shipped; wrk spreads requests over the 100
apps with X-Corral-App. Also measured: one node without HAProxy (what the
proxy costs). Every node shares the box's cores with HAProxy and wrk, so on a
2-core box more nodes cannot mean more throughput: the figure shows what the
proxy layer and node count cost, not how a fleet of machines scales.

usage: benches/nodes-load.py BIN [--secs 8] [--conns 32] [--apps 100]
Needs wrk and haproxy (apt). Loopback only; bounded in time.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = b"""export default { async fetch(request) {
  const name = new URL(request.url).searchParams.get("name") ?? "world";
  return new Response(`Hello, ${name}!\\n`);
} };"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ok(port, path, what):
    for _ in range(200):
        try:
            if request(port, "GET", path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"nodes-load: {what} did not start")


def wrk(port, secs, conns, apps, tmp):
    lua = tmp / "apps.lua"
    lua.write_text(
        "local n = 0\n"
        "request = function()\n"
        f"  n = n % {apps} + 1\n"
        "  return wrk.format('GET', '/', { ['X-Corral-App'] = 'app' .. n })\n"
        "end\n")
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "-s", str(lua),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return rps, int(bad.group(1)) if bad else 0, errs.group(1) if errs else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--apps", type=int, default=100)
    a = ap.parse_args()
    tok = json.loads(subprocess.run([a.bin, "admin-token"], check=True, capture_output=True).stdout)
    auth = {"authorization": f"Bearer {tok['token']}", "content-type": "application/javascript"}
    tmp = Path(tempfile.mkdtemp(prefix="corral-nodes-load-"))
    config = (ROOT / "benches/bench-tier.toml").read_text() + f'\n[admin]\ntoken_hash = "{tok["token_hash"]}"\n'
    procs, ports = [], []
    try:
        for i in range(3):
            d = tmp / f"node{i + 1}"
            d.mkdir()
            (d / "corral.toml").write_text(config)
            port = free_port()
            procs.append(subprocess.Popen(
                [a.bin, "--listen", f"127.0.0.1:{port}", "--config", str(d / "corral.toml"),
                 "--data-dir", str(d / "data"), "serve"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CORRAL_LOG": "warn"}))
            ports.append(port)
            wait_ok(port, "/readyz", f"node{i + 1}")
            for n in range(1, a.apps + 1):
                s, b = request(port, "PUT", f"/api/apps/app{n}", APP, auth)
                assert s == 200, (s, b)
        (tmp / "moves.map").write_text("")
        results = {}
        load = os.getloadavg()[0]
        # Direct: one node, no proxy.
        for n in range(1, a.apps + 1):  # warm every app first
            request(ports[0], "GET", "/", headers={"x-corral-app": f"app{n}"})
        results["1 node, direct"] = wrk(ports[0], a.secs, a.conns, a.apps, tmp)
        for count in (1, 2, 3):
            front = free_port()
            env = {**os.environ, "CORRAL_PROXY_BIND": f"127.0.0.1:{front}",
                   "CORRAL_HAPROXY_SOCKET": str(tmp / f"h{count}.sock"),
                   "CORRAL_MOVES_MAP": str(tmp / "moves.map")}
            # Nodes past `count` point at a closed port: HAProxy's checks mark them down.
            for i in range(3):
                env[f"CORRAL_NODE{i + 1}"] = f"127.0.0.1:{ports[i] if i < count else free_port()}"
            hap = subprocess.Popen(["haproxy", "-db", "-f", str(ROOT / "deploy/nodes/haproxy.cfg")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ok(front, "/haproxy-healthz", "haproxy")
                time.sleep(3)  # the down nodes fail their checks (fall 2 at 1 s)
                for n in range(1, a.apps + 1):
                    request(front, "GET", "/", headers={"x-corral-app": f"app{n}"})
                results[f"{count} node{'s' if count > 1 else ''}, HAProxy"] = wrk(front, a.secs, a.conns, a.apps, tmp)
            finally:
                hap.terminate()
                hap.wait()
        base = results["1 node, direct"][0]
        print(f"nodes-load: wrk -t2 -c{a.conns} -d{a.secs}s over {a.apps} JS hello apps, "
              f"{time.strftime('%H:%M UTC', time.gmtime())}, load average {load:.1f} -> {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
        print("| setup | requests/s | vs 1 node direct | non-2xx | socket errors |")
        print("|---|---|---|---|---|")
        for k, (rps, bad, errs) in results.items():
            print(f"| {k} | {rps:,.0f} | {rps / base:.2f}x | {bad} | {errs or '-'} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
