//! Corral's storage: SQLite with CRC32-verified blobs, tenant KV, and a byte-capped cache.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
