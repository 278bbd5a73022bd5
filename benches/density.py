#!/usr/bin/env python3
"""Density harness (issue 15): how many apps fit on one node, and what waking them costs.

Starts a release `corral-server` on loopback with a fresh data dir, then, over HTTP only:

  1. deploys N hello apps through the admin API (half JavaScript, half WebAssembly/WAGI),
     C at a time, and counts what was refused;
  2. wakes W of them (half of each kind) with one request each, C at a time, timing every
     request from the client: these are cold starts from the artifact;
  3. waits until `/metrics` says no app is warm any more (the tier's idle timeout is short),
     then a little longer, so the allocator can give memory back.

At each stage it prints the server's RSS (VmRSS from /proc, and the peak, VmHWM), and at the
end one Markdown table for BENCHMARKS.md. Loopback only; bounded by the counts given.

    benches/density.py [--apps 10000] [--warm 1000] [--concurrency 4] [--idle 20]

The server binary is built with `cargo build --release` unless `--server PATH` is given.
Nothing here asserts a target: the figures are read against issue 15's goals by a person.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM_HELLO = os.path.join(ROOT, "bindings/python/tests/fixtures/hello.wasm")
JS_HELLO = b"export default { fetch() { return new Response('hello from JS\\n') } }\n"


def proc_status(pid):
    """VmRSS and VmHWM of `pid`, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def cpu_seconds(pid):
    """User + system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


class Client:
    """One keep-alive connection per thread to the server."""

    def __init__(self, addr, token):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.token = token
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if path.startswith("/api/") or path == "/metrics":
            headers["authorization"] = f"Bearer {self.token}"
        for attempt in range(2):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def metric(client, name):
    status, body = client.request("GET", "/metrics")
    if status != 200:
        raise SystemExit(f"density: /metrics answered {status}")
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else None


# The free preset of deploy/corral.toml (a tier table is complete or refused), with a short
# idle timeout and the idle sweep every second.
FREE_TIER = """default_tier = "free"
park_sweep_interval = "1s"
[thresholds]
# The shared bench machine's disk is often over the default 80%; the run is about memory
# and CPU, whose thresholds stay the defaults.
disk = {{ fire = 0.99, rearm = 0.98 }}
[tiers.free]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 100000000
wall_clock = "5s"
rate_per_minute = 60
burst = 20
requests_per_month = 10000
max_apps = 1
storage_bytes = 10000000
max_body_bytes = 1048576
max_bundle_bytes = 5242880
idle_timeout = "{idle}s"
max_streams = 2
dedicated = false
"""


def start_server(binary, tmp, idle):
    config = os.path.join(tmp, "corral.toml")
    with open(config, "w") as f:
        # The free preset with a short idle timeout, so a wave of apps parks while we watch.
        # Every app gets an account of its own (free: one app per account).
        f.write(FREE_TIER.format(idle=idle))
    out = open(os.path.join(tmp, "server.out"), "w+")
    err = open(os.path.join(tmp, "server.err"), "w+")
    proc = subprocess.Popen(
        [binary, "--config", config, "--data-dir", os.path.join(tmp, "data"),
         "--listen", "127.0.0.1:0", "serve"],
        stdout=out, stderr=err,
    )
    for _ in range(200):
        out.seek(0)
        text = out.read()
        m = re.search(r"listening on http://([0-9.:]+)", text)
        t = re.search(r"corral_[0-9a-f]+", text)
        if m and t:
            return proc, m.group(1), t.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    err.seek(0)
    raise SystemExit(f"density: server did not start:\n{err.read()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=10_000)
    ap.add_argument("--warm", type=int, default=1_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--idle", type=int, default=20, help="the tier's idle timeout, seconds")
    ap.add_argument("--settle", type=int, default=15, help="seconds to wait after the deploys and after the last app parks (the allocator's decay)")
    ap.add_argument("--server", help="a built corral-server (default: cargo build --release)")
    args = ap.parse_args()
    if args.warm > args.apps:
        raise SystemExit("density: --warm must be at most --apps")

    binary = args.server
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "corral-server",
                        "--bin", "corral-server"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target, "release", "corral-server")
    wasm = open(WASM_HELLO, "rb").read()

    tmp = tempfile.mkdtemp(prefix="corral-density-")
    proc, addr, token = start_server(binary, tmp, args.idle)
    client = Client(addr, token)
    rows = []

    def stage(label, extra=""):
        s = proc_status(proc.pid)
        rows.append((label, s["VmRSS"], s["VmHWM"], extra))
        print(f"{label:<34} RSS {mib(s['VmRSS']):>11}   peak {mib(s['VmHWM']):>11}   {extra}", flush=True)
        return s["VmRSS"]

    try:
        time.sleep(1)
        base = stage("started (demo app only)")

        # 1. Deploy N apps.
        names = [f"app-{i:05d}" for i in range(args.apps)]
        refused = {}
        lock = threading.Lock()

        def deploy(i):
            name = names[i]
            if i % 2 == 0:
                body, ctype = JS_HELLO, "application/javascript"
            else:
                body, ctype = wasm, "application/wasm"
            status, resp = client.request("PUT", f"/api/apps/{name}", body, {"content-type": ctype})
            if status >= 300:
                try:
                    code = json.loads(resp)["error"]
                except Exception:
                    code = resp[:80]
                with lock:
                    refused[(status, code)] = refused.get((status, code), 0) + 1

        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            done = 0
            for _ in pool.map(deploy, range(args.apps)):
                done += 1
                if done % 1000 == 0:
                    print(f"  deployed {done}/{args.apps} ({time.monotonic() - t0:.0f} s, "
                          f"RSS {mib(proc_status(proc.pid)['VmRSS'])})", flush=True)
        deploy_secs = time.monotonic() - t0
        deploy_cpu = cpu_seconds(proc.pid) - cpu0
        n_refused = sum(refused.values())
        stage(
            f"{args.apps} deployed (parked)",
            f"{args.apps / deploy_secs:.0f} deploys/s, server CPU {deploy_cpu:.0f} s, refused {n_refused} {refused or ''}",
        )
        # The allocator gives back what the deploys churned through after its decay time.
        time.sleep(args.settle)
        after_deploy = stage(f"{args.apps} deployed + {args.settle} s")
        if n_refused == args.apps:
            raise SystemExit(f"density: every deploy was refused: {refused}")
        warm_now = metric(client, "corral_apps_warm")
        print(f"  apps warm after deploying: {warm_now}", flush=True)

        # 2. Wake W apps, half JS and then half WebAssembly: one cold request each, so the
        #    RSS step of each kind is its own per-warm-app cost.
        js = [n for i, n in enumerate(names) if i % 2 == 0][: (args.warm + 1) // 2]
        wa = [n for i, n in enumerate(names) if i % 2 == 1][: args.warm // 2]
        lat = {"js": [], "wasm": []}
        failures = []

        def hit(name):
            t = time.perf_counter()
            status, body = client.request("GET", f"/apps/{name}/")
            dt = time.perf_counter() - t
            kind = "js" if int(name.split("-")[1]) % 2 == 0 else "wasm"
            with lock:
                if status != 200:
                    failures.append((name, status, body[:120]))
                else:
                    lat[kind].append(dt)

        def ms(v):
            return f"{v * 1000:.2f} ms"

        def wake(batch, kind, label):
            t0 = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(hit, batch))
            secs = time.monotonic() - t0
            l = sorted(lat[kind])
            warm_now = metric(client, "corral_apps_warm")
            return stage(
                f"{len(batch)} {label} woken (warm: {warm_now:.0f})",
                f"cold p50 {ms(percentile(l, 50))} p99 {ms(percentile(l, 99))}, "
                f"{len(batch) / secs:.0f} wakes/s, failed {len(failures)}",
            )

        with_js = wake(js, "js", "JS")
        with_warm = wake(wa, "wasm", "WebAssembly")
        all_lat = sorted(lat["js"] + lat["wasm"])
        print(f"  cold requests, both kinds: p50 {ms(percentile(all_lat, 50))} "
              f"p99 {ms(percentile(all_lat, 99))}", flush=True)
        if failures:
            print(f"  first failures: {failures[:5]}", flush=True)

        # 3. Wait for every app to park, then let the allocator settle.
        t0 = time.monotonic()
        deadline = t0 + args.idle + 120
        while time.monotonic() < deadline:
            warm_now = metric(client, "corral_apps_warm")
            if warm_now == 0:
                break
            time.sleep(1)
        parked_after = time.monotonic() - t0
        stage(f"all parked (warm: {warm_now:.0f})", f"{parked_after:.0f} s after the wake")
        time.sleep(args.settle)
        after_park = stage(f"all parked + {args.settle} s")

        print()
        print(f"| stage | RSS | peak RSS | notes |")
        print(f"|---|---|---|---|")
        for label, rss, hwm, extra in rows:
            print(f"| {label} | {mib(rss)} | {mib(hwm)} | {extra} |")
        print()
        print(f"per deployed (parked) app: {(after_deploy - base) / args.apps / 1024:.2f} KiB; "
              f"per warm JS app: {(with_js - after_deploy) / max(1, len(js)) / 1024:.1f} KiB; "
              f"per warm WebAssembly app: {(with_warm - with_js) / max(1, len(wa)) / 1024:.1f} KiB; "
              f"after parking, RSS above the deployed-and-parked level: {mib(after_park - after_deploy)}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
