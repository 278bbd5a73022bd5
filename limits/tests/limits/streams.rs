use bytes::Bytes;
use corral_limits::{
    BoxError, Detached, MissingTenant, Overloaded, RuntimeBusy, RuntimeSlots, RuntimeSlotsLayer,
    TenantConcurrencyLayer, TenantLimits, TenantLoad, TenantStreamsLayer, TooManyStreams,
    error_response, is_event_stream,
};
use futures_util::FutureExt;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use tokio::sync::mpsc::UnboundedSender;
use tower::ServiceBuilder;
use tower_test::mock;

use crate::support::{ChanBody, id, ms, req, tenant_of, tier};

/// A response of `content_type` whose body stays open until the sender is dropped.
fn respond(content_type: &'static str) -> (UnboundedSender<Bytes>, Response<ChanBody>) {
    let (tx, body) = ChanBody::new();
    let resp = Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .unwrap();
    (tx, resp)
}

const SSE: &str = "text/event-stream";

fn load(limits: &TenantLimits, tenant: &str) -> TenantLoad {
    limits.load(&id(tenant)).unwrap()
}

fn streams_open(limits: &TenantLimits, tenant: &str) -> u32 {
    load(limits, tenant).streams_open
}

#[tokio::test]
async fn max_streams_are_admitted_then_too_many_while_other_responses_are_served() {
    let limits = TenantLimits::new();
    let layer = TenantStreamsLayer::new(limits.clone()).retry_after(ms(250));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(layer);
    let two = tier(|t| t.max_streams = 2);

    // Two event streams are admitted and held open.
    let mut open = Vec::new();
    for n in 0..2 {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(req("a", &two));
        let (_, send) = handle.next_request().await.unwrap();
        let (tx, resp) = respond(SSE);
        send.send_response(resp);
        let resp = fut.await.unwrap();
        assert!(resp.body().is_guarded());
        assert_eq!(resp.extensions().get::<Detached>(), Some(&Detached));
        assert_eq!(streams_open(&limits, "a"), n + 1);
        open.push((tx, resp.into_body()));
    }
    let l = load(&limits, "a");
    assert_eq!((l.max_streams, l.streams_open), (2, 2));

    // The third reaches the guest, but its stream is refused and dropped.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &two));
    let (_, send) = handle.next_request().await.unwrap();
    let (refused_tx, resp) = respond("text/event-stream; charset=utf-8");
    send.send_response(resp);
    let err: BoxError = fut.await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<TooManyStreams>(),
        Some(&TooManyStreams::new(id("a"), 2, ms(250)))
    );
    assert!(
        refused_tx.is_closed(),
        "the refused stream's body was dropped"
    );
    let (status, headers, body) = error_response(&err).unwrap();
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        crate::support::body_fields(&body),
        crate::support::json(
            r#"{"error":"too_many_streams","tenant":"a","limit":2,"retry_after_ms":250}"#
        )
    );
    assert_eq!(streams_open(&limits, "a"), 2);

    // A non-stream response is still served, holds no permit and is not detached.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &two));
    let (_, send) = handle.next_request().await.unwrap();
    let (page_tx, resp) = respond("text/html");
    send.send_response(resp);
    let page = fut.await.unwrap();
    assert!(!page.body().is_guarded());
    assert_eq!(page.extensions().get::<Detached>(), None);
    page_tx.send(Bytes::from_static(b"<p>hi</p>")).unwrap();
    drop(page_tx);
    let bytes = page.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"<p>hi</p>");
    assert_eq!(streams_open(&limits, "a"), 2);

    // Another tenant's streams are counted apart.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("b", &two));
    let (r, send) = handle.next_request().await.unwrap();
    assert_eq!(tenant_of(&r), "b");
    let (_b_tx, resp) = respond(SSE);
    send.send_response(resp);
    let b_stream = fut.await.unwrap();
    assert!(b_stream.body().is_guarded());
    assert_eq!(
        (streams_open(&limits, "a"), streams_open(&limits, "b")),
        (2, 1)
    );

    // The client of the first stream went away: its permit is back...
    let (first_tx, first_body) = open.remove(0);
    drop(first_body);
    assert!(first_tx.is_closed());
    assert_eq!(streams_open(&limits, "a"), 1);
    // ...and a new stream is admitted.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &two));
    let (_, send) = handle.next_request().await.unwrap();
    let (new_tx, resp) = respond(SSE);
    send.send_response(resp);
    let new_stream = fut.await.unwrap();
    assert!(new_stream.body().is_guarded());
    assert_eq!(streams_open(&limits, "a"), 2);

    // A stream that ends frees its permit too.
    let (second_tx, mut second_body) = open.remove(0);
    second_tx.send(Bytes::from_static(b"data: 1\n\n")).unwrap();
    let frame = second_body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: 1\n\n");
    assert_eq!(streams_open(&limits, "a"), 2);
    drop(second_tx);
    assert!(second_body.frame().await.is_none());
    assert!(!second_body.is_guarded());
    assert_eq!(streams_open(&limits, "a"), 1);

    drop((new_stream, new_tx));
    assert_eq!(streams_open(&limits, "a"), 0);
    drop(b_stream);
    assert_eq!(streams_open(&limits, "b"), 0);
}

