"""What the many-nodes tests share (routing.py, shared.py): loopback ports,
a plain HTTP client, waiting, the node config, and HAProxy running the
shipped deploy/nodes/haproxy.cfg."""
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

# The part of every node's corral.toml the tests share: thresholds that never
# refuse on a busy test box, one admin token for all, this node among its
# peers and HAProxy's runtime API, and a tier without a rate limit.
NODE_CONFIG = """
[thresholds]
ram = {{ fire = 1.0, rearm = 1.0 }}
disk = {{ fire = 1.0, rearm = 1.0 }}
[admin]
token_hash = "{hash}"
[nodes]
name = "{name}"
proxy_socket = "{socket}"
proxy_map = "{map}"
[nodes.peers]
{peers}
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
    """(status, body, answer headers with lower-case names)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def wait_for(cond, what, within=30.0, name="nodes"):
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{name}: FAILED: timed out waiting for {what}")


def node_config(ports, name, token_hash, socket_path, moves_map):
    """The shared part of `name`'s config, its peers being the other `ports`."""
    peers = "\n".join(f'{n} = "http://127.0.0.1:{p}"' for n, p in ports.items() if n != name)
    return NODE_CONFIG.format(hash=token_hash, name=name, socket=socket_path, map=moves_map,
                              peers=peers)


def start_haproxy(node_ports, socket_path, moves_map, log):
    """HAProxy on deploy/nodes/haproxy.cfg before the nodes (in order: node1,
    node2, …); returns (process, front port) once it answers."""
    front = free_port()
    env = {**os.environ, "CORRAL_PROXY_BIND": f"127.0.0.1:{front}",
           "CORRAL_HAPROXY_SOCKET": str(socket_path), "CORRAL_MOVES_MAP": str(moves_map)}
    for i, port in enumerate(node_ports, 1):
        env[f"CORRAL_NODE{i}"] = f"127.0.0.1:{port}"
    p = subprocess.Popen(["haproxy", "-db", "-f", str(ROOT / "deploy/nodes/haproxy.cfg")], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    wait_for(lambda: request(front, "GET", "/haproxy-healthz")[0] == 200, "haproxy")
    return p, front
