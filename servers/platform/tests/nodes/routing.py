#!/usr/bin/env python3
"""Many nodes behind HAProxy (issue 20): deploy/nodes/haproxy.cfg, as shipped,
in front of three real corral-server nodes on loopback.

Checks, from outside, what the config promises:
- every request of one app lands on one node (consistent hashing on the app,
  whether it is named by X-Corral-App, by /apps/<app>/ or by the host name);
- the apps spread over the nodes;
- a node killed with SIGKILL loses no request that starts after it died (the
  proxy retries a refused connection on the app's next node), and only the
  dead node's apps move; every other app stays where it was.

The three nodes share one admin token (`corral-server admin-token`) but not a
store: each gets every app deployed. With a shared store (PostgreSQL) one
deploy would do; routing does not depend on it.

usage: routing.py CORRAL_SERVER_BIN
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
HAPROXY_CFG = ROOT / "deploy/nodes/haproxy.cfg"
HELLO = (ROOT / "deploy/apps/hello.js").read_bytes()
APPS = [f"app{i:02}" for i in range(30)]
CONFIG = """
default_tier = "t"
base_domain = "example.com"
usage_flush_interval = "1s"
[thresholds]
ram = {{ fire = 1.0, rearm = 1.0 }}
disk = {{ fire = 1.0, rearm = 1.0 }}
[admin]
token_hash = "{hash}"
[tiers.t]
compute_shares = 2
memory_bytes = 67108864
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 65536
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=b"", headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_for(cond, what, within=20.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"routing: FAILED: timed out waiting for {what}")


def main():
    bin_ = sys.argv[1]
    tok = json.loads(subprocess.run([bin_, "admin-token"], check=True, capture_output=True).stdout)
    auth = {"authorization": f"Bearer {tok['token']}"}
    tmp = Path(tempfile.mkdtemp(prefix="corral-nodes-"))
    procs = []
    try:
        nodes = {}
        for name in ["node1", "node2", "node3"]:
            d = tmp / name
            d.mkdir()
            (d / "corral.toml").write_text(CONFIG.format(hash=tok["token_hash"]))
            port = free_port()
            p = subprocess.Popen(
                [bin_, "--listen", f"127.0.0.1:{port}", "--config", str(d / "corral.toml"),
                 "--data-dir", str(d / "data"), "serve"],
                stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "wb"),
                env={**os.environ, "CORRAL_LOG": "warn"})
            procs.append(p)
            nodes[name] = (port, p)
        for name, (port, _) in nodes.items():
            wait_for(lambda: request(port, "GET", "/readyz")[0] == 200, f"{name} to start")
            for app in APPS:
                s, b = request(port, "PUT", f"/api/apps/{app}", HELLO,
                               {**auth, "content-type": "application/javascript"})
                assert s == 200, (name, app, s, b)

        front = free_port()
        env = {**os.environ, "CORRAL_PROXY_BIND": f"127.0.0.1:{front}",
               "CORRAL_HAPROXY_SOCKET": str(tmp / "haproxy.sock")}
        for i, (port, _) in enumerate(nodes.values(), 1):
            env[f"CORRAL_NODE{i}"] = f"127.0.0.1:{port}"
        hap = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env,
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "haproxy.log", "wb"))
        procs.append(hap)
        wait_for(lambda: request(front, "GET", "/haproxy-healthz")[0] == 200, "haproxy")
        # Every node passed its first health check (rise 2 at inter 1s).
        time.sleep(2.5)

        def where(app):
            """The nodes that have answered requests of `app`, with their counts."""
            seen = {}
            for name, (port, p) in nodes.items():
                if p.poll() is not None:
                    continue
                s, b = request(port, "GET", f"/api/apps/{app}/usage", headers=auth)
                assert s == 200, (name, app, s, b)
                n = json.loads(b)["usage"]["requests"]
                if n:
                    seen[name] = n
            return seen

        def send_all(rounds):
            failed = 0
            for r in range(rounds):
                for app in APPS:
                    # The three ways to name an app, in turn.
                    how = r % 3
                    if how == 0:
                        s, _ = request(front, "GET", "/", headers={"x-corral-app": app})
                    elif how == 1:
                        s, _ = request(front, "GET", f"/apps/{app}/")
                    else:
                        s, _ = request(front, "GET", "/", headers={"host": f"{app}.example.com"})
                    failed += s != 200
            return failed

        failed = send_all(6)
        assert failed == 0, f"{failed} requests failed with every node up"
        before = {}
        for app in APPS:
            w = where(app)
            assert len(w) == 1 and sum(w.values()) == 6, f"{app} was served by {w}"
            before[app] = next(iter(w))
        spread = {n: sum(1 for a in APPS if before[a] == n) for n in nodes}
        print(f"routing: 30 apps over 3 nodes: {spread}")
        assert sum(1 for c in spread.values() if c) >= 2, f"no spread: {spread}"

        victim = max(spread, key=spread.get)
        nodes[victim][1].send_signal(signal.SIGKILL)
        nodes[victim][1].wait()
        # At once, before any health check has seen it: refused connections are retried.
        failed = send_all(3)
        print(f"routing: {victim} killed; 90 requests after it died, {failed} failed")
        assert failed == 0, f"{failed} requests failed after {victim} died"
        moved = 0
        for app in APPS:
            w = where(app)
            if before[app] == victim:
                assert len(w) == 1 and sum(w.values()) == 3, f"{app} (was on {victim}) is now on {w}"
                moved += 1
            else:
                assert w == {before[app]: 9}, f"{app} moved from {before[app]} to {w}"
        print(f"routing: only {victim}'s {moved} apps moved; the other {30 - moved} stayed")
        print("routing: ok")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
