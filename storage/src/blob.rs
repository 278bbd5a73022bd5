//! CRC32-framed blobs: inline below the chunk threshold, chunked above it,
//! verified on every read, quarantined on mismatch.

use std::io::Read;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::db::{Db, args};
use crate::store::now_secs;
use crate::{StorageError, Store, StoreConfig};

/// Bytes that passed their integrity check, with the CRC32 they were verified
/// against (send it as `x-corral-crc32` / `ETag`).
///
/// ```
/// # use corral_storage::{Store, StoreConfig};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
/// store.put_artifact("a", b"abc").unwrap();
/// let blob = store.get_artifact("a").unwrap().unwrap();
/// assert_eq!(blob.crc32, 0x352441c2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Blob {
    /// The verified bytes.
    pub bytes: Bytes,
    /// Their CRC32 (IEEE).
    pub crc32: u32,
}

/// Length and checksum of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BlobMeta {
    /// Length in bytes.
    pub len: u64,
    /// CRC32 (IEEE) of the bytes.
    pub crc32: u32,
}

/// What [`Store::scrub`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubReport {
    /// Blobs verified.
    pub checked: u64,
    /// Bytes read and checksummed.
    pub bytes: u64,
    /// Keys of blobs that failed (now quarantined), in storage order.
    pub corrupt: Vec<String>,
}

struct Row {
    id: i64,
    len: u64,
    crc32: u32,
    chunks: u32,
    quarantined: bool,
}

impl Row {
    /// From the columns `id, len, crc32, chunks, quarantined`.
    fn from_db(r: &crate::db::Row) -> Result<Self, StorageError> {
        Ok(Row {
            id: r.i(0)?,
            len: r.i(1)? as u64,
            crc32: r.i(2)? as u32,
            chunks: r.i(3)? as u32,
            quarantined: r.i(4)? != 0,
        })
    }
}

fn row_for(conn: &mut dyn Db, key: &str) -> Result<Option<Row>, StorageError> {
    conn.opt(
        "SELECT id, len, crc32, chunks, quarantined FROM blobs WHERE key = ?1",
        args![key],
    )?
    .map(|r| Row::from_db(&r))
    .transpose()
}

/// Deletes the blob under `key`; returns its length if it existed.
pub(crate) fn delete_blob_tx(tx: &mut dyn Db, key: &str) -> Result<Option<u64>, StorageError> {
    let old = tx.opt("SELECT id, len FROM blobs WHERE key = ?1", args![key])?;
    if let Some(r) = old {
        let (id, len) = (r.i(0)?, r.i(1)?);
        tx.exec("DELETE FROM blob_chunks WHERE blob_id = ?1", args![id])?;
        tx.exec("DELETE FROM blobs WHERE id = ?1", args![id])?;
        return Ok(Some(len as u64));
    }
    Ok(None)
}

/// Deletes every blob whose key starts with `prefix`; returns how many.
pub(crate) fn delete_prefix_tx(tx: &mut dyn Db, prefix: &str) -> Result<u64, StorageError> {
    let ids: Vec<i64> = match crate::key::prefix_upper(prefix) {
        Some(upper) => tx.query(
            "SELECT id FROM blobs WHERE key >= ?1 AND key < ?2",
            args![prefix, &upper],
        )?,
        None => tx.query("SELECT id FROM blobs WHERE key >= ?1", args![prefix])?,
    }
    .iter()
    .map(|r| r.i(0))
    .collect::<Result<_, _>>()?;
    for &id in &ids {
        tx.exec("DELETE FROM blob_chunks WHERE blob_id = ?1", args![id])?;
        tx.exec("DELETE FROM blobs WHERE id = ?1", args![id])?;
    }
    Ok(ids.len() as u64)
}

