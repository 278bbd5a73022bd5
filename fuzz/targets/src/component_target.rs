//! `component`: a WebAssembly component upload to its artifact and back,
//! as a deploy does it.

use std::sync::OnceLock;

use corral::limits_layers::Tier;
use corral::platform::limits_for;
use corral::wasm::ComponentBackend;
use corral::{EngineConfig, Limits, WasmEngine};

/// One engine and backend for the process: building an engine reserves its
/// instance pool, which would be most of each run's time.
fn backend() -> &'static ComponentBackend {
    static BACKEND: OnceLock<ComponentBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let engine =
            WasmEngine::new(EngineConfig::default().instances(4)).expect("a wasmtime engine");
        ComponentBackend::new(engine).expect("the component backend")
    })
}

fn limits() -> Limits {
    limits_for(&Tier::free())
}

/// The input is the uploaded component (binary or text).
///
/// Invariants: a refusal is `invalid_module` (a component that does not parse,
/// validate or serve `wasi:http/proxy`, never a panic or another error); an
/// accepted component's artifact loads back, and the same artifact with any
/// one byte of the compiled component changed is refused as
/// `corrupt_artifact` before wasmtime reads it.
pub fn component(data: &[u8]) {
    // The artifact's header is 8 bytes (magic and CRC32).
    crate::deploy::round_trip(backend(), data, &limits(), 8);
}
