//! The noisy-neighbour test, in its own binary so that no other end-to-end
//! test loads the machine while it measures latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
use common::{Server, js_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spinning_tenant_does_not_starve_others() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(tmp.path(), None));
    assert_eq!(
        s.deploy_js(
            "spin",
            "spin",
            "export default { async fetch() { while (true) {} } };"
        )
        .await
        .0,
        200
    );
    assert_eq!(s.deploy_js("calm", "test", &js_text("calm")).await.0, 200);

    async fn p99(s: &Server, n: usize) -> Duration {
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            assert_eq!(s.get("/apps/calm/").await.0, 200);
            lat.push(t.elapsed());
        }
        lat.sort();
        lat[(n * 99).div_ceil(100) - 1]
    }
    p99(&s, 20).await; // warm up

    // Each round measures the calm tenant unloaded and then under the hammer,
    // back to back, so both halves see the same background load. The machine
    // is shared: another process's burst can land in one half of one round,
    // so up to three rounds are measured and the best ratio must be under 5x.
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let unloaded = p99(&s, 300).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut hammer = Vec::new();
        for _ in 0..50 {
            let (s, stop) = (s.clone(), stop.clone());
            hammer.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = s.get("/apps/spin/").await.0;
                    assert!(status == 503 || status == 429, "{status}");
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let loaded = p99(&s, 300).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut spun = 0;
        for h in hammer {
            spun += h.await.unwrap();
        }
        let ratio = loaded.as_secs_f64() / unloaded.as_secs_f64();
        println!(
            "round {round}: calm tenant p99 unloaded {unloaded:?}, with 50 clients hammering an infinite loop {loaded:?} ({ratio:.2}x); {spun} spin requests refused"
        );
        assert!(spun >= 50, "the hammer barely ran: {spun} requests");
        ratios.push(ratio);
        if ratio < 5.0 {
            break;
        }
    }
    let best = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        best < 5.0,
        "loaded p99 ≥ 5 × unloaded p99 in every round: {ratios:?}"
    );
}