/// Stores `data` under `key`, replacing any previous blob.
pub(crate) fn insert_bytes_tx(
    tx: &mut dyn Db,
    cfg: &StoreConfig,
    key: &str,
    data: &[u8],
) -> Result<BlobMeta, StorageError> {
    delete_blob_tx(tx, key)?;
    let crc32 = crc32fast::hash(data);
    if data.len() as u64 <= cfg.chunk_threshold {
        tx.exec(
            "INSERT INTO blobs (key, len, crc32, chunks, data, created) VALUES (?1, ?2, ?3, 0, ?4, ?5)",
            args![key, data.len() as i64, crc32, data, now_secs()],
        )?;
        return Ok(BlobMeta {
            len: data.len() as u64,
            crc32,
        });
    }
    let mut chunks = data
        .chunks(cfg.chunk_size)
        .map(|c| Ok(std::borrow::Cow::Borrowed(c)));
    insert_chunked_tx(tx, key, &mut chunks)
}

/// Stores what `src` yields under `key`, replacing any previous blob, holding
/// at most `chunk_threshold + chunk_size` bytes of it in memory, in chunk-sized pieces.
pub(crate) fn insert_reader_tx(
    tx: &mut dyn Db,
    cfg: &StoreConfig,
    key: &str,
    src: &mut dyn Read,
) -> Result<BlobMeta, StorageError> {
    delete_blob_tx(tx, key)?;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    let mut eof = false;
    while total <= cfg.chunk_threshold {
        let c = read_chunk(src, cfg.chunk_size)?;
        if c.is_empty() {
            eof = true;
            break;
        }
        total += c.len() as u64;
        pending.push(c);
    }
    if eof {
        let data = pending.concat();
        return insert_bytes_tx(tx, cfg, key, &data);
    }
    let size = cfg.chunk_size;
    let mut first = pending.into_iter().map(|c| Ok(std::borrow::Cow::Owned(c)));
    let mut rest = std::iter::from_fn(|| match read_chunk(src, size) {
        Ok(c) if c.is_empty() => None,
        Ok(c) => Some(Ok(std::borrow::Cow::Owned(c))),
        Err(e) => Some(Err(StorageError::Io(e))),
    });
    let mut all = first.by_ref().chain(rest.by_ref());
    insert_chunked_tx(tx, key, &mut all)
}

