//! Every limit, hit by a real guest, with its exact variant and figures; and
//! after each failure the same tenant and another tenant still answer.

use std::time::{Duration, Instant};

use corral::{InvocationStats, Kind, Limits, Registry, SandboxError, TenantId};

use crate::{call, chaos, registry, reply_module, text, tid};

const MEMORY: u64 = 1 << 20;
const OUTPUT: u64 = 1 << 20;
const FUEL: u64 = 50_000_000;
const DEADLINE: Duration = Duration::from_millis(500);

fn limits() -> Limits {
    Limits::builder()
        .fuel_per_request(FUEL)
        .memory_bytes(MEMORY)
        .max_output_bytes(OUTPUT)
        .wall_clock(DEADLINE)
        .build()
}

/// A registry with the chaos tenant and a bystander.
fn setup(dir: &std::path::Path) -> (Registry, TenantId, TenantId) {
    setup_with(dir, limits())
}

/// As [`setup`], the chaos tenant under `chaos_limits`.
fn setup_with(dir: &std::path::Path, chaos_limits: Limits) -> (Registry, TenantId, TenantId) {
    let reg = registry(dir);
    let chaos_id = tid("chaos");
    let other = tid("bystander");
    reg.deploy(&chaos_id, Kind::Wasm, &chaos(), chaos_limits)
        .unwrap();
    reg.deploy(&other, Kind::Wasm, &reply_module("still here", 0), limits())
        .unwrap();
    (reg, chaos_id, other)
}

/// The same tenant and the bystander still answer correctly.
async fn both_still_answer(reg: &Registry, chaos_id: &TenantId, other: &TenantId) {
    assert_eq!(text(reg, chaos_id, b"h").await, "hello\n");
    assert_eq!(text(reg, other, b"").await, "still here");
}

#[tokio::test]
async fn infinite_loop_exhausts_fuel() {
    let dir = tempfile::tempdir().unwrap();
    // The fuel runs out in ~0.07 s on a quiet box; the wall clock is far
    // enough that a busy box (a debug build beside others) still reaches it.
    let limits = Limits::builder()
        .fuel_per_request(FUEL)
        .memory_bytes(MEMORY)
        .max_output_bytes(OUTPUT)
        .wall_clock(Duration::from_secs(20))
        .build();
    let (reg, id, other) = setup_with(dir.path(), limits);
    let err = call(&reg, &id, b"l").await.unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::FuelExhausted {
                limit: FUEL,
                consumed: FUEL
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "fuel_exhausted");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn compute_loop_past_the_wall_clock_hits_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let id = tid("spinner");
    let limits = Limits::builder()
        .fuel_per_request(1 << 50)
        .wall_clock(Duration::from_millis(200))
        .build();
    reg.deploy(&id, Kind::Wasm, &chaos(), limits).unwrap();
    let started = Instant::now();
    let err = call(&reg, &id, b"l").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, SandboxError::Deadline { limit } if limit == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(text(&reg, &id, b"h").await, "hello\n");
}

#[tokio::test]
async fn sleeping_in_poll_oneoff_hits_the_deadline_within_twice_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    let started = Instant::now();
    let err = call(&reg, &id, b"s").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, SandboxError::Deadline { limit: DEADLINE }),
        "{err:?}"
    );
    assert!(took >= DEADLINE, "took {took:?}");
    assert!(took < DEADLINE * 2, "took {took:?}");
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn memory_growth_stops_at_the_limit_and_the_guest_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    // The guest's memory.grow returned -1 at the limit: 16 pages = 1 MiB.
    let resp = call(&reg, &id, b"g").await.unwrap();
    assert_eq!(resp.body().as_ref(), &16u32.to_le_bytes());
    let stats = resp.extensions().get::<InvocationStats>().unwrap();
    assert_eq!(stats.peak_memory, MEMORY);
    // A guest that traps after the refusal is reported as a memory limit.
    let err = call(&reg, &id, b"G").await.unwrap_err();
    assert!(
        matches!(err, SandboxError::MemoryLimit { limit: MEMORY }),
        "{err:?}"
    );
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow_and_the_process_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    for _ in 0..3 {
        let err = call(&reg, &id, b"r").await.unwrap_err();
        assert!(matches!(err, SandboxError::StackOverflow), "{err:?}");
    }
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn writing_a_gibibyte_to_stdout_is_output_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    let started = Instant::now();
    let err = call(&reg, &id, b"o").await.unwrap_err();
    assert!(
        matches!(err, SandboxError::OutputTooLarge { limit: OUTPUT }),
        "{err:?}"
    );
    // Stopped at the first write past 1 MiB: far from writing 1 GiB.
    assert!(started.elapsed() < Duration::from_secs(5));
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn oversized_initial_memory_is_refused_at_deploy_and_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    let big = wat::parse_str(r#"(module (memory (export "memory") 32) (func (export "_start")))"#)
        .unwrap();
    let err = reg.deploy(&id, Kind::Wasm, &big, limits()).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::InitialMemoryTooLarge { declared, limit: MEMORY } if declared == 32 << 16
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    both_still_answer(&reg, &id, &other).await;
    assert_eq!(reg.stats().deploys, 2);
}

#[tokio::test]
async fn random_bytes_and_non_commands_are_invalid_modules() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    // Deterministic pseudo-random bytes (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut fake_header = b"\0asm\x01\0\0\0".to_vec();
    fake_header.extend_from_slice(&random[..64]);
    let no_start = wat::parse_str(r#"(module (memory 1))"#).unwrap();
    let bad_import =
        wat::parse_str(r#"(module (import "env" "host_fn" (func)) (func (export "_start")))"#)
            .unwrap();
    for source in [random, fake_header, no_start, bad_import] {
        let err = reg.deploy(&id, Kind::Wasm, &source, limits()).unwrap_err();
        assert!(matches!(err, SandboxError::InvalidModule { .. }), "{err:?}");
        assert_eq!(err.code(), "invalid_module");
    }
    both_still_answer(&reg, &id, &other).await;
}

#[tokio::test]
async fn exits_and_malformed_output_map_to_their_variants() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, id, other) = setup(dir.path());
    // proc_exit(0) after a response is a success.
    assert_eq!(text(&reg, &id, b"z").await, "hello\n");
    let err = call(&reg, &id, b"x").await.unwrap_err();
    match &err {
        SandboxError::Trap { message } => assert_eq!(message, "guest exited with status 3"),
        other => panic!("{other:?}"),
    }
    let err = call(&reg, &id, b"b").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BadResponse { reason } if reason == "no blank line after the headers"),
        "{err:?}"
    );
    assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
    both_still_answer(&reg, &id, &other).await;
    let stats = reg.stats();
    assert_eq!(stats.failures, 2);
    assert_eq!(stats.invocations, 3);
}
