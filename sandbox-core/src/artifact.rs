//! The on-disk artifact file: a small header (kind, limits) and the backend's
//! artifact, all covered by a CRC32 verified on every read.
//!
//! Layout: `MAGIC (8) | crc32 LE (4) of everything after it | kind length (1) |
//! kind | 9 × u64 LE limits | payload`. Files of the first version (7
//! limits, without the stream budgets) still load: their stream budgets
//! follow their per-request ones, as the [`Limits`] builder's defaults do.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::{Kind, Limits, SandboxError};

const MAGIC: &[u8; 8] = b"CORRAL\x02\n";
const LIMIT_FIELDS: usize = 9;
/// The first version's magic: its header holds 7 limits.
const MAGIC_V1: &[u8; 8] = b"CORRAL\x01\n";
const LIMIT_FIELDS_V1: usize = 7;

/// A parsed artifact file.
#[derive(Debug)]
pub(crate) struct ArtifactFile<'a> {
    pub(crate) kind: Kind,
    pub(crate) limits: Limits,
    pub(crate) crc32: u32,
    pub(crate) payload: &'a [u8],
}

fn kind_from(s: &[u8]) -> Option<Kind> {
    match s {
        b"wasm" => Some(Kind::Wasm),
        b"js" => Some(Kind::Js),
        b"component" => Some(Kind::Component),
        _ => None,
    }
}

/// Serializes a file's bytes; returns them and their CRC32.
pub(crate) fn encode(kind: Kind, limits: &Limits, payload: &[u8]) -> (Vec<u8>, u32) {
    let name = kind.as_str().as_bytes();
    let mut out =
        Vec::with_capacity(MAGIC.len() + 5 + name.len() + LIMIT_FIELDS * 8 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    let wall = u64::try_from(limits.wall_clock.as_nanos()).unwrap_or(u64::MAX);
    let idle = u64::try_from(limits.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
    let stream_wall = u64::try_from(limits.max_stream_duration.as_nanos()).unwrap_or(u64::MAX);
    for v in [
        limits.fuel_per_request,
        limits.memory_bytes,
        wall,
        limits.max_stack_bytes as u64,
        limits.max_output_bytes,
        limits.max_log_bytes as u64,
        idle,
        limits.stream_fuel,
        stream_wall,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[12..]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    (out, crc)
}

/// Parses and verifies a file's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<ArtifactFile<'_>, SandboxError> {
    let corrupt = |reason: String| SandboxError::CorruptArtifact { reason };
    if bytes.len() < 13 {
        return Err(corrupt("not a corral artifact file".into()));
    }
    let fields = match &bytes[..8] {
        m if m == MAGIC => LIMIT_FIELDS,
        m if m == MAGIC_V1 => LIMIT_FIELDS_V1,
        _ => return Err(corrupt("not a corral artifact file".into())),
    };
    let stored = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&bytes[12..]);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum mismatch: stored {stored:08x}, computed {actual:08x}"
        )));
    }
    let name_len = bytes[12] as usize;
    let rest = &bytes[13..];
    if rest.len() < name_len + fields * 8 {
        return Err(corrupt("truncated header".into()));
    }
    let kind =
        kind_from(&rest[..name_len]).ok_or_else(|| corrupt("unknown kind in header".into()))?;
    let mut f = [0u64; LIMIT_FIELDS];
    for (i, v) in f.iter_mut().take(fields).enumerate() {
        let at = name_len + i * 8;
        *v = u64::from_le_bytes(rest[at..at + 8].try_into().expect("8 bytes"));
    }
    let mut limits = Limits::builder()
        .fuel_per_request(f[0])
        .memory_bytes(f[1])
        .wall_clock(Duration::from_nanos(f[2]))
        .max_stack_bytes(usize::try_from(f[3]).unwrap_or(usize::MAX))
        .max_output_bytes(f[4])
        .max_log_bytes(usize::try_from(f[5]).unwrap_or(usize::MAX))
        .idle_timeout(Duration::from_nanos(f[6]));
    if fields == LIMIT_FIELDS {
        limits = limits
            .stream_fuel(f[7])
            .max_stream_duration(Duration::from_nanos(f[8]));
    }
    Ok(ArtifactFile {
        kind,
        limits: limits.build(),
        crc32: stored,
        payload: &rest[name_len + fields * 8..],
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, then rename over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("artifact");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_any_flipped_byte() {
        let limits = Limits::builder()
            .fuel_per_request(7)
            .wall_clock(Duration::from_millis(3))
            .idle_timeout(Duration::from_millis(5))
            .build();
        let (bytes, crc) = encode(Kind::Wasm, &limits, b"payload");
        let f = decode(&bytes).unwrap();
        assert_eq!(f.kind, Kind::Wasm);
        assert_eq!(f.limits, limits);
        assert_eq!(f.crc32, crc);
        assert_eq!(f.payload, b"payload");
        for i in 8..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(decode(&bad), Err(SandboxError::CorruptArtifact { .. })),
                "byte {i}"
            );
        }
        assert!(matches!(
            decode(&bytes[..20]),
            Err(SandboxError::CorruptArtifact { .. })
        ));
    }

    /// A file of the first version (no stream budgets in its header) loads,
    /// its stream budgets derived from its per-request ones.
    #[test]
    fn first_version_files_still_load() {
        let limits = Limits::builder()
            .fuel_per_request(7)
            .wall_clock(Duration::from_millis(3))
            .stream_fuel(1)
            .build();
        let (v2, _) = encode(Kind::Js, &limits, b"payload");
        // The same file as version 1 wrote it: 7 limits, then the payload.
        let header = 13 + 2 + LIMIT_FIELDS_V1 * 8;
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&[0; 4]);
        v1.extend_from_slice(&v2[12..header]);
        v1.extend_from_slice(b"payload");
        let crc = crc32fast::hash(&v1[12..]);
        v1[8..12].copy_from_slice(&crc.to_le_bytes());
        let f = decode(&v1).unwrap();
        assert_eq!(f.kind, Kind::Js);
        assert_eq!(f.payload, b"payload");
        assert_eq!(f.limits.fuel_per_request, 7);
        assert_eq!(f.limits.stream_fuel, 70, "derived, not the v2 file's 1");
        assert_eq!(f.limits.max_stream_duration, Duration::from_millis(180));
        assert_eq!(decode(&v2).unwrap().limits.stream_fuel, 1);
    }
}
