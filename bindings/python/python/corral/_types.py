"""The shapes of the plain dicts that :class:`corral.Platform` returns.

They are ordinary ``dict`` objects at run time; these ``TypedDict`` classes let
type checkers know their keys.
"""

from typing import Dict, Optional, TypedDict

__all__ = ["DeployInfo", "AppInfo", "Usage", "UsageReport", "AppStatus"]


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
    tier: str
    kind: str
    bytes: int
    version: int
    created: int

class Usage(TypedDict):
    """One tenant's totals for the current month (UTC)."""

    tenant: str
    period: Dict[str, int]
    requests: int
    errors: int
    exec_time_ms: int
    fuel: int
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
