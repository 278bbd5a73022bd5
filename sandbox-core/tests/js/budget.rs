//! No guest code outside a budget: a tenant that patches the built-ins the
//! prelude's host helpers use cannot run its code there unbounded, nor change
//! what they hand the host; and a stream's steps share one total budget.
//!
//! The tenants here run on a tokio runtime with a single blocking thread: a
//! request or stream step that never gave its thread back would stall every
//! later one, so "the next request works" also proves the thread came back.

use std::future::Future;
use std::time::{Duration, Instant};

use corral::{Body, Limits, SandboxError};
use http_body_util::BodyExt;

use super::Tenant;

const APP: &str = r#"
const enc = new TextEncoder();
const P = Promise; // the "globals" patch replaces the global
const sse = { "content-type": "text/event-stream" };
const spin = function () { for (;;) {} };
const spinGetter = (name) =>
  Object.defineProperty(Object.prototype, name, { __proto__: null, get: spin, configurable: true });
const PATCHES = {
  splice() { Array.prototype.splice = spin; },
  shift() { Array.prototype.shift = spin; Array.prototype.push = spin; },
  then() { Promise.prototype.then = spin; Promise.prototype.catch = spin; Promise.prototype.finally = spin; },
  getters() { spinGetter("value"); spinGetter("done"); spinGetter("then"); spinGetter("error"); },
  iterator() {
    Object.getPrototypeOf([][Symbol.iterator]()).next = spin;
    Object.getPrototypeOf(new Map()[Symbol.iterator]()).next = spin;
    Array.prototype[Symbol.iterator] = spin;
    Map.prototype[Symbol.iterator] = spin;
  },
  globals() { globalThis.Promise = spin; globalThis.Map = spin; globalThis.Uint8Array = spin; },
};
export default {
  // Not async: an async handler's own promise would look up `then` on the
  // Response it returns, and the "getters" patch makes that the tenant's own
  // endless loop.
  fetch(req, env, ctx) {
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/ticks": {
        // Three events 20 ms apart, written after the patch is in place.
        const { readable, writable } = new TransformStream();
        const writer = writable.getWriter();
        const patch = url.searchParams.get("patch");
        if (patch) PATCHES[patch]();
        ctx.waitUntil((async () => {
          for (let i = 0; i < 3; i++) {
            await writer.write(enc.encode(`data: ${i}\n\n`));
            await new P((r) => setTimeout(r, 20));
          }
          await writer.close();
        })());
        return new Response(readable, { headers: sse });
      }
      case "/cancel-spins":
        return new Response(new ReadableStream({
          start(c) { c.enqueue("data: open\n\n"); },
          cancel: spin,
        }), { headers: sse });
      case "/busy": {
        // Each pull computes 10-30 interrupt ticks (within the request's 50),
        // then hands over one event.
        let n = 0;
        return new Response(new ReadableStream({
          pull(c) {
            for (let i = 0; i < 100000; i++) {}
            c.enqueue(`data: ${n++}\n\n`);
          },
        }, { highWaterMark: 0 }), { headers: sse });
      }
      case "/forever": {
        let n = 0;
        return new Response(new ReadableStream({
          pull(c) {
            return new P((r) => setTimeout(() => { c.enqueue(`data: ${n++}\n\n`); r(); }, 20));
          },
        }, { highWaterMark: 0 }), { headers: sse });
      }
      default:
        return new Response("ok");
    }
  },
};
"#;

/// Runs `test` on a runtime with one blocking thread, within 20 s.
fn on_one_blocking_thread(test: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), test)
            .await
            .expect("the test finishes: no blocking thread is pinned");
    });
}

/// The next data frame of `body` as text, `None` at its end; panics after 5 s.
async fn next(body: &mut Body) -> Option<Result<String, SandboxError>> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a frame within 5 s")?;
    Some(frame.map(|f| String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()))
}

/// Every event of `body` until it ends or fails.
async fn events(body: &mut Body) -> (Vec<String>, Option<SandboxError>) {
    let mut got = Vec::new();
    loop {
        match next(body).await {
            None => return (got, None),
            Some(Ok(event)) => got.push(event),
            Some(Err(err)) => return (got, Some(err)),
        }
    }
}

