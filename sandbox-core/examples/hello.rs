//! Deploys the demo WAGI tenant, invokes it, and prints the response and the
//! fuel it used.
//!
//! ```sh
//! cargo run --release --example hello
//! ```

use bytes::Bytes;
use corral::{InvocationStats, Kind, Limits, Registry, TenantId};

const HELLO: &str = include_str!("../tests/fixtures/hello.wat");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = tempfile::tempdir()?;
    let registry = Registry::open(data_dir.path())?;
    let tenant: TenantId = "hello".parse()?;

    let info = registry.deploy(&tenant, Kind::Wasm, HELLO.as_bytes(), Limits::default())?;
    println!(
        "deployed {tenant}: {} byte artifact (crc32 {:08x}), compiled in {:?}",
        info.bytes, info.crc32, info.compile_time
    );

    let request = http::Request::builder()
        .uri("http://hello.localhost/")
        .body(Bytes::new())?;
    let response = registry.invoke(&tenant, request).await?;
    let stats = response
        .extensions()
        .get::<InvocationStats>()
        .copied()
        .unwrap_or_default();

    println!("{:?} {}", response.version(), response.status());
    for (name, value) in response.headers() {
        println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
    }
    println!();
    let body = response.into_body().to_bytes().await?;
    print!("{}", String::from_utf8_lossy(&body));
    println!(
        "fuel used: {} (limit {}), wall time: {:?}, peak memory: {} bytes",
        stats.fuel_consumed,
        Limits::default().fuel_per_request,
        stats.wall_time,
        stats.peak_memory
    );
    Ok(())
}
