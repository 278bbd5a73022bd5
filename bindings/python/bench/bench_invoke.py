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


def measure(fn: Callable[[], None], seconds: float) -> Dict[str, float]:
    """Runs ``fn`` for ~``seconds`` in batches; per-call times in microseconds."""
    for _ in range(50):  # warm-up
        fn()
    samples: List[float] = []
    deadline = time.perf_counter() + seconds
    batch = 20
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return {
        "median_us": statistics.median(samples),
        "min_us": min(samples),
        "calls": float(len(samples) * batch),
    }


def corral_platform() -> "corral.Platform":
    import corral

    platform = corral.Platform()
    platform.deploy("hello", HELLO)
    assert platform.invoke("hello").body == EXPECTED
    return platform


def corral_invoke(platform: "corral.Platform") -> Callable[[], None]:
    def call() -> None:
        resp = platform.invoke("hello")
        assert resp.body == EXPECTED, resp.body

    return call


def rust_loop(platform: "corral.Platform", seconds: float) -> Dict[str, float]:
    """The same requests issued from Rust, in batches like ``measure``."""
    platform._invoke_loop_rust("hello", 50)  # warm-up
    samples: List[float] = []
    deadline = time.perf_counter() + seconds
    batch = 20
    while time.perf_counter() < deadline:
        samples.append(platform._invoke_loop_rust("hello", batch) / batch * 1e6)
    return {
        "median_us": statistics.median(samples),
        "min_us": min(samples),
        "calls": float(len(samples) * batch),
    }


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

    call()
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    platform = corral_platform()
    fuel = int(platform.tiers["free"]["fuel_per_request"])
    results = {}
    # Interleaved twice so drift on a noisy machine hits every side alike.
    for round_ in range(2):
        for name, run in (
            ("corral from Rust", lambda: rust_loop(platform, args.seconds / 2)),
            ("corral from Python", lambda: measure(corral_invoke(platform), args.seconds / 2)),
            ("wasmtime-py", lambda: measure(wasmtime_invoke(fuel), args.seconds / 2)),
        ):
            r = run()
            if name in results:
                prev = results[name]
                r = {
                    "median_us": (prev["median_us"] + r["median_us"]) / 2,
                    "min_us": min(prev["min_us"], r["min_us"]),
                    "calls": prev["calls"] + r["calls"],
                }
            results[name] = r
    py_over_rust = results["corral from Python"]["median_us"] / results["corral from Rust"]["median_us"]
    wt_over_py = results["wasmtime-py"]["median_us"] / results["corral from Python"]["median_us"]
    if args.json:
        json.dump(
            {
                "fuel": fuel,
                "results": results,
                "python_over_rust": py_over_rust,
                "wasmtime_py_over_corral_python": wt_over_py,
            },
            sys.stdout,
        )
        print()
        return
    print(f"hello tenant, fuel limit per call {fuel}, {args.seconds:.1f} s per side")
    for name, r in results.items():
        print(f"{name:20} median {r['median_us']:9.1f} us  min {r['min_us']:9.1f} us  ({int(r['calls'])} calls)")
    print(f"corral Python / Rust (median): {py_over_rust:.2f}x  (goal <= 1.5x)")
    print(f"wasmtime-py / corral Python (median): {wt_over_py:.2f}x")


if __name__ == "__main__":
    main()
