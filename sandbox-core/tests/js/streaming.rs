//! Streamed response bodies: a `ReadableStream` body is sent chunk by chunk
//! while the guest produces it, and the tenant keeps serving requests.

use std::time::{Duration, Instant};

use corral::limits_layers::RuntimeSlots;
use corral::{Body, Kind, Limits, Registry, SandboxError, TenantState};
use http_body_util::BodyExt;

use super::{Tenant, get};

const APP: &str = r#"
const enc = new TextEncoder();
const sse = { "content-type": "text/event-stream" };
let fed = null; // the controller of the stream that /send feeds
let cancelled = 0;
const every = (ms, type) => {
  let i = 0;
  return new Response(
    new ReadableStream({
      pull(c) {
        return new Promise((r) => setTimeout(() => { c.enqueue(`data: ${i++}\n\n`); r(); }, ms));
      },
    }),
    { headers: { "content-type": type } },
  );
};
export default {
  async fetch(req, env, ctx) {
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/ticks": {
        const { readable, writable } = new TransformStream();
        const writer = writable.getWriter();
        ctx.waitUntil((async () => {
          for (let i = 0; i < 3; i++) {
            await writer.write(enc.encode(`data: ${i}\n\n`));
            await new Promise((r) => setTimeout(r, 50));
          }
          await writer.close();
        })());
        return new Response(readable, { headers: sse });
      }
      case "/fed":
        return new Response(
          new ReadableStream({
            start(c) { fed = c; c.enqueue("data: open\n\n"); },
            cancel() { cancelled++; fed = null; },
          }),
          { headers: sse },
        );
      case "/send":
        if (!fed) return new Response("no stream", { status: 409 });
        fed.enqueue(`data: ${url.searchParams.get("m")}\n\n`);
        if (url.searchParams.has("end")) { fed.close(); fed = null; }
        return new Response("sent");
      case "/cancelled":
        return new Response(String(cancelled));
      case "/forever":
        return every(20, "text/event-stream");
      case "/download":
        return every(20, "text/plain");
      case "/spin": {
        let pulls = 0;
        return new Response(new ReadableStream({
          pull(c) {
            if (pulls++ < 2) c.enqueue(`data: ${pulls}\n\n`);
            else while (true) {}
          },
        }), { headers: sse });
      }
      case "/write-then-spin": {
        const { readable, writable } = new TransformStream();
        const writer = writable.getWriter();
        ctx.waitUntil((async () => {
          await writer.write(enc.encode("data: last\n\n"));
          while (true) {}
        })());
        return new Response(readable, { headers: sse });
      }
      case "/idle":
        return new Response(new ReadableStream({}), { headers: sse });
      case "/loop":
        while (true) {}
      case "/bad-chunk":
        return new Response(new ReadableStream({ start(c) { c.enqueue(42); c.close(); } }));
      default:
        return new Response("hello");
    }
  },
};
"#;

fn app(limits: Limits) -> Tenant {
    Tenant::new("streamer", APP, limits)
}

/// The next data frame of `body`, `None` at its end; panics after 5 s.
async fn next(body: &mut Body) -> Option<Result<String, SandboxError>> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a frame within 5 s")?;
    Some(frame.map(|f| String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()))
}

async fn chunk(body: &mut Body) -> String {
    next(body).await.expect("a chunk").expect("not an error")
}

