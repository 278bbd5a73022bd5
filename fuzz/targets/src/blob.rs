//! `blob_frames`: the CRC32-checked blob reader over corrupted rows.
//!
//! A blob is stored through the public API, then its rows are damaged
//! directly in SQLite (as a disk, a bad restore or a stray tool would), and
//! read back. The reader's contract: a read that completes is exactly the
//! stored bytes, and no chunk whose bytes were damaged (flipped, cut) is
//! handed out. A chunk moved or rewritten together with its own CRC32 (a
//! forged row, not damage) passes its own check; such a read fails at the
//! end, on the whole-blob CRC32, so it never completes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use arbitrary::Unstructured;
use corral_storage::{Durability, StorageError, Store, StoreConfig};
use rusqlite::Connection;

/// Blobs over this many bytes are chunked.
const THRESHOLD: u64 = 64;
/// Chunk size of chunked blobs.
const CHUNK: usize = 16;

struct Fixture {
    store: Store,
    /// A second, plain SQLite connection to the store's file, for the damage.
    raw: Mutex<Connection>,
    _dir: tempfile::TempDir,
    next: AtomicU64,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("blobs.db");
        let cfg = StoreConfig::default()
            .durability(Durability::Normal)
            .chunk_threshold(THRESHOLD)
            .chunk_size(CHUNK)
            .max_kv_value(THRESHOLD);
        let store = Store::open(&path, cfg).expect("open store");
        let raw = Connection::open(&path).expect("open raw connection");
        raw.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        Fixture {
            store,
            raw: Mutex::new(raw),
            _dir: dir,
            next: AtomicU64::new(0),
        }
    })
}

/// One kind of damage to a stored blob.
#[derive(Debug)]
enum Damage {
    /// XOR a byte of the inline data or of one chunk's data.
    Flip { seq: u32, at: u16, xor: u8 },
    /// Cut one chunk's (or the inline) data short.
    Truncate { seq: u32, len: u16 },
    /// Overwrite a chunk's stored CRC32.
    ChunkCrc { seq: u32, crc: u32 },
    /// Overwrite a chunk's stored length.
    ChunkLen { seq: u32, len: u16 },
    /// Overwrite the blob's length, CRC32 or chunk count.
    Header { field: u8, value: u32 },
    /// Drop a chunk.
    Delete { seq: u32 },
    /// Swap two chunks' positions.
    Swap { a: u32, b: u32 },
    /// Replace a chunk's data and its CRC32 together (a consistent rewrite).
    Rewrite { seq: u32, data: Vec<u8> },
}

fn damage(u: &mut Unstructured<'_>) -> arbitrary::Result<Damage> {
    let seq = u32::from(u.arbitrary::<u8>()? % 40);
    Ok(match u.arbitrary::<u8>()? % 8 {
        0 => Damage::Flip {
            seq,
            at: u.arbitrary()?,
            xor: u.arbitrary::<u8>()?.max(1),
        },
        1 => Damage::Truncate {
            seq,
            len: u.arbitrary()?,
        },
        2 => Damage::ChunkCrc {
            seq,
            crc: u.arbitrary()?,
        },
        3 => Damage::ChunkLen {
            seq,
            len: u.arbitrary()?,
        },
        4 => Damage::Header {
            field: u.arbitrary()?,
            value: u.arbitrary()?,
        },
        5 => Damage::Delete { seq },
        6 => Damage::Swap {
            a: seq,
            b: u32::from(u.arbitrary::<u8>()? % 40),
        },
        _ => Damage::Rewrite {
            seq,
            data: u.arbitrary::<&[u8]>()?.iter().take(64).copied().collect(),
        },
    })
}

