//! Deploy, replace, remove, park, wake, restart, and concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::{InvocationStats, Kind, Limits, Registry, SandboxError, TenantState};

use crate::{call, chaos, engine, registry, reply_module, text, tid};

fn quick_idle() -> Limits {
    Limits::builder()
        .idle_timeout(Duration::from_millis(1))
        .build()
}

#[tokio::test]
async fn a_thousand_tenants_park_and_wake_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let ids: Vec<_> = (0..1000).map(|i| tid(&format!("t{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        let info = reg
            .deploy(
                id,
                Kind::Wasm,
                &reply_module(&format!("tenant {i}"), 0),
                quick_idle(),
            )
            .unwrap();
        assert_eq!(info.kind, Kind::Wasm);
        assert!(!info.replaced);
    }
    let compiles = reg.stats().compiles;
    assert_eq!(compiles, 1000);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(text(&reg, id, b"").await, format!("tenant {i}"));
    }
    // A deploy leaves the tenant parked: each first request woke one.
    assert_eq!(reg.stats().cold_starts, 1000);
    assert_eq!(reg.stats().warm, 1000);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(reg.park_idle(), 1000);
    let stats = reg.stats();
    assert_eq!((stats.warm, stats.parks), (0, 1000));
    for (i, id) in ids.iter().enumerate() {
        let resp = call(&reg, id, b"").await.unwrap();
        assert_eq!(resp.body().as_ref(), format!("tenant {i}").as_bytes());
        assert!(
            resp.extensions()
                .get::<InvocationStats>()
                .unwrap()
                .cold_start
        );
    }
    let stats = reg.stats();
    assert_eq!(stats.cold_starts, 2000);
    assert_eq!(stats.compiles, compiles);
    assert_eq!(stats.warm, 1000);
    assert!(stats.cold_start_time_total > Duration::ZERO);
    assert_eq!(reg.status(&ids[7]).unwrap().cold_starts, 2);
}

#[test]
fn eight_threads_times_a_thousand_invocations_across_fifty_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let ids: Vec<_> = (0..50).map(|i| tid(&format!("c{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        reg.deploy(
            id,
            Kind::Wasm,
            &reply_module(&format!("c{i}"), 0),
            Limits::default(),
        )
        .unwrap();
    }
    let ids = Arc::new(ids);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let reg = reg.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for n in 0..1000usize {
                        let i = (t * 7 + n) % ids.len();
                        let resp = call(&reg, &ids[i], b"").await.unwrap();
                        assert_eq!(resp.body().as_ref(), format!("c{i}").as_bytes());
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = reg.stats();
    assert_eq!(stats.invocations, 8000);
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.compiles, 50);
}

#[tokio::test]
async fn replacing_a_tenant_lets_in_flight_requests_finish_on_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("swap");
    reg.deploy(&id, Kind::Wasm, &reply_module("v1", 300), Limits::default())
        .unwrap();
    let slow = {
        let reg = reg.clone();
        let id = id.clone();
        tokio::spawn(async move { text(&reg, &id, b"").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reg.status(&id).unwrap().in_flight, 1);
    let info = reg
        .deploy(&id, Kind::Wasm, &reply_module("v2", 0), Limits::default())
        .unwrap();
    assert!(info.replaced);
    let started = Instant::now();
    assert_eq!(text(&reg, &id, b"").await, "v2");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(slow.await.unwrap(), "v1");
    assert_eq!(reg.status(&id).unwrap().crc32, info.crc32);
}

#[tokio::test]
async fn removing_a_tenant_deletes_its_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("gone");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    let path = dir.path().join("artifacts/gone.art");
    assert!(path.exists());
    assert!(reg.remove(&id).unwrap());
    assert!(!path.exists());
    assert!(!reg.remove(&id).unwrap());
    assert!(reg.status(&id).is_none());
    assert!(matches!(
        call(&reg, &id, b"h").await.unwrap_err(),
        SandboxError::TenantNotFound { .. }
    ));
    assert!(reg.tenants().is_empty());
}

