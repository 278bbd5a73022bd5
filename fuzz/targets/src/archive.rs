//! `archive_import`: a tenant archive, verified then imported into a store
//! that holds no app.

use std::sync::OnceLock;

use corral::platform::{ImportOptions, Platform, PlatformConfig};

struct Fixture {
    rt: tokio::runtime::Runtime,
    platform: Platform,
    _dir: tempfile::TempDir,
}

/// One platform per process (building one per input would be most of the
/// work); each input is imported into it while it holds no app.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = PlatformConfig::with_data_dir(dir.path());
        // The host's real load must not switch imports off mid-run.
        let never = corral::metering::Level::new(1.0, 1.0);
        (
            config.thresholds.ram,
            config.thresholds.disk,
            config.thresholds.cpu,
        ) = (never, never, never);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let platform = rt
            .block_on(async { Platform::builder().config(config).build() })
            .expect("platform");
        Fixture {
            rt,
            platform,
            _dir: dir,
        }
    })
}

/// The input is the archive; its last byte also picks whether the tier and
/// usage are kept.
///
/// Invariants: a refused archive imports nothing (the store still holds no
/// app) and the refusal is a typed error; an imported app is listed, exports
/// again, and that export imports again after the app is removed.
pub fn archive_import(data: &[u8]) {
    let f = fixture();
    let last = data.last().copied().unwrap_or(0);
    let options = ImportOptions::new()
        .keep_tier(last & 1 != 0)
        .keep_usage(last & 2 != 0);
    let import = |bytes: Vec<u8>| f.rt.block_on(f.platform.import_tenant(bytes, options));
    match import(data.to_vec()) {
        Err(e) => {
            assert!(e.status().is_client_error(), "refused with {e:?}");
            let apps = f.platform.apps().expect("apps");
            assert!(apps.is_empty(), "a refused archive left {apps:?}");
        }
        Ok(id) => {
            let apps = f.platform.apps().expect("apps");
            assert_eq!(apps.len(), 1);
            let again = f
                .platform
                .export_tenant(&id)
                .expect("export an imported app");
            assert!(f.platform.remove(&id).expect("remove"));
            let id2 = import(again).expect("an export imports again");
            assert_eq!(id2, id);
            assert!(f.platform.remove(&id).expect("remove"));
        }
    }
}
