"""The GIL is released while tenants run: threads and asyncio overlap."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import pytest

import corral
from conftest import CHAOS, COMPUTE, HELLO, HELLO_BODY, config, tier


def run_compute(platform: corral.Platform) -> corral.Response:
    resp = platform.invoke("compute")
    assert resp.status == 200 and len(resp.body) == 1
    return resp


def test_four_threads_run_in_parallel(platform: corral.Platform) -> None:
    platform.deploy("compute", COMPUTE, tier="test")
    single = run_compute(platform)  # warm up: compiled, instantiated once

    def four_threads() -> float:
        results: List[corral.Response] = []
        lock = threading.Lock()

        def worker() -> None:
            resp = run_compute(platform)
            with lock:
                results.append(resp)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        assert len(results) == 4
        assert {r.body for r in results} == {single.body}
        assert {r.fuel_used for r in results} == {single.fuel_used}
        return elapsed

    def one_run() -> float:
        t0 = time.perf_counter()
        run_compute(platform)
        return time.perf_counter() - t0

    # Best of three rounds: the host is shared, and a neighbour's burst should
    # not fail the test. Each round times one run (median of 3) and 4 threads.
    ratios = []
    for _ in range(3):
        one = sorted(one_run() for _ in range(3))[1]
        four = four_threads()
        ratios.append(four / one)
        print(f"\none compute run: {one * 1000:.1f} ms; four threads: {four * 1000:.1f} ms; "
              f"ratio {four / one:.2f}x")
        if four / one < 3:
            break
    # Serialised by the GIL this would be >= 4x; with 2 cores, ideal is 2x.
    assert min(ratios) < 3, f"four threads took {min(ratios):.2f}x one run"


def test_other_python_threads_run_while_a_tenant_computes(platform: corral.Platform) -> None:
    platform.deploy("compute", COMPUTE, tier="test")
    run_compute(platform)
    ticks = 0
    done = threading.Event()

    def counter() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=counter)
    t.start()
    try:
        for _ in range(3):
            run_compute(platform)
    finally:
        done.set()
        t.join()
    assert ticks >= 10


def test_asyncio_invoke(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)

    async def main() -> corral.Response:
        return await platform.invoke_async("hello")

    resp = asyncio.run(main())
    assert (resp.status, resp.body) == (200, HELLO_BODY)


def test_asyncio_gathers_many_requests(platform: corral.Platform) -> None:
    platform.deploy("chaos", CHAOS, tier="test")

    async def main() -> tuple[int, List[bytes]]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        responses = await asyncio.gather(
            *(platform.invoke_async("chaos", method="POST", body=f"cn{i}") for i in range(8))
        )
        stop.set()
        await tick_task
        return ticks, sorted(r.body for r in responses)

    ticks, bodies = asyncio.run(main())
    assert bodies == sorted(f"n{i}".encode() for i in range(8))
    assert ticks >= 1


def test_asyncio_loop_keeps_running_during_a_slow_request() -> None:
    with corral.Platform(config=config(tiers={"slow": tier(wall_clock="500ms")})) as p:
        p.deploy("chaos", CHAOS, tier="slow")

        async def main() -> int:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            with pytest.raises(corral.DeadlineExceeded) as info:
                await p.invoke_async("chaos", body="s")  # sleeps until the 500 ms deadline
            assert info.value.limit == 0.5
            task.cancel()
            return ticks

        ticks = asyncio.run(main())
        # ~50 ticks fit in 500 ms; a blocked loop would give 1.
        assert ticks >= 20, ticks


def test_asyncio_errors_and_cancellation(platform: corral.Platform) -> None:
    async def missing() -> None:
        await platform.invoke_async("nobody")

    with pytest.raises(corral.TenantNotFound):
        asyncio.run(missing())

    platform.deploy("hello", HELLO)

    async def cancel_then_continue() -> bytes:
        fut = asyncio.ensure_future(platform.invoke_async("hello"))
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        return (await platform.invoke_async("hello")).body

    assert asyncio.run(cancel_then_continue()) == HELLO_BODY

    with pytest.raises(RuntimeError, match="no running event loop"):
        platform.invoke_async("hello")
