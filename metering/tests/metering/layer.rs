use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use corral_limits::Refusal;
use corral_metering::{
    ErrorKind, InvocationFigures, Meter, MeteringLayer, StatusClass, StreamFigures,
};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use crate::id;

/// A body of several frames, like a stream of server-sent events.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn sse(n: usize) -> Response<Frames> {
    let frames = (0..n)
        .map(|i| Bytes::from(format!("data: {i}\n\n")))
        .collect();
    let mut res = Response::new(Frames(frames));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "text/event-stream; charset=utf-8".parse().unwrap(),
    );
    res
}

fn req(tenant: &str, body: &str) -> Request<String> {
    let mut r = Request::new(body.to_string());
    r.extensions_mut().insert(id(tenant));
    r
}

#[tokio::test]
async fn counts_request_outcome_latency_bytes_and_invocation_figures() {
    let meter = Meter::new();
    let inner = tower::service_fn(|r: Request<String>| async move {
        let mut res = Response::new(format!("{}!!", r.into_body()));
        res.extensions_mut().insert(InvocationFigures::new(
            4_000,
            Duration::from_micros(2_500),
            6 << 20,
            true,
        ));
        Ok::<_, Infallible>(res)
    });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req("shop", "hello"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello!!");

    let s = meter.snapshot(&id("shop")).unwrap();
    assert_eq!(s.requests, 1);
    assert_eq!(s.status(StatusClass::Success), 1);
    assert_eq!(s.errors_total(), 0);
    assert_eq!((s.bytes_in, s.bytes_out), (5, 7));
    assert_eq!(
        (s.fuel, s.wall_time, s.peak_memory, s.cold_starts),
        (4_000, Duration::from_micros(2_500), 6 << 20, 1)
    );
    assert_eq!(s.latency_count, 1);
    assert_eq!((s.streams_open, s.streams_total), (0, 0), "not a stream");
}

#[derive(Debug, thiserror::Error)]
enum LimitError {
    #[error("quota")]
    Quota,
    #[error("busy")]
    Busy,
}

#[tokio::test]
async fn inner_errors_are_classified_and_passed_through() {
    let meter = Meter::new();
    let inner = tower::service_fn(|r: Request<String>| async move {
        match r.body().as_str() {
            "quota" => Err(LimitError::Quota),
            "busy" => Err(LimitError::Busy),
            _ => Ok(Response::new(String::new())),
        }
    });
    let classify = |e: &LimitError| match e {
        LimitError::Quota => ErrorKind::Quota,
        LimitError::Busy => ErrorKind::Overloaded,
    };
    let mut svc = MeteringLayer::new(meter.clone())
        .classify(classify)
        .layer(inner);
    for body in ["quota", "busy", "busy", "ok"] {
        let _ = svc.ready().await.unwrap().call(req("app", body)).await;
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(req("app", "quota"))
        .await
        .unwrap_err();
    assert!(matches!(err, LimitError::Quota));
    let s = meter.snapshot(&id("app")).unwrap();
    assert_eq!(s.requests, 5);
    assert_eq!(s.errors(ErrorKind::Quota), 2);
    assert_eq!(s.errors(ErrorKind::Overloaded), 2);
    assert_eq!(s.status, [0, 1, 0, 0, 0], "failed calls have no status");
    assert_eq!(s.latency_count, 5);

    // Without a classifier every error is `other`.
    let meter = Meter::new();
    let inner = tower::service_fn(|_: Request<String>| async {
        Err::<Response<String>, _>(LimitError::Busy)
    });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    let _ = svc.ready().await.unwrap().call(req("app", "")).await;
    assert_eq!(
        meter.snapshot(&id("app")).unwrap().errors(ErrorKind::Other),
        1
    );
}

#[tokio::test]
async fn error_kind_extension_and_bare_5xx() {
    let meter = Meter::new();
    let inner = tower::service_fn(|r: Request<String>| async move {
        let (status, kind) = match r.body().as_str() {
            "fuel" => (503, Some(ErrorKind::Fuel)),
            "rate" => (429, Some(ErrorKind::Rate)),
            "crash" => (500, None),
            _ => (404, None),
        };
        let mut res = Response::new(String::new());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(k) = kind {
            res.extensions_mut().insert(k);
        }
        Ok::<_, Infallible>(res)
    });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    for body in ["fuel", "rate", "crash", "missing"] {
        svc.ready()
            .await
            .unwrap()
            .call(req("x", body))
            .await
            .unwrap();
    }
    let s = meter.snapshot(&id("x")).unwrap();
    assert_eq!(s.errors, [1, 0, 0, 0, 1, 0, 1]); // fuel, rate, other (bare 500); 404 is no error
    assert_eq!(s.status, [0, 0, 0, 2, 2]);
}

#[tokio::test]
async fn requests_without_a_tenant_are_counted_host_wide_only() {
    let meter = Meter::new();
    let inner = tower::service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    svc.ready()
        .await
        .unwrap()
        .call(Request::new("x".into()))
        .await
        .unwrap();
    assert_eq!(meter.unattributed_requests(), 1);
    assert_eq!(meter.tenant_count(), 0);
}

#[tokio::test]
async fn hundred_streams_some_dropped_by_clients_gauge_returns_to_zero() {
    let meter = Meter::new();
    let inner = tower::service_fn(|_: Request<String>| async { Ok::<_, Infallible>(sse(3)) });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    let mut open = Vec::new();
    for _ in 0..100 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(req("chat", ""))
            .await
            .unwrap();
        assert!(res.body().is_stream());
        open.push(res);
    }
    let s = meter.snapshot(&id("chat")).unwrap();
    assert_eq!(
        (s.streams_open, s.peak_streams, s.streams_total),
        (100, 100, 100)
    );

    let mut read_frames = 0;
    for (i, res) in open.into_iter().enumerate() {
        let mut body = res.into_body();
        match i % 4 {
            // Read to the end: the stream ends normally.
            0 | 1 => {
                let all = body.collect().await.unwrap().to_bytes();
                assert_eq!(&all[..], b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
                read_frames += 3;
            }
            // Client disconnects after one event.
            2 => {
                body.frame().await.unwrap().unwrap();
                read_frames += 1;
                drop(body);
            }
            // Client disconnects before reading anything.
            _ => drop(body),
        }
        let expected_open = 100 - (i as u64 + 1);
        assert_eq!(
            meter.snapshot(&id("chat")).unwrap().streams_open,
            expected_open
        );
    }
    let s = meter.snapshot(&id("chat")).unwrap();
    assert_eq!((s.streams_open, s.peak_streams), (0, 100));
    assert_eq!(s.bytes_out, read_frames * 9);
    assert_eq!(read_frames, 50 * 3 + 25);
}

#[tokio::test]
async fn limit_errors_and_tenant_context_from_corral_limits() {
    use std::sync::Arc;

    use corral_limits::{BoxError, QuotaExceeded, RateLimited, RuntimeBusy, TenantContext, Tier};
    use corral_metering::LimitErrors;

    let meter = Meter::new();
    let inner = tower::service_fn(|r: Request<String>| async move {
        let tenant = TenantContext::of(&r).unwrap().id().clone();
        let e: BoxError = match r.body().as_str() {
            "busy" => RuntimeBusy::new(Duration::from_millis(1)).into(),
            "rate" => RateLimited::new(tenant, Duration::from_millis(1)).into(),
            "quota" => QuotaExceeded::new(tenant, 10, 10, chrono::Utc::now()).into(),
            _ => "guest trapped".into(),
        };
        Err::<Response<String>, _>(e)
    });
    let mut svc = MeteringLayer::new(meter.clone())
        .classify(LimitErrors)
        .layer(inner);
    for body in ["busy", "rate", "rate", "quota", "trap"] {
        let mut r = Request::new(body.to_string());
        TenantContext::new(id("ctx"), Arc::new(Tier::free())).insert_into(&mut r);
        let _ = svc.ready().await.unwrap().call(r).await;
    }
    let s = meter.snapshot(&id("ctx")).unwrap();
    assert_eq!(s.errors, [0, 0, 0, 1, 2, 1, 1]);
    // Only the trap was admitted; the four refusals are counted apart.
    assert_eq!(s.requests, 1);
    assert_eq!(
        (
            s.refused(Refusal::RuntimeBusy),
            s.refused(Refusal::RateLimited),
            s.refused(Refusal::QuotaExceeded),
            s.refused_total(),
            s.in_flight,
        ),
        (1, 2, 1, 4, 0)
    );
    let u = meter.usage(&id("ctx")).unwrap();
    assert_eq!(u.requests, 1);
    assert_eq!(
        serde_json::to_value(&u.refused).unwrap(),
        serde_json::json!({"rate_limited": 2, "quota_exceeded": 1, "runtime_busy": 1})
    );
}

/// A request is in flight (and counted by the quota's usage source) until
/// the stack answers; then it is admitted or refused. A caller that drops
/// the future first leaves it counted as admitted.
#[tokio::test]
async fn in_flight_requests_count_for_the_quota_until_settled() {
    use corral_limits::{BoxError, RateLimited, TenantContext, Tier, UsageSource};
    use corral_metering::LimitErrors;
    use std::sync::Arc;
    use tokio::sync::oneshot;

    let meter = Meter::new();
    let (tx_ok, rx_ok) = oneshot::channel::<()>();
    let (tx_no, rx_no) = oneshot::channel::<()>();
    let gates = Arc::new(parking_lot::Mutex::new(vec![
        ("ok", Some(rx_ok)),
        ("no", Some(rx_no)),
    ]));
    let inner = tower::service_fn(move |r: Request<String>| {
        let gates = gates.clone();
        async move {
            let name = r.body().clone();
            let rx = gates
                .lock()
                .iter_mut()
                .find(|(n, _)| *n == name)
                .and_then(|(_, rx)| rx.take());
            if let Some(rx) = rx {
                let _ = rx.await;
            } else {
                std::future::pending::<()>().await;
            }
            if name == "no" {
                let t = TenantContext::of(&r).unwrap().id().clone();
                return Err::<Response<String>, BoxError>(
                    RateLimited::new(t, Duration::from_secs(1)).into(),
                );
            }
            Ok(Response::new(String::new()))
        }
    });
    let mut svc = MeteringLayer::new(meter.clone())
        .classify(LimitErrors)
        .layer(inner);
    let req = |body: &str| {
        let mut r = Request::new(body.to_string());
        TenantContext::new(id("q"), Arc::new(Tier::free())).insert_into(&mut r);
        r
    };
    let ok = svc.ready().await.unwrap().call(req("ok"));
    let no = svc.ready().await.unwrap().call(req("no"));
    let gone = svc.ready().await.unwrap().call(req("gone"));
    assert_eq!(meter.snapshot(&id("q")).unwrap().in_flight, 3);
    assert_eq!(meter.requests_this_month(&id("q")), 3, "in flight counts");
    assert_eq!(meter.usage(&id("q")).unwrap().requests, 0);

    tx_no.send(()).unwrap();
    assert!(no.await.is_err());
    assert_eq!(
        meter.requests_this_month(&id("q")),
        2,
        "refused: no longer counted"
    );
    tx_ok.send(()).unwrap();
    ok.await.unwrap();
    drop(gone);
    let s = meter.snapshot(&id("q")).unwrap();
    assert_eq!((s.requests, s.refused_total(), s.in_flight), (2, 1, 0));
    assert_eq!(meter.requests_this_month(&id("q")), 2);
}

#[tokio::test]
async fn work_after_the_head_is_metered_as_it_is_reported() {
    let meter = Meter::new();
    let late = StreamFigures::new();
    let producer = late.clone();
    // Reported before the head passes metering: carried over.
    producer.add(
        100,
        Duration::from_micros(300),
        Duration::from_millis(1),
        1 << 20,
    );
    let inner = tower::service_fn(move |_r: Request<String>| {
        let late = late.clone();
        async move {
            let mut res = sse(3);
            res.extensions_mut().insert(InvocationFigures::new(
                1_000,
                Duration::from_millis(2),
                0,
                false,
            ));
            res.extensions_mut().insert(late);
            Ok::<_, Infallible>(res)
        }
    });
    let mut svc = MeteringLayer::new(meter.clone()).layer(inner);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req("live", ""))
        .await
        .unwrap();
    let fuel = || meter.snapshot(&id("live")).unwrap().fuel;
    assert_eq!(fuel(), 1_100);
    // While the body is still open, each report lands at once.
    producer.add(
        50,
        Duration::from_micros(200),
        Duration::from_millis(3),
        2 << 20,
    );
    assert_eq!(fuel(), 1_150);
    let s = meter.snapshot(&id("live")).unwrap();
    assert_eq!(
        (s.wall_time, s.cpu_time, s.peak_memory),
        (
            Duration::from_millis(6),
            Duration::from_micros(500),
            2 << 20
        )
    );
    assert_eq!(s.streams_open, 1);
    assert_eq!(s.errors(ErrorKind::Deadline), 0);
    producer.failed(ErrorKind::Deadline);
    assert_eq!(
        meter
            .snapshot(&id("live"))
            .unwrap()
            .errors(ErrorKind::Deadline),
        1
    );
    drop(res);
    assert_eq!(meter.snapshot(&id("live")).unwrap().streams_open, 0);
    assert_eq!(producer.fuel(), 150);
}
