"""The shapes of the plain dicts that :class:`corral.Platform` returns.

They are ordinary ``dict`` objects at run time; these ``TypedDict`` classes let
type checkers know their keys.
"""

from typing import Any, Dict, List, Optional, TypedDict

__all__ = [
    "DeployInfo",
    "AppInfo",
    "Usage",
    "UsageReport",
    "AppStatus",
    "CacheStats",
    "HostInfo",
    "ScrubSummary",
]


class DeployInfo(TypedDict):
    """What a deploy did."""

    name: str
    tier: str
    kind: str
    bytes: int
    crc32: int
    static_files: int
    replaced: bool

class AppInfo(TypedDict):
    """A deployed app."""

    name: str
    account: str
    tier: str
    kind: str
    bytes: int
    version: int
    created: int

class AccountInfo(TypedDict):
    """An account: its tier, its apps and how many its tier allows."""

    name: str
    tier: str
    apps: List[str]
    max_apps: Optional[int]
    created: int

class Usage(TypedDict):
    """One tenant's totals for the current month (UTC)."""

    tenant: str
    period: Dict[str, int]
    requests: int
    #: Requests refused by a limit, by refusal code (``"rate_limited"``,
    #: ``"quota_exceeded"``, ``"overloaded"``, ...); only codes with a count.
    #: They never count toward ``requests`` or the monthly quota.
    refused: Dict[str, int]
    errors: int
    exec_time_ms: int
    #: Fuel in the engine's own unit (WebAssembly instructions, JavaScript
    #: interrupt ticks of 10,000 interpreter polls): not comparable across
    #: engines; a small JavaScript request often spends less than one tick.
    fuel: int
    #: CPU time of the tenant's invocations in microseconds: the measure of
    #: work both engines share.
    cpu_us: int
    peak_memory: int
    peak_streams: int
    storage_bytes: int
    bytes_in: int
    bytes_out: int
    cold_starts: int

class UsageReport(TypedDict):
    """This month's usage beside the tier's quotas."""

    usage: Usage
    tier: str
    requests_quota: Optional[int]
    storage_quota: Optional[int]

class AppStatus(TypedDict):
    """Whether the app is warm or parked, and what it is doing."""

    state: str
    in_flight: int
    streams: int
    idle_secs: float
    cold_starts: int

class CacheStats(TypedDict):
    """The asset cache's figures."""

    hits: int
    misses: int
    bytes: int
    capacity: int

class HostInfo(TypedDict):
    """The host as the platform sees it (the same fields as ``GET /api/host``)."""

    probe: Dict[str, Any]
    budget: Dict[str, Any]
    runtime_slots: int
    runtime_slots_in_use: int
    cache: CacheStats
    thresholds: Dict[str, Any]
    accepting_new_tenants: bool
    maintenance: bool
    maintenance_required: bool

class ScrubSummary(TypedDict):
    """What a scrub found: blobs verified, and the keys quarantined as corrupt."""

    verified: int
    corrupt: List[str]
