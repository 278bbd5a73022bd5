//! `kv_keys`: key and prefix validation, and the KV store they guard.

use std::sync::OnceLock;

use corral_limits::TenantId;
use corral_storage::{Durability, MAX_KEY_LEN, Store, StoreConfig, validate_key, validate_prefix};

/// One store per process: opening SQLite per input would be most of the work.
fn store() -> &'static (Store, tempfile::TempDir) {
    static STORE: OnceLock<(Store, tempfile::TempDir)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StoreConfig::default().durability(Durability::Normal);
        let store = Store::open(dir.path().join("kv.db"), cfg).expect("open store");
        (store, dir)
    })
}

/// Whether `s` obeys the documented key rules, checked independently of
/// [`validate_key`].
fn is_valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY_LEN
        && !s.chars().any(|c| c.is_control() || c == '\\')
        && s.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Validates `data` as a key and a prefix; a valid key is stored, read back,
/// listed under each of its prefixes and deleted.
pub fn kv_keys(data: &[u8]) {
    let key = validate_key(data);
    let by_rules = std::str::from_utf8(data).is_ok_and(is_valid_key);
    assert_eq!(
        key.is_ok(),
        by_rules,
        "validate_key disagrees with its rules"
    );
    let prefix = validate_prefix(data);
    if let Ok(p) = prefix {
        assert_eq!(p.as_bytes(), data);
        assert!(p.split('/').all(|seg| seg != "." && seg != ".."));
    }
    let Ok(key) = key else {
        // Every store entry point refuses what validation refuses.
        let (store, _) = store();
        let t = TenantId::new("fuzz").expect("tenant id");
        assert!(store.kv_put(&t, data, b"v").is_err());
        assert!(store.kv_get(&t, data).is_err());
        return;
    };
    assert_eq!(key.as_bytes(), data);
    assert!(prefix.is_ok(), "a valid key is a valid prefix");

    let (store, _) = store();
    let t = TenantId::new("fuzz").expect("tenant id");
    let other = TenantId::new("other").expect("tenant id");
    store.kv_put(&t, key, data).expect("put a valid key");
    let got = store.kv_get(&t, key).expect("get").expect("present");
    assert_eq!(&got.bytes[..], data);
    // Another tenant never sees it.
    assert!(store.kv_get(&other, key).expect("get").is_none());
    for (i, _) in key.match_indices('/') {
        let listed = store.kv_list(&t, &key[..=i], 1000).expect("list");
        assert!(
            listed.iter().any(|k| k == key),
            "{key:?} not under {:?}",
            &key[..=i]
        );
    }
    assert!(store.kv_delete(&t, key).expect("delete"));
    assert!(store.kv_get(&t, key).expect("get").is_none());
}
