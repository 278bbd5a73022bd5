//! End-to-end HTTP load: a warm hello tenant behind the real `corral-server`
//! application (routing, every limit layer, metering, the QuickJS sandbox)
//! beside a bare hyper hello-world server, measured in the same run by the
//! same small Rust load generator (keep-alive HTTP/1.1 connections on loopback,
//! each sending requests back to back for a fixed time).
//!
//! `cargo bench -p corral-benches --bench server -- [--connections N] [--seconds S]`
//! (criterion-style flags such as `--warm-up-time` are accepted and ignored.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `connections` keep-alive connections, each sending GET `path` back to back
/// for `duration`; every response must be 200 with `expect` as body.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    expect: &'static [u8],
    connections: usize,
    duration: Duration,
) -> Figures {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let req = http::Request::get(path)
                    .header("host", "localhost")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                send.ready().await.unwrap();
                let resp = send.send_request(req).await.unwrap();
                let ok = resp.status() == 200;
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                lat.push(t.elapsed());
                if !ok || body != expect {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: usize| all[(all.len() * p).div_ceil(100).max(1) - 1];
    Figures {
        requests: all.len(),
        errors,
        elapsed,
        p50: pct(50),
        p99: pct(99),
    }
}

async fn bare_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let conn = builder
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"Hello from Corral! (GET)\n",
                        ))))
                    }),
                )
                .into_owned();
            tokio::spawn(conn);
        }
    });
    addr
}

async fn corral(dir: &std::path::Path) -> SocketAddr {
    use std::collections::BTreeMap;
    let mut cfg = corral_server::config::ServerConfig::load(
        Some(
            // A tier without a rate limit or monthly quota: the bench measures the
            // stack's cost, not its refusals.
            r#"default_tier = "bench"
            [tiers.bench]
            compute_shares = 64
            memory_bytes = 1073741824
            fuel_per_request = 1000000000
            wall_clock = "10s"
            burst = 0
            max_body_bytes = 1048576
            max_bundle_bytes = 5242880
            idle_timeout = "1h"
            max_streams = 10
            "#,
        ),
        &BTreeMap::new(),
    )
    .unwrap();
    cfg.data_dir = dir.to_owned();
    let started = corral_server::app::app(&cfg).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = cfg.http.clone();
    tokio::spawn(async move {
        corral_server::http::serve(listener, started.app, &http, std::future::pending::<()>()).await
    });
    addr
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("server: bench");
        return;
    }
    let connections = arg(&args, "--connections", 32) as usize;
    let seconds = arg(&args, "--seconds", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let bare = bare_hyper().await;
        let corral = corral(dir.path()).await;
        let path = "/apps/demo/";
        let body: &[u8] = b"Hello from Corral! (GET)\n";
        // Warm both (the demo tenant compiles and instantiates on first use).
        load(corral, path, body, 4, Duration::from_millis(500)).await;
        load(bare, path, body, 4, Duration::from_millis(500)).await;
        let d = Duration::from_secs(seconds);
        let b = load(bare, path, body, connections, d).await;
        let c = load(corral, path, body, connections, d).await;
        println!(
            "server/{connections} connections, {seconds} s each, same process and run:"
        );
        for (name, f) in [("bare hyper hello", &b), ("corral warm JS hello tenant", &c)] {
            println!(
                "  {name:<28} {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  ({} requests, {} errors)",
                f.rps(),
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.requests,
                f.errors
            );
        }
        println!(
            "  ratio corral/bare: throughput {:.3}, p50 {:.2}x, p99 {:.2}x",
            c.rps() / b.rps(),
            c.p50.as_secs_f64() / b.p50.as_secs_f64(),
            c.p99.as_secs_f64() / b.p99.as_secs_f64()
        );
        assert_eq!(b.errors + c.errors, 0, "some responses were not 200 hello");
    });
}
