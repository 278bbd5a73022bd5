//! The persisted form of a compiled JavaScript tenant: QuickJS bytecode in a
//! small checksummed envelope, so a corrupted or foreign blob is refused
//! before QuickJS ever reads it.
//!
//! Layout (little endian):
//! `b"CRJS"` · format version `u16` · QuickJS bytecode flavour `u16` ·
//! CRC32 of the bytecode `u32` · bytecode length `u32` · bytecode.

use crate::SandboxError;

const MAGIC: &[u8; 4] = b"CRJS";
const VERSION: u16 = 1;
/// Bumped whenever the embedded QuickJS (and so its bytecode format) changes.
const FLAVOUR: u16 = 14;
const HEADER: usize = 16;

/// Wraps `bytecode` in the envelope.
pub(crate) fn encode(bytecode: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + bytecode.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&FLAVOUR.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(bytecode).to_le_bytes());
    out.extend_from_slice(&(bytecode.len() as u32).to_le_bytes());
    out.extend_from_slice(bytecode);
    out
}

/// Checks the envelope and returns the bytecode inside it.
pub(crate) fn decode(artifact: &[u8]) -> Result<&[u8], SandboxError> {
    let corrupt = |reason: String| SandboxError::CorruptArtifact { reason };
    if artifact.len() < HEADER || &artifact[..4] != MAGIC {
        return Err(corrupt("not a Corral JavaScript artifact".into()));
    }
    let word = |at: usize| u16::from_le_bytes([artifact[at], artifact[at + 1]]);
    let dword = |at: usize| {
        u32::from_le_bytes([
            artifact[at],
            artifact[at + 1],
            artifact[at + 2],
            artifact[at + 3],
        ])
    };
    let (version, flavour) = (word(4), word(6));
    if version != VERSION || flavour != FLAVOUR {
        return Err(corrupt(format!(
            "JavaScript artifact format {version}.{flavour}; this build reads {VERSION}.{FLAVOUR}: redeploy the tenant"
        )));
    }
    let (crc, len) = (dword(8), dword(12) as usize);
    let bytecode = &artifact[HEADER..];
    if bytecode.len() != len {
        return Err(corrupt(format!(
            "JavaScript artifact holds {} bytecode bytes; its header says {len}",
            bytecode.len()
        )));
    }
    let actual = crc32fast::hash(bytecode);
    if actual != crc {
        return Err(corrupt(format!(
            "JavaScript bytecode CRC32 is {actual:08x}; expected {crc:08x}"
        )));
    }
    Ok(bytecode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let art = encode(b"abc");
        assert_eq!(art.len(), HEADER + 3);
        assert_eq!(decode(&art).unwrap(), b"abc");

        let mut bad = art.clone();
        bad[HEADER + 1] ^= 1;
        let err = decode(&bad).unwrap_err();
        assert!(
            matches!(&err, SandboxError::CorruptArtifact { reason } if reason.contains("CRC32")),
            "{err}"
        );

        let err = decode(&art[..HEADER + 2]).unwrap_err();
        assert!(
            matches!(&err, SandboxError::CorruptArtifact { reason } if reason.contains("header says 3")),
            "{err}"
        );
        assert!(matches!(
            decode(b"\0asm\x01\0\0\0"),
            Err(SandboxError::CorruptArtifact { .. })
        ));
    }
}
