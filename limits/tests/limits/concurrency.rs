use std::time::Duration;

use bytes::Bytes;
use corral_limits::{BoxError, Overloaded, TenantConcurrencyLayer, TenantLimits};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower_test::mock;

use crate::support::{ChanBody, id, ms, req, tenant_of, tier};

fn in_use(limits: &TenantLimits, tenant: &str) -> u32 {
    limits.load(&id(tenant)).unwrap().shares_in_use
}

#[tokio::test]
async fn n_plus_one_refused_at_once_while_other_tenant_served() {
    let limits = TenantLimits::new();
    let layer = TenantConcurrencyLayer::new(limits.clone()).retry_after(ms(250));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
    let two = tier(|t| t.compute_shares = 2);

    assert!(svc.poll_ready().is_ready());
    let a1 = svc.call(req("a", &two));
    assert!(svc.poll_ready().is_ready());
    let a2 = svc.call(req("a", &two));
    assert_eq!(in_use(&limits, "a"), 2);

    // The third is refused on its first poll, without reaching the inner service.
    assert!(svc.poll_ready().is_ready());
    let err = svc
        .call(req("a", &two))
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Overloaded>(),
        Some(&Overloaded::new(id("a"), ms(250)))
    );

    // Tenant b is served meanwhile.
    assert!(svc.poll_ready().is_ready());
    let b1 = svc.call(req("b", &two));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (r, send) = handle.next_request().await.unwrap();
        seen.push(tenant_of(&r));
        send.send_response(Response::new(format!("for {}", tenant_of(&r))));
    }
    assert_eq!(seen, ["a", "a", "b"]);
    let body = b1
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"for b");
    drop((a1, a2));
    assert_eq!(in_use(&limits, "a"), 0);
}

#[tokio::test]
async fn permits_come_back_when_futures_are_dropped() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        TenantConcurrencyLayer::new(limits.clone()),
    );
    let one = tier(|t| t.compute_shares = 1);

    assert!(svc.poll_ready().is_ready());
    let cancelled = svc.call(req("a", &one));
    assert_eq!(in_use(&limits, "a"), 1);
    drop(cancelled); // the client went away before the response
    assert_eq!(in_use(&limits, "a"), 0);
    let _ = handle.next_request().await.unwrap(); // the inner service saw it

    // And when the inner service fails.
    assert!(svc.poll_ready().is_ready());
    let failing = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("boom");
    let err: BoxError = failing.await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(in_use(&limits, "a"), 0);

    assert!(svc.poll_ready().is_ready());
    let again = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    drop(again.await.unwrap());
    assert_eq!(in_use(&limits, "a"), 0);
}

#[tokio::test]
async fn streaming_body_holds_the_share_until_it_ends() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(
        TenantConcurrencyLayer::new(limits.clone()),
    );
    let one = tier(|t| t.compute_shares = 1);

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    let (tx, body) = ChanBody::new();
    send.send_response(Response::new(body));
    let mut body = fut.await.unwrap().into_body();
    // The response is out, the stream is open: the share is still held.
    assert!(body.is_guarded());
    assert_eq!(in_use(&limits, "a"), 1);
    assert!(svc.poll_ready().is_ready());
    let refused = svc.call(req("a", &one)).now_or_never().unwrap();
    assert!(refused.unwrap_err().is::<Overloaded>());

    tx.send(Bytes::from_static(b"data: 1\n\n")).unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: 1\n\n");
    assert_eq!(in_use(&limits, "a"), 1);
    drop(tx); // the stream ends
    assert!(body.frame().await.is_none());
    assert!(!body.is_guarded());
    assert_eq!(in_use(&limits, "a"), 0);
}

#[tokio::test]
async fn streaming_body_dropped_gives_the_share_back() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(
        TenantConcurrencyLayer::new(limits.clone()),
    );
    let one = tier(|t| t.compute_shares = 1);

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    let (tx, body) = ChanBody::new();
    send.send_response(Response::new(body));
    let resp = fut.await.unwrap();
    assert_eq!(in_use(&limits, "a"), 1);
    drop(resp); // the client disconnected mid-stream
    assert_eq!(in_use(&limits, "a"), 0);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn bounded_wait_admits_when_a_share_frees_and_refuses_after_the_wait() {
    let limits = TenantLimits::new();
    let layer = TenantConcurrencyLayer::new(limits.clone()).wait(ms(100));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
    let one = tier(|t| t.compute_shares = 1);

    assert!(svc.poll_ready().is_ready());
    let first = svc.call(req("a", &one));
    let (_, send1) = handle.next_request().await.unwrap();

    assert!(svc.poll_ready().is_ready());
    let waiting = tokio::spawn(svc.call(req("a", &one)));
    tokio::time::sleep(ms(50)).await;
    assert!(!waiting.is_finished());
    send1.send_response(Response::new(String::new()));
    drop(first.await.unwrap()); // share freed at t = 50 ms
    let (_, send2) = handle.next_request().await.unwrap();
    send2.send_response(Response::new(String::from("second")));
    let second = waiting.await.unwrap().unwrap();
    assert_eq!(in_use(&limits, "a"), 1);

    // With the share held, the next one waits exactly the bound, then is refused.
    assert!(svc.poll_ready().is_ready());
    let start = tokio::time::Instant::now();
    let err = svc.call(req("a", &one)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(err.is::<Overloaded>());
    drop(second);
    assert_eq!(in_use(&limits, "a"), 0);
}

#[tokio::test]
async fn requests_without_tenant_context_are_a_typed_error() {
    let (mut svc, _handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        TenantConcurrencyLayer::new(TenantLimits::new()),
    );
    assert!(svc.poll_ready().is_ready());
    let err = svc.call(Request::new(String::new())).await.unwrap_err();
    assert!(err.is::<corral_limits::MissingTenant>());
}

#[tokio::test]
async fn a_tier_change_takes_effect_for_new_requests() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        TenantConcurrencyLayer::new(limits.clone()),
    );
    let one = tier(|t| t.compute_shares = 1);
    let pro = std::sync::Arc::new(corral_limits::Tier::pro());

    assert!(svc.poll_ready().is_ready());
    let held = svc.call(req("a", &one));
    // Upgraded to pro (2 shares): new requests use the new tier at once.
    assert!(svc.poll_ready().is_ready());
    let up1 = svc.call(req("a", &pro));
    assert!(svc.poll_ready().is_ready());
    let up2 = svc.call(req("a", &pro));
    assert_eq!(limits.load(&id("a")).unwrap().shares, 2);
    assert_eq!(in_use(&limits, "a"), 2);
    assert!(svc.poll_ready().is_ready());
    let refused = svc.call(req("a", &pro)).now_or_never().unwrap();
    assert!(refused.unwrap_err().is::<Overloaded>());
    for _ in 0..3 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(String::new()));
    }
    for f in [held, up1, up2] {
        assert!(f.await.is_ok());
    }
}
