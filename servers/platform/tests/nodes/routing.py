#!/usr/bin/env python3
"""Many nodes behind HAProxy (issue 20): deploy/nodes/haproxy.cfg, as shipped,
in front of three real corral-server nodes on loopback.

Checks, from outside, what the config promises:
- every request of one app lands on one node (consistent hashing on the app,
  whether it is named by X-Corral-App, by /apps/<app>/ or by the host name);
- the apps spread over the nodes;
- a node killed with SIGKILL loses no request that starts after it died (the
  proxy retries a refused connection on the app's next node), and only the
  dead node's apps move; every other app stays where it was;
- a busy app moved to another node (`corral-server tenant move`) fails no
  request and loses no write: its KV visit counter goes on from where it was
  on the new node, and HAProxy's moves map names the new node.

The three nodes share one admin token (`corral-server admin-token`) but not a
store: each gets every app deployed. With a shared store (PostgreSQL) one
deploy would do; routing does not depend on it.

usage: routing.py CORRAL_SERVER_BIN
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, node_config, free_port, start_haproxy, wait_for
from common import request as http_request

HELLO = (ROOT / "deploy/apps/hello.js").read_bytes()
APPS = [f"app{i:02}" for i in range(30)]
# Besides the shared part (common.NODE_CONFIG): host routing, and a tier of
# one share for the busy app, whose KV counter must never see two requests at once.
CONFIG = """
default_tier = "t"
base_domain = "example.com"
usage_flush_interval = "1s"
[tiers.one]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 65536
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1
"""


def request(port, method, path, body=b"", headers=None, timeout=10, answer_headers=None):
    status, body, head = http_request(port, method, path, body, headers, timeout)
    if answer_headers is not None:
        answer_headers.update(head)
    return status, body


def main():
    bin_ = sys.argv[1]
    tok = json.loads(subprocess.run([bin_, "admin-token"], check=True, capture_output=True).stdout)
    auth = {"authorization": f"Bearer {tok['token']}"}
    tmp = Path(tempfile.mkdtemp(prefix="corral-nodes-"))
    procs = []
    try:
        nodes = {}
        names = ["node1", "node2", "node3"]
        ports = {name: free_port() for name in names}
        socket_path, moves_map = tmp / "haproxy.sock", tmp / "moves.map"
        moves_map.write_text("")
        for name in names:
            d = tmp / name
            d.mkdir()
            (d / "corral.toml").write_text(
                CONFIG + node_config(ports, name, tok["token_hash"], socket_path, moves_map))
            port = ports[name]
            p = subprocess.Popen(
                [bin_, "--listen", f"127.0.0.1:{port}", "--config", str(d / "corral.toml"),
                 "--data-dir", str(d / "data"), "serve"],
                stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "wb"),
                env={**os.environ, "CORRAL_LOG": "warn"})
            procs.append(p)
            nodes[name] = (port, p)
        for name, (port, _) in nodes.items():
            wait_for(lambda: request(port, "GET", "/readyz")[0] == 200, f"{name} to start", name="routing")
            for app in APPS:
                s, b = request(port, "PUT", f"/api/apps/{app}", HELLO,
                               {**auth, "content-type": "application/javascript"})
                assert s == 200, (name, app, s, b)

        hap, front = start_haproxy([port for port, _ in nodes.values()], socket_path, moves_map,
                                   tmp / "haproxy.log")
        procs.append(hap)
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

        answered_by = {}

        def send_all(rounds):
            failed = 0
            for r in range(rounds):
                for app in APPS:
                    # The three ways to name an app, in turn.
                    how, head = r % 3, {}
                    if how == 0:
                        s, _ = request(front, "GET", "/", headers={"x-corral-app": app}, answer_headers=head)
                    elif how == 1:
                        s, _ = request(front, "GET", f"/apps/{app}/", answer_headers=head)
                    else:
                        s, _ = request(front, "GET", "/", headers={"host": f"{app}.example.com"},
                                       answer_headers=head)
                    failed += s != 200
                    answered_by.setdefault(app, set()).add(head.get("x-corral-node"))
            return failed

        failed = send_all(6)
        assert failed == 0, f"{failed} requests failed with every node up"
        before = {}
        for app in APPS:
            w = where(app)
            assert len(w) == 1 and sum(w.values()) == 6, f"{app} was served by {w}"
            before[app] = next(iter(w))
        # Each answer names the node that ran it: the one whose usage counted it.
        assert answered_by == {a: {before[a]} for a in APPS}, answered_by
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

        move_busy_app(front, nodes, auth, socket_path, moves_map)
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


def move_busy_app(front, nodes, auth, socket_path, moves_map):
    """Moves a busy app between the two live nodes under load from 4 clients."""
    live = [n for n, (_, p) in nodes.items() if p.poll() is None]
    ct = {**auth, "content-type": "application/javascript"}
    # One share: its requests run one at a time, so the counter's read and
    # write never interleave and every visit number appears once.
    for n in live:
        s, b = request(nodes[n][0], "PUT", "/api/apps/busy?tier=one", HELLO, ct)
        assert s == 200, (n, s, b)
    s, _ = request(front, "GET", "/", headers={"x-corral-app": "busy"})
    assert s == 200
    home = [n for n in live
            if json.loads(request(nodes[n][0], "GET", "/api/apps/busy/usage", headers=auth)[1])
            ["usage"]["requests"]]
    assert len(home) == 1, home
    home, other = home[0], next(n for n in live if n != home[0])
    # With a store per node the app lives on one node only: take it off the other.
    assert request(nodes[other][0], "DELETE", "/api/apps/busy", headers=auth)[0] == 200

    results, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                s, b = request(front, "GET", "/?name=load", headers={"x-corral-app": "busy"})
            except OSError as e:
                s, b = 0, str(e).encode()
            results.append((s, b))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    out = subprocess.run(
        [sys.argv[1], "--listen", f"127.0.0.1:{nodes[home][0]}", "tenant", "move", "busy",
         "--to", other],
        capture_output=True, env={**os.environ, "CORRAL_TOKEN": auth["authorization"][7:]})
    moved_at = len(results)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert out.returncode == 0, out.stderr.decode()
    answer = json.loads(out.stdout)
    failed = [(s, b[:200]) for s, b in results if s != 200]
    visits = sorted(int(b.rsplit(b"visit ", 1)[1].split(b")")[0]) for s, b in results if s == 200)
    print(f"move: busy {home} -> {other} under 4 clients: {len(results)} requests "
          f"({moved_at} before the move returned), {len(failed)} failed; "
          f"held {answer['held_ms']} ms, archive {answer['bytes']} bytes, proxy {answer['proxy']}")
    assert not failed, failed[:5]
    assert answer["proxy"] == "switched", answer
    # Every write landed once, in order, across the move: visits 2..N+1 (the
    # first was the request that found the app's home).
    assert visits == list(range(2, len(results) + 2)), (visits[:5], visits[-5:], len(results))
    usage = json.loads(request(nodes[other][0], "GET", "/api/apps/busy/usage", headers=auth)[1])
    assert usage["usage"]["requests"] > 0, usage
    assert request(nodes[home][0], "GET", "/api/apps/busy", headers=auth)[0] == 404
    # Moving it again from the node it left: it is not there (404), and an
    # unknown node is refused before anything is held (400).
    s, b = request(nodes[home][0], "POST", "/api/apps/busy/move", json.dumps({"to": other}).encode(),
                   {**auth, "content-type": "application/json"})
    assert (s, json.loads(b)["error"]) == (404, "not_found"), (s, b)
    s, b = request(nodes[other][0], "POST", "/api/apps/busy/move", b'{"to": "nowhere"}',
                   {**auth, "content-type": "application/json"})
    assert (s, json.loads(b)["error"]) == (400, "unknown_node"), (s, b)
    # A request that still reaches the old node (a proxy that has not heard
    # of the move) is forwarded: it counts the next visit on the new node.
    head = {}
    s, b = request(nodes[home][0], "GET", "/?name=late", headers={"x-corral-app": "busy"},
                   answer_headers=head)
    assert (s, b.split(b" (")[0]) == (200, b"Hello, late!"), (s, b)
    assert head.get("x-corral-node") == other, head
    assert f"visit {len(results) + 2})".encode() in b, b
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(socket_path))
        s.sendall(f"show map {moves_map}\n".encode())
        shown = b""
        while chunk := s.recv(4096):
            shown += chunk
    assert f"busy {other}".encode() in shown, shown
    print("move: ok")


if __name__ == "__main__":
    main()
