use std::convert::Infallible;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use corral_limits::{QuotaExceeded, QuotaLayer, error_response};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::support::{MemUsage, id, req, tier};

fn mid_november() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 0, 30, 0).unwrap()
}

fn mid_december() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 15, 12, 0, 0).unwrap()
}

fn service(
    usage: MemUsage,
    now: fn() -> DateTime<Utc>,
) -> impl Service<Request<String>, Response = Response<()>, Error = corral_limits::BoxError> {
    ServiceBuilder::new()
        .layer(QuotaLayer::new(usage).clock(now))
        .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(())) })
}

#[tokio::test]
async fn refuses_exactly_at_used_equals_quota() {
    let usage = MemUsage::default();
    let mut svc = service(usage.clone(), mid_november);
    let ten = tier(|t| t.requests_per_month = Some(10));

    usage.set("a", 9);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req("a", &ten))
            .await
            .is_ok()
    );

    usage.set("a", 10);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(req("a", &ten))
        .await
        .unwrap_err();
    let q = err.downcast_ref::<QuotaExceeded>().unwrap();
    assert_eq!(q.tenant, id("a"));
    assert_eq!((q.quota, q.used), (10, 10));
    assert_eq!(
        q.resets_at,
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    );
    // 8 days 23.5 hours from 2026-11-22T00:30Z.
    assert_eq!(
        q.retry_after,
        Duration::from_secs(8 * 86_400 + 23 * 3_600 + 1_800)
    );

    let (status, headers, body) = error_response(&err).unwrap();
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "775800");
    assert_eq!(
        crate::support::body_fields(&body),
        crate::support::json(
            r#"{"error":"quota_exceeded","tenant":"a","limit":"requests_per_month","quota":10,"used":10,"resets_at":"2026-12-01T00:00:00Z","retry_after_ms":775800000}"#
        )
    );

    usage.set("a", 11);
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req("a", &ten))
            .await
            .is_err()
    );
    // Another tenant's count is its own.
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req("b", &ten))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn december_resets_in_january() {
    let usage = MemUsage::default();
    usage.set("a", 1);
    let mut svc = service(usage.clone(), mid_december);
    let one = tier(|t| t.requests_per_month = Some(1));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(req("a", &one))
        .await
        .unwrap_err();
    let q = err.downcast_ref::<QuotaExceeded>().unwrap();
    assert_eq!(
        q.resets_at,
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn tiers_without_a_quota_are_not_checked() {
    let usage = MemUsage::default();
    usage.set("a", u64::MAX);
    let mut svc = service(usage.clone(), mid_november);
    let pilot = std::sync::Arc::new(corral_limits::Tier::pilot());
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(req("a", &pilot))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn missing_tenant_is_a_typed_error() {
    let mut svc = service(MemUsage::default(), mid_november);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    assert!(err.is::<corral_limits::MissingTenant>());
}
