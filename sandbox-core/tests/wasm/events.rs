//! WebAssembly event streams: a WAGI module whose CGI head says
//! `text/event-stream` has its head and events sent as it writes them; any
//! other output is still a whole response, parsed when the module exits.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::metering::StreamFigures;
use corral::{Body, InvocationStats, Kind, Limits, Registry, SandboxError, TenantId};
use http_body_util::BodyExt as _;

use crate::{call, fixture, registry, tid};

fn events() -> Vec<u8> {
    static EVENTS: OnceLock<Vec<u8>> = OnceLock::new();
    EVENTS.get_or_init(|| fixture("events.wat")).clone()
}

fn deploy(reg: &Registry, limits: Limits) -> TenantId {
    let id = tid("events");
    reg.deploy(&id, Kind::Wasm, &events(), limits).unwrap();
    id
}

async fn open(reg: &Registry, id: &TenantId, mode: &'static [u8]) -> http::Response<Body> {
    let req = http::Request::post("/")
        .body(Bytes::from_static(mode))
        .unwrap();
    reg.invoke(id, req).await.unwrap()
}

/// The next data frame of `body`, `None` at its end; panics after 5 s.
async fn next(body: &mut Body) -> Option<Result<String, SandboxError>> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a frame within 5 s")?;
    Some(frame.map(|f| String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()))
}

#[tokio::test]
async fn events_go_out_as_the_module_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, Limits::default());
    let started = Instant::now();
    let resp = open(&reg, &id, b"e").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(
        resp.extensions()
            .get::<corral::limits_layers::Attached>()
            .is_some()
    );
    let figures = resp.extensions().get::<StreamFigures>().unwrap().clone();
    let at_head = resp
        .extensions()
        .get::<InvocationStats>()
        .unwrap()
        .wall_time;
    let mut body = resp.into_body();
    assert!(body.is_stream());
    assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: 1\n\n");
    // The module sleeps 100 ms before its second event: the first came before.
    assert!(
        at_head < Duration::from_millis(100),
        "head after {at_head:?}"
    );
    assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: 2\n\n");
    assert!(
        next(&mut body).await.is_none(),
        "ends when the module exits"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The run's fuel and time after the head are reported as the stream ends.
    assert!(figures.fuel() > 0);
}

#[tokio::test]
async fn a_limit_cuts_the_stream_after_the_events_already_written() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, Limits::builder().fuel_per_request(5_000_000).build());
    let mut body = open(&reg, &id, b"l").await.into_body();
    assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: 1\n\n");
    let err = next(&mut body).await.unwrap().unwrap_err();
    assert!(matches!(err, SandboxError::FuelExhausted { .. }), "{err:?}");

    // The wall clock ends a stream that would go on forever.
    let reg2 = registry(&dir.path().join("b"));
    let id = tid("ticker");
    let limits = Limits::builder()
        .wall_clock(Duration::from_millis(300))
        .build();
    reg2.deploy(&id, Kind::Wasm, &events(), limits).unwrap();
    let mut body = open(&reg2, &id, b"f").await.into_body();
    let mut ticks = 0;
    let err = loop {
        match next(&mut body).await.expect("an error, not a clean end") {
            Ok(_) => ticks += 1,
            Err(e) => break e,
        }
    };
    assert!(ticks >= 3, "{ticks} events in 300 ms");
    assert!(matches!(err, SandboxError::Deadline { .. }), "{err:?}");
}

#[tokio::test]
async fn output_that_is_not_an_event_stream_is_still_a_whole_response() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, Limits::builder().fuel_per_request(5_000_000).build());
    // It wrote a head and some body, then spun: an error, not a cut stream.
    let err = call(&reg, &id, b"p").await.unwrap_err();
    assert!(matches!(err, SandboxError::FuelExhausted { .. }), "{err:?}");
    // An event stream that ends at once is still a stream.
    let resp = open(&reg, &id, b"x").await;
    assert!(resp.body().is_stream());
    let all = Body::collect_response(resp).await.unwrap();
    assert_eq!(&all.body()[..], b"data: 1\n\n");
}

#[tokio::test]
async fn the_module_stops_when_the_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = deploy(&reg, Limits::default());
    let resp = open(&reg, &id, b"f").await;
    let figures = resp.extensions().get::<StreamFigures>().unwrap().clone();
    let mut body = resp.into_body();
    assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: 1\n\n");
    for _ in 0..3 {
        assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: 2\n\n");
    }
    assert_eq!(reg.status(&id).unwrap().streams, 1);
    drop(body);
    assert_eq!(reg.status(&id).unwrap().streams, 0);
    // The run is dropped with its stream: the module ticks (on stderr) no more.
    let log = reg.log(&id).unwrap();
    let ticks = || log.lines().len() as u64 + log.dropped();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = ticks();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ticks(), after_drop, "the module still runs");
    assert_eq!(reg.status(&id).unwrap().in_flight, 0);
    // What it used until then is still metered (as of its last epoch tick).
    assert!(figures.fuel() > 0);
    assert!(figures.wall_time() >= Duration::from_millis(60));
}
