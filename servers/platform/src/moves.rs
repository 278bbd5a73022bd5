//! Moving an app to another node while it keeps answering (issue 20).
//!
//! `POST /api/apps/{name}/move` with `{"to": "node2"}`, sent to the node that
//! serves the app (or `corral-server tenant move NAME --to node2` there):
//!
//! 1. **Hold.** New requests for the app wait on this node instead of
//!    running; the ones already running, and its open streams, finish (for
//!    up to `http.drain_timeout`; past it the move is refused with 409
//!    `move_busy` and nothing changed).
//! 2. **Hand over.** The app's archive (bundle, KV, usage months and tier,
//!    every entry CRC-checked) is imported on the peer named in
//!    `[nodes.peers]`, with the caller's own token: every node accepts the
//!    same admin token (`corral-server admin-token`).
//! 3. **Re-route.** With `[nodes] proxy_socket`, HAProxy's runtime API adds
//!    `app → node` to the moves map its config reads (`deploy/nodes/haproxy.cfg`),
//!    so new requests go straight to the peer.
//! 4. **Forward.** The held requests, and any that still reach this node
//!    (sent before the proxy knew), are forwarded to the peer; the app is
//!    removed here. The forward lasts until the app is deployed here again.
//!
//! If the hold or the hand-over fails, the held requests run here as if
//! nothing happened: a move either completes or changes nothing.
//!
//! Between nodes that share one store (PostgreSQL) step 2 is skipped: the
//! peer already serves the app from the shared store (its app sync loaded
//! it), so a move is the re-route plus the forward, and the app stays in the
//! store. Nodes with their own SQLite file move the archive, which is why the
//! app holds its requests meanwhile: a write during the copy would be lost.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::TenantId;
use corral::platform::Platform;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::config::NodesConfig;
use crate::http::{Body, BoxError, error};

/// The most a held request waits for its app's move to finish; past it the
/// request gets 503 `app_moving` with `Retry-After`. The move itself gives
/// up well before (drain timeout plus the hand-over's deadline).
const HOLD_MAX: Duration = Duration::from_secs(120);
/// How long the hand-over to the peer (connect, import) may take.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a forwarded request may take beyond its tier's wall clock (the
/// peer's queue wait, a cold start, the hop itself).
const FORWARD_MARGIN: Duration = Duration::from_secs(10);
/// Marks a request this node forwarded, so two nodes that each think the
/// other has the app answer 508 instead of passing it back and forth.
/// It names a node, so it is taken off before a guest sees the request.
pub(crate) const FORWARDED: &str = "x-corral-forwarded-by";
/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Marks an answer that came from the node an app moved to: its
/// `x-corral-node` is that node's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarded;

/// Where a request for an app that moved away goes.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    node: String,
    base: http::Uri,
    /// The app's request-body cap, kept from its tier: the app is gone here.
    pub(crate) max_body: u64,
    /// How long the peer may take to send an answer's head: the tier's wall
    /// clock plus [`FORWARD_MARGIN`]. A peer that accepts and never answers
    /// must not keep this node's connection forever.
    answer_within: Duration,
}

#[derive(Debug, Clone)]
enum Entry {
    /// A move is under way; the receiver changes when it ends.
    Holding(watch::Receiver<()>),
    /// The app now lives on another node.
    Moved(Forward),
}

/// What this node knows of apps that are moving or moved away. Empty (one
/// atomic load per request) unless a move has happened.
#[derive(Debug)]
pub(crate) struct Moves {
    nodes: NodesConfig,
    entries: AtomicUsize,
    table: RwLock<HashMap<TenantId, Entry>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why a move was refused; each becomes a JSON error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MoveError {
    /// `to` names no peer in `[nodes.peers]` (or this node) → 400 `unknown_node`.
    #[error("{0:?} is not a peer in [nodes.peers] of this node")]
    UnknownNode(String),
    /// The app is not deployed on this node → 404 `not_found`.
    #[error("{0} is not deployed on this node")]
    NotFound(TenantId),
    /// Another move of this app is under way → 409 `move_in_progress`.
    #[error("a move of this app is already under way")]
    InProgress,
    /// Requests or streams still ran at the drain deadline → 409 `move_busy`.
    #[error(
        "{in_flight} requests and {streams} streams still open after {waited:?}; nothing was moved"
    )]
    Busy {
        in_flight: usize,
        streams: u64,
        waited: Duration,
    },
    /// The peer refused or failed the import → 502 `move_failed`.
    #[error("the import on {node} failed: {reason}")]
    Handover { node: String, reason: String },
}

