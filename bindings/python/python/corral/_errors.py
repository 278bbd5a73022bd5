"""The exception hierarchy of :mod:`corral`.

Every failure the Rust library reports is raised as one class below, carrying
the Rust error's fields as attributes. All of them derive from
:class:`CorralError`, and each has a stable :attr:`~CorralError.code` (the
``"error"`` field of the HTTP JSON body) and :attr:`~CorralError.status` (the
HTTP status the server would answer with).
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional, Tuple, Type

__all__ = [
    "CorralError",
    "LimitExceeded",
    "FuelExhausted",
    "MemoryLimitExceeded",
    "DeadlineExceeded",
    "StackOverflow",
    "OutputTooLarge",
    "Trap",
    "ScriptError",
    "BadResponse",
    "OutboundRefused",
    "InvalidBundle",
    "InvalidModule",
    "InitialMemoryTooLarge",
    "BundleTooLarge",
    "PayloadTooLarge",
    "BodyTooLarge",
    "IntegrityError",
    "CorruptArtifact",
    "Overloaded",
    "RuntimeBusy",
    "TooManyStreams",
    "RateLimited",
    "QuotaExceeded",
    "Maintenance",
    "NotAcceptingTenants",
    "StorageQuotaExceeded",
    "TenantNotFound",
    "InvalidTenantName",
    "UnknownTier",
    "AccountNotFound",
    "AccountExists",
    "AccountNotEmpty",
    "AccountTier",
    "AppLimit",
    "InvalidArchive",
    "ConfigError",
    "InternalError",
    "StorageError",
    "MissingTenant",
]


def _restore(
    cls: Type[CorralError], args: Tuple[Any, ...], state: Dict[str, Any]
) -> CorralError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class CorralError(Exception):
    """Base class of every Corral failure.

    >>> import corral
    >>> err = corral.FuelExhausted("fuel exhausted", limit=10, consumed=10)
    >>> isinstance(err, corral.CorralError), err.code, err.status
    (True, 'fuel_exhausted', 503)
    """

    #: The stable machine-readable code, e.g. ``"fuel_exhausted"``.
    code: str
    #: The HTTP status a frontend answers with.
    status: int
    #: The human-readable message (also ``str(err)``).
    message: str

    default_code: ClassVar[str] = "internal"
    default_status: ClassVar[int] = 500

    def __init__(
        self, message: str, *, code: Optional[str] = None, status: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = self.default_code if code is None else code
        self.status = self.default_status if status is None else status

    def __reduce__(self) -> Any:
        # Keyword-only fields survive pickling (multiprocessing, task queues).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class LimitExceeded(CorralError):
    """The request hit one of its per-request limits and was stopped."""

    default_code = "limit_exceeded"
    default_status = 503


class FuelExhausted(LimitExceeded):
    """The request used all its fuel (roughly, instructions)."""

    default_code = "fuel_exhausted"
    #: Fuel allowed per request.
    limit: int
    #: Fuel consumed when the guest was stopped.
    consumed: int

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        consumed: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit
        self.consumed = consumed


class MemoryLimitExceeded(LimitExceeded):
    """The guest tried to take more memory than its limit."""

    default_code = "memory_limit"
    #: The limit in bytes.
    limit: int

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit


class DeadlineExceeded(LimitExceeded):
    """The request ran past its wall-clock deadline."""

    default_code = "deadline_exceeded"
    #: The deadline in seconds.
    limit: float

    def __init__(
        self,
        message: str,
        *,
        limit: float,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit


class StackOverflow(LimitExceeded):
    """The guest overflowed its stack."""

    default_code = "stack_overflow"


class OutputTooLarge(LimitExceeded):
    """The guest wrote more response bytes than allowed."""

    default_code = "output_too_large"
    default_status = 502
    #: The limit in bytes.
    limit: int

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit


class Trap(CorralError):
    """The guest trapped (unreachable, out-of-bounds access, ...) or exited non-zero."""

    default_code = "trap"
    default_status = 502


class ScriptError(CorralError):
    """A JavaScript tenant threw."""

    default_code = "script_error"
    default_status = 502
    #: The JavaScript stack, when there is one.
    stack: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        stack: Optional[str] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.stack = stack


class BadResponse(CorralError):
    """The guest's response could not be parsed."""

    default_code = "bad_response"
    default_status = 502


