//! 8 writer and 8 reader threads × 10,000 operations: no BUSY, data consistent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_storage::{Durability, StoreConfig};
use rand::Rng;

use crate::{Backend, both, tid};

const THREADS: u64 = 8;
const OPS: u64 = 10_000;
const SLOTS: u64 = 256;

fn value(w: u64, i: u64) -> Vec<u8> {
    let head = format!("w{w}:i{i}:");
    let mut v = head.into_bytes();
    let pad = (i % 97) as usize;
    v.extend(std::iter::repeat_n(b'a' + (w as u8), pad));
    v
}

fn parse(v: &[u8]) -> (u64, u64) {
    let s = std::str::from_utf8(v).unwrap();
    let mut parts = s.splitn(3, ':');
    let w = parts
        .next()
        .unwrap()
        .strip_prefix('w')
        .unwrap()
        .parse()
        .unwrap();
    let i = parts
        .next()
        .unwrap()
        .strip_prefix('i')
        .unwrap()
        .parse()
        .unwrap();
    (w, i)
}

fn eight_writers_eight_readers(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // NORMAL: no fsync per commit, so 80,000 commits finish quickly; the
    // locking behaviour under test is the same as with FULL.
    let store = b.open_cfg(
        &dir,
        "c.db",
        StoreConfig::default()
            .durability(Durability::Normal)
            .readers(8),
    );
    let t = tid("conc");
    let reads_found = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..THREADS {
        let (store, t) = (store.clone(), t.clone());
        handles.push(std::thread::spawn(move || {
            for i in 0..OPS {
                store
                    .kv_put(&t, format!("w{w}/s{}", i % SLOTS), &value(w, i))
                    .unwrap();
            }
        }));
    }
    for r in 0..THREADS {
        let (store, t, found) = (store.clone(), t.clone(), reads_found.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = rand::rng();
            for n in 0..OPS {
                let w = rng.random_range(0..THREADS);
                let s = rng.random_range(0..SLOTS);
                if n % 100 == 0 {
                    let keys = store.kv_list(&t, format!("w{w}/"), 10).unwrap();
                    assert!(keys.len() <= 10);
                    continue;
                }
                if let Some(b) = store.kv_get(&t, format!("w{w}/s{s}")).unwrap() {
                    let (bw, bi) = parse(&b.bytes);
                    assert_eq!(
                        (bw, bi % SLOTS),
                        (w, s),
                        "reader {r} got a value from the wrong key"
                    );
                    assert!(
                        b.bytes == value(bw, bi),
                        "reader {r}: value for w{bw} i{bi} is torn"
                    );
                    found.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    // Final state: every slot holds the last value its writer wrote.
    let mut bytes = 0u64;
    for w in 0..THREADS {
        for s in 0..SLOTS {
            let last = (OPS - 1) - ((OPS - 1 - s) % SLOTS);
            let key = format!("w{w}/s{s}");
            let b = store.kv_get(&t, &key).unwrap().unwrap();
            assert!(b.bytes == value(w, last), "{key}");
            bytes += (key.len() + b.bytes.len()) as u64;
        }
    }
    assert_eq!(store.kv_bytes(&t).unwrap(), bytes);
    assert_eq!(
        store.kv_list(&t, "", usize::MAX).unwrap().len() as u64,
        THREADS * SLOTS
    );
    assert!(reads_found.load(Ordering::Relaxed) > 0);
    println!(
        "concurrency: {} writes, {} reads ({} found), 0 errors",
        THREADS * OPS,
        THREADS * OPS,
        reads_found.load(Ordering::Relaxed)
    );
}

both!(eight_writers_eight_readers,);
