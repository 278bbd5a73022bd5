//! The bodies of Corral's fuzz targets.
//!
//! Each target is a plain function over the fuzzer's bytes, so the same code
//! runs under cargo-fuzz (`fuzz/fuzz_targets/<name>.rs`, nightly, libFuzzer)
//! and under `cargo test` on stable (`tests/replay.rs` replays every
//! committed corpus and regression input). A target asserts the invariants of
//! what it drives, not only that it does not panic: a broken invariant
//! panics, which libFuzzer reports as a crash.
//!
//! | target | drives |
//! |---|---|
//! | [`cgi_response`] | the WAGI stdout parser, whole and in random write splits |
//! | [`bundle`] | deploy upload detection and tar unpacking |
//! | [`archive_import`] | tenant archive verify-then-import into a fresh store |
//! | [`router`] | host, header and path routing, traversal checks |
//! | [`config`] | `corral.toml` plus `CORRAL_*` overrides |
//! | [`kv_keys`] | storage key and prefix validation, through the KV store |
//! | [`blob_frames`] | the CRC32-checked blob reader over corrupted rows |
//! | [`js_deploy`] | module source to bytecode and back under the deploy budget |
//! | [`http_head`] | the server's head limits and tenant resolution, over TCP |
//! | [`component`] | a `wasi:http/proxy` component upload to its artifact and back |

mod archive;
mod blob;
mod bundle_target;
mod cgi;
mod component_target;
mod config_target;
mod deploy;
mod http_head_target;
mod js;
mod keys;
mod router_target;

pub use archive::archive_import;
pub use blob::blob_frames;
pub use bundle_target::bundle;
pub use cgi::cgi_response;
pub use component_target::component;
pub use config_target::config;
pub use http_head_target::http_head;
pub use js::js_deploy;
pub use keys::kv_keys;
pub use router_target::router;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/corpus/<name>/` names its corpus.
pub const TARGETS: &[(&str, Target)] = &[
    ("cgi_response", cgi_response),
    ("bundle", bundle),
    ("archive_import", archive_import),
    ("router", router),
    ("config", config),
    ("kv_keys", kv_keys),
    ("blob_frames", blob_frames),
    ("js_deploy", js_deploy),
    ("http_head", http_head),
    ("component", component),
];
