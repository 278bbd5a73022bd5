use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use corral_limits::{RuntimeBusy, RuntimeSlots, RuntimeSlotsLayer, Tier};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

use crate::support::{ms, req, tier};

fn figures(slots: &RuntimeSlots) -> (usize, usize, usize) {
    (slots.size(), slots.in_use(), slots.available())
}

#[tokio::test]
async fn resize_down_and_up_under_load_keeps_every_request() {
    let slots = RuntimeSlots::new(4);
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        RuntimeSlotsLayer::new(slots.clone()).retry_after(ms(500)),
    );
    let free = Arc::new(Tier::free());

    let mut in_flight = Vec::new();
    for _ in 0..4 {
        assert!(svc.poll_ready().is_ready());
        in_flight.push(svc.call(req("a", &free)));
    }
    let mut sends = Vec::new();
    for _ in 0..4 {
        sends.push(handle.next_request().await.unwrap().1);
    }
    assert_eq!(figures(&slots), (4, 4, 0));
    assert!(svc.poll_ready().is_ready());
    let err = svc
        .call(req("b", &free))
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<RuntimeBusy>(),
        Some(&RuntimeBusy::new(ms(500)))
    );

    // Shrink to 2 with 4 in flight: nothing is dropped, nothing new gets in.
    slots.resize(2);
    assert_eq!(figures(&slots), (2, 4, 0));
    let mut done = Vec::new();
    for (i, (fut, send)) in in_flight.drain(..).zip(sends.drain(..)).enumerate() {
        send.send_response(Response::new(format!("r{i}")));
        let resp = fut.await.unwrap();
        assert_eq!(resp.status(), 200);
        done.push(resp);
        if i == 1 {
            // Two held slots came back and paid the shrink off.
            drop(done.drain(..));
            assert_eq!(figures(&slots), (2, 2, 0));
            assert!(svc.poll_ready().is_ready());
            let busy = svc.call(req("b", &free)).now_or_never().unwrap();
            assert!(busy.unwrap_err().is::<RuntimeBusy>());
        }
    }
    drop(done.drain(..));
    assert_eq!(figures(&slots), (2, 0, 2));
    tokio::time::timeout(ms(1000), slots.settled())
        .await
        .unwrap();

    // Grow while one is in flight: the new slots are free at once.
    assert!(svc.poll_ready().is_ready());
    let held = svc.call(req("a", &free));
    slots.resize(5);
    assert_eq!(figures(&slots), (5, 1, 4));
    let mut more = Vec::new();
    for _ in 0..4 {
        assert!(svc.poll_ready().is_ready());
        more.push(svc.call(req("c", &free)));
    }
    assert!(svc.poll_ready().is_ready());
    let busy = svc.call(req("c", &free)).now_or_never().unwrap();
    assert!(busy.unwrap_err().is::<RuntimeBusy>());
    for _ in 0..5 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(String::new()));
    }
    assert!(held.await.is_ok());
    for f in more {
        assert!(f.await.is_ok());
    }
    assert_eq!(figures(&slots), (5, 0, 5));
}

#[tokio::test]
async fn shrink_then_grow_before_slots_return_cancels_the_debt() {
    let slots = RuntimeSlots::new(3);
    let held: Vec<_> = (0..3).map(|_| slots.try_acquire().unwrap()).collect();
    slots.resize(1);
    assert_eq!(figures(&slots), (1, 3, 0));
    slots.resize(2); // one of the two owed slots is forgiven
    assert_eq!(figures(&slots), (2, 3, 0));
    drop(held);
    assert_eq!(figures(&slots), (2, 0, 2));
    slots.resize(0);
    assert_eq!(figures(&slots), (0, 0, 0));
    assert!(slots.try_acquire().is_none());
}

#[tokio::test]
async fn dedicated_tenants_take_no_shared_slot() {
    let slots = RuntimeSlots::new(0);
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        RuntimeSlotsLayer::new(slots.clone()),
    );
    let omni = Arc::new(Tier::omni_core());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("big", &omni));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    let resp = fut.await.unwrap();
    assert!(!resp.body().is_guarded());
    assert!(svc.poll_ready().is_ready());
    let refused = svc
        .call(req("small", &tier(|_| ())))
        .now_or_never()
        .unwrap();
    assert!(refused.unwrap_err().is::<RuntimeBusy>());
}

#[tokio::test(start_paused = true)]
async fn bounded_wait_for_a_slot() {
    let slots = RuntimeSlots::new(1);
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        RuntimeSlotsLayer::new(slots.clone()).wait(ms(200)),
    );
    let held = slots.try_acquire().unwrap();
    assert!(svc.poll_ready().is_ready());
    let waiting = tokio::spawn(svc.call(Request::new(String::new())));
    tokio::time::sleep(ms(150)).await;
    drop(held);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    let resp = waiting.await.unwrap().unwrap();
    assert_eq!(slots.in_use(), 1);
    drop(resp);
    assert_eq!(slots.in_use(), 0);
}

/// Many clients, real concurrency, the size changing all the while: every
/// request completes (the bounded wait is long enough) and every slot returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_under_concurrent_load() {
    let slots = RuntimeSlots::new(4);
    let peak = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RuntimeSlotsLayer::new(slots.clone()).wait(ms(30_000)))
        .service_fn({
            let (peak, running) = (peak.clone(), running.clone());
            move |_: Request<()>| {
                let (peak, running) = (peak.clone(), running.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(ms(1)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Response::new(String::new()))
                }
            }
        });
    let mut clients = Vec::new();
    for _ in 0..16 {
        let mut svc = svc.clone();
        clients.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..40 {
                let resp = svc
                    .ready()
                    .await
                    .unwrap()
                    .call(Request::new(()))
                    .await
                    .unwrap();
                drop(resp);
                ok += 1;
            }
            ok
        }));
    }
    for n in [2, 8, 1, 6, 3] {
        tokio::time::sleep(ms(5)).await;
        slots.resize(n);
    }
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert_eq!(total, 16 * 40);
    slots.settled().await;
    assert_eq!(figures(&slots), (3, 0, 3));
    assert!(peak.load(Ordering::SeqCst) <= 8);
}