impl MoveError {
    pub(crate) fn to_response(&self) -> Response<Body> {
        let (status, code) = match self {
            MoveError::UnknownNode(_) => (StatusCode::BAD_REQUEST, "unknown_node"),
            MoveError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            MoveError::InProgress => (StatusCode::CONFLICT, "move_in_progress"),
            MoveError::Busy { .. } => (StatusCode::CONFLICT, "move_busy"),
            MoveError::Handover { .. } => (StatusCode::BAD_GATEWAY, "move_failed"),
        };
        error(status, code, self)
    }
}

/// What the move did, for its JSON answer.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Moved {
    moved: TenantId,
    to: String,
    /// The archive's size (0 between nodes that share one store: nothing
    /// is copied).
    bytes: usize,
    /// How long new requests were held.
    held_ms: u64,
    /// `"switched"` (HAProxy's moves map names the peer now) or
    /// `"not_configured"` (no `[nodes] proxy_socket`: requests that reach
    /// this node are forwarded).
    proxy: &'static str,
}

/// Lifts a hold when dropped, unless the move completed.
struct HoldGuard<'a> {
    moves: &'a Moves,
    name: TenantId,
    done: bool,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.moves.remove(&self.name);
        }
        // The sender (in the entry that was just replaced or removed) is
        // gone: every held request wakes up and looks again.
    }
}

