"""The exception hierarchy: classes, attributes, codes, pickling."""

from __future__ import annotations

import pickle

import pytest

import corral
import corral._errors


ERRORS = [
    "CorralError", "LimitExceeded", "FuelExhausted", "MemoryLimitExceeded", "DeadlineExceeded",
    "StackOverflow", "OutputTooLarge", "Trap", "ScriptError", "BadResponse", "OutboundRefused",
    "InvalidBundle",
    "InvalidModule", "InitialMemoryTooLarge", "BundleTooLarge", "PayloadTooLarge", "BodyTooLarge",
    "IntegrityError", "CorruptArtifact", "Overloaded", "RuntimeBusy", "TooManyStreams",
    "RateLimited", "QuotaExceeded", "Maintenance", "NotAcceptingTenants", "StorageQuotaExceeded",
    "TenantNotFound", "InvalidTenantName", "UnknownTier", "InvalidArchive", "ConfigError",
    "InternalError", "StorageError", "MissingTenant", "AccountNotFound", "AccountExists",
    "AccountNotEmpty", "AccountTier", "AppLimit",
]


def test_every_class_is_a_corral_error_and_exported() -> None:
    assert set(ERRORS) <= set(corral.__all__)
    assert set(ERRORS) == set(corral._errors.__all__)
    for name in ERRORS:
        cls = getattr(corral, name)
        assert issubclass(cls, corral.CorralError), name
        assert issubclass(cls, Exception), name


def test_hierarchy_and_builtin_bases() -> None:
    for cls in (
        corral.FuelExhausted,
        corral.MemoryLimitExceeded,
        corral.DeadlineExceeded,
        corral.StackOverflow,
        corral.OutputTooLarge,
    ):
        assert issubclass(cls, corral.LimitExceeded)
    assert issubclass(corral.InvalidModule, corral.InvalidBundle)
    assert issubclass(corral.InvalidModule, ValueError)
    assert issubclass(corral.InitialMemoryTooLarge, corral.InvalidModule)
    assert issubclass(corral.InvalidTenantName, ValueError)
    assert issubclass(corral.BundleTooLarge, ValueError)
    assert issubclass(corral.TenantNotFound, LookupError)
    assert issubclass(corral.CorruptArtifact, corral.IntegrityError)
    assert not issubclass(corral.RateLimited, corral.LimitExceeded)


