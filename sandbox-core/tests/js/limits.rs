//! Every limit ends the request with its typed error, and the tenant's next
//! request works.

use std::time::{Duration, Instant};

use corral::{Limits, SandboxError};

use crate::{Tenant, stats};

const TORTURE: &str = r#"
export default { async fetch(req) {
    const p = new URL(req.url).pathname;
    if (p === "/spin") { while (true) {} }
    if (p === "/spin-async") { await null; for (;;) { await null; } }
    if (p === "/recurse") { const f = (n) => f(n + 1) + 1; return new Response(String(f(0))); }
    if (p === "/recurse-caught") {
        const f = (n) => f(n + 1) + 1;
        try { f(0); } catch (e) { return new Response(e.constructor.name + ": " + e.message); }
    }
    if (p === "/bomb") { const keep = []; for (let i = 0; ; i++) keep.push("x".repeat(1 << 16) + i); }
    if (p === "/sleep") { await new Promise((r) => setTimeout(r, 60_000)); }
    if (p === "/count") { globalThis.n = (globalThis.n ?? 0) + 1; }
    return new Response("ok " + (globalThis.n ?? 0));
} }"#;

#[tokio::test]
async fn infinite_loop_hits_the_deadline_within_twice_the_deadline() {
    let deadline = Duration::from_millis(200);
    let t = Tenant::new(
        "spin",
        TORTURE,
        Limits::builder().wall_clock(deadline).build(),
    );
    for path in ["/spin", "/spin-async", "/sleep"] {
        let started = Instant::now();
        let err = t.get(path).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, SandboxError::Deadline { limit } if limit == deadline),
            "{path}: {err:?}"
        );
        assert!(took >= deadline, "{path}: stopped early, after {took:?}");
        assert!(took < deadline * 2, "{path}: took {took:?}");
        assert_eq!(t.text("/").await, "ok 0", "the next request works");
    }
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let t = Tenant::new(
        "fuel",
        TORTURE,
        Limits::builder().fuel_per_request(50).build(),
    );
    let err = t.get("/spin").await.unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::FuelExhausted {
                limit: 50,
                consumed: 51
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "fuel_exhausted");
    let resp = t.get("/").await.unwrap();
    assert_eq!(resp.body().as_ref(), b"ok 0");
    assert!(
        stats(&resp).cold_start,
        "the runtime was rebuilt from bytecode"
    );
    assert!(stats(&resp).fuel_consumed <= 50);
}

#[tokio::test]
async fn runtime_is_rebuilt_after_a_limit_but_kept_after_a_script_error() {
    let t = Tenant::new(
        "state",
        TORTURE,
        Limits::builder()
            .wall_clock(Duration::from_millis(100))
            .build(),
    );
    assert_eq!(t.text("/count").await, "ok 1");
    assert_eq!(t.text("/count").await, "ok 2");
    t.get("/spin").await.unwrap_err();
    assert_eq!(
        t.text("/").await,
        "ok 0",
        "a fresh runtime after the deadline"
    );
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let t = Tenant::new(
        "deep",
        TORTURE,
        Limits::builder().max_stack_bytes(256 << 10).build(),
    );
    let err = t.get("/recurse").await.unwrap_err();
    assert!(matches!(err, SandboxError::StackOverflow), "{err:?}");
    assert_eq!(err.code(), "stack_overflow");
    assert_eq!(t.text("/").await, "ok 0");
    // The guest may catch it itself.
    assert_eq!(
        t.text("/recurse-caught").await,
        "RangeError: Maximum call stack size exceeded"
    );
}

#[tokio::test]
async fn allocation_bomb_hits_the_memory_limit() {
    let limit = 16 << 20;
    let t = Tenant::new(
        "bomb",
        TORTURE,
        Limits::builder().memory_bytes(limit).build(),
    );
    let err = t.get("/bomb").await.unwrap_err();
    assert!(
        matches!(err, SandboxError::MemoryLimit { limit: l } if l == limit),
        "{err:?}"
    );
    assert_eq!(err.code(), "memory_limit");
    assert_eq!(t.text("/").await, "ok 0");
}

#[tokio::test]
async fn a_console_log_flood_of_empty_lines_keeps_the_log_within_its_caps() {
    let t = Tenant::new(
        "chatty",
        r#"export default { fetch(req) {
            if (new URL(req.url).pathname === "/forever") { for (;;) console.log(""); }
            for (let i = 0; i < 20000; i++) console.log("");
            return new Response("ok");
        } }"#,
        Limits::builder()
            .max_log_bytes(16 << 10)
            // Room for the 20,000 lines of a debug build on a busy box (it
            // takes ~0.1 s on a quiet one): 300 ms made the test flaky.
            .wall_clock(Duration::from_secs(2))
            .build(),
    );
    let log = &t.cx.log;
    assert_eq!(log.max_lines(), 256);
    assert_eq!(t.text("/").await, "ok");
    // One log's worth of empty lines, less the two the note pushed out.
    let lines = log.lines();
    assert_eq!(lines.len(), 254 + 1);
    assert!(lines[..254].iter().all(String::is_empty));
    assert_eq!(
        lines[254],
        "[corral] 19744 more log lines from this request were dropped"
    );
    assert_eq!(log.dropped(), 19_744 + 2);
    // The endless flood (the issue's `for (;;) console.log("")`) ends at the
    // deadline with the log still within both caps.
    let err = t.get("/forever").await.unwrap_err();
    assert!(matches!(err, SandboxError::Deadline { .. }), "{err:?}");
    assert!(log.len() <= log.max_lines());
    assert!(log.bytes() <= log.max_bytes());
    assert!(
        log.dropped() > 19_744 + 2 + 256,
        "the flood ran: {}",
        log.dropped()
    );
    assert!(log.lines().last().unwrap().starts_with("[corral] "));
}
