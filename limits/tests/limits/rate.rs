use std::convert::Infallible;
use std::time::Duration;

use corral_limits::{RateLimitLayer, RateLimited, TenantLimits};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

use crate::support::{id, ms, req, tier};

/// Sends requests for `tenant` until one is refused; returns how many got through.
async fn drain<S>(svc: &mut S, tenant: &str, t: &std::sync::Arc<corral_limits::Tier>) -> u64
where
    S: Service<Request<String>, Error = corral_limits::BoxError>,
{
    let mut admitted = 0;
    loop {
        match svc.ready().await.unwrap().call(req(tenant, t)).await {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert!(e.is::<RateLimited>());
                return admitted;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn admits_the_configured_rate_over_a_paused_minute() {
    let t = tier(|t| {
        t.rate_per_minute = Some(60);
        t.burst = 5;
    });
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(TenantLimits::new()))
        .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(())) });

    // Greedy client: tries every 100 ms for 60 s, as many as it is allowed.
    let mut admitted = 0;
    for _ in 0..=600 {
        admitted += drain(&mut svc, "a", &t).await;
        tokio::time::advance(ms(100)).await;
    }
    // Burst of 5, then one per second for 60 s.
    let expected = 5 + 60;
    assert!(
        (expected - 1..=expected + 1).contains(&admitted),
        "admitted {admitted}, expected {expected} ± 1"
    );
}

#[tokio::test(start_paused = true)]
async fn refusal_says_when_to_retry_and_other_tenants_are_unaffected() {
    let t = tier(|t| {
        t.rate_per_minute = Some(30); // one every 2 s
        t.burst = 1;
    });
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<()>, _>(
        RateLimitLayer::new(TenantLimits::new()),
    );
    handle.allow(u64::MAX);
    assert!(svc.poll_ready().is_ready());
    let _a = svc.call(req("a", &t));
    tokio::time::advance(ms(500)).await;
    assert!(svc.poll_ready().is_ready());
    let err = svc.call(req("a", &t)).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<RateLimited>(),
        Some(&RateLimited::new(id("a"), Duration::from_millis(1500)))
    );
    // b has its own bucket.
    assert!(svc.poll_ready().is_ready());
    let b = svc.call(req("b", &t));
    let (r, send) = handle.next_request().await.unwrap();
    drop(r);
    let (r, send_b) = handle.next_request().await.unwrap();
    assert_eq!(crate::support::tenant_of(&r), "b");
    send_b.send_response(Response::new(()));
    assert!(b.await.is_ok());
    drop(send);
    // After the hinted wait, a is admitted again.
    tokio::time::advance(ms(1500)).await;
    assert!(svc.poll_ready().is_ready());
    let _a2 = svc.call(req("a", &t));
    assert!(handle.next_request().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn tiers_without_a_rate_are_not_limited() {
    let t = tier(|t| t.rate_per_minute = None);
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(TenantLimits::new()))
        .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(())) });
    for _ in 0..1_000 {
        assert!(svc.ready().await.unwrap().call(req("a", &t)).await.is_ok());
    }
}

#[tokio::test]
async fn missing_tenant_is_a_typed_error() {
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new(TenantLimits::new()))
        .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(())) });
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    assert!(err.is::<corral_limits::MissingTenant>());
}