@pytest.mark.parametrize(
    ("err", "code", "status", "attrs"),
    [
        (
            corral.FuelExhausted("f", limit=100, consumed=101),
            "fuel_exhausted",
            503,
            {"limit": 100, "consumed": 101},
        ),
        (corral.MemoryLimitExceeded("m", limit=1 << 20), "memory_limit", 503, {"limit": 1 << 20}),
        (corral.DeadlineExceeded("d", limit=0.25), "deadline_exceeded", 503, {"limit": 0.25}),
        (corral.StackOverflow("s"), "stack_overflow", 503, {}),
        (corral.OutputTooLarge("o", limit=7), "output_too_large", 502, {"limit": 7}),
        (corral.Trap("t"), "trap", 502, {}),
        (corral.ScriptError("boom", stack="at f"), "script_error", 502, {"stack": "at f"}),
        (corral.BadResponse("b"), "bad_response", 502, {}),
        (
            corral.OutboundRefused("o", authority="example.com"),
            "outbound_refused",
            502,
            {"authority": "example.com"},
        ),
        (corral.InvalidModule("i"), "invalid_module", 400, {}),
        (
            corral.InitialMemoryTooLarge("i", declared=2, limit=1),
            "initial_memory_too_large",
            400,
            {"declared": 2, "limit": 1},
        ),
        (
            corral.BundleTooLarge("b", limit=10, size=11),
            "bundle_too_large",
            413,
            {"limit": 10, "size": 11},
        ),
        (
            corral.IntegrityError("x", key="kv/a/k", expected=1, actual=2),
            "integrity_error",
            500,
            {"key": "kv/a/k", "expected": 1, "actual": 2},
        ),
        (corral.InvalidBundle("i"), "invalid_bundle", 400, {}),
        (
            corral.PayloadTooLarge("b", limit=1, size=2),
            "payload_too_large",
            413,
            {"limit": 1, "size": 2},
        ),
        (corral.Maintenance("m", retry_after=5.0), "maintenance", 503, {"retry_after": 5.0}),
        (corral.NotAcceptingTenants("n"), "not_accepting_tenants", 503, {}),
        (
            corral.StorageQuotaExceeded("s", limit=10, used=8, needed=4),
            "storage_quota_exceeded",
            507,
            {"limit": 10, "used": 8, "needed": 4},
        ),
        (corral.UnknownTier("u", tier="gold"), "unknown_tier", 400, {"tier": "gold"}),
        (corral.InvalidArchive("a"), "invalid_archive", 400, {}),
        (corral.ConfigError("c"), "invalid_config", 400, {}),
        (corral.CorruptArtifact("x"), "corrupt_artifact", 500, {}),
        (corral.Overloaded("o", retry_after=1.5), "overloaded", 429, {"retry_after": 1.5}),
        (corral.RuntimeBusy("b", retry_after=1.0), "runtime_busy", 503, {"retry_after": 1.0}),
        (
            corral.TooManyStreams("t", retry_after=1.0, limit=2),
            "too_many_streams",
            429,
            {"retry_after": 1.0, "limit": 2},
        ),
        (corral.RateLimited("r", retry_after=2.0), "rate_limited", 429, {"retry_after": 2.0}),
        (
            corral.QuotaExceeded("q", quota=10, used=10, resets_at="2026-12-01T00:00:00Z"),
            "quota_exceeded",
            429,
            {"quota": 10, "used": 10, "resets_at": "2026-12-01T00:00:00Z"},
        ),
        (corral.Maintenance("m"), "maintenance", 503, {}),
        (corral.TenantNotFound("n", tenant="nope"), "not_found", 404, {"tenant": "nope"}),
        (corral.InvalidTenantName("n", name="Bad"), "invalid_tenant", 400, {"name": "Bad"}),
        (corral.InternalError("x"), "internal", 500, {}),
    ],
)
def test_defaults_attributes_and_pickling(
    err: corral.CorralError, code: str, status: int, attrs: dict[str, object]
) -> None:
    assert err.code == code
    assert err.status == status
    assert str(err) == err.message
    for name, value in attrs.items():
        assert getattr(err, name) == value
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert (back.code, back.status, back.message, back.args) == (code, status, err.message, err.args)
    for name, value in attrs.items():
        assert getattr(back, name) == value


def test_explicit_code_and_status_override_defaults() -> None:
    err = corral.Overloaded("busy", code="runtime_slots", status=429)
    assert (err.code, err.status, err.retry_after) == ("runtime_slots", 429, None)


def test_fields_are_keyword_only_and_required() -> None:
    with pytest.raises(TypeError):
        corral.FuelExhausted("f", 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        corral.TenantNotFound("n")  # type: ignore[call-arg]


def test_every_rust_error_code_has_its_class_with_the_same_status() -> None:
    """Each code the Rust side raises maps to the class made for it (its
    ``default_code``), and both sides agree on the HTTP status."""
    table = corral._corral._error_table()
    assert len(table) > 20
    for code, status, class_name in table:
        assert class_name, f"{code} ({status}) has no Python class"
        cls = getattr(corral, class_name)
        assert issubclass(cls, corral.CorralError)
        assert (cls.default_code, cls.default_status) == (code, status), (
            f"Rust raises {code} ({status}) as {class_name}, "
            f"which is {cls.default_code} ({cls.default_status})"
        )
    codes = {code for code, _, _ in table}
    # One code for an oversized body, and every refusal kind is there.
    assert "payload_too_large" in codes and "body_too_large" not in codes
    assert {"rate_limited", "quota_exceeded", "overloaded", "runtime_busy",
            "too_many_streams", "maintenance"} <= codes


def test_body_too_large_is_the_old_name_of_payload_too_large() -> None:
    assert corral.BodyTooLarge is corral.PayloadTooLarge
