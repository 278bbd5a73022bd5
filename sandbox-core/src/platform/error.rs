//! The platform's one error type, with a stable HTTP mapping.

use bytes::Bytes;
use corral_limits::{BoxError, Refused, TenantId};
use corral_storage::StorageError;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::SandboxError;

/// Why a platform operation failed.
///
/// Every variant has a stable machine-readable [`code`](Self::code), an HTTP
/// [`status`](Self::status), and a JSON body from [`to_http`](Self::to_http)
/// such as `{"error":"fuel_exhausted","message":"…","limit":1000,"consumed":1000}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The sandbox refused or failed the request (fuel, memory, deadline, …).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A limit refused the request (overloaded, rate, quota, maintenance,
    /// runtime busy, too many streams, a body over the tier's size): the one
    /// refusal type of corral-limits, which gives the code, status, retry
    /// hint and fields.
    /// Boxed: it is the largest variant, and errors travel by value.
    #[error(transparent)]
    Refused(Box<Refused>),
    /// Storage failed, including a blob that failed its CRC32 check. (A
    /// storage "tenant not found" becomes [`NotFound`](Self::NotFound).)
    #[error(transparent)]
    Storage(StorageError),
    /// No app of that name is deployed.
    #[error("app {tenant} not found")]
    NotFound {
        /// The name asked for.
        tenant: TenantId,
    },
    /// No account of that name.
    #[error("account {account} not found")]
    AccountNotFound {
        /// The name asked for.
        account: TenantId,
    },
    /// An account of that name exists already.
    #[error("account {account} already exists")]
    AccountExists {
        /// The name asked for.
        account: TenantId,
    },
    /// The account still holds apps: remove or move them first.
    #[error("account {account} still holds {apps} app(s)")]
    AccountNotEmpty {
        /// The account.
        account: TenantId,
        /// Apps it holds.
        apps: u64,
    },
    /// A new app would take the account past its tier's `max_apps`.
    #[error("account {account} holds {apps} app(s), as many as its tier allows ({max})")]
    AppLimit {
        /// The account.
        account: TenantId,
        /// Apps it holds.
        apps: u64,
        /// The tier's `max_apps`.
        max: u32,
    },
    /// An app shares its tier with the other apps of its account: re-tier
    /// the account instead.
    #[error("app is in account {account} with other apps; its tier is the account's")]
    AccountTier {
        /// The app's account.
        account: TenantId,
    },
    /// The tier named does not exist.
    #[error("unknown tier {tier:?}")]
    UnknownTier {
        /// The name asked for.
        tier: String,
    },
    /// The bundle is larger than the tier allows.
    #[error("bundle of {size} bytes exceeds the tier's limit of {limit} bytes")]
    BundleTooLarge {
        /// The tier's `max_bundle_bytes`.
        limit: u64,
        /// The bundle's size.
        size: u64,
    },
    /// The bundle could not be read (bad tar, no `app.wasm`/`app.js`, …).
    #[error("invalid bundle: {reason}")]
    InvalidBundle {
        /// What is wrong with it.
        reason: String,
    },
    /// The host is over a threshold and takes no new tenants.
    #[error("this node is not accepting new tenants")]
    NotAcceptingTenants,
    /// An export archive failed verification; nothing was imported.
    #[error("invalid archive: {reason}")]
    InvalidArchive {
        /// What failed.
        reason: String,
    },
    /// A request reached the platform's service without a [`TenantId`]
    /// extension: a frontend bug, not the client's.
    #[error("the request names no tenant")]
    MissingTenant,
    /// The settings are not usable.
    #[error(transparent)]
    Config(#[from] super::ConfigError),
    /// A host-side failure (I/O, a task that panicked, …).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for PlatformError {
    /// One "no such app" for callers, whichever layer noticed: the store's
    /// `TenantNotFound` is the platform's `NotFound` (404 `not_found`).
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::TenantNotFound { tenant } => Self::NotFound { tenant },
            StorageError::AccountNotFound { account } => Self::AccountNotFound { account },
            StorageError::AccountExists { account } => Self::AccountExists { account },
            StorageError::AccountNotEmpty { account, apps } => {
                Self::AccountNotEmpty { account, apps }
            }
            StorageError::AppLimit { account, apps, max } => Self::AppLimit { account, apps, max },
            e => Self::Storage(e),
        }
    }
}

