"""Every failure raised for real, as its own class, with the Rust fields."""

from __future__ import annotations

import pathlib
import re
import sqlite3
import threading
import time
import zlib

import pytest

import corral
from conftest import CHAOS, HELLO, config, tier


def limited(tmp_path: pathlib.Path, **overrides: object) -> corral.Platform:
    return corral.Platform(
        data_dir=tmp_path, config=config(tiers={"t": tier(**overrides)}, runtime_slots=8)
    )


def test_fuel_exhausted(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, fuel_per_request=2_000_000) as p:
        p.deploy("chaos", CHAOS, tier="t")
        with pytest.raises(corral.FuelExhausted) as info:
            p.invoke("chaos", body="l")
        err = info.value
        assert (err.limit, err.consumed) == (2_000_000, 2_000_000)
        assert (err.code, err.status) == ("fuel_exhausted", 503)
        assert isinstance(err, corral.LimitExceeded)
        assert p.invoke("chaos").text == "hello\n"  # the tenant still answers


def test_deadline_exceeded(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, wall_clock="200ms") as p:
        p.deploy("chaos", CHAOS, tier="t")
        with pytest.raises(corral.DeadlineExceeded) as info:
            p.invoke("chaos", body="s")
        assert info.value.limit == 0.2
        assert (info.value.code, info.value.status) == ("deadline_exceeded", 503)


def test_memory_stack_output_trap_bad_response(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, compute_shares=1, memory_bytes=2 << 20) as p:
        p.deploy("chaos", CHAOS, tier="t")
        with pytest.raises(corral.MemoryLimitExceeded) as mem:
            p.invoke("chaos", body="G")
        assert (mem.value.limit, mem.value.code) == (2 << 20, "memory_limit")
        with pytest.raises(corral.StackOverflow) as stack:
            p.invoke("chaos", body="r")
        assert stack.value.code == "stack_overflow"
        with pytest.raises(corral.OutputTooLarge) as out:
            p.invoke("chaos", body="o")
        assert out.value.limit == 16 << 20
        assert out.value.status == 502
        with pytest.raises(corral.Trap) as trap:
            p.invoke("chaos", body="x")
        assert trap.value.message == "guest exited with status 3"
        with pytest.raises(corral.BadResponse) as bad:
            p.invoke("chaos", body="b")
        assert bad.value.message == "bad response from guest: no blank line after the headers"


def test_script_error_carries_message_and_stack(platform: corral.Platform) -> None:
    platform.deploy(
        "js",
        "function boom() { throw new Error('kaboom') }\n"
        "export default { async fetch(request) { boom() } }",
    )
    with pytest.raises(corral.ScriptError) as info:
        platform.invoke("js")
    assert info.value.message == "Error: kaboom"
    assert info.value.stack is not None and "boom" in info.value.stack
    assert (info.value.code, info.value.status) == ("script_error", 502)


def test_invalid_module_bundle_and_initial_memory(platform: corral.Platform) -> None:
    with pytest.raises(corral.InvalidModule) as bad:
        platform.deploy("bad", b"\0asm\x01\0\0\0\x99")
    assert (bad.value.code, bad.value.status) == ("invalid_module", 400)
    assert isinstance(bad.value, ValueError)
    with pytest.raises(corral.InvalidBundle) as bundle:
        platform.deploy("bad", b"\xff\xfe\xfd")
    assert bundle.value.code == "invalid_bundle"
    # A module declaring 2048 pages (128 MiB) of initial memory: within the
    # engine's pooling slots (1 GiB), over the free tier's 64 MiB instance.
    # (Beyond the pooling slot wasmtime itself refuses it: InvalidModule.)
    huge = b"\0asm\x01\0\0\0" + b"\x05\x04\x01\x00\x80\x10"
    with pytest.raises(corral.InitialMemoryTooLarge) as mem:
        platform.deploy("huge", huge)
    assert (mem.value.declared, mem.value.limit) == (128 << 20, 64 << 20)
    assert (mem.value.code, mem.value.status) == ("initial_memory_too_large", 400)
    assert platform.apps() == []


def test_bundle_and_payload_too_large(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, max_bundle_bytes=1000, max_body_bytes=10) as p:
        with pytest.raises(corral.BundleTooLarge) as bundle:
            p.deploy("chaos", CHAOS, tier="t")
        assert (bundle.value.limit, bundle.value.size, bundle.value.status) == (
            1000,
            len(CHAOS),
            413,
        )
        p.deploy("hello", HELLO, tier="t")
        with pytest.raises(corral.PayloadTooLarge) as body:
            p.invoke("hello", body=b"x" * 11)
        assert (body.value.limit, body.value.size, body.value.status) == (10, 11, 413)