#[tokio::test]
async fn a_tier_without_streams_refuses_every_stream_but_serves_pages() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(
        TenantStreamsLayer::new(limits.clone()),
    );
    let none = tier(|t| t.max_streams = 0);

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &none));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(respond(SSE).1);
    let err = fut.await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<TooManyStreams>(),
        Some(&TooManyStreams::new(id("a"), 0, ms(1000)))
    );
    let (status, headers, body) = error_response(&err).unwrap();
    assert_eq!(
        (status.as_u16(), headers["retry-after"].to_str().unwrap()),
        (429, "1")
    );
    assert_eq!(
        crate::support::body_fields(&body),
        crate::support::json(
            r#"{"error":"too_many_streams","tenant":"a","limit":0,"retry_after_ms":1000}"#
        )
    );

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &none));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(respond("application/json").1);
    assert!(fut.await.is_ok());
    let l = load(&limits, "a");
    assert_eq!((l.max_streams, l.streams_open), (0, 0));
}

#[tokio::test]
async fn requests_without_tenant_context_are_a_typed_error() {
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(
        TenantStreamsLayer::new(TenantLimits::new()),
    );
    assert!(svc.poll_ready().is_ready());
    let err = svc
        .call(Request::new(String::new()))
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert!(err.is::<MissingTenant>());
    // The inner service never saw it.
    drop(svc);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn an_open_event_stream_holds_no_compute_share() {
    let limits = TenantLimits::new();
    let stack = ServiceBuilder::new()
        .layer(TenantConcurrencyLayer::new(limits.clone()))
        .layer(TenantStreamsLayer::new(limits.clone()))
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(stack);
    let one = tier(|t| {
        t.compute_shares = 1;
        t.max_streams = 2;
    });

    // While the guest runs, the request holds the only share.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(load(&limits, "a").shares_in_use, 1);
    let (sse_tx, resp) = respond(SSE);
    send.send_response(resp);
    let sse = fut.await.unwrap();
    // The head is out, the stream is open: the share is free, a stream permit is held.
    assert!(!sse.body().is_guarded());
    assert!(sse.body().get_ref().is_guarded());
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (0, 1));

    // So another request is admitted, and its plain body held open keeps the share.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(load(&limits, "a").shares_in_use, 1);
    let (page_tx, resp) = respond("text/plain");
    send.send_response(resp);
    let page = fut.await.unwrap();
    assert!(page.body().is_guarded());
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (1, 1));
    assert!(svc.poll_ready().is_ready());
    let refused = svc.call(req("a", &one)).now_or_never().unwrap();
    assert!(refused.unwrap_err().is::<Overloaded>());

    // The plain body ends: the share is back; the stream still streams.
    drop(page_tx);
    assert!(page.into_body().collect().await.is_ok());
    assert_eq!(load(&limits, "a").shares_in_use, 0);
    sse_tx
        .send(Bytes::from_static(b"data: still here\n\n"))
        .unwrap();
    let mut sse_body = sse.into_body();
    let frame = sse_body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: still here\n\n");

    // A second stream fills max_streams; a third is refused and gives its share back.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    let (_sse2_tx, resp) = respond(SSE);
    send.send_response(resp);
    let sse2 = fut.await.unwrap();
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &one));
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(load(&limits, "a").shares_in_use, 1);
    send.send_response(respond(SSE).1);
    assert!(fut.await.unwrap_err().is::<TooManyStreams>());
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (0, 2));

    drop((sse_body, sse2));
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (0, 0));
}