class OutboundRefused(CorralError):
    """A WebAssembly component failed after the host refused its outbound HTTP
    request: the host is not on the tier's allow-list. ``authority`` is the
    ``host[:port]`` it tried to reach."""

    default_code = "outbound_refused"
    default_status = 502

    def __init__(
        self,
        message: str = "",
        *,
        authority: Optional[str] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.authority = authority


class InvalidBundle(CorralError, ValueError):
    """The upload could not be read (bad tar, no ``app.wasm``/``app.js``, ...)."""

    default_code = "invalid_bundle"
    default_status = 400


class InvalidModule(InvalidBundle):
    """The uploaded code is not a valid module or script."""

    default_code = "invalid_module"
    default_status = 400


class InitialMemoryTooLarge(InvalidModule):
    """The module declares more initial memory than the tenant may use."""

    default_code = "initial_memory_too_large"
    #: Initial memory the module declares, in bytes.
    declared: int
    #: The tenant's memory limit, in bytes.
    limit: int

    def __init__(
        self,
        message: str,
        *,
        declared: int,
        limit: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.declared = declared
        self.limit = limit


class BundleTooLarge(CorralError, ValueError):
    """The uploaded bundle is larger than the tier allows."""

    default_code = "bundle_too_large"
    default_status = 413
    #: The tier's bundle limit in bytes.
    limit: int
    #: The bundle's size in bytes.
    size: int

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        size: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit
        self.size = size


class PayloadTooLarge(CorralError, ValueError):
    """The request body is larger than the tier allows."""

    default_code = "payload_too_large"
    default_status = 413
    #: The tier's body limit in bytes, when known.
    limit: Optional[int]
    #: The body's size in bytes, when known.
    size: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        limit: Optional[int] = None,
        size: Optional[int] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit
        self.size = size


#: The name :class:`PayloadTooLarge` had before the code was ``payload_too_large``
#: everywhere; kept so that ``except corral.BodyTooLarge`` still works.
BodyTooLarge = PayloadTooLarge


class IntegrityError(CorralError):
    """Stored data failed its checksum; it was not served."""

    default_code = "integrity_error"
    default_status = 500
    #: The blob's key, when known.
    key: Optional[str]
    #: The CRC32 stored with the blob, when known.
    expected: Optional[int]
    #: The CRC32 of the bytes actually read, when known.
    actual: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        key: Optional[str] = None,
        expected: Optional[int] = None,
        actual: Optional[int] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.key = key
        self.expected = expected
        self.actual = actual


class CorruptArtifact(IntegrityError):
    """A persisted compiled artifact failed its checks; it was never executed."""

    default_code = "corrupt_artifact"


class Overloaded(CorralError):
    """No capacity right now: every compute share of the tenant is busy (the
    subclasses: host slots, open streams); retry later."""

    default_code = "overloaded"
    default_status = 429
    #: Seconds to wait before retrying, when known.
    retry_after: Optional[float]

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class RuntimeBusy(Overloaded):
    """Every host-wide runtime slot or instance is busy: the host, not the
    tenant, is at capacity."""

    default_code = "runtime_busy"
    default_status = 503


class TooManyStreams(Overloaded):
    """The tenant already holds open as many event streams as its tier allows."""

    default_code = "too_many_streams"
    default_status = 429
    #: Event streams the tier allows open at once, when known.
    limit: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        limit: Optional[int] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, code=code, status=status)
        self.limit = limit


class RateLimited(CorralError):
    """The tenant sent requests faster than its tier's rate."""

    default_code = "rate_limited"
    default_status = 429
    #: Seconds to wait before retrying.
    retry_after: float

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class QuotaExceeded(CorralError):
    """The tenant used its monthly quota."""

    default_code = "quota_exceeded"
    default_status = 429
    #: The quota (requests per month).
    quota: int
    #: What was used this period.
    used: int
    #: When the quota resets, as an ISO 8601 UTC timestamp, when known.
    resets_at: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        quota: int,
        used: int,
        resets_at: Optional[str] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.quota = quota
        self.used = used
        self.resets_at = resets_at


class Maintenance(CorralError):
    """The host is in maintenance mode; tenant traffic is refused."""

    default_code = "maintenance"
    default_status = 503
    #: Seconds to wait before retrying, when the operator gave a hint.
    retry_after: Optional[float]

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class NotAcceptingTenants(CorralError):
    """The host is over a resource threshold and takes no new tenants."""

    default_code = "not_accepting_tenants"
    default_status = 503


class StorageQuotaExceeded(CorralError):
    """A write would take the tenant past its storage quota."""

    default_code = "storage_quota_exceeded"
    default_status = 507
    #: The tenant's storage limit in bytes.
    limit: int
    #: Bytes in use before the write.
    used: int
    #: Net bytes the write would add.
    needed: int

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        used: int,
        needed: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.limit = limit
        self.used = used
        self.needed = needed


class TenantNotFound(CorralError, LookupError):
    """No tenant of that name is deployed."""

    default_code = "not_found"
    default_status = 404
    #: The requested tenant.
    tenant: str

    def __init__(
        self,
        message: str,
        *,
        tenant: str,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.tenant = tenant


class InvalidTenantName(CorralError, ValueError):
    """The name is not a valid tenant name (1-63 of ``a-z``, ``0-9``, ``-``)."""

    default_code = "invalid_tenant"
    default_status = 400
    #: The rejected name.
    name: str

    def __init__(
        self,
        message: str,
        *,
        name: str,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.name = name


class UnknownTier(CorralError, ValueError):
    """No tier of that name is configured."""

    default_code = "unknown_tier"
    default_status = 400
    #: The name asked for.
    tier: str

    def __init__(
        self,
        message: str,
        *,
        tier: str,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.tier = tier


class _AccountError(CorralError):
    """An error about one account (its name in ``account``)."""

    #: The account.
    account: str

    def __init__(
        self,
        message: str,
        *,
        account: str,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.account = account


class AccountNotFound(_AccountError, LookupError):
    """No account of that name."""

    default_code = "account_not_found"
    default_status = 404


class AccountExists(_AccountError):
    """An account of that name exists already."""

    default_code = "account_exists"
    default_status = 409


class AccountTier(_AccountError):
    """The app shares its account's tier with other apps: re-tier the
    account (``set_account_tier``) or move the app (``move_app``)."""

    default_code = "account_tier"
    default_status = 409


class AccountNotEmpty(_AccountError):
    """The account still holds apps; remove or move them first."""

    default_code = "account_not_empty"
    default_status = 409
    #: Apps it holds.
    apps: int

    def __init__(
        self,
        message: str,
        *,
        account: str,
        apps: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, account=account, code=code, status=status)
        self.apps = apps


class AppLimit(_AccountError):
    """A new app would take the account past its tier's ``max_apps``."""

    default_code = "app_limit"
    default_status = 403
    #: Apps the account holds.
    apps: int
    #: The tier's ``max_apps``.
    max_apps: int

    def __init__(
        self,
        message: str,
        *,
        account: str,
        apps: int,
        max_apps: int,
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, account=account, code=code, status=status)
        self.apps = apps
        self.max_apps = max_apps


class InvalidArchive(CorralError, ValueError):
    """A tenant export archive failed verification; nothing was imported."""

    default_code = "invalid_archive"
    default_status = 400


class ConfigError(CorralError, ValueError):
    """The platform settings are not usable."""

    default_code = "invalid_config"
    default_status = 400


class InternalError(CorralError):
    """The host failed (I/O, storage, ...); not the guest's fault."""

    default_code = "internal"
    default_status = 500


class StorageError(InternalError):
    """Storage failed on the host (I/O, SQLite); not the guest's fault."""

    default_code = "storage_error"
    default_status = 500


class MissingTenant(InternalError):
    """A request reached the platform naming no tenant: a bug in the caller."""

    default_code = "missing_tenant"
    default_status = 500
