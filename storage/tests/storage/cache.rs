//! Randomized cache test: cap never exceeded, pinned survive, large never enter, resize evicts.

use bytes::Bytes;
use corral_storage::{ByteCache, CacheConfig, CacheError, CachedObject};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn obj(len: usize, fill: u8) -> CachedObject {
    let b = Bytes::from(vec![fill; len]);
    let crc = crc32fast::hash(&b);
    CachedObject::new(b, crc)
}

#[test]
fn randomized_operations_keep_every_invariant() {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let shards = [1usize, 2, 4, 8][seed as usize];
        let max_object = 2048u64;
        let cache = ByteCache::new(
            CacheConfig::new(64 * 1024)
                .max_object_bytes(max_object)
                .shards(shards),
        );
        let mut pinned: Vec<(String, CachedObject)> = Vec::new();
        let mut cap = 64 * 1024u64;
        for op in 0..20_000u32 {
            match rng.random_range(0..100) {
                0..=59 => {
                    let key = format!("k{}", rng.random_range(0..400));
                    let len = rng.random_range(0..1500);
                    cache.insert(&key, obj(len, (op % 251) as u8));
                }
                60..=64 => {
                    let key = format!("big{op}");
                    let len = rng.random_range(max_object as usize + 1..8192);
                    assert!(!cache.insert(&key, obj(len, 1)));
                    assert!(
                        cache.get(&key).is_none(),
                        "a large object entered the cache"
                    );
                }
                65..=89 => {
                    let key = format!("k{}", rng.random_range(0..400));
                    if let Some(o) = cache.get(&key) {
                        assert!(o.bytes.len() as u64 <= max_object);
                        assert_eq!(o.crc32, crc32fast::hash(&o.bytes));
                    }
                }
                90..=91 if pinned.len() < 8 => {
                    let key = format!("pin{op}");
                    let o = obj(rng.random_range(1..1024), 9);
                    match cache.pin(&key, o.clone()) {
                        Ok(()) => pinned.push((key, o)),
                        Err(CacheError::PinnedOverCapacity { needed, capacity }) => {
                            assert!(needed > capacity);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                92..=93 if !pinned.is_empty() => {
                    let (key, _) = pinned.swap_remove(rng.random_range(0..pinned.len()));
                    assert!(cache.unpin(&key));
                }
                94..=96 => {
                    let new = rng.random_range(8 * 1024..128 * 1024);
                    match cache.resize(new) {
                        Ok(()) => {
                            cap = new;
                            let s = cache.stats();
                            assert!(s.bytes <= cap, "after resize to {cap}: {} bytes", s.bytes);
                        }
                        Err(CacheError::PinnedOverCapacity { needed, capacity }) => {
                            assert_eq!(capacity, new);
                            assert!(needed > new);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                _ => {}
            }
            let s = cache.stats();
            assert!(
                s.bytes <= cap,
                "seed {seed} op {op}: {} bytes > cap {cap}",
                s.bytes
            );
            assert_eq!(s.capacity, cap);
            for (k, o) in &pinned {
                assert_eq!(cache.get(k).as_ref(), Some(o), "pinned {k} lost");
            }
        }
        let s = cache.stats();
        assert!(
            s.evictions > 0 && s.hits > 0 && s.misses > 0 && s.bypassed > 0,
            "{s:?}"
        );
    }
}

#[test]
fn pinned_entries_survive_a_flood() {
    let cache = ByteCache::new(CacheConfig::new(32 * 1024).max_object_bytes(1024).shards(4));
    let logo = obj(1000, 7);
    let css = obj(500, 8);
    cache.pin("admin/logo.png", logo.clone()).unwrap();
    cache.pin("admin/site.css", css.clone()).unwrap();
    for i in 0..10_000 {
        cache.insert(&format!("flood/{i}"), obj(900, 1));
        assert!(cache.stats().bytes <= 32 * 1024);
    }
    assert_eq!(cache.get("admin/logo.png"), Some(logo));
    assert_eq!(cache.get("admin/site.css"), Some(css));
    let s = cache.stats();
    assert_eq!(s.pinned_bytes, (14 + 1000) + (14 + 500));
    // Every flood entry beyond the ones still resident was evicted.
    assert_eq!(s.evictions, 10_000 - (cache.len() as u64 - 2), "{s:?}");
}

#[test]
fn resize_down_evicts_to_fit_and_counts() {
    let cache = ByteCache::new(CacheConfig::new(100_000).max_object_bytes(10_000).shards(1));
    for i in 0..90 {
        assert!(cache.insert(&format!("k{i:02}"), obj(997, 0)));
    }
    // 90 × (3 + 997) = 90,000 bytes all fit.
    assert_eq!(cache.stats().bytes, 90_000);
    assert_eq!(cache.len(), 90);
    cache.resize(10_000).unwrap();
    let s = cache.stats();
    assert!(s.bytes <= 10_000, "{s:?}");
    assert_eq!(s.evictions, 90 - cache.len() as u64);
    assert_eq!(s.capacity, 10_000);
    // Growing again admits new entries.
    cache.resize(50_000).unwrap();
    assert!(cache.insert("fresh", obj(4000, 1)));
    assert!(cache.get("fresh").is_some());
}
