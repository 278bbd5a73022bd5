//! A tenant with several compute shares runs its requests on several QuickJS
//! runtimes at once (one each), made on demand; and the memory of all of
//! them together stays within the tier's, measured from outside the process.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::js::{QuickJsBackend, QuickJsProgram};
use corral::limits_layers::Tier;
use corral::{Backend, InvokeContext, Limits, Program, SandboxError, TenantLog};

use crate::{MemKv, get};

/// Request `/meet/ME/N` marks `ME` as arrived in KV, then waits (polling KV,
/// up to 3 s by the clock) until all of `0..N` have arrived: `met` if they
/// did, `alone` if not. On one runtime the first request cannot meet the
/// second, which waits for the runtime.
///
/// `/fill/ME/N` first fills its runtime's heap to the limit (catching the
/// out-of-memory), keeps most of it in a global, then meets the others, so
/// every runtime holds a full heap at the same moment.
const MEETER: &str = r#"
const kept = [];
async function meet(env, me, n) {
    await env.KV.put("here-" + me, "1");
    const start = Date.now();
    while (Date.now() - start < 3000) {
        let here = 0;
        for (let i = 0; i < n; i++) if ((await env.KV.get("here-" + i)) !== null) here++;
        if (here === n) return "met";
    }
    return "alone";
}
export default { async fetch(req, env) {
    const [, what, me, n] = new URL(req.url).pathname.split("/");
    if (what === "meet") return new Response(await meet(env, me, Number(n)));
    if (what === "fill") {
        try {
            for (;;) kept.push("x".repeat(1 << 16) + kept.length);
        } catch (e) {
            // Full: give back 1 MiB so the meeting has room to run.
            kept.length = Math.max(0, kept.length - 16);
        }
        return new Response(await meet(env, me, Number(n)) + " " + kept.length);
    }
    return new Response("ok");
} }"#;

fn load(source: &str, limits: Limits) -> (Arc<QuickJsProgram>, InvokeContext) {
    let artifact = QuickJsBackend::new()
        .precompile(source.as_bytes(), &limits)
        .expect("deploys");
    let program = Arc::new(QuickJsProgram::load(&artifact, &limits).expect("loads"));
    let log = Arc::new(TenantLog::new(limits.max_log_bytes));
    let cx = InvokeContext::new("shares".parse().unwrap(), Arc::new(limits), log)
        .with_kv(Arc::new(MemKv::default()));
    (program, cx)
}

async fn text(program: &Arc<QuickJsProgram>, cx: &InvokeContext, path: &str) -> String {
    let resp = program
        .clone()
        .invoke(cx.clone(), get(path))
        .await
        .expect("request succeeds");
    let resp = corral::Body::collect_response(resp).await.unwrap();
    String::from_utf8(resp.into_body().to_vec()).unwrap()
}

