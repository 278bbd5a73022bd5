//! Integration tests for `corral-storage` (issue 4's "Done when" list).
// The counting allocator below needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator and records sizes in thread-locals.
#![allow(unsafe_code)]

mod alloc_track;
mod asset;
mod blobs;
mod cache;
mod concurrency;
mod crash;
mod integrity;
mod tenant;

use corral_limits::TenantId;
use corral_storage::{Store, StoreConfig};

pub(crate) fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

pub(crate) fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("corral.db"), StoreConfig::default()).unwrap()
}

/// Deterministic pattern byte at offset `i` for stream `seed`.
pub(crate) fn pattern(seed: u64, i: u64) -> u8 {
    ((i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

#[test]
fn store_is_send_sync_clone() {
    fn assert<T: Send + Sync + Clone + 'static>() {}
    assert::<Store>();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<corral_storage::ByteCache>();
    send_sync::<corral_storage::StorageError>();
    send_sync::<corral_storage::BlobReader>();
    send_sync::<corral_storage::AssetCacheLayer>();
}
