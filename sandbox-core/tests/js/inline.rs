//! Requests that start on the async worker that received them: a short one
//! ends there, a long one (or one about to block on KV) moves to a blocking
//! thread without holding the worker, and its limits and figures hold
//! across the move. (Only a multi-threaded tokio runtime runs requests
//! inline; most tests elsewhere use the current-thread one.)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::{InvocationStats, KvError, Limits, SandboxError, TenantId, TenantKv};

use crate::Tenant;

const APP: &str = r#"export default { async fetch(req, env) {
    const [, what, arg] = new URL(req.url).pathname.split("/");
    if (what === "spin") {
        const until = Date.now() + Number(arg);
        let n = 0;
        while (Date.now() < until) n++;
        return new Response("spun " + (n > 0));
    }
    if (what === "work") {
        let x = 0;
        for (let i = 0; i < Number(arg) * 1e6; i++) x += i;
        return new Response("worked " + (x > 0));
    }
    if (what === "forever") { for (;;) {} }
    if (what === "kv") return new Response("kv " + await env.KV.get("k"));
    return new Response("hello");
} }"#;

/// A KV store whose reads block the thread for `delay` (a slow disk).
#[derive(Debug)]
struct SlowKv {
    delay: Duration,
}

impl TenantKv for SlowKv {
    fn get(&self, _: &TenantId, _: &str) -> Result<Option<Bytes>, KvError> {
        std::thread::sleep(self.delay);
        Ok(Some(Bytes::from_static(b"slow")))
    }
    fn put(&self, _: &TenantId, _: &str, _: &[u8]) -> Result<(), KvError> {
        Ok(())
    }
    fn delete(&self, _: &TenantId, _: &str) -> Result<bool, KvError> {
        Ok(false)
    }
    fn list(&self, _: &TenantId, _: &str, _: usize) -> Result<Vec<String>, KvError> {
        Ok(Vec::new())
    }
}

/// Runs `fut` as a task (on a worker), counting its polls and timing the
/// longest: how long it held the worker at a stretch.
async fn on_worker<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> (T, u32, Duration) {
    tokio::spawn(async move {
        let mut fut = std::pin::pin!(fut);
        let (mut polls, mut longest) = (0, Duration::ZERO);
        let out = std::future::poll_fn(|cx| {
            let started = Instant::now();
            let poll = fut.as_mut().poll(cx);
            polls += 1;
            longest = longest.max(started.elapsed());
            poll
        })
        .await;
        (out, polls, longest)
    })
    .await
    .unwrap()
}

fn tenant(limits: Limits) -> Arc<Tenant> {
    Arc::new(Tenant::new("inline", APP, limits).with_kv(Arc::new(SlowKv {
        delay: Duration::from_millis(300),
    })))
}

async fn send(
    t: &Arc<Tenant>,
    path: &str,
) -> (Result<http::Response<Bytes>, SandboxError>, u32, Duration) {
    let (t, path) = (t.clone(), path.to_owned());
    on_worker(async move { t.get(&path).await }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_ends_on_the_worker_in_one_poll() {
    let t = tenant(Limits::default());
    // Another test of this binary may hold the one inline slot a 2-worker
    // runtime allows for a moment: most of 50 requests run inline, not all.
    let mut inline = 0;
    for _ in 0..50 {
        let (resp, polls, _) = send(&t, "/").await;
        let resp = resp.unwrap();
        assert_eq!(resp.body(), "hello");
        let stats = resp.extensions().get::<InvocationStats>().unwrap();
        assert!(stats.fuel_consumed < 10);
        // Answered (and its full body collected) in the first poll: it never
        // waited for another thread.
        if polls == 1 {
            inline += 1;
        }
    }
    assert!(inline >= 10, "{inline} of 50 requests ran inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_s_first_request_ends_on_the_worker_in_one_poll() {
    // The build measured the heap it made, so the first request has no walk
    // to move off the worker for. (It used to hop to a blocking thread on
    // every cold start: then none of these ran in one poll.)
    let mut inline = 0;
    for _ in 0..20 {
        let t = tenant(Limits::default());
        let (resp, polls, _) = send(&t, "/").await;
        assert_eq!(resp.unwrap().body(), "hello");
        if polls == 1 {
            inline += 1;
        }
    }
    // As above: another test may hold the one inline slot for a moment.
    assert!(inline >= 5, "{inline} of 20 first requests ran inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_moves_off_the_worker() {
    let t = tenant(Limits::default());
    let (resp, polls, longest) = send(&t, "/spin/300").await;
    let resp = resp.unwrap();
    assert_eq!(resp.body(), "spun true");
    assert!(polls >= 2, "it waited for a blocking thread");
    assert!(
        longest < Duration::from_millis(100),
        "held the worker {longest:?} at a stretch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_time_of_a_request_that_moved_counts_both_threads() {
    let t = tenant(Limits::default());
    let cpu = |resp: http::Response<Bytes>| {
        assert_eq!(resp.body(), "worked true");
        resp.extensions().get::<InvocationStats>().unwrap().cpu_time
    };
    // Moves after 1 ms; the next requests then run on a blocking thread
    // from the start. The same work costs about the same CPU either way.
    let (resp, polls, _) = send(&t, "/work/1").await;
    assert!(polls >= 2);
    let moved = cpu(resp.unwrap());
    let blocking = cpu(send(&t, "/work/1").await.0.unwrap());
    assert!(
        moved > blocking / 2 && moved < blocking * 2,
        "moved {moved:?}, on a blocking thread {blocking:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_about_to_block_on_kv_moves_off_the_worker_first() {
    let t = tenant(Limits::default());
    let (resp, _, longest) = send(&t, "/kv").await;
    assert_eq!(resp.unwrap().body(), "kv slow");
    assert!(
        longest < Duration::from_millis(100),
        "held the worker {longest:?} at a stretch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_still_end_a_request_that_moved() {
    let t = tenant(Limits::builder().fuel_per_request(200).build());
    let (resp, _, longest) = send(&t, "/forever").await;
    assert!(
        matches!(resp, Err(SandboxError::FuelExhausted { limit: 200, .. })),
        "{resp:?}"
    );
    assert!(longest < Duration::from_millis(100), "{longest:?}");
    // The runtime was rebuilt and serves again.
    assert_eq!(send(&t, "/").await.0.unwrap().body(), "hello");

    let t = tenant(
        Limits::builder()
            .wall_clock(Duration::from_millis(200))
            .build(),
    );
    let started = Instant::now();
    let (resp, _, longest) = send(&t, "/forever").await;
    assert!(
        matches!(resp, Err(SandboxError::Deadline { .. })),
        "{resp:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(longest < Duration::from_millis(100), "{longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_busy_one_share_runtime_all_finish() {
    let t = tenant(Limits::builder().compute_shares(1).build());
    let slow = {
        let t = t.clone();
        tokio::spawn(async move { send(&t, "/spin/200").await.0 })
    };
    let quick: Vec<_> = (0..20)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { send(&t, "/").await.0 })
        })
        .collect();
    assert_eq!(slow.await.unwrap().unwrap().body(), "spun true");
    for q in quick {
        assert_eq!(q.await.unwrap().unwrap().body(), "hello");
    }
}
