"""Invoke overhead from Python: corral vs wasmtime-py on the hello tenant.

Runs, in one process and one run, interleaved:
  * ``corral from Rust``: the same ``Platform::invoke`` loop driven from Rust
    inside the extension (``Platform._invoke_loop_rust``), no Python per call;
  * ``corral from Python``: ``Platform.invoke("hello")`` (the full platform
    stack: metering, limits, sandbox, WAGI), GIL released, warm tenant;
  * ``wasmtime-py`` (PyPI ``wasmtime``): the same module, a fresh Store + WASI
    context per call with the same fuel limit, stdout captured, _start called,
    i.e. what a Python host does without Corral.

Usage: python bench/bench_invoke.py [--seconds 3] [--json]
Needs: the built ``corral`` wheel and ``pip install wasmtime``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import TYPE_CHECKING, Callable, Dict, List

if TYPE_CHECKING:
    import corral

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
HELLO = (FIXTURES / "hello.wasm").read_bytes()
EXPECTED = b"Hello from Corral!\n"


BATCH = 20


def python_batch(fn: Callable[[], None]) -> Callable[[], float]:
    """One sample: ``BATCH`` calls of ``fn``; returns microseconds per call."""

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(BATCH):
            fn()
        return (time.perf_counter() - start) / BATCH * 1e6

    return sample


def rust_batch(platform: "corral.Platform") -> Callable[[], float]:
    """One sample: ``BATCH`` requests issued from Rust inside the extension."""

    def sample() -> float:
        return platform._invoke_loop_rust("hello", BATCH) / BATCH * 1e6

    return sample


def summary(samples: List[float]) -> Dict[str, float]:
    return {
        "median_us": statistics.median(samples),
        "min_us": min(samples),
        "calls": float(len(samples) * BATCH),
    }


def corral_platform() -> "corral.Platform":
    import corral

    # The free tier's limits (fuel, memory, wall clock, one compute share)
    # without its rate limit and monthly quota, which a benchmark would hit.
    with corral.Platform() as presets:
        bench = dict(presets.tiers["free"], rate_per_minute=None, requests_per_month=None)
    platform = corral.Platform(config={"tiers": {"bench": bench}})
    platform.deploy("hello", HELLO, tier="bench")
    assert platform.invoke("hello").body == EXPECTED
    return platform


def corral_invoke(platform: "corral.Platform") -> Callable[[], None]:
    def call() -> None:
        resp = platform.invoke("hello")
        assert resp.body == EXPECTED, resp.body

    return call


WASMTIME_FUEL_USED: List[int] = []


def wasmtime_invoke(fuel: int) -> Callable[[], None]:
    import wasmtime

    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    module = wasmtime.Module(engine, HELLO)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()

    def call() -> None:
        out = bytearray()
        wasi = wasmtime.WasiConfig()
        wasi.env = [  # the CGI variables Corral's WAGI glue sets for this request
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/"),
            ("QUERY_STRING", ""),
            ("CONTENT_LENGTH", "0"),
            ("CONTENT_TYPE", ""),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "corral"),
        ]
        wasi.stdout_custom = out.extend
        store = wasmtime.Store(engine)
        store.set_fuel(fuel)
        store.set_wasi(wasi)
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        head, _, body = bytes(out).partition(b"\n\n")
        assert body == EXPECTED and head.startswith(b"Content-Type"), out
        used.append(fuel - store.get_fuel())

    used: List[int] = []
    call()
    WASMTIME_FUEL_USED.append(used[0])
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="per side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    platform = corral_platform()
    fuel = int(platform.tiers["bench"]["fuel_per_request"])
    sides = {
        "corral from Rust": rust_batch(platform),
        "corral from Python": python_batch(corral_invoke(platform)),
        "wasmtime-py": python_batch(wasmtime_invoke(fuel)),
    }
    for sample in sides.values():  # warm-up
        for _ in range(3):
            sample()
    # Batches interleaved (and the order rotated each round) so that drift and
    # a neighbour's bursts on a shared machine hit every side alike.
    samples: Dict[str, List[float]] = {name: [] for name in sides}
    order = list(sides)
    deadline = time.perf_counter() + args.seconds * len(sides)
    while time.perf_counter() < deadline:
        for name in order:
            samples[name].append(sides[name]())
        order.append(order.pop(0))
    corral_fuel = platform.invoke("hello").fuel_used
    platform.close()
    results = {name: summary(s) for name, s in samples.items()}
    rust, py, wt = (results[n] for n in sides)
    ratios = {
        "python_over_rust_median": py["median_us"] / rust["median_us"],
        "python_over_rust_min": py["min_us"] / rust["min_us"],
        "wasmtime_py_over_corral_python_median": wt["median_us"] / py["median_us"],
        "wasmtime_py_over_corral_python_min": wt["min_us"] / py["min_us"],
    }
    if args.json:
        json.dump({"fuel": fuel, "guest_fuel": {"corral": corral_fuel, "wasmtime_py": WASMTIME_FUEL_USED[0]}, "batch": BATCH, "results": results, **ratios}, sys.stdout)
        print()
        return
    print(f"hello tenant, fuel limit {fuel} per call, batches of {BATCH} interleaved, "
          f"{args.seconds:.1f} s per side")
    print(f"guest fuel per call: corral {corral_fuel}, wasmtime-py {WASMTIME_FUEL_USED[0]}")
    for name, r in results.items():
        print(f"{name:20} median {r['median_us']:9.1f} us  min {r['min_us']:9.1f} us  "
              f"({int(r['calls'])} calls)")
    print(f"corral Python / Rust: median {ratios['python_over_rust_median']:.2f}x, "
          f"min {ratios['python_over_rust_min']:.2f}x  (goal <= 1.5x)")
    print(f"wasmtime-py / corral Python: median "
          f"{ratios['wasmtime_py_over_corral_python_median']:.2f}x, "
          f"min {ratios['wasmtime_py_over_corral_python_min']:.2f}x")


if __name__ == "__main__":
    main()
