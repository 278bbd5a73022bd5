//! Round trips of 0 B, 1 B, 5 MiB − 1, 5 MiB + 1 and 64 MiB, the large ones
//! streamed without a whole-blob buffer.

use std::io::Read;

use corral_storage::StorageError;

use crate::alloc_track::track;
use crate::{Backend, both, pattern};

const MIB: u64 = 1 << 20;

/// A reader that generates `len` pattern bytes and records how it was read.
struct PatternReader {
    seed: u64,
    pos: u64,
    len: u64,
    calls: u64,
    largest_request: usize,
}

impl PatternReader {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            seed,
            pos: 0,
            len,
            calls: 0,
            largest_request: 0,
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        self.largest_request = self.largest_request.max(buf.len());
        let n = buf.len().min((self.len - self.pos) as usize);
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(self.seed, self.pos + k as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn pattern_crc(seed: u64, len: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(seed, pos + k as u64);
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    h.finalize()
}

/// Reads the whole stream in 64 KiB pieces, comparing against the pattern.
fn verify_stream(r: &mut impl Read, seed: u64, len: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(seed, pos + k as u64),
                "byte {} differs",
                pos + k as u64
            );
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    assert_eq!(pos, len);
    h.finalize()
}

fn small_round_trips_in_memory(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    for (seed, len) in [(1u64, 0u64), (2, 1), (3, 5 * MIB - 1)] {
        let data: Vec<u8> = (0..len).map(|i| pattern(seed, i)).collect();
        let key = format!("rt/{len}");
        let meta = store.put_artifact(&key, &data).unwrap();
        assert_eq!(meta.len, len);
        assert_eq!(meta.crc32, crc32fast::hash(&data));
        let blob = store.get_artifact(&key).unwrap().unwrap();
        assert_eq!(blob.bytes.len() as u64, len);
        assert!(blob.bytes == data, "{len} B round trip differs");
        assert_eq!(blob.crc32, meta.crc32);
        // The same blob read as a stream.
        let mut r = store.open_artifact(&key).unwrap().unwrap();
        assert_eq!(verify_stream(&mut r, seed, len), meta.crc32);
    }
    // The empty blob's CRC32 is 0.
    assert_eq!(store.get_artifact("rt/0").unwrap().unwrap().crc32, 0);
}

fn large_round_trips_are_streamed(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    for (seed, len) in [(4u64, 5 * MIB + 1), (5, 64 * MIB)] {
        let key = format!("rt/{len}");
        let mut src = PatternReader::new(seed, len);
        let (meta, w) = track(|| store.put_artifact_reader(&key, &mut src).unwrap());
        assert_eq!(meta.len, len);
        assert_eq!(meta.crc32, pattern_crc(seed, len));
        assert_eq!(src.pos, len);
        // The store pulled the source in chunk-sized requests, never the whole blob.
        assert!(
            src.largest_request <= MIB as usize,
            "largest read request {}",
            src.largest_request
        );
        assert!(src.calls >= len / MIB, "only {} reads", src.calls);
        // No single allocation near the blob size; live bytes bounded by
        // threshold + one chunk (6 MiB) plus bookkeeping. PostgreSQL encodes
        // each chunk into the client's wire buffer, which grows by doubling:
        // up to two chunks there, still independent of the blob's size.
        let largest = match b {
            Backend::Sqlite => MIB as usize,
            Backend::Postgres => 2 * MIB as usize,
        };
        assert!(
            w.largest_alloc <= largest + 4096,
            "write: largest allocation {}",
            w.largest_alloc
        );
        // Live bytes: threshold + one chunk, plus PostgreSQL's two chunks of
        // wire buffer, plus 64 KiB of bookkeeping (the client's per-connection
        // state moves by a few KiB with unrelated changes, such as one more
        // schema migration; what matters is that it does not grow with the
        // blob, 5 MiB or 64 MiB).
        let live = match b {
            Backend::Sqlite => 6 * MIB,
            Backend::Postgres => 8 * MIB,
        } + 64 * 1024;
        assert!(
            w.peak_live < live as i64,
            "write: peak live {}",
            w.peak_live
        );

        // Whole-blob reads refuse; the stream verifies chunk by chunk.
        assert!(matches!(
            store.get_artifact(&key),
            Err(StorageError::TooLargeForMemory { len: l, threshold, .. }) if l == len && threshold == 5 * MIB
        ));
        let mut r = store.open_artifact(&key).unwrap().unwrap();
        assert_eq!((r.len(), r.crc32()), (len, meta.crc32));
        let (crc, rd) = track(|| verify_stream(&mut r, seed, len));
        assert_eq!(crc, meta.crc32);
        assert!(
            rd.largest_alloc <= (MIB as usize) + 4096,
            "read: largest allocation {}",
            rd.largest_alloc
        );
        assert!(
            rd.peak_live < (3 * MIB) as i64,
            "read: peak live {}",
            rd.peak_live
        );
    }
    let report = store.scrub().unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.bytes, 69 * MIB + 1);
    assert!(report.corrupt.is_empty());
}

fn reader_sizes_just_around_the_threshold(b: Backend) {
    // A reader-written blob of exactly the threshold stays inline; one more byte is chunked.
    let dir = tempfile::tempdir().unwrap();
    let store = b.open_cfg(
        &dir,
        "db",
        corral_storage::StoreConfig::default()
            .chunk_threshold(10)
            .chunk_size(4)
            .max_kv_value(10),
    );
    store
        .put_artifact_reader("a", &mut PatternReader::new(9, 10))
        .unwrap();
    assert_eq!(store.get_artifact("a").unwrap().unwrap().bytes.len(), 10);
    store
        .put_artifact_reader("b", &mut PatternReader::new(9, 11))
        .unwrap();
    assert!(matches!(
        store.get_artifact("b"),
        Err(StorageError::TooLargeForMemory {
            len: 11,
            threshold: 10,
            ..
        })
    ));
    let r = store.open_artifact("b").unwrap().unwrap();
    let chunks: Vec<usize> = r.map(|c| c.unwrap().len()).collect();
    assert_eq!(chunks, [4, 4, 3]);
    // Overwrite a chunked blob with a small one; the old chunks are gone.
    store.put_artifact("b", b"xy").unwrap();
    assert_eq!(&store.get_artifact("b").unwrap().unwrap().bytes[..], b"xy");
    assert!(store.delete_artifact("b").unwrap());
    assert!(store.get_artifact("b").unwrap().is_none());
    assert!(!store.delete_artifact("b").unwrap());
}

both!(
    small_round_trips_in_memory,
    large_round_trips_are_streamed,
    reader_sizes_just_around_the_threshold,
);
