//! The `corral` client CLI for app developers: scaffold an app, run it
//! locally, deploy it and look after it through the admin API.
//!
//! - [`cli`]: the command line (`init`, `dev`, `deploy`, `apps`, `usage`,
//!   `logs`, `delete`, `tier`) and what each command prints.
//! - [`api`]: a small plain-HTTP client of the admin API (`CORRAL_URL`,
//!   `CORRAL_TOKEN`); no TLS stack, so `https://` URLs are refused.
//! - [`bundle`]: what `deploy` and `dev` ship: a JavaScript file, a
//!   WebAssembly module, or a tar of `app.js`/`app.wasm` plus `static/**`.
//! - [`template`]: the apps `corral init` writes.
//! - [`dev`]: `corral dev`, the app on an embedded platform that reloads on change.
//!
//! Every failure is a [`ClientError`], and each kind has one stable process
//! exit code ([`Exit`]):
//!
//! ```
//! use corral_server::client::{ClientError, Exit};
//! let e = ClientError::Https { url: "https://corral.example.com".into() };
//! assert_eq!(e.exit(), Exit::Config);
//! assert_eq!(Exit::Config.code(), 3);
//! ```

pub mod api;
pub mod bundle;
pub mod cli;
pub mod dev;
pub mod template;

use std::path::PathBuf;

pub use api::{ApiClient, ApiError};

/// The process exit codes of `corral`, stable across releases.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | a local failure: a file, a bundle, the dev server |
/// | 2 | bad command line (clap's own code) |
/// | 3 | configuration: `CORRAL_URL` invalid or `https://`, `CORRAL_TOKEN` unset |
/// | 4 | the server could not be reached, or did not answer in time |
/// | 5 | the API answered 404 (no such app, account or route) |
/// | 6 | the API refused the token: 401 or 403 |
/// | 7 | the API answered any other error (4xx or 5xx; its code is printed) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: success.
    Ok = 0,
    /// 1: a local failure (a file, a bundle, the dev server).
    Local = 1,
    /// 2: a bad command line.
    Usage = 2,
    /// 3: configuration (`CORRAL_URL`, `CORRAL_TOKEN`).
    Config = 3,
    /// 4: the server could not be reached or did not answer in time.
    Unreachable = 4,
    /// 5: the API answered 404.
    NotFound = 5,
    /// 6: the API answered 401 or 403.
    Denied = 6,
    /// 7: the API answered another error.
    Api = 7,
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Why a `corral` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `CORRAL_URL` (or `--url`) is not an `http://host:port` URL.
    #[error("CORRAL_URL {url:?} is not a valid URL: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `CORRAL_URL` is `https://`: the CLI speaks plain HTTP only.
    #[error(
        "CORRAL_URL {url:?}: https is not supported; the corral CLI speaks plain http \
         (run it on the server's host against http://127.0.0.1:PORT, or through an SSH tunnel)"
    )]
    Https {
        /// The URL as given.
        url: String,
    },
    /// No token was given for a command that calls the admin API.
    #[error(
        "CORRAL_TOKEN is not set: export the admin token or an account token (corral_acct_...)"
    )]
    NoToken,
    /// The token is not a valid header value.
    #[error("CORRAL_TOKEN holds characters that cannot go in an HTTP header")]
    BadToken,
    /// The server could not be reached.
    #[error("cannot reach {url}: {}", root_cause(source))]
    Connect {
        /// The request URL.
        url: String,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The connection failed while reading the answer.
    #[error("reading the answer from {url}: {source}")]
    Read {
        /// The request URL.
        url: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The server did not answer in time.
    #[error("{url}: no answer within {secs} s")]
    Timeout {
        /// The request URL.
        url: String,
        /// The deadline in seconds.
        secs: u64,
    },
    /// The API answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The API answered 2xx with a body that is not the expected JSON.
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A name is not a valid app name.
    #[error("{name:?} is not a valid app name: {source}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        #[source]
        source: corral::InvalidTenantId,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path given to `deploy` or `dev` holds no app.
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// `corral init` would overwrite something.
    #[error("{} already exists and is not empty; pick another name or remove it", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// The embedded platform of `corral dev` failed.
    #[error("dev server: {0}")]
    Dev(#[from] crate::app::ServerError),
}

impl ClientError {
    /// The exit code for this failure ([`Exit`]).
    ///
    /// ```
    /// use corral_server::client::{ApiError, ClientError, Exit};
    /// let e = ClientError::Api(ApiError::new(404, "not_found", "no app named x"));
    /// assert_eq!(e.exit(), Exit::NotFound);
    /// let e = ClientError::Api(ApiError::new(429, "quota_exceeded", "the month is used up"));
    /// assert_eq!(e.exit(), Exit::Api);
    /// ```
    pub fn exit(&self) -> Exit {
        match self {
            Self::BadUrl { .. } | Self::Https { .. } | Self::NoToken | Self::BadToken => {
                Exit::Config
            }
            Self::Connect { .. } | Self::Read { .. } | Self::Timeout { .. } => Exit::Unreachable,
            Self::Api(e) => match e.status {
                404 => Exit::NotFound,
                401 | 403 => Exit::Denied,
                _ => Exit::Api,
            },
            Self::BadResponse { .. } => Exit::Api,
            Self::InvalidName { .. } => Exit::Usage,
            Self::Io { .. } | Self::Bundle(_) | Self::Exists { .. } | Self::Dev(_) => Exit::Local,
        }
    }

    /// The error as JSON, for `--json`: the API's own body for an API
    /// error, else `{"error": <kind>, "message": <text>}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Api(e) => e.body.clone(),
            other => serde_json::json!({
                "error": other.kind(),
                "message": other.to_string(),
            }),
        }
    }

    /// A stable snake-case name of the failure's kind (`"unreachable"`,
    /// `"no_token"`, …), or the API's error code for an API error.
    pub fn kind(&self) -> &str {
        match self {
            Self::BadUrl { .. } => "bad_url",
            Self::Https { .. } => "https_unsupported",
            Self::NoToken => "no_token",
            Self::BadToken => "bad_token",
            Self::Connect { .. } | Self::Read { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Api(e) => &e.code,
            Self::BadResponse { .. } => "bad_response",
            Self::InvalidName { .. } => "invalid_name",
            Self::Io { .. } => "io",
            Self::Bundle(_) => "bundle",
            Self::Exists { .. } => "exists",
            Self::Dev(_) => "dev",
        }
    }
}

/// The innermost cause of `e` (hyper's "client error (Connect)" says less
/// than the "Connection refused" under it).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}

/// `ClientError::Io` for `path`, for `map_err`.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.into();
    move |source| ClientError::Io { path, source }
}