impl PlatformError {
    /// Classifies a boxed error from the layer stack.
    pub(crate) fn from_box(err: BoxError) -> Self {
        let err = match err.downcast::<SandboxError>() {
            Ok(e) => return Self::Sandbox(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<PlatformError>() {
            Ok(e) => return *e,
            Err(e) => e,
        };
        let err = match err.downcast::<StorageError>() {
            Ok(e) => return Self::Storage(*e),
            Err(e) => e,
        };
        if let Some(r) = Refused::of(&*err) {
            return Self::Refused(Box::new(r));
        }
        if corral_limits::error_response(&err).is_some() {
            // corral-limits' `MissingTenant`: a frontend bug, as ours.
            return Self::MissingTenant;
        }
        Self::Internal(err.to_string())
    }

    /// The stable machine-readable code, e.g. `"not_found"`.
    ///
    /// ```
    /// use corral::platform::PlatformError;
    /// assert_eq!(PlatformError::NotAcceptingTenants.code(), "not_accepting_tenants");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sandbox(e) => e.code(),
            Self::Refused(r) => r.code(),
            // A blob that failed its CRC32, now or on an earlier read.
            Self::Storage(StorageError::Integrity { .. } | StorageError::Quarantined { .. }) => {
                "integrity_error"
            }
            Self::Storage(StorageError::StorageQuotaExceeded { .. }) => "storage_quota_exceeded",
            Self::Storage(_) => "storage_error",
            Self::NotFound { .. } => "not_found",
            Self::AccountNotFound { .. } => "account_not_found",
            Self::AccountExists { .. } => "account_exists",
            Self::AccountNotEmpty { .. } => "account_not_empty",
            Self::AppLimit { .. } => "app_limit",
            Self::AccountTier { .. } => "account_tier",
            Self::UnknownTier { .. } => "unknown_tier",
            Self::BundleTooLarge { .. } => "bundle_too_large",
            Self::InvalidBundle { .. } => "invalid_bundle",
            Self::NotAcceptingTenants => "not_accepting_tenants",
            Self::InvalidArchive { .. } => "invalid_archive",
            Self::Config(_) => "invalid_config",
            Self::MissingTenant => "missing_tenant",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status a frontend answers with.
    ///
    /// ```
    /// use corral::platform::PlatformError;
    /// assert_eq!(PlatformError::BundleTooLarge { limit: 1, size: 2 }.status(), 413);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Sandbox(e) => e.status(),
            Self::Refused(r) => r.status(),
            Self::Storage(StorageError::StorageQuotaExceeded { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            Self::Storage(StorageError::InvalidKey(_)) => StatusCode::BAD_REQUEST,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound { .. } | Self::AccountNotFound { .. } => StatusCode::NOT_FOUND,
            Self::AccountExists { .. }
            | Self::AccountNotEmpty { .. }
            | Self::AccountTier { .. } => StatusCode::CONFLICT,
            Self::AppLimit { .. } => StatusCode::FORBIDDEN,
            Self::UnknownTier { .. }
            | Self::InvalidBundle { .. }
            | Self::InvalidArchive { .. }
            | Self::Config(_) => StatusCode::BAD_REQUEST,
            Self::BundleTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotAcceptingTenants => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::MissingTenant => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Status, headers (`Content-Type`, `Retry-After` where it applies) and a
    /// stable JSON body: `{"error": code, "message": …, …fields}`.
    ///
    /// ```
    /// use corral::platform::PlatformError;
    /// let (status, headers, body) = PlatformError::BundleTooLarge { limit: 10, size: 11 }.to_http();
    /// assert_eq!(status, 413);
    /// assert_eq!(headers["content-type"], "application/json");
    /// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    /// assert_eq!(v["error"], "bundle_too_large");
    /// assert_eq!(v["limit"], 10);
    ///
    /// let big = corral_limits::Refused::payload_too_large(None, 10, Some(11));
    /// let (status, _, body) = PlatformError::Refused(Box::new(big)).to_http();
    /// assert_eq!(status, 413);
    /// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    /// assert_eq!((v["error"].as_str(), v["size"].as_u64()), (Some("payload_too_large"), Some(11)));
    /// ```
    pub fn to_http(&self) -> (StatusCode, HeaderMap, Bytes) {
        if let Self::Refused(r) = self {
            return r.to_http();
        }
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code().into());
        body.insert("message".into(), self.to_string().into());
        for (k, v) in self.fields() {
            body.insert(k.into(), v);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let bytes = serde_json::to_vec(&serde_json::Value::Object(body)).unwrap_or_default();
        (self.status(), headers, Bytes::from(bytes))
    }

    /// The variant's fields as JSON values, for error bodies and bindings.
    pub fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::json;
        match self {
            Self::Sandbox(e) => match e {
                SandboxError::FuelExhausted { limit, consumed } => {
                    vec![("limit", json!(limit)), ("consumed", json!(consumed))]
                }
                SandboxError::MemoryLimit { limit } | SandboxError::OutputTooLarge { limit } => {
                    vec![("limit", json!(limit))]
                }
                SandboxError::Deadline { limit } => {
                    vec![("limit_ms", json!(limit.as_millis() as u64))]
                }
                SandboxError::ScriptError { message, stack } => {
                    vec![("script_message", json!(message)), ("stack", json!(stack))]
                }
                SandboxError::TenantNotFound { tenant } => vec![("tenant", json!(tenant))],
                _ => vec![],
            },
            Self::Refused(r) => r.fields(),
            Self::Storage(StorageError::Integrity {
                key,
                expected,
                actual,
            }) => vec![
                ("key", json!(key)),
                ("expected", json!(expected)),
                ("actual", json!(actual)),
            ],
            Self::NotFound { tenant } => vec![("tenant", json!(tenant))],
            Self::AccountNotFound { account }
            | Self::AccountExists { account }
            | Self::AccountTier { account } => vec![("account", json!(account))],
            Self::AccountNotEmpty { account, apps } => {
                vec![("account", json!(account)), ("apps", json!(apps))]
            }
            Self::AppLimit { account, apps, max } => vec![
                ("account", json!(account)),
                ("apps", json!(apps)),
                ("max_apps", json!(max)),
            ],
            Self::UnknownTier { tier } => vec![("tier", json!(tier))],
            Self::BundleTooLarge { limit, size } => {
                vec![("limit", json!(limit)), ("size", json!(size))]
            }
            _ => vec![],
        }
    }
}
