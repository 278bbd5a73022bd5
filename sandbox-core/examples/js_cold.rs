//! Times a JavaScript cold start in-process: `QuickJsProgram::load` (a
//! runtime built from bytecode) and its drop, N times, plus the heap size of
//! one warm hello. A development aid for `perf record`; the server-level
//! figures come from `benches/density.py`.
//!
//!     cargo run --release -p corral --example js_cold [N]

use std::time::Instant;

use corral::js::{QuickJsBackend, QuickJsProgram};
use corral::{Backend, Limits};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let limits = Limits::default();
    let artifact = QuickJsBackend::new()
        .precompile(
            b"export default { fetch() { return new Response('hello from JS\\n') } }\n",
            &limits,
        )
        .expect("compiles");
    let program = QuickJsProgram::load(&artifact, &limits).expect("loads");
    println!(
        "bytecode {} B, heap {} B",
        program.bytecode_len(),
        program.heap_bytes()
    );
    drop(program);
    let (mut load, mut free) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let program = QuickJsProgram::load(&artifact, &limits).expect("loads");
        let t2 = Instant::now();
        drop(program);
        load += t2 - t;
        free += t2.elapsed();
    }
    println!(
        "load {:.1} us, drop {:.1} us (mean of {n})",
        load.as_secs_f64() * 1e6 / f64::from(n),
        free.as_secs_f64() * 1e6 / f64::from(n)
    );
}
