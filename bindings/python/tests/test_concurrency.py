"""The GIL is released while tenants run: threads and asyncio overlap."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import threading
import time
from typing import Callable, List

import pytest

import corral
from conftest import CHAOS, COMPUTE, HELLO, HELLO_BODY, config, tier


def run_compute(platform: corral.Platform) -> corral.Response:
    resp = platform.invoke("compute")
    assert resp.status == 200 and len(resp.body) == 1
    return resp


def timed_threads(n: int, work: Callable[[], None]) -> float:
    """Wall time of `n` threads each running `work` once."""
    workers = [threading.Thread(target=work) for _ in range(n)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return time.perf_counter() - t0


def test_four_threads_run_in_parallel(platform: corral.Platform) -> None:
    platform.deploy("compute", COMPUTE, tier="test")
    single = run_compute(platform)  # warm up: compiled, instantiated once
    runs = 3  # per thread, so each timing spans several guest runs
    results: List[corral.Response] = []
    lock = threading.Lock()

    def invoke() -> None:
        for _ in range(runs):
            resp = run_compute(platform)
            with lock:
                results.append(resp)

    # The control: a C function known to release the GIL (hashlib hashes
    # large buffers without it), sized like one compute run. Its 4-thread
    # ratio is the parallelism this process really gets from the host now.
    data = b"x" * (4 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(data).digest()
    hash_runs = max(1, round(runs * single.wall_ms / 1000 / (time.perf_counter() - t0)))

    def control() -> None:
        for _ in range(hash_runs):
            hashlib.sha256(data).digest()

    # Best of five or more of each, interleaved: the host is shared, and a
    # neighbour's burst only ever adds time (more rounds only lower a best).
    def ok(ratio: float, c_ratio: float) -> bool:
        return ratio < 1.5 * c_ratio and (c_ratio >= 3 or ratio < 3)

    rounds = 0
    one, four, c_one, c_four = (float("inf"),) * 4
    while rounds < 5 or (rounds < 12 and not ok(four / one, c_four / c_one)):
        rounds += 1
        one = min(one, timed_threads(1, invoke))
        four = min(four, timed_threads(4, invoke))
        c_one = min(c_one, timed_threads(1, control))
        c_four = min(c_four, timed_threads(4, control))
    ratio, c_ratio = four / one, c_four / c_one
    print(f"\none thread ({runs} compute runs): {one * 1000:.1f} ms; four threads: "
          f"{four * 1000:.1f} ms; ratio {ratio:.2f}x (GIL-free control: {c_ratio:.2f}x; "
          f"best of {rounds})")
    assert len(results) == rounds * (1 + 4) * runs
    assert {r.body for r in results} == {single.body}
    assert {r.fuel_used for r in results} == {single.fuel_used}
    # Serialised by the GIL, four threads take >= 4x one thread whatever the
    # host; in parallel they scale about like the control (2x on 2 idle
    # cores; under load the guest's 1 ms epoch yields scale a little worse
    # than hashing: up to 1.5x the control's ratio seen on the shared box).
    assert ratio < 1.5 * c_ratio, f"{ratio:.2f}x, control {c_ratio:.2f}x"
    if c_ratio < 3:  # the host lets this process use more than one core now
        assert ratio < 3, f"four threads took {ratio:.2f}x one thread"


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


def test_awaitables_finish_after_the_platform_is_dropped() -> None:
    async def main() -> List[BaseException]:
        p = corral.Platform(config=config(tiers={"slow": tier(wall_clock="300ms")}))
        p.deploy("chaos", CHAOS, tier="slow")
        p.deploy("hello", HELLO)
        slow = [asyncio.ensure_future(p.invoke_async("chaos", body="s")) for _ in range(2)]
        fast = p.invoke_async("hello")
        await asyncio.sleep(0.05)
        del p  # the awaitables keep the platform (and its runtime) alive
        gc.collect()
        assert (await fast).body == HELLO_BODY
        done, pending = await asyncio.wait(slow, timeout=5)
        assert not pending
        return [e for f in done if (e := f.exception()) is not None]

    errors = asyncio.run(main())
    assert [type(e) for e in errors] == [corral.DeadlineExceeded] * 2