/// `n` requests `/{what}/i/n` at once; their bodies in order.
async fn all_at_once(
    program: &Arc<QuickJsProgram>,
    cx: &InvokeContext,
    what: &str,
    n: usize,
) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (program, cx) = (program.clone(), cx.clone());
            let path = format!("/{what}/{i}/{n}");
            tokio::spawn(async move { text(&program, &cx, &path).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shares_run_two_requests_on_two_runtimes_at_once() {
    let (program, cx) = load(MEETER, Limits::builder().compute_shares(2).build());
    assert_eq!(program.runtimes(), 1, "a cold start makes one runtime");
    assert_eq!(text(&program, &cx, "/").await, "ok");
    assert_eq!(program.runtimes(), 1, "one request at a time needs one");
    // Each waits for the other: on one runtime this could only end "alone".
    assert_eq!(all_at_once(&program, &cx, "meet", 2).await, ["met", "met"]);
    assert_eq!(program.runtimes(), 2);
    // Both stay warm and serve; no third is made for a 2-share tenant.
    assert_eq!(all_at_once(&program, &cx, "meet", 2).await, ["met", "met"]);
    let _ = all_at_once(&program, &cx, "meet", 3).await;
    assert_eq!(program.runtimes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_share_never_makes_a_second_runtime() {
    let (program, cx) = load(MEETER, Limits::builder().compute_shares(1).build());
    let said = all_at_once(&program, &cx, "meet", 2).await;
    // The two ran one after the other: the first waited alone and gave up.
    assert!(said.contains(&"alone".to_owned()), "{said:?}");
    assert_eq!(program.runtimes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_globals_are_per_runtime() {
    let src = r#"let count = 0; const id = Math.random();
        export default { async fetch(req, env) {
            count++;
            if (new URL(req.url).pathname.startsWith("/meet/")) {
                const [, , me, n] = new URL(req.url).pathname.split("/");
                await env.KV.put("here-" + me, "1");
                const start = Date.now();
                while (Date.now() - start < 3000) {
                    let here = 0;
                    for (let i = 0; i < n; i++) if ((await env.KV.get("here-" + i)) !== null) here++;
                    if (here === Number(n)) break;
                }
            }
            return new Response(id + " " + count);
        } }"#;
    let (program, cx) = load(src, Limits::builder().compute_shares(2).build());
    let said = all_at_once(&program, &cx, "meet", 2).await;
    let ids: Vec<&str> = said.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert_ne!(
        ids[0], ids[1],
        "two runtimes, two module instances: {said:?}"
    );
    assert!(said.iter().all(|s| s.ends_with(" 1")), "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_in_one_runtime_leaves_the_others_and_their_budgets_alone() {
    let src = r#"export default { async fetch(req, env) {
        const [, what, me, n] = new URL(req.url).pathname.split("/");
        await env.KV.put("here-" + me, "1");
        const start = Date.now();
        while (Date.now() - start < 3000) {
            let here = 0;
            for (let i = 0; i < n; i++) if ((await env.KV.get("here-" + i)) !== null) here++;
            if (here === Number(n)) break;
        }
        if (what === "spin") for (;;) {}
        return new Response("done");
    } }"#;
    let limits = Limits::builder()
        .compute_shares(2)
        .fuel_per_request(2_000)
        .build();
    let (program, cx) = load(src, limits);
    let spin = {
        let (program, cx) = (program.clone(), cx.clone());
        tokio::spawn(async move { program.invoke(cx, get("/spin/0/2")).await })
    };
    let done = text(&program, &cx, "/done/1/2").await;
    let err = spin.await.unwrap().unwrap_err();
    assert!(
        matches!(err, SandboxError::FuelExhausted { limit: 2_000, .. }),
        "{err:?}"
    );
    // The other request, on the other runtime, had its own budget.
    assert_eq!(done, "done");
    assert_eq!(program.runtimes(), 2);
    // The runtime the limit dropped is rebuilt; both serve again.
    assert_eq!(
        all_at_once(&program, &cx, "done", 2).await,
        ["done", "done"]
    );
}

const CHILD_ENV: &str = "CORRAL_JS_SHARES_RSS_CHILD";
/// The tier's memory, shared by its shares.
const TIER_MEMORY: u64 = 32 << 20;
const SHARES: u32 = 4;
/// What the heap limits cannot see (see `memory.rs`), for each of the
/// child's four blocking threads: its glibc arena's bookkeeping and
/// fragmentation and the touched part of its 2 MiB stack.
const MARGIN: u64 = 4 * (3 << 20);

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Four requests of a 4-share tenant each fill a runtime's heap and hold it
/// at once: the host's RSS grows by about the tier's memory, never four
/// times it.
#[test]
fn four_full_runtimes_grow_host_rss_no_more_than_the_tier_memory() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shares::shares_rss_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figure = |name: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} from the child: {stdout}"));
        line[name.len()..].trim().parse().unwrap()
    };
    let growth = figure("rss-growth-bytes=");
    assert!(
        growth <= TIER_MEMORY + MARGIN,
        "host RSS grew {growth} bytes under a {TIER_MEMORY}-byte tier"
    );
    // Not vacuous: one runtime holds at most a quarter of the tier, so this
    // much growth means at least three held full heaps at once.
    assert!(
        growth >= TIER_MEMORY * 5 / 8,
        "RSS grew only {growth} bytes"
    );
}

#[test]
#[ignore = "runs in a child process of four_full_runtimes_grow_host_rss_no_more_than_the_tier_memory"]
fn shares_rss_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // One blocking thread per share, no more (see `memory.rs` on why the
    // count of threads, each with its own glibc arena, matters).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .max_blocking_threads(SHARES as usize)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tier = Tier::free();
        tier.memory_bytes = TIER_MEMORY;
        tier.compute_shares = SHARES;
        tier.wall_clock = Duration::from_secs(20);
        let limits = corral::platform::limits_for(&tier);
        assert_eq!(limits.memory_bytes, TIER_MEMORY / u64::from(SHARES));
        let (program, cx) = load(MEETER, limits);
        assert_eq!(text(&program, &cx, "/").await, "ok");
        let baseline = status_kib("VmRSS:") * 1024;
        let said = all_at_once(&program, &cx, "fill", SHARES as usize).await;
        let peak = status_kib("VmHWM:") * 1024;
        assert_eq!(program.runtimes(), SHARES as usize);
        for s in &said {
            let (met, kept) = s.split_once(' ').unwrap();
            assert_eq!(met, "met", "{said:?}");
            // Each runtime kept most of its 8 MiB in 64 KiB strings.
            assert!(kept.parse::<u64>().unwrap() >= 64, "{said:?}");
        }
        println!("said={said:?}");
        println!("rss-baseline-bytes={baseline}");
        println!("rss-peak-bytes={peak}");
        println!("rss-growth-bytes={}", peak.saturating_sub(baseline));
    });
}

/// A hog past its memory in one runtime is refused there alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_holds_in_every_runtime() {
    let limits = Limits::builder()
        .compute_shares(2)
        .memory_bytes(8 << 20)
        .build();
    let (program, cx) = load(
        r#"export default { fetch() {
            const keep = [];
            for (;;) keep.push("x".repeat(1 << 16) + keep.length);
        } }"#,
        limits,
    );
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (program, cx) = (program.clone(), cx.clone());
            tokio::spawn(async move {
                let req = http::Request::get("/").body(Bytes::new()).unwrap();
                program.invoke(cx, req).await.unwrap_err()
            })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap();
        assert!(
            matches!(err, SandboxError::MemoryLimit { limit } if limit == 8 << 20),
            "{err:?}"
        );
    }
    assert!(program.runtimes() <= 2);
}
