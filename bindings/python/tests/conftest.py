"""Shared fixtures: the committed guest modules and platforms over temp dirs."""

from __future__ import annotations

import pathlib
from typing import Any, Dict, Iterator

import pytest

import corral

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
HELLO = (FIXTURES / "hello.wasm").read_bytes()
COMPUTE = (FIXTURES / "compute.wasm").read_bytes()
CHAOS = (FIXTURES / "chaos.wasm").read_bytes()
HELLO_BODY = b"Hello from Corral!\n"


def tier(**overrides: Any) -> Dict[str, Any]:
    """A complete tier table (every field is required), small and fast."""
    base: Dict[str, Any] = {
        "compute_shares": 4,
        "memory_bytes": 64 << 20,
        "fuel_per_request": 1_000_000_000,
        "wall_clock": "10s",
        "burst": 1,
        "max_body_bytes": 1 << 20,
        "max_bundle_bytes": 8 << 20,
        "idle_timeout": "15m",
        "max_streams": 4,
    }
    base.update(overrides)
    return base


# Host thresholds that never fire: the shared build box may sit over the 80%
# disk or CPU marks, which would make a platform refuse new tenants (that
# refusal has its own test, test_not_accepting_new_tenants).
NEVER = {"fire": 1.0, "rearm": 1.0}
THRESHOLDS_NEVER = {"ram": NEVER, "disk": NEVER, "cpu": NEVER}
THRESHOLDS_NEVER_TOML = (
    "[thresholds]\n"
    + "".join(f"{r} = {{ fire = 1.0, rearm = 1.0 }}\n" for r in ("ram", "disk", "cpu"))
)


def config(**settings: Any) -> Dict[str, Any]:
    """`PlatformConfig` fields for a test platform: `settings` plus thresholds
    that never fire."""
    return {"thresholds": THRESHOLDS_NEVER, **settings}


@pytest.fixture
def platform(tmp_path: pathlib.Path) -> Iterator[corral.Platform]:
    """A platform with the presets plus a roomy `test` tier, in a temp dir."""
    with corral.Platform(
        data_dir=tmp_path, config=config(tiers={"test": tier()}, runtime_slots=16)
    ) as p:
        yield p