/// A tenant that patched a built-in the prelude used to call (or one it
/// reads through: `then`, `value`, `done` getters, an iterator) still gets
/// exactly its events out, in order, and its next request answers.
#[test]
fn patched_builtins_change_nothing_the_pump_sends() {
    on_one_blocking_thread(async {
        for patch in ["splice", "shift", "then", "getters", "iterator", "globals"] {
            let limits = Limits::builder().wall_clock(Duration::from_secs(1)).build();
            let t = Tenant::new("patcher", APP, limits);
            let resp = t.open(&format!("/ticks?patch={patch}")).await.unwrap();
            assert_eq!(resp.status(), 200, "{patch}");
            let (got, err) = events(&mut resp.into_body()).await;
            assert!(err.is_none(), "{patch}: {err:?}");
            assert_eq!(
                got,
                ["data: 0\n\n", "data: 1\n\n", "data: 2\n\n"],
                "{patch}"
            );
            assert_eq!(t.text("/").await, "ok", "{patch}: the next request");
        }
    });
}

/// The guest's `cancel` callback runs when the client goes away, outside
/// any request: under a budget, so an endless one is stopped, the runtime
/// is rebuilt and the blocking thread comes back.
#[test]
fn an_endless_cancel_callback_is_cut_by_the_budget() {
    on_one_blocking_thread(async {
        let wall = Duration::from_millis(200);
        let t = Tenant::new("cancel", APP, Limits::builder().wall_clock(wall).build());
        let mut body = t.open("/cancel-spins").await.unwrap().into_body();
        assert_eq!(next(&mut body).await.unwrap().unwrap(), "data: open\n\n");
        let dropped = Instant::now();
        drop(body);
        // The cancel runs on the only blocking thread, until its budget's
        // wall clock stops it.
        while !t
            .cx
            .log
            .lines()
            .iter()
            .any(|l| l.contains("cancel callback failed") && l.contains("deadline"))
        {
            assert!(
                dropped.elapsed() < wall * 10,
                "the cancel was not stopped: {:?}",
                t.cx.log.lines()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(dropped.elapsed() >= wall, "{:?}", dropped.elapsed());
        let resp = t.get("/").await.unwrap();
        assert_eq!(resp.body().as_ref(), b"ok");
        assert!(super::stats(&resp).cold_start, "the runtime was rebuilt");
    });
}

/// Each step of this stream stays within the request's fuel, but all of
/// them together pass `stream_fuel`: the stream ends with the fuel error
/// naming the stream's limit, and the tenant's next request works.
#[test]
fn stream_fuel_cuts_a_stream_that_computes_a_little_on_every_step() {
    on_one_blocking_thread(async {
        let limits = Limits::builder()
            .fuel_per_request(50)
            .stream_fuel(200)
            .build();
        let t = Tenant::new("busy", APP, limits);
        let mut body = t.open("/busy").await.unwrap().into_body();
        let (got, err) = events(&mut body).await;
        assert!(
            matches!(
                err,
                Some(SandboxError::FuelExhausted { limit: 200, consumed }) if consumed >= 200
            ),
            "{err:?} after {} events",
            got.len()
        );
        // 10-30 ticks an event: some came out, and far fewer than an
        // endless stream would have sent.
        assert!((3..=25).contains(&got.len()), "{} events", got.len());
        for (i, event) in got.iter().enumerate() {
            assert_eq!(event, &format!("data: {i}\n\n"));
        }
        assert_eq!(t.text("/").await, "ok");
    });
}

/// An event stream read as fast as it writes still ends at
/// `max_stream_duration`, with the wall-clock error naming it.
#[test]
fn max_stream_duration_ends_an_event_stream_that_is_read() {
    on_one_blocking_thread(async {
        let max = Duration::from_millis(400);
        let t = Tenant::new(
            "long",
            APP,
            Limits::builder().max_stream_duration(max).build(),
        );
        let started = Instant::now();
        let mut body = t.open("/forever").await.unwrap().into_body();
        let (got, err) = events(&mut body).await;
        let took = started.elapsed();
        assert!(
            matches!(err, Some(SandboxError::Deadline { limit }) if limit == max),
            "{err:?}"
        );
        assert!(took >= max, "ended early, after {took:?}");
        assert!(took < max * 5, "took {took:?}");
        // One event every 20 ms until the end.
        assert!(got.len() >= 5, "{} events", got.len());
        assert_eq!(t.text("/").await, "ok");
    });
}
