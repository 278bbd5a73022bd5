use bytes::Bytes;
use corral_limits::{BoxError, TenantBodyLimitLayer, error_response};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::body::Limited;

use crate::support::{ChanBody, req, tier};

/// An inner service that reads the whole body and echoes its length.
fn echo_len() -> impl Service<
    Request<ChanBody>,
    Response = Response<tower_http::limit::ResponseBody<String>>,
    Error = BoxError,
> + Clone {
    ServiceBuilder::new()
        .layer(TenantBodyLimitLayer::new())
        .service_fn(|r: Request<Limited<ChanBody>>| async move {
            let body = r.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::new(body.len().to_string()))
        })
}

fn chan_req(
    chunks: &[&'static [u8]],
    content_length: Option<usize>,
    max: u64,
) -> Request<ChanBody> {
    let (tx, body) = ChanBody::new();
    for c in chunks {
        tx.send(Bytes::from_static(c)).unwrap();
    }
    let mut r = req("a", &tier(|t| t.max_body_bytes = max)).map(|_| body);
    if let Some(n) = content_length {
        r.headers_mut().insert(CONTENT_LENGTH, n.into());
    }
    r
}

#[tokio::test]
async fn declared_length_over_the_tier_limit_gets_413_at_once() {
    let mut svc = echo_len();
    // The sender is dropped in chan_req, so a read would end; a 413 means no read.
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(chan_req(&[b"12345"], Some(5), 4))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn bodies_within_the_limit_pass() {
    let mut svc = echo_len();
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(chan_req(&[b"12", b"34"], Some(4), 4))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"4");
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_cut_off_with_a_413_error() {
    let mut svc = echo_len();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(chan_req(&[b"123", b"456"], None, 4))
        .await
        .err()
        .expect("the read must fail");
    let (status, _, body) = error_response(&err).unwrap();
    assert_eq!(status, 413);
    assert_eq!(&body[..], br#"{"error":"payload_too_large"}"#);
}

#[tokio::test]
async fn missing_tenant_is_a_typed_error() {
    let mut svc = echo_len();
    let (_tx, body) = ChanBody::new();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(body))
        .await
        .err()
        .unwrap();
    assert!(err.is::<corral_limits::MissingTenant>());
}
