use std::sync::Arc;

use corral_limits::{MemoryBudget, MemoryBudgetExceeded, TenantContext, TenantLimits, Tier};

use crate::support::id;

#[test]
fn instances_of_one_tenant_share_the_tier_budget() {
    let limits = TenantLimits::new();
    let pro = Arc::new(Tier::pro()); // 256 MiB, 2 shares
    let ctx = TenantContext::new(id("a"), pro.clone());
    let per_instance = pro.instance_memory_bytes();
    assert_eq!(per_instance, 128 << 20);

    let mut first = limits.memory_budget(&ctx).reserve(0).unwrap();
    let mut second = limits.memory_budget(&ctx).reserve(0).unwrap();
    first.set(200 << 20).unwrap();
    // The second instance may not take the tenant past 256 MiB, whatever its own cap.
    let err: MemoryBudgetExceeded = second.set(100 << 20).unwrap_err();
    assert_eq!(
        (err.tenant.as_str(), err.requested, err.used, err.limit),
        ("a", 100 << 20, 200 << 20, 256 << 20)
    );
    assert_eq!(second.bytes(), 0);
    second.set(56 << 20).unwrap();
    assert_eq!(limits.load(&id("a")).unwrap().memory_used, 256 << 20);
    drop(first);
    assert_eq!(limits.memory_budget(&ctx).used(), 56 << 20);
    // Another tenant has its own budget.
    let other = TenantContext::new(id("b"), pro);
    assert_eq!(limits.memory_budget(&other).available(), 256 << 20);
}

#[test]
fn a_tier_change_keeps_reservations_and_takes_the_new_limit() {
    let limits = TenantLimits::new();
    let free = TenantContext::new(id("a"), Arc::new(Tier::free()));
    let r = limits.memory_budget(&free).reserve(60 << 20).unwrap();
    let scale = TenantContext::new(id("a"), Arc::new(Tier::scale()));
    let budget = limits.memory_budget(&scale);
    assert_eq!((budget.limit(), budget.used()), (1 << 30, 60 << 20));
    drop(r);
    assert_eq!(budget.used(), 0);
}

#[test]
fn concurrent_reservations_never_pass_the_limit() {
    let budget = MemoryBudget::new(id("a"), 1_000);
    let granted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = budget.clone();
                s.spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..200 {
                        if let Ok(r) = b.reserve(1) {
                            held.push(r);
                        }
                    }
                    held
                })
            })
            .collect();
        let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(budget.used(), 1_000);
        held.iter().map(Vec::len).sum()
    });
    assert_eq!(granted, 1_000);
    assert_eq!(budget.used(), 0);
}
