//! A plain-HTTP client of the admin API.
//!
//! The base URL comes from `CORRAL_URL` (default [`DEFAULT_URL`]) and must
//! be `http://`: the CLI carries no TLS stack, so an `https://` URL is a
//! [`ClientError::Https`]. The token (`CORRAL_TOKEN`) is the admin token or
//! an account token; the server decides what it may do.
//!
//! ```
//! use corral_server::client::{ApiClient, ClientError};
//! let c = ApiClient::new("http://127.0.0.1:8080/", Some("corral_x".into())).unwrap();
//! assert_eq!(c.app_url("hello"), "http://127.0.0.1:8080/apps/hello/");
//! assert!(matches!(
//!     ApiClient::new("https://corral.example.com", None),
//!     Err(ClientError::Https { .. })
//! ));
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::ClientError;

/// `CORRAL_URL` when it is unset.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How long a request may take before [`ClientError::Timeout`] (a deploy
/// compiles the app on the server, so this is generous).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An error answer of the API: its status and its stable JSON error
/// (`{"error": code, "message": …}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message} (HTTP {status})")]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The stable error code (`not_found`, `forbidden`, `quota_exceeded`, …).
    pub code: String,
    /// The human message.
    pub message: String,
    /// The whole JSON body (with any extra fields such as `retry_after_ms`).
    pub body: Value,
}

impl ApiError {
    /// An error with `status`, `code` and `message` and a body of just those.
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            body: serde_json::json!({"error": code, "message": message}),
        }
    }

    /// Reads an error answer: the JSON error body when there is one, else
    /// `http_<status>` and the start of the body's text.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.get("error").and_then(Value::as_str).is_some() => Self {
                status: status.as_u16(),
                code: v["error"].as_str().unwrap_or_default().to_owned(),
                message: v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| status.canonical_reason().unwrap_or(""))
                    .to_owned(),
                body: v,
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(200).collect();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text
                };
                Self::new(
                    status.as_u16(),
                    &format!("http_{}", status.as_u16()),
                    &message,
                )
            }
        }
    }
}

/// A client of one server's admin API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// `scheme://authority` plus any path prefix, without a trailing `/`.
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// A client of the server at `url` (`http://host:port`, optionally with a
    /// path prefix) using `token` for the admin API.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(ClientError::Https {
                    url: url.to_owned(),
                });
            }
            Some(other) => return Err(bad(&format!("scheme {other} is not http"))),
            None => return Err(bad("expected http://host:port")),
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("no host"));
        };
        if uri.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let prefix = uri.path().trim_end_matches('/');
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Self {
            base: format!("http://{authority}{prefix}"),
            token: token.filter(|t| !t.is_empty()),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Where the server serves app `name` by path routing: `<base>/apps/<name>/`.
    pub fn app_url(&self, name: &str) -> String {
        format!("{}/apps/{name}/", self.base)
    }

    /// Sends an authenticated request to the admin API and returns the
    /// answer's head and unread body. An error status is an
    /// [`ApiError`] (its JSON body read).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let token = self.token.as_deref().ok_or(ClientError::NoToken)?;
        let auth =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::BadToken)?;
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, auth)
            .header(
                header::USER_AGENT,
                concat!("corral/", env!("CARGO_PKG_VERSION")),
            );
        let body = match body {
            Some((bytes, ct)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| ClientError::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let sent = self.http.request(req);
        let resp = match timeout {
            Some(t) => tokio::time::timeout(t, sent)
                .await
                .map_err(|_| ClientError::Timeout {
                    url: url.clone(),
                    secs: t.as_secs(),
                })?,
            None => sent.await,
        }
        .map_err(|source| ClientError::Connect {
            url: url.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = read_body(&url, resp.into_body()).await?;
        Err(ApiError::from_answer(status, &bytes).into())
    }

    /// Sends a request and reads the whole answer as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let resp = self.open(method, path, body, Some(REQUEST_TIMEOUT)).await?;
        let bytes = tokio::time::timeout_at(deadline, read_body(&url, resp.into_body()))
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                secs: REQUEST_TIMEOUT.as_secs(),
            })??;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
            url,
            reason: format!("not JSON: {e}"),
        })
    }
}

async fn read_body(url: &str, body: Incoming) -> Result<Bytes, ClientError> {
    Ok(body
        .collect()
        .await
        .map_err(|source| ClientError::Read {
            url: url.to_owned(),
            source,
        })?
        .to_bytes())
}

/// Percent-encodes `s` for a query value (app, tier and account names are
/// plain already; this keeps a stray character from changing the query).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = ApiClient::new("http://localhost:9/prefix/", None).unwrap();
        assert_eq!(c.base(), "http://localhost:9/prefix");
        assert_eq!(c.app_url("a"), "http://localhost:9/prefix/apps/a/");
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http://x/?a=1",
            "not a url",
        ] {
            assert!(
                matches!(ApiClient::new(bad, None), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            ApiClient::new("https://x", None),
            Err(ClientError::Https { .. })
        ));
    }

    #[test]
    fn api_errors() {
        let e = ApiError::from_answer(
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"no app named x"}"#,
        );
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (404, "not_found", "no app named x")
        );
        assert_eq!(e.to_string(), "not_found: no app named x (HTTP 404)");
        let e = ApiError::from_answer(StatusCode::BAD_GATEWAY, b"upstream gone\n");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_502", "upstream gone")
        );
        assert_eq!(query_value("a b&c"), "a%20b%26c");
    }
}