#[tokio::test]
async fn a_share_taken_after_a_bounded_wait_is_released_at_the_head_of_a_stream() {
    let limits = TenantLimits::new();
    let stack = ServiceBuilder::new()
        .layer(TenantConcurrencyLayer::new(limits.clone()).wait(ms(60_000)))
        .layer(TenantStreamsLayer::new(limits.clone()))
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(stack);
    let one = tier(|t| t.compute_shares = 1);

    assert!(svc.poll_ready().is_ready());
    let first = svc.call(req("a", &one));
    let (_, send1) = handle.next_request().await.unwrap();
    // The second request waits for the only share (the Waiting path).
    assert!(svc.poll_ready().is_ready());
    let waiting = tokio::spawn(svc.call(req("a", &one)));
    send1.send_response(respond("text/plain").1);
    drop(first.await.unwrap());
    let (_, send2) = handle.next_request().await.unwrap();
    assert_eq!(load(&limits, "a").shares_in_use, 1);
    let (_tx, resp) = respond(SSE);
    send2.send_response(resp);
    let sse = waiting.await.unwrap().unwrap();
    assert!(!sse.body().is_guarded());
    assert_eq!(sse.extensions().get::<Detached>(), Some(&Detached));
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (0, 1));
    drop(sse);
    assert_eq!(streams_open(&limits, "a"), 0);
}

#[tokio::test]
async fn an_open_event_stream_holds_no_runtime_slot() {
    let limits = TenantLimits::new();
    let slots = RuntimeSlots::new(1);
    // Corral's order: shares, then slots, then streams innermost.
    let stack = ServiceBuilder::new()
        .layer(TenantConcurrencyLayer::new(limits.clone()))
        .layer(RuntimeSlotsLayer::new(slots.clone()))
        .layer(TenantStreamsLayer::new(limits.clone()))
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(stack);
    let free = tier(|_| ()); // one share, two streams

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &free));
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(slots.in_use(), 1);
    let (sse_tx, resp) = respond(SSE);
    send.send_response(resp);
    let sse = fut.await.unwrap();
    assert_eq!((slots.in_use(), slots.available()), (0, 1));
    let l = load(&limits, "a");
    assert_eq!((l.shares_in_use, l.streams_open), (0, 1));

    // The only slot is free for the next request, and a plain body held open keeps it.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("b", &free));
    let (_, send) = handle.next_request().await.unwrap();
    let (page_tx, resp) = respond("text/plain");
    send.send_response(resp);
    let page = fut.await.unwrap();
    assert_eq!(slots.in_use(), 1);
    assert!(svc.poll_ready().is_ready());
    let busy = svc.call(req("c", &free)).now_or_never().unwrap();
    assert!(busy.unwrap_err().is::<RuntimeBusy>());
    drop((page, page_tx));
    assert_eq!(slots.in_use(), 0);

    // The stream is still open and still holds only its stream permit.
    sse_tx.send(Bytes::from_static(b"data: 1\n\n")).unwrap();
    let mut body = sse.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    assert_eq!(slots.in_use(), 0);
    assert_eq!(streams_open(&limits, "a"), 1);
    drop(sse_tx);
    assert!(body.frame().await.is_none());
    assert_eq!(streams_open(&limits, "a"), 0);
}

#[tokio::test]
async fn a_slot_taken_after_a_bounded_wait_is_released_at_the_head_of_a_stream() {
    let limits = TenantLimits::new();
    let slots = RuntimeSlots::new(1);
    let stack = ServiceBuilder::new()
        .layer(RuntimeSlotsLayer::new(slots.clone()).wait(ms(60_000)))
        .layer(TenantStreamsLayer::new(limits.clone()))
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<ChanBody>, _>(stack);
    let free = tier(|_| ());

    let held = slots.try_acquire().unwrap();
    assert!(svc.poll_ready().is_ready());
    let waiting = tokio::spawn(svc.call(req("a", &free)));
    drop(held);
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(slots.in_use(), 1);
    let (_tx, resp) = respond(SSE);
    send.send_response(resp);
    let sse = waiting.await.unwrap().unwrap();
    assert_eq!((slots.in_use(), streams_open(&limits, "a")), (0, 1));
    drop(sse);
    assert_eq!(streams_open(&limits, "a"), 0);
}

#[test]
fn event_streams_are_recognised_by_media_type() {
    let with = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
        is_event_stream(&h)
    };
    assert!(with("text/event-stream"));
    assert!(with("text/event-stream; charset=utf-8"));
    assert!(with("TEXT/EVENT-STREAM"));
    assert!(with(" text/event-stream ;charset=UTF-8"));
    assert!(!with("text/plain"));
    assert!(!with("text/event-streams"));
    assert!(!with("application/json; x=text/event-stream"));
    assert!(!is_event_stream(&HeaderMap::new()));
}
