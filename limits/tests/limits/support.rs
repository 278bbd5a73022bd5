//! Helpers shared by the tests.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use corral_limits::{TenantContext, TenantId, Tier, UsageSource};
use http::Request;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

pub(crate) fn id(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The free tier, changed by `f`.
pub(crate) fn tier(f: impl FnOnce(&mut Tier)) -> Arc<Tier> {
    let mut t = Tier::free();
    f(&mut t);
    t.validate().unwrap();
    Arc::new(t)
}

/// A request for `tenant` on `tier`.
pub(crate) fn req(tenant: &str, tier: &Arc<Tier>) -> Request<String> {
    let mut r = Request::new(String::new());
    TenantContext::new(id(tenant), tier.clone()).insert_into(&mut r);
    r
}

/// The tenant a request was sent for.
pub(crate) fn tenant_of<B>(r: &Request<B>) -> String {
    TenantContext::of(r).unwrap().id().to_string()
}

/// A streaming body fed through a channel: ends when the sender is dropped.
#[derive(Debug)]
pub(crate) struct ChanBody(mpsc::UnboundedReceiver<Bytes>);

impl ChanBody {
    pub(crate) fn new() -> (mpsc::UnboundedSender<Bytes>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self(rx))
    }
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// An in-memory usage source: requests this month per tenant.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemUsage(Arc<Mutex<HashMap<TenantId, u64>>>);

impl MemUsage {
    pub(crate) fn set(&self, tenant: &str, n: u64) {
        self.0.lock().unwrap().insert(id(tenant), n);
    }
}

impl UsageSource for MemUsage {
    fn requests_this_month(&self, tenant: &TenantId) -> u64 {
        self.0.lock().unwrap().get(tenant).copied().unwrap_or(0)
    }
}

/// A refusal's JSON body without its `message` (a sentence for people,
/// checked to be there), for comparing with [`json`].
pub(crate) fn body_fields(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let message = v.as_object_mut().unwrap().remove("message");
    assert!(
        message
            .as_ref()
            .and_then(|m| m.as_str())
            .is_some_and(|m| !m.is_empty()),
        "no message in {v}"
    );
    v
}

/// `text` parsed as JSON.
pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}
