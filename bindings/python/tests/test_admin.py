"""Operator calls: host, recalibrate, scrub, export and import."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

import corral
from conftest import HELLO, config, tier

# Stores what a POST sends under one KV key; a GET reads it back.
NOTES = """export default { async fetch(req, env) {
    if (req.method === "POST") {
        await env.KV.put("greeting", await req.text());
        return new Response("stored");
    }
    return new Response("kv=" + (await env.KV.get("greeting")));
} };"""


def roomy(data_dir: pathlib.Path) -> corral.Platform:
    return corral.Platform(
        data_dir=data_dir, config=config(tiers={"test": tier()}, runtime_slots=16)
    )


def test_host_and_recalibrate_report_the_probe_budget_and_modes(
    platform: corral.Platform,
) -> None:
    host = platform.host()
    assert host["probe"]["cpus"] >= 1
    assert 0 < host["probe"]["ram_available"] <= host["probe"]["ram_total"]
    assert host["budget"]["runtime_slots"] >= 1
    assert (host["runtime_slots"], host["runtime_slots_in_use"]) == (16, 0)
    assert host["cache"]["capacity"] > 0
    assert host["thresholds"]["disk"] == {"fire": 1.0, "rearm": 1.0}
    assert host["accepting_new_tenants"] is True
    assert host["maintenance"] is False

    platform.maintenance = True
    again = platform.recalibrate()
    assert again["maintenance"] is True
    assert again["runtime_slots"] == 16  # configured, so the new budget keeps it
    assert set(again) == set(host)


def test_scrub_verifies_every_blob_and_quarantines_a_corrupt_one(
    tmp_path: pathlib.Path,
) -> None:
    with roomy(tmp_path) as p:
        p.deploy("notes", NOTES, tier="test")
        assert p.invoke("notes", method="POST", body="hello").text == "stored"
        clean = p.scrub()
        assert clean["verified"] >= 2  # the bundle and the KV value at least
        assert clean["corrupt"] == []

    db = sqlite3.connect(tmp_path / "corral.db")
    key, data = db.execute(
        "SELECT key, data FROM blobs WHERE key LIKE '%greeting%'"
    ).fetchone()
    flipped = bytes([data[0] ^ 0xFF]) + data[1:]
    db.execute("UPDATE blobs SET data = ? WHERE key = ?", (flipped, key))
    db.commit()
    db.close()

    with roomy(tmp_path) as p:
        found = p.scrub()
        assert found["corrupt"] == [key]
        assert found["verified"] == clean["verified"]
        # The guest's KV read fails; uncaught, that is the guest's error.
        with pytest.raises(corral.ScriptError, match="quarantined"):
            p.invoke("notes")


def test_export_then_import_into_another_data_dir(tmp_path: pathlib.Path) -> None:
    with roomy(tmp_path / "a") as a:
        a.deploy("notes", NOTES, tier="test")
        a.invoke("notes", method="POST", body="hi there")
        before = a.invoke("notes").text
        assert before == "kv=hi there"
        archive = a.export_tenant("notes")
        assert isinstance(archive, bytes)

    path = tmp_path / "notes.corral"
    path.write_bytes(archive)
    with roomy(tmp_path / "b") as b:
        assert b.import_tenant(path, keep_tier=True, keep_usage=True) == "notes"
        assert b.invoke("notes").text == before
        assert b.usage("notes")["usage"]["requests"] == 3  # 2 in a, 1 here
        assert b.apps()[0]["tier"] == "test"
        with pytest.raises(corral.InvalidArchive, match="already exists"):
            b.import_tenant(archive)


def test_a_damaged_archive_imports_nothing(tmp_path: pathlib.Path) -> None:
    with roomy(tmp_path / "a") as a:
        a.deploy("notes", NOTES, tier="test")
        a.invoke("notes", method="POST", body="hi there")
        archive = a.export_tenant("notes")
        with pytest.raises(corral.TenantNotFound):
            a.export_tenant("nobody")

    bad = bytearray(archive)
    bad[len(bad) // 2] ^= 0xFF
    with roomy(tmp_path / "b") as b:
        b.deploy("hello", HELLO)
        for damaged in (bytes(bad), archive[: len(archive) // 2], b"", b"not an archive"):
            with pytest.raises(corral.InvalidArchive) as err:
                b.import_tenant(damaged)
            assert (err.value.code, err.value.status) == ("invalid_archive", 400)
        assert [app["name"] for app in b.apps()] == ["hello"]
        with pytest.raises(TypeError, match="not str"):
            b.import_tenant(archive.decode("latin-1"))  # type: ignore[arg-type]


def test_import_keeps_the_archives_tier_and_usage_only_when_asked(
    tmp_path: pathlib.Path,
) -> None:
    rated = tier(rate_per_minute=1, burst=1)
    with corral.Platform(
        data_dir=tmp_path / "a", config=config(tiers={"rated": rated}, runtime_slots=16)
    ) as a:
        a.deploy("notes", NOTES, tier="rated")
        a.invoke("notes", method="POST", body="hi")
        for _ in range(2):
            with pytest.raises(corral.RateLimited):
                a.invoke("notes")
        usage = a.usage("notes")["usage"]
        # Refused requests are counted apart and never spend the quota.
        assert (usage["requests"], usage["refused"]) == (1, {"rate_limited": 2})
        archive = a.export_tenant("notes")

    with roomy(tmp_path / "b") as b:  # has no "rated" tier
        assert b.import_tenant(archive) == "notes"
        assert b.apps()[0]["tier"] == "free"  # the default, not the archive's
        fresh = b.usage("notes")["usage"]
        assert (fresh["requests"], fresh["refused"]) == (0, {})
        assert b.remove("notes")

        with pytest.raises(corral.UnknownTier) as err:
            b.import_tenant(archive, keep_tier=True)
        assert (err.value.code, err.value.status) == ("unknown_tier", 400)
        assert b.apps() == []

        assert b.import_tenant(archive, keep_usage=True) == "notes"
        assert b.apps()[0]["tier"] == "free"
        kept = b.usage("notes")["usage"]
        assert (kept["requests"], kept["refused"]) == (1, {"rate_limited": 2})
        assert b.invoke("notes").text == "kv=hi"
