"""Stubs for the native module ``corral._corral`` (Rust, pyo3)."""

import os
import pathlib
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    Union,
    final,
)

from corral._types import (
    AccountInfo,
    AppInfo,
    AppStatus,
    DeployInfo,
    HostInfo,
    ScrubSummary,
    UsageReport,
)

__all__ = ["__version__", "Platform", "Response", "_error_table"]

__version__: str

_Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]
_Body = Union[bytes, bytearray, str, None]

@final
class Response:
    """The response of one invocation, with what it used."""

    @property
    def status(self) -> int:
        """HTTP status code."""
    @property
    def headers(self) -> Dict[str, str]:
        """Response headers, lowercase names; repeated headers joined with ", "."""
    @property
    def body(self) -> bytes:
        """The response body."""
    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
    @property
    def fuel_used(self) -> int:
        """Fuel consumed by the invocation."""
    @property
    def wall_ms(self) -> float:
        """Wall time of the invocation in milliseconds (excluding a cold start)."""
    @property
    def cpu_ms(self) -> float:
        """CPU time of the invocation in milliseconds (both engines' common
        measure of work; fuel is each engine's own unit)."""
    @property
    def memory_peak(self) -> int:
        """Highest memory the instance held, in bytes."""
    @property
    def cold_start(self) -> bool:
        """Whether the tenant had to be woken from parked for this request."""

@final
class Platform:
    """A Corral platform: deploy tenants, invoke them under their tier's
    limits, read their usage. Usable as a context manager (closes on exit)."""

    def __new__(
        cls,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        config: Union[Mapping[str, Any], str, None] = None,
    ) -> "Platform": ...
    def deploy(
        self,
        name: str,
        source: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"],
        tier: Optional[str] = None,
        kind: Optional[str] = None,
        account: Optional[str] = None,
    ) -> DeployInfo:
        """Deploys (or replaces) the app ``name``; ``str`` is source text,
        a path-like object is a file to read; ``kind`` is "wasm", "js", "tar"
        or None (detect)."""
    def invoke(
        self,
        name: str,
        method: str = "GET",
        path: str = "/",
        headers: _Headers = None,
        body: _Body = None,
    ) -> Response:
        """Sends one request to ``name`` through the whole stack (GIL released)."""
    def invoke_async(
        self,
        name: str,
        method: str = "GET",
        path: str = "/",
        headers: _Headers = None,
        body: _Body = None,
    ) -> Awaitable[Response]:
        """``invoke`` as an awaitable that never blocks the event loop."""
    def remove(self, name: str) -> bool:
        """Removes the app; False if it did not exist."""
    def usage(self, name: str) -> UsageReport:
        """This month's usage beside the tier's quotas."""
    def status(self, name: str) -> AppStatus:
        """Whether the app is warm or parked, and what it is doing."""
    def park(self, name: str) -> bool:
        """Parks the app now; True if it was warm."""
    def set_tier(self, name: str, tier: str) -> AppInfo:
        """Moves the app to another tier."""
    def create_account(self, name: str, tier: str) -> AccountInfo:
        """Creates an account on ``tier``; its apps share the tier's monthly
        requests, storage and ``max_apps``."""
    def account(self, name: str) -> Optional[AccountInfo]:
        """One account, or None."""
    def accounts(self) -> List[AccountInfo]:
        """Every account, by name."""
    def set_account_tier(self, name: str, tier: str) -> AccountInfo:
        """Moves the account and every app in it to ``tier``."""
    def delete_account(self, name: str) -> bool:
        """Deletes an account with no apps (``AccountNotEmpty`` otherwise)."""
    def move_app(self, name: str, account: str) -> AppInfo:
        """Moves the app into ``account`` (it takes the account's tier)."""
    def account_usage(self, name: str) -> UsageReport:
        """This month's usage of all the account's apps together."""
    def apps(self) -> List[AppInfo]:
        """Every deployed app."""
    def logs(self, name: str) -> List[str]:
        """The app's recent log lines (guest stderr, ``console.log``)."""
    def metrics(self) -> str:
        """The metrics in Prometheus text format."""
    def host(self) -> HostInfo:
        """The latest host probe, its budget, runtime slots, cache, thresholds and modes."""
    def recalibrate(self) -> HostInfo:
        """Probes the host again and resizes slots and cache; the new ``host()``."""
    def scrub(self) -> ScrubSummary:
        """Checks every stored blob's CRC32; corrupt ones are quarantined and listed."""
    def export_tenant(self, name: str) -> bytes:
        """The app's bundle, KV and usage as a CRC-checked archive."""
    def import_tenant(
        self,
        archive: Union[bytes, bytearray, memoryview, "os.PathLike[str]"],
        keep_tier: bool = False,
        keep_usage: bool = False,
    ) -> str:
        """Imports an ``export_tenant`` archive as a new app; returns its name.
        Raises ``InvalidArchive`` (importing nothing) if anything is wrong.
        The app lands on the default tier with fresh usage unless ``keep_tier``
        (the archive's tier; ``UnknownTier`` if this platform lacks it) or
        ``keep_usage`` (the archive's usage months) say otherwise."""
    @property
    def tiers(self) -> Dict[str, Dict[str, Any]]:
        """The configured tiers by name, as their settings."""
    @property
    def maintenance(self) -> bool:
        """Maintenance mode: while True, tenant requests raise ``corral.Maintenance``."""
    @maintenance.setter
    def maintenance(self, on: bool) -> None: ...
    @property
    def data_dir(self) -> pathlib.Path:
        """The data directory in use."""
    def close(self) -> None:
        """Flushes usage and stops the platform; idempotent."""
    def _invoke_loop_rust(self, name: str, n: int) -> float:
        """Bench hook: ``n`` GET / requests issued from Rust; their seconds."""
    def __enter__(self) -> "Platform": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

def _error_table() -> List[Tuple[str, int, str]]:
    """One error of each kind the bindings raise, as ``(code, status, class
    name)``, from the mapping the bindings use (for the error-table test)."""
    ...