fn apply(c: &Connection, id: i64, d: &Damage) -> rusqlite::Result<()> {
    // The inline data of a small blob is "chunk 0" for flips and cuts.
    let chunked: bool = c.query_row("SELECT chunks > 0 FROM blobs WHERE id = ?1", [id], |r| {
        r.get(0)
    })?;
    let data_of = |seq: u32| -> rusqlite::Result<Option<Vec<u8>>> {
        if chunked {
            c.query_row(
                "SELECT data FROM blob_chunks WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
        } else {
            c.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| r.get(0))
        }
    };
    let set_data = |seq: u32, data: &[u8]| -> rusqlite::Result<usize> {
        if chunked {
            c.execute(
                "UPDATE blob_chunks SET data = ?3 WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq, data],
            )
        } else {
            c.execute(
                "UPDATE blobs SET data = ?2 WHERE id = ?1",
                rusqlite::params![id, data],
            )
        }
    };
    match d {
        Damage::Flip { seq, at, xor } => {
            if let Some(mut data) = data_of(*seq)?
                && !data.is_empty()
            {
                let i = usize::from(*at) % data.len();
                data[i] ^= xor;
                set_data(*seq, &data)?;
            }
        }
        Damage::Truncate { seq, len } => {
            if let Some(mut data) = data_of(*seq)? {
                data.truncate(usize::from(*len) % (data.len() + 1));
                set_data(*seq, &data)?;
            }
        }
        Damage::ChunkCrc { seq, crc } => {
            c.execute(
                "UPDATE blob_chunks SET crc32 = ?3 WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq, crc],
            )?;
        }
        Damage::ChunkLen { seq, len } => {
            c.execute(
                "UPDATE blob_chunks SET len = ?3 WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq, len],
            )?;
        }
        Damage::Header { field, value } => {
            let col = ["len", "crc32", "chunks"][usize::from(*field) % 3];
            // `chunks` stays positive on a chunked blob: 0 would make it an
            // inline blob with no data, a different (also refused) shape.
            let value = if col == "chunks" && chunked {
                (*value % 64).max(1)
            } else {
                *value
            };
            c.execute(
                &format!("UPDATE blobs SET {col} = ?2 WHERE id = ?1"),
                rusqlite::params![id, value],
            )?;
        }
        Damage::Delete { seq } => {
            c.execute(
                "DELETE FROM blob_chunks WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq],
            )?;
        }
        Damage::Swap { a, b } => {
            // Through a free seq: (blob_id, seq) is the primary key.
            for (from, to) in [
                (i64::from(*a), -1),
                (i64::from(*b), i64::from(*a)),
                (-1, i64::from(*b)),
            ] {
                c.execute(
                    "UPDATE blob_chunks SET seq = ?3 WHERE blob_id = ?1 AND seq = ?2",
                    rusqlite::params![id, from, to],
                )?;
            }
        }
        Damage::Rewrite { seq, data } => {
            c.execute(
                "UPDATE blob_chunks SET data = ?3, crc32 = ?4, len = ?5 WHERE blob_id = ?1 AND seq = ?2",
                rusqlite::params![id, seq, data, crc32fast::hash(data), data.len()],
            )?;
        }
    }
    Ok(())
}

/// Stores the input's blob, applies its damage, reads it back.
///
/// Invariants: a read that ends without error returned exactly the stored
/// bytes; unless a row was forged (moved, or rewritten with its CRC32), every
/// piece handed out is the stored bytes at its offset.
/// A refusal is `Integrity`, `Quarantined`, `NotFound` or `TooLargeForMemory`.
pub fn blob_frames(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(n) = u.arbitrary::<u8>() else {
        return;
    };
    let mut damages = Vec::new();
    for _ in 0..n % 4 {
        match damage(&mut u) {
            Ok(d) => damages.push(d),
            Err(_) => break,
        }
    }
    let content = u.take_rest();
    let f = fixture();
    let key = format!("b{}", f.next.fetch_add(1, Ordering::Relaxed));
    f.store.put_artifact(&key, content).expect("put");
    {
        let raw = f.raw.lock().expect("raw connection");
        let id: i64 = raw
            .query_row(
                "SELECT id FROM blobs WHERE key = ?1",
                [format!("artifact/{key}")],
                |r| r.get(0),
            )
            .or_else(|_| {
                raw.query_row(
                    "SELECT id FROM blobs WHERE key LIKE ?1",
                    [format!("%/{key}")],
                    |r| r.get(0),
                )
            })
            .expect("the blob's row");
        for d in &damages {
            apply(&raw, id, d).expect("damage");
        }
    }
    let refused = |e: &StorageError| {
        assert!(
            matches!(
                e,
                StorageError::Integrity { .. }
                    | StorageError::Quarantined { .. }
                    | StorageError::NotFound { .. }
                    | StorageError::TooLargeForMemory { .. }
            ),
            "unexpected refusal {e:?}"
        );
    };
    // Rows rewritten consistently with a CRC32 (a moved or rewritten chunk,
    // or a blob's CRC32 overwritten after its data) are forgeries the
    // checksums cannot see; the fuzzer found the last kind (empty data,
    // length 0, CRC32 0), fuzz/regressions/blob_frames.
    let forged = damages.iter().any(|d| {
        matches!(d, Damage::Swap { .. } | Damage::Rewrite { .. })
            || matches!(d, Damage::Header { field, .. } if field % 3 == 1)
    });
    if content.len() as u64 <= THRESHOLD {
        match f.store.get_artifact(&key) {
            Ok(Some(blob)) => {
                assert!(
                    forged || blob.bytes[..] == *content,
                    "damaged blob returned as good"
                );
                assert_eq!(blob.crc32, crc32fast::hash(&blob.bytes));
            }
            Ok(None) => panic!("the blob vanished"),
            Err(e) => refused(&e),
        }
    }
    match f.store.open_artifact(&key) {
        Ok(Some(reader)) => {
            let mut got = Vec::new();
            let mut failed = false;
            for piece in reader {
                match piece {
                    Ok(p) => {
                        assert!(
                            forged || content[got.len().min(content.len())..].starts_with(&p),
                            "damaged bytes returned as good at offset {} ({damages:?})",
                            got.len()
                        );
                        got.extend_from_slice(&p);
                    }
                    Err(e) => {
                        refused(&e);
                        failed = true;
                    }
                }
            }
            if !failed && !forged {
                assert_eq!(got, content, "a clean read returned the wrong bytes");
            }
        }
        Ok(None) => panic!("the blob vanished"),
        Err(e) => refused(&e),
    }
    let _ = f.store.delete_artifact(&key);
}
