//! corral-storage: CRC32 throughput beside memcpy of the same buffer, the
//! byte cache beside the raw `quick_cache` and `moka` caches, and tenant KV
//! put/get through the SQLite store.
//!
//! `cargo bench -p corral-benches --bench storage -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use corral_limits::TenantId;
use corral_storage::{ByteCache, CacheConfig, CachedObject, Durability, Store, StoreConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: usize = 10_000;
const VALUE: usize = 1024;

fn buffer(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes()[7])
        .collect()
}

fn crc_vs_memcpy(c: &mut Criterion) {
    for len in [1usize << 20, 16 << 20] {
        let src = buffer(len);
        let mut dst = vec![0u8; len];
        let mut g = c.benchmark_group(format!("crc32_vs_memcpy/{}MiB", len >> 20));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function("crc32fast", |b| b.iter(|| crc32fast::hash(black_box(&src))));
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        g.finish();
    }
}

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("tenant-{}/static/file-{i}.css", i % 97))
        .collect()
}

type Qc = quick_cache::sync::Cache<Arc<str>, CachedObject, QcWeigher>;

#[derive(Clone)]
struct QcWeigher;
impl quick_cache::Weighter<Arc<str>, CachedObject> for QcWeigher {
    fn weight(&self, k: &Arc<str>, v: &CachedObject) -> u64 {
        (k.len() + v.bytes.len()) as u64
    }
}

fn raw_quick(cap: u64) -> Qc {
    quick_cache::sync::Cache::with_weighter(KEYS, cap, QcWeigher)
}

fn raw_moka(cap: u64) -> moka::sync::Cache<Arc<str>, CachedObject> {
    moka::sync::Cache::builder()
        .max_capacity(cap)
        .weigher(|k: &Arc<str>, v: &CachedObject| {
            (k.len() + v.bytes.len()).min(u32::MAX as usize) as u32
        })
        .build()
}

fn cache_ops(c: &mut Criterion) {
    let keys = keys();
    let arc_keys: Vec<Arc<str>> = keys.iter().map(|k| Arc::from(k.as_str())).collect();
    let obj = CachedObject::new(Bytes::from(vec![7u8; VALUE]), 0x1234_5678);
    // get: everything fits (64 MiB cap, ~10.6 MB of entries), every lookup hits.
    let big = 64u64 << 20;
    let byte = ByteCache::new(CacheConfig::new(big).max_object_bytes(1 << 20));
    let quick = raw_quick(big);
    let moka = raw_moka(big);
    for (k, ak) in keys.iter().zip(&arc_keys) {
        byte.insert(k, obj.clone());
        quick.insert(ak.clone(), obj.clone());
        moka.insert(ak.clone(), obj.clone());
    }
    moka.run_pending_tasks();
    let mut g = c.benchmark_group("cache_get_hit");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("corral_ByteCache", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(byte.get(&keys[i]).unwrap());
        })
    });
    g.bench_function("raw_quick_cache", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(quick.get(keys[i].as_str()).unwrap());
        })
    });
    g.bench_function("raw_moka", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(moka.get(keys[i].as_str()).unwrap());
        })
    });
    g.finish();

    // insert: 2 MiB cap, so most inserts evict.
    let small = 2u64 << 20;
    let byte = ByteCache::new(CacheConfig::new(small).max_object_bytes(64 * 1024));
    let quick = raw_quick(small);
    let moka = raw_moka(small);
    let mut g = c.benchmark_group("cache_insert_evicting");
    g.throughput(Throughput::Elements(1));
    g.bench_function("corral_ByteCache", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            byte.insert(&keys[i], obj.clone());
        })
    });
    g.bench_function("raw_quick_cache", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            quick.insert(arc_keys[i].clone(), obj.clone());
        })
    });
    g.bench_function("raw_moka", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            moka.insert(arc_keys[i].clone(), obj.clone());
        })
    });
    g.finish();
    moka.run_pending_tasks();
    println!(
        "cache sizes after the insert bench (cap {small} B): ByteCache {} B, quick_cache {} B, moka {} B",
        byte.stats().bytes,
        quick.weight(),
        moka.weighted_size()
    );
}

fn kv_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("bench").unwrap();
    let value = vec![42u8; 256];
    for (name, d) in [("normal", Durability::Normal), ("full", Durability::Full)] {
        let store = Store::open(
            dir.path().join(format!("{name}.db")),
            StoreConfig::default().durability(d),
        )
        .unwrap();
        for i in 0..KEYS {
            store.kv_put(&t, format!("k{i}"), &value).unwrap();
        }
        let mut g = c.benchmark_group(format!("kv_256B/{name}"));
        g.throughput(Throughput::Elements(1));
        if d == Durability::Full {
            g.sample_size(10);
        }
        let mut i = 0usize;
        g.bench_function("put", |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                store.kv_put(&t, format!("k{i}"), &value).unwrap();
            })
        });
        if d == Durability::Normal {
            g.bench_function("get", |b| {
                b.iter(|| {
                    i = (i + 7919) % KEYS;
                    black_box(store.kv_get(&t, format!("k{i}")).unwrap().unwrap());
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, crc_vs_memcpy, cache_ops, kv_ops);
criterion_main!(benches);