impl Moves {
    pub(crate) fn new(nodes: NodesConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Moves {
            nodes,
            entries: AtomicUsize::new(0),
            table: RwLock::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    fn entry(&self, name: &TenantId) -> Option<Entry> {
        if self.entries.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn insert(&self, name: TenantId, entry: Entry) -> Option<Entry> {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let old = t.insert(name, entry);
        self.entries.store(t.len(), Ordering::Release);
        old
    }

    fn remove(&self, name: &TenantId) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        t.remove(name);
        self.entries.store(t.len(), Ordering::Release);
    }

    /// The app is deployed (or imported) here again: stop forwarding it.
    pub(crate) fn forget(&self, name: &TenantId) {
        if matches!(self.entry(name), Some(Entry::Moved(_))) {
            self.remove(name);
        }
    }

    /// Where a request for `name` runs: `Ok(None)` here, `Ok(Some(_))` on the
    /// node it moved to. While a move is under way this waits for it (up to
    /// [`HOLD_MAX`], then 503).
    pub(crate) async fn settle(&self, name: &TenantId) -> Result<Option<Forward>, Response<Body>> {
        let deadline = tokio::time::Instant::now() + HOLD_MAX;
        loop {
            match self.entry(name) {
                None => return Ok(None),
                Some(Entry::Moved(f)) => return Ok(Some(f)),
                Some(Entry::Holding(mut rx)) => {
                    // Ends when the move replaces or removes the entry (its
                    // sender drops) or changes it.
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        let mut r = error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "app_moving",
                            format!("{name} is moving to another node; try again"),
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return Err(r);
                    }
                }
            }
        }
    }

    /// Sends the request on to the node the app moved to and streams its
    /// answer back. `parts` are the request as it arrived (its host and path
    /// name the app there as they did here).
    pub(crate) async fn forward(
        &self,
        to: &Forward,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> Response<Body> {
        if parts.headers.contains_key(FORWARDED) {
            return error(
                StatusCode::LOOP_DETECTED,
                "forward_loop",
                "this request was already forwarded once by a node the app moved from",
            );
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let uri = match http::Uri::builder()
            .scheme("http")
            .authority(to.base.authority().map_or("", |a| a.as_str()))
            .path_and_query(path)
            .build()
        {
            Ok(u) => u,
            Err(e) => return error(StatusCode::BAD_GATEWAY, "forward_failed", e),
        };
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        let me = self.nodes.name.as_deref().unwrap_or("unnamed");
        if let Ok(v) = HeaderValue::from_str(me) {
            parts.headers.insert(FORWARDED, v);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = parts.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = parts.headers;
        let answer = match tokio::time::timeout(to.answer_within, self.client.request(req)).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", to.answer_within)),
        };
        match answer {
            Ok(resp) => {
                let mut resp = resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
                resp.extensions_mut().insert(Forwarded);
                resp
            }
            Err(e) => error(
                StatusCode::BAD_GATEWAY,
                "forward_failed",
                format!("the app moved to {}, which did not answer: {e}", to.node),
            ),
        }
    }

    /// Moves `name` to the peer `to` (see the module docs). `auth` is the
    /// caller's `Authorization` header, presented to the peer's import.
    pub(crate) async fn move_app(
        &self,
        platform: &Platform,
        name: TenantId,
        to: &str,
        auth: Option<HeaderValue>,
        drain: Duration,
    ) -> Result<Moved, MoveError> {
        let base = self
            .nodes
            .peers
            .get(to)
            .filter(|_| self.nodes.name.as_deref() != Some(to))
            .and_then(|u| u.parse::<http::Uri>().ok())
            .ok_or_else(|| MoveError::UnknownNode(to.to_owned()))?;
        let tier = platform
            .resolve_app(&name)
            .map(|a| a.tier().clone())
            .ok_or_else(|| MoveError::NotFound(name.clone()))?;
        let forward = Forward {
            node: to.to_owned(),
            base,
            max_body: tier.max_body_bytes,
            answer_within: tier.wall_clock + FORWARD_MARGIN,
        };

        // 1. Hold new requests, let the running ones finish.
        let (tx, rx) = watch::channel(());
        {
            let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
            if matches!(t.get(&name), Some(Entry::Holding(_))) {
                return Err(MoveError::InProgress);
            }
            t.insert(name.clone(), Entry::Holding(rx));
            self.entries.store(t.len(), Ordering::Release);
        }
        let guard = HoldGuard {
            moves: self,
            name: name.clone(),
            done: false,
        };
        let held = Instant::now();
        let mut quiet = 0;
        loop {
            let s = platform.status(&name).map_err(|e| MoveError::Handover {
                node: to.to_owned(),
                reason: e.to_string(),
            })?;
            // Twice in a row: a request that looked before the hold began
            // may be between that look and the sandbox for a moment.
            quiet = if s.in_flight == 0 && s.streams == 0 {
                quiet + 1
            } else {
                0
            };
            if quiet >= 2 {
                break;
            }
            if held.elapsed() >= drain {
                return Err(MoveError::Busy {
                    in_flight: s.in_flight,
                    streams: s.streams,
                    waited: held.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        if platform.store().is_shared() {
            // One store for every node: the peer already has the app (its
            // app sync loaded it) and its KV; there is nothing to copy and
            // nothing to remove here (removing it would remove it for all).
            return Ok(self
                .switch(platform, name, forward, held, 0, guard, tx, false)
                .await);
        }

        // 2. Hand the archive over.
        let p = platform.clone();
        let n = name.clone();
        let archive = tokio::task::spawn_blocking(move || p.export_tenant(&n))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| MoveError::Handover {
                node: to.to_owned(),
                reason: format!("exporting: {reason}"),
            })?;
        let bytes = archive.len();
        self.import_on(&forward.base, to, archive, auth).await?;
        Ok(self
            .switch(platform, name, forward, held, bytes, guard, tx, true)
            .await)
    }

    /// Steps 3 and 4: tell the proxy, forward what still comes here, and
    /// (`remove`: a store of this node's own) forget the app here.
    #[allow(clippy::too_many_arguments)]
    async fn switch(
        &self,
        platform: &Platform,
        name: TenantId,
        forward: Forward,
        held: Instant,
        bytes: usize,
        mut guard: HoldGuard<'_>,
        tx: watch::Sender<()>,
        remove: bool,
    ) -> Moved {
        let to = forward.node.clone();
        let proxy = match &self.nodes.proxy_socket {
            Some(socket) => match haproxy_set(socket, self.nodes.proxy_map(), &name, &to).await {
                Ok(()) => "switched",
                Err(e) => {
                    // The app lives on the peer now whatever the proxy says:
                    // this node forwards, so nothing is lost; say so loudly.
                    tracing::warn!(app = %name, node = %to, "moves map not updated: {e}");
                    "not_switched"
                }
            },
            None => "not_configured",
        };
        self.insert(name.clone(), Entry::Moved(forward));
        guard.done = true;
        drop(tx);
        let held_ms = u64::try_from(held.elapsed().as_millis()).unwrap_or(u64::MAX);
        if remove && let Err(e) = platform.remove(&name) {
            tracing::warn!(app = %name, "moved to {to}, but removing it here failed: {e}");
        }
        tracing::info!(app = %name, node = %to, bytes, held_ms, "app moved");
        Moved {
            moved: name,
            to,
            bytes,
            held_ms,
            proxy,
        }
    }

    async fn import_on(
        &self,
        base: &http::Uri,
        node: &str,
        archive: Vec<u8>,
        auth: Option<HeaderValue>,
    ) -> Result<(), MoveError> {
        let failed = |reason: String| MoveError::Handover {
            node: node.to_owned(),
            reason,
        };
        let uri = format!(
            "http://{}/api/import?keep_tier=true&keep_usage=true",
            base.authority().map_or("", |a| a.as_str())
        );
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-tar")
            .body(Full::new(Bytes::from(archive)))
            .map_err(|e| failed(e.to_string()))?;
        if let Some(a) = auth {
            req.headers_mut().insert(header::AUTHORIZATION, a);
        }
        let answer = tokio::time::timeout(HANDOVER_TIMEOUT, async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| failed(format!("no answer within {HANDOVER_TIMEOUT:?}")))?
        .map_err(failed)?;
        match answer {
            (s, _) if s.is_success() => Ok(()),
            (s, body) => Err(failed(format!(
                "{s}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            ))),
        }
    }
}

/// Points `app` at server `node` in HAProxy's moves map, through its
/// runtime API (a unix socket path, or `host:port`): `del map` then
/// `add map`, each on its own connection as the API expects.
async fn haproxy_set(socket: &str, map: &str, app: &TenantId, node: &str) -> Result<(), String> {
    // Only names that cannot break the command line reach it: app names are
    // checked by TenantId, node names by the config.
    haproxy_command(socket, &format!("del map {map} {app}\n")).await?;
    let out = haproxy_command(socket, &format!("add map {map} {app} {node}\n")).await?;
    if out.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("HAProxy answered: {}", out.trim()))
    }
}

async fn haproxy_command(socket: &str, line: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn talk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut s: S,
        line: &str,
    ) -> std::io::Result<String> {
        s.write_all(line.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }
    let run = async {
        if socket.starts_with('/') {
            talk(tokio::net::UnixStream::connect(socket).await?, line).await
        } else {
            talk(tokio::net::TcpStream::connect(socket).await?, line).await
        }
    };
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| format!("{socket}: no answer within 5 s"))?
        .map_err(|e| format!("{socket}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn an_empty_table_serves_here_and_a_moved_app_forwards() {
        let m = Moves::new(NodesConfig::default());
        let a = TenantId::new("a").unwrap();
        assert!(m.settle(&a).await.unwrap().is_none());
        let f = Forward {
            node: "n2".into(),
            base: "http://127.0.0.1:9".parse().unwrap(),
            max_body: 10,
            answer_within: Duration::from_secs(1),
        };
        m.insert(a.clone(), Entry::Moved(f));
        assert_eq!(m.settle(&a).await.unwrap().unwrap().node, "n2");
        m.forget(&a);
        assert!(m.settle(&a).await.unwrap().is_none());
        assert_eq!(m.entries.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_is_a_502_within_the_bound() {
        // Accepts and reads, never answers: a partitioned or wedged node.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                held.push(c);
            }
        });
        let m = Moves::new(NodesConfig::default());
        let to = Forward {
            node: "n2".into(),
            base: format!("http://{addr}").parse().unwrap(),
            max_body: 10,
            answer_within: Duration::from_millis(200),
        };
        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let started = Instant::now();
        let resp = m.forward(&to, parts, Bytes::new()).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "forward_failed");
        assert!(
            v["message"].as_str().unwrap().contains("no answer within"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn held_requests_wake_when_the_hold_is_lifted() {
        let m = Arc::new(Moves::new(NodesConfig::default()));
        let a = TenantId::new("a").unwrap();
        let (tx, rx) = watch::channel(());
        m.insert(a.clone(), Entry::Holding(rx));
        let waiter = tokio::spawn({
            let (m, a) = (m.clone(), a.clone());
            async move { m.settle(&a).await.map(|f| f.is_none()).ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a held request ran before the move ended"
        );
        // A failed move: the hold goes, the request runs here.
        m.remove(&a);
        drop(tx);
        assert_eq!(waiter.await.unwrap(), Some(true));
    }
}
