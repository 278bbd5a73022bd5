//! Writes the seed inputs that need the real code to make (real exports for
//! `archive_import`). Run once by hand, then minimize with `scripts/fuzz --merge`:
//! `cargo test -p corral-fuzz-targets --test seeds -- --ignored`.

use std::path::Path;

use corral::platform::{Bundle, Platform, PlatformConfig};
use corral::{Kind, TenantId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fuzz/corpus/archive_import; run by hand"]
async fn write_archive_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/archive_import");
    std::fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PlatformConfig::with_data_dir(dir.path());
    let never = corral::metering::Level::new(1.0, 1.0);
    (
        config.thresholds.ram,
        config.thresholds.disk,
        config.thresholds.cpu,
    ) = (never, never, never);
    let p = Platform::builder().config(config).build().unwrap();
    let js = b"export default { fetch() { return new Response('hi') } }".to_vec();
    let wasm = wat::parse_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-core/tests/fixtures/hello.wat"),
    )
    .unwrap();
    let apps = [
        ("js", Bundle::code(Kind::Js, js.clone())),
        (
            "site",
            Bundle::code(Kind::Js, js).with_static("index.html", b"<h1>hi</h1>".to_vec()),
        ),
        ("wasm", Bundle::code(Kind::Wasm, wasm)),
    ];
    for (name, bundle) in apps {
        let id = TenantId::new(name).unwrap();
        p.deploy(&id, Some("pro"), bundle).await.unwrap();
        if name == "js" {
            p.store().kv_put(&id, "greeting", b"hello").unwrap();
            p.store().kv_put(&id, "users/1", b"{}").unwrap();
        }
        let archive = p.export_tenant(&id).unwrap();
        std::fs::write(out.join(format!("seed-{name}")), &archive).unwrap();
        // The same archive, keeping tier and usage (the last byte picks).
        let mut keep = archive;
        keep.push(3);
        std::fs::write(out.join(format!("seed-{name}-keep")), &keep).unwrap();
    }
    p.shutdown().await;
}
