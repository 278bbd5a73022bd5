use std::sync::Arc;

use corral_limits::{TenantConcurrencyLayer, TenantContext, TenantLimits, Tier};
use http::{Request, Response};
use tower_test::mock;

use crate::support::{id, req};

#[test]
fn forget_removes_a_tenant_entry() {
    let limits = TenantLimits::new();
    let free = Arc::new(Tier::free());
    for name in ["a", "b", "c"] {
        let _ = limits.prepare(&TenantContext::new(id(name), free.clone()));
    }
    assert_eq!(limits.len(), 3);
    assert!(limits.forget(&id("b")));
    assert!(!limits.forget(&id("b")));
    assert_eq!(limits.len(), 2);
    assert!(limits.load(&id("b")).is_none());
    assert!(limits.load(&id("a")).is_some());
}

#[test]
fn a_hundred_thousand_tenants_are_map_entries_only() {
    let limits = TenantLimits::new();
    let free = Arc::new(Tier::free());
    for i in 0..100_000 {
        let _ = limits.prepare(&TenantContext::new(id(&format!("t{i}")), free.clone()));
    }
    assert_eq!(limits.len(), 100_000);
    // The same context again does not add an entry.
    let _ = limits.prepare(&TenantContext::new(id("t99999"), free));
    assert_eq!(limits.len(), 100_000);
}

#[tokio::test]
async fn forgetting_a_tenant_with_requests_in_flight_is_safe() {
    let limits = TenantLimits::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<String>, Response<String>, _>(
        TenantConcurrencyLayer::new(limits.clone()),
    );
    let free = Arc::new(Tier::free());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req("a", &free));
    assert!(limits.forget(&id("a")));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    drop(fut.await.unwrap());
    // The next request starts a fresh entry.
    assert!(svc.poll_ready().is_ready());
    let _again = svc.call(req("a", &free));
    assert_eq!(limits.load(&id("a")).unwrap().shares_in_use, 1);
}