#[tokio::test]
async fn a_restart_re_registers_parked_tenants_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::builder()
        .fuel_per_request(12_345_678)
        .idle_timeout(Duration::from_millis(40))
        .build();
    {
        let reg = registry(dir.path());
        for name in ["alpha", "beta"] {
            reg.deploy(
                &tid(name),
                Kind::Wasm,
                &reply_module(name, 0),
                limits.clone(),
            )
            .unwrap();
        }
    }
    let reg = registry(dir.path());
    assert_eq!(reg.tenants(), vec![tid("alpha"), tid("beta")]);
    let status = reg.status(&tid("beta")).unwrap();
    assert_eq!(status.state, TenantState::Parked);
    assert_eq!(status.limits, limits);
    assert_eq!(text(&reg, &tid("beta"), b"").await, "beta");
    assert_eq!(text(&reg, &tid("alpha"), b"").await, "alpha");
    let stats = reg.stats();
    assert_eq!(
        (stats.compiles, stats.cold_starts, stats.deploys),
        (0, 2, 0)
    );
}

#[tokio::test]
async fn a_corrupted_artifact_is_a_typed_error_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("rot");
    reg.deploy(&id, Kind::Wasm, &chaos(), Limits::default())
        .unwrap();
    // A deploy leaves the tenant parked: the next request reads the file.
    assert_eq!(reg.status(&id).unwrap().state, TenantState::Parked);
    let path = dir.path().join("artifacts/rot.art");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = call(&reg, &id, b"h").await.unwrap_err();
    assert!(
        matches!(err, SandboxError::CorruptArtifact { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "corrupt_artifact");
    drop(reg);
    // On restart the corrupt file is skipped and counted.
    let reg = registry(dir.path());
    assert!(reg.tenants().is_empty());
    assert_eq!(reg.stats().corrupt_artifacts, 1);
}

#[tokio::test]
async fn simultaneous_first_requests_to_a_parked_tenant_load_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("herd");
    reg.deploy(&id, Kind::Wasm, &reply_module("herd", 0), Limits::default())
        .unwrap();
    // Parked by the deploy: nothing to park.
    assert!(!reg.park(&id).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let reg = reg.clone();
            let id = id.clone();
            tokio::spawn(async move { text(&reg, &id, b"").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "herd");
    }
    assert_eq!(reg.stats().cold_starts, 1);
    assert_eq!(reg.status(&id).unwrap().cold_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_parks_idle_tenants_but_never_one_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::builder(dir.path())
        .engine(engine())
        .park_sweep_interval(Some(Duration::from_millis(5)))
        .open()
        .unwrap();
    let id = tid("sleepy");
    // The guest sleeps far longer than the checks below take, so a scheduling
    // stall of the test thread on a loaded machine cannot let the request
    // finish (and the sweeper park it) before the in-flight checks run.
    reg.deploy(&id, Kind::Wasm, &reply_module("zzz", 1500), quick_idle())
        .unwrap();
    let slow = {
        let reg = reg.clone();
        let id = id.clone();
        tokio::spawn(async move { text(&reg, &id, b"").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let parks = reg.stats().parks;
    // Idle timeout 1 ms, sweep every 5 ms: still warm while the request runs.
    for _ in 0..3 {
        let status = reg.status(&id).unwrap();
        assert_eq!((status.state, status.in_flight), (TenantState::Warm, 1));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(reg.stats().parks, parks);
    assert_eq!(slow.await.unwrap(), "zzz");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = reg.status(&id).unwrap();
    assert_eq!((status.state, status.in_flight), (TenantState::Parked, 0));
    assert!(status.idle_for >= Duration::from_millis(50));
    assert_eq!(reg.stats().parks, parks + 1);
}

#[test]
fn the_epoch_ticker_stops_with_its_engine() {
    let engine = corral::WasmEngine::new(corral::EngineConfig::default().instances(2)).unwrap();
    let ticker = engine.ticker();
    assert!(ticker.is_running());
    drop(engine);
    let deadline = Instant::now() + Duration::from_secs(2);
    while ticker.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!ticker.is_running());
}