fn read_chunk(src: &mut dyn Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut n = 0;
    while n < size {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

type ChunkIter<'a, 'b> = dyn Iterator<Item = Result<std::borrow::Cow<'a, [u8]>, StorageError>> + 'b;

fn insert_chunked_tx(
    tx: &mut dyn Db,
    key: &str,
    chunks: &mut ChunkIter<'_, '_>,
) -> Result<BlobMeta, StorageError> {
    let id = tx
        .one(
            "INSERT INTO blobs (key, len, crc32, chunks, data, created) VALUES (?1, 0, 0, 0, NULL, ?2) RETURNING id",
            args![key, now_secs()],
        )?
        .i(0)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut seq = 0i64;
    for c in chunks {
        let c = c?;
        hasher.update(&c);
        len += c.len() as u64;
        tx.exec(
            "INSERT INTO blob_chunks (blob_id, seq, len, crc32, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![id, seq, c.len() as i64, crc32fast::hash(&c), &c[..]],
        )?;
        seq += 1;
    }
    let crc32 = hasher.finalize();
    tx.exec(
        "UPDATE blobs SET len = ?1, crc32 = ?2, chunks = ?3 WHERE id = ?4",
        args![len as i64, crc32, seq, id],
    )?;
    Ok(BlobMeta { len, crc32 })
}

impl Store {
    fn integrity_failure(&self, id: i64, key: &str, expected: u32, actual: u32) -> StorageError {
        self.inner
            .integrity_failures
            .fetch_add(1, Ordering::Relaxed);
        // Best effort: the error is returned whether or not the flag sticks.
        let _ = self.write(|tx| {
            tx.exec("UPDATE blobs SET quarantined = 1 WHERE id = ?1", args![id])?;
            Ok(())
        });
        StorageError::Integrity {
            key: key.to_owned(),
            expected,
            actual,
        }
    }

    /// Length and CRC of the blob under the internal `key`, if present and not quarantined.
    pub(crate) fn blob_meta(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        let row = self.read(|c| row_for(c, key))?;
        match row {
            None => Ok(None),
            Some(r) if r.quarantined => Err(StorageError::Quarantined {
                key: key.to_owned(),
            }),
            Some(r) => Ok(Some(BlobMeta {
                len: r.len,
                crc32: r.crc32,
            })),
        }
    }

    /// Reads and verifies a blob no larger than the chunk threshold.
    pub(crate) fn read_blob(&self, key: &str) -> Result<Option<Blob>, StorageError> {
        // One statement, so the row and its data come from one snapshot even
        // while a writer replaces the blob.
        let got = self.read(|c| {
            let row = c
                .opt(
                    "SELECT id, len, crc32, chunks, quarantined, CASE WHEN chunks = 0 THEN data END
                     FROM blobs WHERE key = ?1",
                    args![key],
                )?
                .map(|mut r| {
                    Ok::<_, StorageError>((Row::from_db(&r)?, r.ob(5)?.unwrap_or_default()))
                })
                .transpose()?;
            let Some((r, data)) = row else {
                return Ok(None);
            };
            if r.quarantined {
                return Err(StorageError::Quarantined {
                    key: key.to_owned(),
                });
            }
            if r.chunks > 0 {
                return Err(StorageError::TooLargeForMemory {
                    key: key.to_owned(),
                    len: r.len,
                    threshold: self.inner.cfg.chunk_threshold,
                });
            }
            Ok(Some((r, data)))
        })?;
        let Some((r, data)) = got else {
            return Ok(None);
        };
        let actual = crc32fast::hash(&data);
        if actual != r.crc32 || data.len() as u64 != r.len {
            return Err(self.integrity_failure(r.id, key, r.crc32, actual));
        }
        self.inner.blobs_verified.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Blob {
            bytes: Bytes::from(data),
            crc32: r.crc32,
        }))
    }

    /// Opens a verified stream over the blob under the internal `key`.
    pub(crate) fn open_blob(&self, key: &str) -> Result<Option<BlobReader>, StorageError> {
        let Some(r) = self.read(|c| row_for(c, key))? else {
            return Ok(None);
        };
        if r.quarantined {
            return Err(StorageError::Quarantined {
                key: key.to_owned(),
            });
        }
        let mut reader = BlobReader {
            store: self.clone(),
            key: key.to_owned(),
            id: r.id,
            len: r.len,
            crc32: r.crc32,
            chunks: r.chunks,
            next_seq: 0,
            buf: Bytes::new(),
            hasher: crc32fast::Hasher::new(),
            read: 0,
            finished: false,
        };
        if r.chunks == 0 {
            let blob = self.read_blob(key)?.ok_or_else(|| StorageError::NotFound {
                key: key.to_owned(),
            })?;
            reader.len = blob.bytes.len() as u64;
            reader.crc32 = blob.crc32;
            reader.buf = blob.bytes;
            reader.finished = true;
        }
        Ok(Some(reader))
    }

    /// Verifies every blob (inline and chunked, including quarantined ones)
    /// and quarantines the ones that fail. Reads one chunk at a time and
    /// holds no transaction across blobs, so writers keep going meanwhile.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// store.put_artifact("a", b"abc").unwrap();
    /// let report = store.scrub().unwrap();
    /// assert_eq!((report.checked, report.bytes), (1, 3));
    /// assert!(report.corrupt.is_empty());
    /// ```
    pub fn scrub(&self) -> Result<ScrubReport, StorageError> {
        let mut report = ScrubReport::default();
        let mut after = 0i64;
        loop {
            let page: Vec<(i64, String, u64, u32, u32)> = self.read(|c| {
                c.query(
                    "SELECT id, key, len, crc32, chunks FROM blobs WHERE id > ?1 ORDER BY id LIMIT 256",
                    args![after],
                )?
                .into_iter()
                .map(|mut r| {
                    Ok((
                        r.i(0)?,
                        r.s(1)?,
                        r.i(2)? as u64,
                        r.i(3)? as u32,
                        r.i(4)? as u32,
                    ))
                })
                .collect()
            })?;
            let Some(last) = page.last() else { break };
            after = last.0;
            for (id, key, len, crc, chunks) in page {
                match self.verify(id, len, crc, chunks)? {
                    Verdict::Gone => {}
                    Verdict::Good(bytes) => {
                        report.checked += 1;
                        report.bytes += bytes;
                        self.inner.blobs_verified.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Bad {
                        expected,
                        actual,
                        bytes,
                    } => {
                        report.checked += 1;
                        report.bytes += bytes;
                        let _ = self.integrity_failure(id, &key, expected, actual);
                        report.corrupt.push(key);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Runs [`scrub`](Self::scrub) on a new background thread.
    ///
    /// ```
    /// # use corral_storage::{Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
    /// let report = store.scrub_in_background().join().unwrap().unwrap();
    /// assert_eq!(report.checked, 0);
    /// ```
    pub fn scrub_in_background(
        &self,
    ) -> std::thread::JoinHandle<Result<ScrubReport, StorageError>> {
        let store = self.clone();
        std::thread::Builder::new()
            .name("corral-scrub".into())
            .spawn(move || store.scrub())
            .expect("spawning the scrub thread")
    }

    /// Keys of all quarantined blobs.
    pub fn quarantined_keys(&self) -> Result<Vec<String>, StorageError> {
        self.read(|c| {
            c.query(
                "SELECT key FROM blobs WHERE quarantined != 0 ORDER BY key",
                &[],
            )?
            .into_iter()
            .map(|mut r| r.s(0))
            .collect()
        })
    }

    fn verify(&self, id: i64, len: u64, crc: u32, chunks: u32) -> Result<Verdict, StorageError> {
        if chunks == 0 {
            let data: Option<Option<Vec<u8>>> = self.read(|c| {
                c.opt("SELECT data FROM blobs WHERE id = ?1", args![id])?
                    .map(|mut r| r.ob(0))
                    .transpose()
            })?;
            let Some(data) = data else {
                return Ok(Verdict::Gone);
            };
            let data = data.unwrap_or_default();
            let actual = crc32fast::hash(&data);
            let bytes = data.len() as u64;
            return Ok(if actual == crc && bytes == len {
                Verdict::Good(bytes)
            } else {
                Verdict::Bad {
                    expected: crc,
                    actual,
                    bytes,
                }
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        let mut bytes = 0u64;
        for seq in 0..chunks {
            match self.fetch_chunk(id, seq)? {
                None => {
                    let exists = self.read(|c| {
                        Ok(c.opt("SELECT 1 FROM blobs WHERE id = ?1", args![id])?
                            .is_some())
                    })?;
                    if !exists {
                        return Ok(Verdict::Gone);
                    }
                    return Ok(Verdict::Bad {
                        expected: crc,
                        actual: hasher.finalize(),
                        bytes,
                    });
                }
                Some((clen, ccrc, data)) => {
                    let actual = crc32fast::hash(&data);
                    bytes += data.len() as u64;
                    if actual != ccrc || clen != data.len() as u64 {
                        return Ok(Verdict::Bad {
                            expected: ccrc,
                            actual,
                            bytes,
                        });
                    }
                    hasher.update(&data);
                }
            }
        }
        let actual = hasher.finalize();
        Ok(if actual == crc && bytes == len {
            Verdict::Good(bytes)
        } else {
            Verdict::Bad {
                expected: crc,
                actual,
                bytes,
            }
        })
    }

    fn fetch_chunk(&self, id: i64, seq: u32) -> Result<Option<(u64, u32, Vec<u8>)>, StorageError> {
        self.read(|c| {
            c.opt(
                "SELECT len, crc32, data FROM blob_chunks WHERE blob_id = ?1 AND seq = ?2",
                args![id, seq],
            )?
            .map(|mut r| Ok((r.i(0)? as u64, r.i(1)? as u32, r.b(2)?)))
            .transpose()
        })
    }
}

enum Verdict {
    Gone,
    Good(u64),
    Bad {
        expected: u32,
        actual: u32,
        bytes: u64,
    },
}

/// A verified stream over one blob. Large (chunked) blobs are fetched one
/// chunk at a time; each chunk is checked against its own CRC32 before any
/// of its bytes are handed out, and the last chunk is only handed out after
/// the whole-blob CRC32 and length match, so corrupt bytes are never returned.
/// Errors surface from [`Read`] as an [`std::io::Error`] wrapping a
/// [`StorageError`] (`err.get_ref()` → `downcast_ref::<StorageError>()`).
///
/// ```
/// use std::io::Read;
/// # use corral_storage::{Store, StoreConfig};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("db"),
///     StoreConfig::default().chunk_threshold(4).chunk_size(3).max_kv_value(4)).unwrap();
/// store.put_artifact_reader("big", &mut &b"0123456789"[..]).unwrap();
/// let mut r = store.open_artifact("big").unwrap().unwrap();
/// assert_eq!((r.len(), r.crc32()), (10, crc32fast::hash(b"0123456789")));
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "0123456789");
/// ```
pub struct BlobReader {
    store: Store,
    key: String,
    id: i64,
    len: u64,
    crc32: u32,
    chunks: u32,
    next_seq: u32,
    buf: Bytes,
    hasher: crc32fast::Hasher,
    read: u64,
    finished: bool,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("crc32", &self.crc32)
            .field("chunks", &self.chunks)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    /// Total length of the blob.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The stored CRC32 the stream is verified against.
    pub fn crc32(&self) -> u32 {
        self.crc32
    }
    /// The blob's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The next verified piece of the blob (one chunk for large blobs, the
    /// whole blob for small ones), `None` at the end.
    pub fn next_verified(&mut self) -> Option<Result<Bytes, StorageError>> {
        if !self.buf.is_empty() {
            return Some(Ok(std::mem::take(&mut self.buf)));
        }
        if self.finished {
            return None;
        }
        match self.fetch_next() {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }

    fn fetch_next(&mut self) -> Result<Bytes, StorageError> {
        let seq = self.next_seq;
        let Some((clen, ccrc, data)) = self.store.fetch_chunk(self.id, seq)? else {
            let exists = self.store.read(|c| {
                Ok(c.opt("SELECT 1 FROM blobs WHERE id = ?1", args![self.id])?
                    .is_some())
            })?;
            if !exists {
                return Err(StorageError::NotFound {
                    key: self.key.clone(),
                });
            }
            let actual = self.hasher.clone().finalize();
            return Err(self
                .store
                .integrity_failure(self.id, &self.key, self.crc32, actual));
        };
        let actual = crc32fast::hash(&data);
        if actual != ccrc || clen != data.len() as u64 {
            return Err(self
                .store
                .integrity_failure(self.id, &self.key, ccrc, actual));
        }
        self.hasher.update(&data);
        self.read += data.len() as u64;
        self.next_seq += 1;
        if self.next_seq == self.chunks {
            self.finished = true;
            let whole = self.hasher.clone().finalize();
            if whole != self.crc32 || self.read != self.len {
                return Err(self
                    .store
                    .integrity_failure(self.id, &self.key, self.crc32, whole));
            }
            self.store
                .inner
                .blobs_verified
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Bytes::from(data))
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.buf.is_empty() {
            match self.next_verified() {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(b)) => self.buf = b,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

impl Iterator for BlobReader {
    type Item = Result<Bytes, StorageError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_verified()
    }
}
