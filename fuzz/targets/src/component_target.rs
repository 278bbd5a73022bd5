//! `component`: a WebAssembly component upload to its artifact and back,
//! as a deploy does it.

use std::sync::OnceLock;

use corral::limits_layers::Tier;
use corral::platform::limits_for;
use corral::wasm::ComponentBackend;
use corral::{Backend, EngineConfig, Limits, SandboxError, WasmEngine};

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
    let backend = backend();
    let limits = limits();
    let artifact = match backend.precompile(data, &limits) {
        Ok(a) => a,
        Err(e) => {
            assert!(
                matches!(e, SandboxError::InvalidModule { .. }),
                "deploy refused with {e:?}"
            );
            return;
        }
    };
    backend
        .load(&artifact, &limits)
        .unwrap_or_else(|e| panic!("a deployed component does not load: {e:?}"));
    // The header is 8 bytes (magic and CRC32); damage one byte after it.
    if artifact.len() > 8 {
        let mut bad = artifact.clone();
        let at = 8 + (crc32fast::hash(data) as usize) % (artifact.len() - 8);
        bad[at] ^= 0x5a;
        match backend.load(&bad, &limits) {
            Err(SandboxError::CorruptArtifact { .. }) => {}
            other => panic!("a damaged artifact was not refused: {other:?}"),
        }
    }
}
