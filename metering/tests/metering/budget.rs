use corral_metering::{Budget, BudgetError, DEFAULT_SAFETY, Probe};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn machine(ram_total: u64, cpus: u32) -> Probe {
    Probe {
        ram_total,
        ram_available: ram_total,
        cpus,
        ..Probe::default()
    }
}

#[test]
fn four_gb_two_cpus() {
    let b = Budget::from_probe(&machine(4 * GIB, 2), 512 * MIB, DEFAULT_SAFETY).unwrap();
    // (4 GiB − 512 MiB) × 0.7 = 2 630 667 468.8
    assert_eq!(b.usable, 2_630_667_468);
    assert_eq!(b.cache_bytes, 657_666_867);
    assert_eq!(b.sqlite_cache_bytes, 164_416_716);
    assert_eq!(b.runtime_bytes, 1_808_583_885);
    assert_eq!(b.runtime_slots, 8);
    assert_eq!(b.instance_memory, 215 * MIB);
    assert_eq!(b.default_tier_memory, 64 * MIB);
    assert_eq!(b.pool_instances, 26);
    assert_eq!(b.sqlite_cache_size_pragma(), -160_563);
}

#[test]
fn sixty_four_gb_sixteen_cpus() {
    let b = Budget::from_probe(&machine(64 * GIB, 16), 2 * GIB, DEFAULT_SAFETY).unwrap();
    assert_eq!(b.usable, 46_600_395_161);
    assert_eq!(b.cache_bytes, 11_650_098_790);
    assert_eq!(b.sqlite_cache_bytes, 512 * MIB); // capped
    assert_eq!(b.runtime_bytes, 34_413_425_459);
    assert_eq!(b.runtime_slots, 64); // 16 CPUs × 4
    assert_eq!(b.instance_memory, 512 * MIB);
    assert_eq!(b.default_tier_memory, 256 * MIB); // capped
    assert_eq!(b.pool_instances, 128);
}

#[test]
fn two_hundred_mb_one_cpu() {
    let b = Budget::from_probe(&machine(200_000_000, 1), 64 * MIB, DEFAULT_SAFETY).unwrap();
    assert_eq!(b.usable, 93_023_795);
    assert_eq!(b.cache_bytes, 23_255_948);
    assert_eq!(b.sqlite_cache_bytes, 5_813_987);
    assert_eq!(b.runtime_bytes, 63_953_860);
    assert_eq!(b.runtime_slots, 1); // memory-bound: 61 MiB / 32 MiB
    assert_eq!(b.instance_memory, 60 * MIB);
    assert_eq!(b.default_tier_memory, 16 * MIB); // floor
    assert_eq!(b.pool_instances, 3);
}

#[test]
fn machine_smaller_than_overhead_gets_the_floors() {
    let b = Budget::from_probe(&machine(200_000_000, 1), 512 * MIB, DEFAULT_SAFETY).unwrap();
    assert_eq!(b.usable, 0);
    assert_eq!(b.runtime_bytes, 0);
    assert_eq!(b.runtime_slots, 1);
    assert_eq!(b.pool_instances, 1);
    assert_eq!(b.instance_memory, 16 * MIB);
    assert_eq!(b.sqlite_cache_bytes, 2 * MIB);
}

#[test]
fn safety_must_be_a_fraction() {
    for s in [0.0, -0.1, 1.01, f64::NAN] {
        let e = Budget::from_probe(&machine(GIB, 1), 0, s).unwrap_err();
        assert!(matches!(e, BudgetError::InvalidSafety { .. }), "{s}");
    }
    let full = Budget::from_probe(&machine(GIB, 1), 0, 1.0).unwrap();
    assert_eq!(full.usable, GIB);
}