#[tokio::test]
async fn event_stream_chunks_arrive_as_the_guest_writes_them() {
    let t = app(Limits::default());
    let resp = t.open("/ticks").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    assert!(body.is_stream());
    let first = chunk(&mut body).await;
    let started = Instant::now();
    assert_eq!(first, "data: 0\n\n");
    assert_eq!(chunk(&mut body).await, "data: 1\n\n");
    assert_eq!(chunk(&mut body).await, "data: 2\n\n");
    assert!(next(&mut body).await.is_none(), "the stream ends");
    // The writer sleeps 50 ms between events: they came as written, not at once.
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_tenant_serves_requests_while_its_stream_waits() {
    let t = app(Limits::default());
    let mut body = t.open("/forever").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: 0\n\n");
    for _ in 0..5 {
        assert_eq!(t.text("/hello").await, "hello");
    }
    assert_eq!(chunk(&mut body).await, "data: 1\n\n");
    assert_eq!(chunk(&mut body).await, "data: 2\n\n");
}

#[tokio::test]
async fn another_request_feeds_an_idle_stream_and_ends_it() {
    let t = app(Limits::default());
    let mut body = t.open("/fed").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: open\n\n");
    assert_eq!(t.text("/send?m=hi").await, "sent");
    assert_eq!(chunk(&mut body).await, "data: hi\n\n");
    assert_eq!(t.text("/send?m=bye&end").await, "sent");
    assert_eq!(chunk(&mut body).await, "data: bye\n\n");
    assert!(next(&mut body).await.is_none(), "closed by the guest");
}

#[tokio::test]
async fn dropping_the_body_cancels_the_guest_stream() {
    let t = app(Limits::default());
    let mut body = t.open("/fed").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: open\n\n");
    assert_eq!(t.text("/cancelled").await, "0");
    drop(body);
    let started = Instant::now();
    while t.text("/cancelled").await != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cancel never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = t.get("/send?m=late").await.unwrap();
    assert_eq!(resp.status(), 409, "the stream is gone");
}

#[tokio::test]
async fn an_event_stream_outlives_the_wall_clock_but_other_streams_do_not() {
    let wall = Duration::from_millis(300);
    let t = app(Limits::builder().wall_clock(wall).build());

    let started = Instant::now();
    let mut sse = t.open("/forever").await.unwrap().into_body();
    let mut events = 0;
    while started.elapsed() < wall * 2 {
        assert_eq!(chunk(&mut sse).await, format!("data: {events}\n\n"));
        events += 1;
    }
    drop(sse);

    let started = Instant::now();
    let mut download = t.open("/download").await.unwrap().into_body();
    let mut chunks = 0;
    let err = loop {
        match next(&mut download).await.expect("ends with an error") {
            Ok(_) => chunks += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, SandboxError::Deadline { limit } if limit == wall),
        "{err:?}"
    );
    assert!(started.elapsed() >= wall, "{:?}", started.elapsed());
    assert!(
        chunks > 0 && events > chunks,
        "{events} events, {chunks} chunks"
    );
    assert!(
        t.cx.log.lines().iter().any(|l| l.contains("deadline")),
        "the failure is in the tenant log: {:?}",
        t.cx.log.lines()
    );
}

#[tokio::test]
async fn a_stream_that_spins_runs_out_of_fuel_and_the_tenant_recovers() {
    let t = app(Limits::builder().fuel_per_request(1_000).build());
    let mut body = t.open("/spin").await.unwrap().into_body();
    // Reading a chunk pulls the next one at once (the queue holds one):
    // reading the second runs the third pull, which spins. The second
    // chunk goes down with the runtime, as a write in flight would.
    assert_eq!(chunk(&mut body).await, "data: 1\n\n");
    let err = next(&mut body).await.expect("an error").unwrap_err();
    assert!(
        matches!(err, SandboxError::FuelExhausted { limit: 1_000, .. }),
        "{err:?}"
    );
    assert_eq!(t.text("/hello").await, "hello");
}

#[tokio::test]
async fn a_chunk_written_before_the_guest_spins_still_goes_out() {
    let t = app(Limits::builder().fuel_per_request(1_000).build());
    let mut body = t.open("/write-then-spin").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: last\n\n");
    let err = next(&mut body).await.expect("an error").unwrap_err();
    assert!(matches!(err, SandboxError::FuelExhausted { .. }), "{err:?}");
    assert!(next(&mut body).await.is_none(), "then the stream ends");
}

#[tokio::test]
async fn a_chunk_that_is_not_bytes_fails_the_stream() {
    let t = app(Limits::default());
    let mut body = t.open("/bad-chunk").await.unwrap().into_body();
    let err = next(&mut body).await.expect("an error").unwrap_err();
    match err {
        SandboxError::ScriptError { message, .. } => {
            assert!(
                message.contains("TypeError") && message.contains("Uint8Array"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_open_stream_keeps_the_tenant_warm() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder(dir.path()).open().unwrap();
    let id = "warm-stream".parse().unwrap();
    let limits = Limits::builder()
        .idle_timeout(Duration::from_millis(1))
        .build();
    registry
        .deploy(&id, Kind::Js, APP.as_bytes(), limits)
        .unwrap();

    let mut body = registry
        .invoke(&id, get("/forever"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(chunk(&mut body).await, "data: 0\n\n");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let status = registry.status(&id).unwrap();
    assert_eq!((status.in_flight, status.streams), (0, 1));
    assert_eq!(status.idle_for, Duration::ZERO);
    assert_eq!(registry.park_idle(), 0, "an open stream is not idle");
    assert!(!registry.park(&id).unwrap());
    assert_eq!(chunk(&mut body).await, "data: 1\n\n");

    drop(body);
    assert_eq!(registry.status(&id).unwrap().streams, 0);
    assert!(registry.park(&id).unwrap());
    assert_eq!(registry.status(&id).unwrap().state, TenantState::Parked);
}

#[tokio::test]
async fn a_stream_is_woken_only_when_it_has_something_to_hand_over() {
    use corral::js::{QuickJsBackend, QuickJsProgram};
    use corral::{Backend, InvokeContext, Program, TenantLog};
    use std::sync::Arc;

    let limits = Limits::default();
    let artifact = QuickJsBackend::new()
        .precompile(APP.as_bytes(), &limits)
        .unwrap();
    let program = Arc::new(QuickJsProgram::load(&artifact, &limits).unwrap());
    let cx = InvokeContext::new(
        "pair".parse().unwrap(),
        Arc::new(limits),
        Arc::new(TenantLog::new(4096)),
    );
    let open = || program.clone().invoke(cx.clone(), get("/forever"));
    let mut a = open().await.unwrap().into_body();
    let mut b = open().await.unwrap().into_body();
    const EVENTS: u64 = 20;
    for i in 0..EVENTS {
        assert_eq!(chunk(&mut a).await, format!("data: {i}\n\n"));
        assert_eq!(chunk(&mut b).await, format!("data: {i}\n\n"));
    }
    // An event takes two steps: start the read (its pull sets a timer), then
    // fire the timer and hand over the chunk. A stream is woken only when
    // its own read settles, never by the other's steps (waking every stream
    // on any guest activity measured ~7 steps an event; streams that woke
    // each other on every step, ~100).
    let steps = program.stream_steps();
    assert!(
        steps <= 2 * EVENTS * 3,
        "{steps} steps for {} events",
        2 * EVENTS
    );

    // Idle streams cost nothing while other requests run: opening each takes
    // one step, and requests that feed none of them wake none.
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(50)).await; // their pumps end
    let before = program.stream_steps();
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(
            program
                .clone()
                .invoke(cx.clone(), get("/idle"))
                .await
                .unwrap()
                .into_body(),
        );
    }
    // Each pump takes its first step on its own: wait for all 50.
    let started = Instant::now();
    while program.stream_steps() - before < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the streams never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let opened = program.stream_steps() - before;
    for _ in 0..20 {
        let resp = program
            .clone()
            .invoke(cx.clone(), get("/hello"))
            .await
            .unwrap();
        assert_eq!(resp.into_body().to_bytes().await.unwrap(), "hello");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let steps = program.stream_steps() - before;
    assert_eq!(
        (opened, steps),
        (50, 50),
        "50 idle streams, then 20 requests"
    );
    drop(idle);
}

#[tokio::test]
async fn removing_the_tenant_ends_its_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder(dir.path()).open().unwrap();
    let id = "removed".parse().unwrap();
    registry
        .deploy(&id, Kind::Js, APP.as_bytes(), Limits::default())
        .unwrap();
    let mut body = registry.invoke(&id, get("/fed")).await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: open\n\n");
    assert!(registry.remove(&id).unwrap());
    assert!(
        next(&mut body).await.is_none(),
        "the stream ends with the tenant"
    );
}

#[tokio::test]
async fn a_limit_that_restarts_the_runtime_cuts_its_idle_streams() {
    let t = app(Limits::builder().fuel_per_request(1_000).build());
    let mut body = t.open("/fed").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: open\n\n");
    let err = t.get("/loop").await.unwrap_err();
    assert!(matches!(err, SandboxError::FuelExhausted { .. }), "{err:?}");
    // The stream lived in the dropped runtime: it ends with an error at once
    // instead of waiting forever for a feed that cannot come.
    let err = next(&mut body).await.expect("an error").unwrap_err();
    match err {
        SandboxError::BadResponse { reason } => assert!(reason.contains("cut"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.text("/hello").await, "hello");
}

#[tokio::test]
async fn an_event_stream_step_takes_a_host_runtime_slot() {
    let slots = RuntimeSlots::new(1);
    let t = app(Limits::default()).with_runtime_slots(slots.clone());
    let mut body = t.open("/fed").await.unwrap().into_body();
    assert_eq!(chunk(&mut body).await, "data: open\n\n");
    // The pump's next step finds nothing to hand over and the stream idles,
    // holding no slot.
    all_slots_free(&slots).await;

    // Every slot busy (as with requests of other tenants): the stream's next
    // step waits for one, though the guest has a chunk ready.
    let busy = slots.acquire().await;
    assert_eq!(t.text("/send?m=hi").await, "sent");
    let waited = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
    assert!(waited.is_err(), "a step ran without a slot");
    drop(busy);
    assert_eq!(chunk(&mut body).await, "data: hi\n\n");
    all_slots_free(&slots).await;
}

/// Waits (at most 5 s) until no slot is in use: a pump takes one for each
/// step, including the one after a chunk that finds the stream idle.
async fn all_slots_free(slots: &RuntimeSlots) {
    let free = async {
        while slots.in_use() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), free)
        .await
        .expect("an idle stream holds no slot");
}

#[tokio::test]
async fn other_streams_run_in_the_slot_their_request_holds() {
    let slots = RuntimeSlots::new(1);
    let t = app(Limits::default()).with_runtime_slots(slots.clone());
    // The request's own slot (the RuntimeSlotsLayer's), held until the body
    // ends: the steps of a stream that is not an event stream must not wait
    // for a second one.
    let _request_slot = slots.acquire().await;
    let mut body = t.open("/download").await.unwrap().into_body();
    for i in 0..3 {
        assert_eq!(chunk(&mut body).await, format!("data: {i}\n\n"));
    }
}
