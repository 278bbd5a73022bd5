"""A program using `corral` as a typed host would; `mypy --strict` must accept
it (scripts/test-python). Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

from typing import Optional

import corral


def describe(err: corral.CorralError) -> str:
    if isinstance(err, corral.FuelExhausted):
        used: int = err.consumed
        return f"{err.code}: {used}/{err.limit}"
    if isinstance(err, corral.RateLimited):
        wait: float = err.retry_after
        return f"retry in {wait}s"
    if isinstance(err, corral.QuotaExceeded):
        resets: Optional[str] = err.resets_at
        return f"{err.used}/{err.quota} until {resets}"
    if isinstance(err, corral.ScriptError):
        stack: Optional[str] = err.stack
        return f"{err.message}\n{stack or ''}"
    status: int = err.status
    return f"{status} {err.message}"


def summarize(response: corral.Response) -> str:
    body: bytes = response.body
    fuel: int = response.fuel_used
    wall: float = response.wall_ms
    peak: int = response.memory_peak
    headers: dict[str, str] = response.headers
    return f"{response.status} {len(body)}B {fuel} {wall:.1f}ms {peak} {headers.get('content-type')}"


print(describe(corral.FuelExhausted("out of fuel", limit=1, consumed=1)))


def host(wasm: bytes) -> None:
    import asyncio
    import pathlib

    with corral.Platform(config={"default_tier": "pro"}) as platform:
        info: corral.DeployInfo = platform.deploy("hello", wasm, tier="free")
        crc: int = info["crc32"]
        platform.deploy("from-file", pathlib.Path("app.wasm"), kind="wasm")
        try:
            resp = platform.invoke("hello", "POST", "/x?y=1", {"x-id": "1"}, b"body")
        except corral.LimitExceeded as err:
            print(describe(err))
            return
        print(summarize(resp), crc)
        report: corral.UsageReport = platform.usage("hello")
        requests: int = report["usage"]["requests"]
        quota: Optional[int] = report["requests_quota"]
        state: str = platform.status("hello")["state"]
        parked: bool = platform.park("hello")
        fuel_limit: object = platform.tiers["free"]["fuel_per_request"]
        print(requests, quota, state, parked, fuel_limit, platform.logs("hello"))

        async def main() -> int:
            r = await platform.invoke_async("hello", headers=[("a", "b")])
            return r.status

        status: int = asyncio.run(main())
        platform.maintenance = False
        removed: bool = platform.remove("hello")
        print(status, removed, [app["name"] for app in platform.apps()])
