//! `js_deploy`: module source to bytecode and back, under the deploy budget.

use corral::limits_layers::Tier;
use corral::platform::limits_for;
use corral::{Backend, Limits, QuickJsBackend, SandboxError};

/// The deploy budget: a deploy evaluates the module once under its tier's
/// per-request limits; the free tier's are the smallest.
fn limits() -> Limits {
    limits_for(&Tier::free())
}

/// The input is the uploaded module (or a tar holding `app.js`).
///
/// Invariants: a refusal is `invalid_module`; an accepted module's artifact
/// loads back, and the same artifact with any one bytecode byte changed is
/// refused as `corrupt_artifact` before QuickJS reads it.
pub fn js_deploy(data: &[u8]) {
    let backend = QuickJsBackend::new();
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
        .unwrap_or_else(|e| panic!("a deployed module does not load: {e:?}"));
    // The envelope is 16 bytes; damage one byte of the bytecode after it.
    if artifact.len() > 16 {
        let mut bad = artifact.clone();
        let at = 16 + (crc32fast::hash(data) as usize) % (artifact.len() - 16);
        bad[at] ^= 0x5a;
        match backend.load(&bad, &limits) {
            Err(SandboxError::CorruptArtifact { .. }) => {}
            other => panic!("a damaged artifact was not refused: {other:?}"),
        }
    }
}
