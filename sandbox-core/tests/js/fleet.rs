//! 500 JavaScript tenants deployed, parked and woken through the `Registry`.

use bytes::Bytes;
use corral::{EngineConfig, InvocationStats, Kind, Limits, Registry, TenantId, TenantState};

const TENANTS: usize = 500;

fn source(i: usize) -> String {
    format!(
        r#"let hits = 0;
export default {{ fetch(req) {{
    hits++;
    return new Response(`tenant {i} ${{new URL(req.url).pathname}} hit ${{hits}}`);
}} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_tenants_deployed_parked_and_woken() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder(dir.path())
        .engine_config(EngineConfig::default().instances(2))
        .park_sweep_interval(None)
        .open()
        .unwrap();
    let ids: Vec<TenantId> = (0..TENANTS)
        .map(|i| format!("js-{i}").parse().unwrap())
        .collect();
    let req = |path: &str| http::Request::get(path).body(Bytes::new()).unwrap();

    // Deploy (parked), serve once (a cold start), park: at most one tenant
    // is warm at a time.
    for (i, id) in ids.iter().enumerate() {
        let info = registry
            .deploy(id, Kind::Js, source(i).as_bytes(), Limits::default())
            .unwrap();
        assert_eq!(info.kind, Kind::Js);
        let resp = registry.invoke(id, req("/first")).await.unwrap();
        let body = resp.into_body().to_bytes().await.unwrap();
        assert_eq!(body, format!("tenant {i} /first hit 1"));
        assert!(registry.park(id).unwrap(), "{id} was warm");
    }
    let stats = registry.stats();
    assert_eq!(stats.tenants, TENANTS);
    assert_eq!(stats.warm, 0);
    assert_eq!(
        stats.cold_starts, TENANTS as u64,
        "a deploy leaves the tenant parked"
    );

    // Wake every tenant: a fresh runtime from bytecode (its module state
    // starts over), and every response is that tenant's own.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(registry.status(id).unwrap().state, TenantState::Parked);
        let resp = registry.invoke(id, req("/again")).await.unwrap();
        let resp = corral::Body::collect_response(resp).await.unwrap();
        assert_eq!(resp.body(), &format!("tenant {i} /again hit 1"));
        assert!(
            resp.extensions()
                .get::<InvocationStats>()
                .unwrap()
                .cold_start
        );
        assert_eq!(registry.status(id).unwrap().state, TenantState::Warm);
        registry.park(id).unwrap();
    }
    let stats = registry.stats();
    assert_eq!(stats.cold_starts, 2 * TENANTS as u64);
    assert_eq!(stats.compiles, TENANTS as u64, "waking never recompiles");
    assert_eq!(stats.failures, 0);
}
