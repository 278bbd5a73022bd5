//! Flipping one byte of a stored blob: in the SQLite file, or in the
//! PostgreSQL row behind the store's back.

use std::io::Read;

use corral_storage::{StorageError, Store, StoreConfig};

use crate::{Backend, both, tid};

fn flipped_byte_in_kv_value_is_an_integrity_error_and_scrub_reports_it(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = b.location(&dir, "corral.db");
    let t = tid("acme");
    let value: Vec<u8> = b"FLIP-MARKER-0001:"
        .iter()
        .copied()
        .chain((0..200u8).map(|i| i.wrapping_mul(7)))
        .collect();
    let mut flipped = value.clone();
    flipped[20] ^= 0x01;
    {
        let store = b.open(&dir);
        store.kv_put(&t, "victim", &value).unwrap();
        store.kv_put(&t, "bystander", b"fine").unwrap();
        store.checkpoint().unwrap();
        if b == Backend::Sqlite {
            // The WAL is empty: the value now lives in the main file.
            let wal = std::fs::metadata(dir.path().join("corral.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            assert_eq!(wal, 0);
        }
    }
    b.flip(&path, b"FLIP-MARKER-0001:", 20, 0x01);

    let store = Store::open(&path, StoreConfig::default()).unwrap();
    match store.kv_get(&t, "victim") {
        Err(StorageError::Integrity {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, "kv/acme/victim");
            assert_eq!(expected, crc32fast::hash(&value));
            assert_eq!(actual, crc32fast::hash(&flipped));
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert_eq!(store.stats().integrity_failures, 1);
    // Quarantined from now on, never returned as good data.
    assert!(
        matches!(store.kv_get(&t, "victim"), Err(StorageError::Quarantined { key }) if key == "kv/acme/victim")
    );
    assert_eq!(store.quarantined_keys().unwrap(), ["kv/acme/victim"]);
    // The neighbour is unaffected.
    assert_eq!(
        &store.kv_get(&t, "bystander").unwrap().unwrap().bytes[..],
        b"fine"
    );

    let report = store.scrub_in_background().join().unwrap().unwrap();
    assert_eq!(report.corrupt, ["kv/acme/victim"]);
    assert_eq!(report.checked, 2);
    // Overwriting the key clears the quarantine.
    store.kv_put(&t, "victim", b"new").unwrap();
    assert_eq!(
        &store.kv_get(&t, "victim").unwrap().unwrap().bytes[..],
        b"new"
    );
    assert!(store.scrub().unwrap().corrupt.is_empty());
}

fn flipped_byte_in_a_chunk_stops_the_stream_before_the_bad_chunk(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = b.location(&dir, "corral.db");
    let cfg = || {
        StoreConfig::default()
            .chunk_threshold(64 * 1024)
            .chunk_size(16 * 1024)
            .max_kv_value(1024)
    };
    // 5 chunks of 16 KiB; chunk 2 starts with a marker.
    let mut data = vec![0u8; 80 * 1024];
    for (i, b) in data.iter_mut().enumerate() {
        *b = crate::pattern(77, i as u64);
    }
    let marker = b"CHUNK-TWO-MARKER";
    data[32 * 1024..32 * 1024 + marker.len()].copy_from_slice(marker);
    {
        let store = Store::open(&path, cfg()).unwrap();
        store.put_artifact("big", &data).unwrap();
        store.checkpoint().unwrap();
    }
    b.flip(&path, marker, 100, 0x01);

    let store = Store::open(&path, cfg()).unwrap();
    let mut r = store.open_artifact("big").unwrap().unwrap();
    let mut good = Vec::new();
    let err = loop {
        match r.next() {
            Some(Ok(c)) => good.extend_from_slice(&c),
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    // Only the two intact chunks were handed out.
    assert_eq!(good.len(), 32 * 1024);
    assert!(good[..] == data[..32 * 1024]);
    let chunk = &data[32 * 1024..48 * 1024];
    let mut bad = chunk.to_vec();
    bad[100] ^= 0x01;
    match err {
        StorageError::Integrity {
            key,
            expected,
            actual,
        } => {
            assert_eq!(key, "artifact/big");
            assert_eq!(expected, crc32fast::hash(chunk));
            assert_eq!(actual, crc32fast::hash(&bad));
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert!(
        matches!(store.open_artifact("big"), Err(StorageError::Quarantined { key }) if key == "artifact/big")
    );
    let report = store.scrub().unwrap();
    assert_eq!(report.corrupt, ["artifact/big"]);
}

fn read_errors_surface_through_io_read(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = b.location(&dir, "corral.db");
    let cfg = || {
        StoreConfig::default()
            .chunk_threshold(8 * 1024)
            .chunk_size(4 * 1024)
            .max_kv_value(1024)
    };
    let mut data = vec![b'x'; 16 * 1024];
    data[8 * 1024..8 * 1024 + 6].copy_from_slice(b"MARK-3");
    {
        let store = Store::open(&path, cfg()).unwrap();
        store.put_artifact("f", &data).unwrap();
        store.checkpoint().unwrap();
    }
    b.flip(&path, b"MARK-3", 10, 0x01);
    let store = Store::open(&path, cfg()).unwrap();
    let mut out = Vec::new();
    let err = store
        .open_artifact("f")
        .unwrap()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<StorageError>());
    assert!(
        matches!(inner, Some(StorageError::Integrity { key, .. }) if key == "artifact/f"),
        "{err:?}"
    );
    assert_eq!(out.len(), 8 * 1024);
}

fn scrub_runs_in_the_background_beside_writers(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open_cfg(
        &dir,
        "s.db",
        StoreConfig::default().durability(corral_storage::Durability::Normal),
    );
    let t = tid("bg");
    for i in 0..300 {
        store
            .kv_put(&t, format!("seed{i}"), &[i as u8; 100])
            .unwrap();
    }
    let writer = {
        let (store, t) = (store.clone(), t.clone());
        std::thread::spawn(move || {
            for i in 0..300 {
                store
                    .kv_put(&t, format!("seed{i}"), &[!(i as u8); 50])
                    .unwrap();
                store.kv_put(&t, format!("new{i}"), b"x").unwrap();
            }
        })
    };
    let scrub = store.scrub_in_background();
    writer.join().unwrap();
    let report = scrub.join().unwrap().unwrap();
    // Replaced blobs vanish mid-scrub and are skipped; nothing is corrupt.
    assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
    assert!(
        report.checked >= 1 && report.checked <= 600,
        "{}",
        report.checked
    );
    let after = store.scrub().unwrap();
    assert_eq!((after.checked, after.bytes), (600, 300 * 50 + 300));
    assert_eq!(store.stats().integrity_failures, 0);
}

both!(
    flipped_byte_in_kv_value_is_an_integrity_error_and_scrub_reports_it,
    flipped_byte_in_a_chunk_stops_the_stream_before_the_bad_chunk,
    read_errors_surface_through_io_read,
    scrub_runs_in_the_background_beside_writers,
);
