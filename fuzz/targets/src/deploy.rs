//! What the `js_deploy` and `component` targets share: an upload through a
//! backend's deploy path and its artifact back.

use corral::{Backend, Limits, SandboxError};

/// Deploys `data` on `backend` as a deploy does, then checks the artifact.
///
/// Invariants: a refusal is `invalid_module`; an accepted upload's artifact
/// loads back; the same artifact with one byte after its `header` bytes
/// changed is refused as `corrupt_artifact` before the engine reads it.
pub(crate) fn round_trip(backend: &dyn Backend, data: &[u8], limits: &Limits, header: usize) {
    let artifact = match backend.precompile(data, limits) {
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
        .load(&artifact, limits)
        .unwrap_or_else(|e| panic!("a deployed upload does not load: {e:?}"));
    if artifact.len() > header {
        let mut bad = artifact.clone();
        let at = header + (crc32fast::hash(data) as usize) % (artifact.len() - header);
        bad[at] ^= 0x5a;
        match backend.load(&bad, limits) {
            Err(SandboxError::CorruptArtifact { .. }) => {}
            other => panic!("a damaged artifact was not refused: {other:?}"),
        }
    }
}