def test_integrity_error_names_the_blob_and_both_checksums(tmp_path: pathlib.Path) -> None:
    with corral.Platform(data_dir=tmp_path, config=config()) as p:
        p.deploy("hello", HELLO)
    # Flip one byte of the stored code behind the platform's back.
    db = sqlite3.connect(tmp_path / "corral.db")
    (data,) = db.execute("SELECT data FROM blobs WHERE key = 'bundle/hello/code'").fetchone()
    assert data == HELLO
    bad = data[:-1] + bytes([data[-1] ^ 0xFF])
    db.execute("UPDATE blobs SET data = ? WHERE key = 'bundle/hello/code'", (bad,))
    db.commit()
    db.close()
    with corral.Platform(data_dir=tmp_path, config=config()) as p:
        # Recompiling for a new tier reads the stored code: the CRC32 fails.
        with pytest.raises(corral.IntegrityError) as info:
            p.set_tier("hello", "pro")
        err = info.value
        assert (err.key, err.expected, err.actual) == (
            "bundle/hello/code",
            zlib.crc32(HELLO),
            zlib.crc32(bad),
        )
        assert (err.code, err.status) == ("integrity_error", 500)
        # Never served afterwards: the blob is quarantined.
        with pytest.raises(corral.IntegrityError) as again:
            p.set_tier("hello", "pro")
        assert again.value.key == "bundle/hello/code"


def test_rate_limited(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, rate_per_minute=1, burst=1) as p:
        p.deploy("hello", HELLO, tier="t")
        assert p.invoke("hello").status == 200
        with pytest.raises(corral.RateLimited) as info:
            p.invoke("hello")
        assert 0 < info.value.retry_after <= 60
        assert (info.value.code, info.value.status) == ("rate_limited", 429)


def test_quota_exceeded(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, requests_per_month=2) as p:
        p.deploy("hello", HELLO, tier="t")
        p.invoke("hello")
        p.invoke("hello")
        with pytest.raises(corral.QuotaExceeded) as info:
            p.invoke("hello")
        err = info.value
        assert (err.quota, err.used, err.status) == (2, 2, 429)
        assert err.resets_at is not None
        assert re.fullmatch(r"\d{4}-\d{2}-01T00:00:00Z", err.resets_at)


def test_overloaded_when_compute_shares_are_busy(tmp_path: pathlib.Path) -> None:
    with limited(tmp_path, compute_shares=1, wall_clock="1s") as p:
        p.deploy("chaos", CHAOS, tier="t")
        slow = threading.Thread(target=lambda: pytest.raises(corral.DeadlineExceeded, p.invoke, "chaos", body="s"))
        slow.start()
        time.sleep(0.3)
        try:
            with pytest.raises(corral.Overloaded) as info:
                p.invoke("chaos")
        finally:
            slow.join()
        assert (info.value.code, info.value.status) == ("overloaded", 429)
        assert info.value.retry_after is not None and info.value.retry_after > 0


def test_maintenance(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    platform.maintenance = True
    assert platform.maintenance is True
    with pytest.raises(corral.Maintenance) as info:
        platform.invoke("hello")
    assert (info.value.code, info.value.status) == ("maintenance", 503)
    platform.maintenance = False
    assert platform.invoke("hello").status == 200


def test_not_found_unknown_tier_invalid_name(platform: corral.Platform) -> None:
    with pytest.raises(corral.TenantNotFound) as nf:
        platform.invoke("nobody")
    assert (nf.value.tenant, nf.value.status) == ("nobody", 404)
    assert isinstance(nf.value, LookupError)
    with pytest.raises(corral.TenantNotFound):
        platform.usage("nobody")
    with pytest.raises(corral.UnknownTier) as tier_err:
        platform.deploy("hello", HELLO, tier="gold")
    assert (tier_err.value.tier, tier_err.value.code) == ("gold", "unknown_tier")
    with pytest.raises(corral.InvalidTenantName) as name:
        platform.invoke("Not_A_Name")
    assert name.value.name == "Not_A_Name"
    assert isinstance(name.value, ValueError)


def test_not_accepting_new_tenants_over_a_host_threshold(tmp_path: pathlib.Path) -> None:
    # Disk "over" at 0.01% used: the first probe (at start, then every second)
    # crosses it, and the node takes no new tenants; existing ones redeploy.
    with corral.Platform(data_dir=tmp_path, config=config()) as p:
        p.deploy("hello", HELLO)
    low = {"fire": 0.0001, "rearm": 0.0001}
    with corral.Platform(data_dir=tmp_path, config=config(thresholds={"disk": low})) as p:
        deadline = time.monotonic() + 5
        while True:
            try:
                p.deploy("second", HELLO)
            except corral.NotAcceptingTenants as err:
                assert (err.code, err.status) == ("not_accepting_tenants", 503)
                break
            p.remove("second")
            assert time.monotonic() < deadline, "the disk threshold never fired"
            time.sleep(0.05)
        assert p.deploy("hello", HELLO)["replaced"] is True
        assert p.invoke("hello").status == 200
        assert "corral_host_accepting_new_tenants 0" in p.metrics()


def test_config_errors() -> None:
    with pytest.raises(corral.ConfigError) as unknown:
        corral.Platform(config={"default_tier": "gold"})
    assert unknown.value.code == "invalid_config"
    with pytest.raises(corral.ConfigError):
        corral.Platform(config="this is [not toml")
    with pytest.raises(corral.ConfigError, match="unknown field"):
        corral.Platform(config={"no_such_setting": 1})
    with pytest.raises(TypeError):
        corral.Platform(config=3)  # type: ignore[arg-type]
