//! Replays every committed fuzz input on stable: `fuzz/corpus/<target>/*`
//! (the minimized corpora) and `fuzz/regressions/<target>/*` (every crash
//! the fuzzers found, kept after its fix). A failing input is named.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = corral_fuzz_targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("a known target");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for input in inputs(&root.join(kind).join(target)) {
            let data = std::fs::read(&input).expect("read input");
            let ok = std::panic::catch_unwind(|| run(&data));
            assert!(ok.is_ok(), "{} fails", input.display());
            n += 1;
        }
    }
    assert!(n > 0, "no committed inputs for {target}");
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in corral_fuzz_targets::TARGETS {
                assert!(tested.contains(name), "{name} has no replay test");
            }
        }
    };
}

replay_tests!(
    cgi_response,
    bundle,
    archive_import,
    router,
    config,
    kv_keys,
    blob_frames,
    js_deploy,
    http_head,
    component,
);
