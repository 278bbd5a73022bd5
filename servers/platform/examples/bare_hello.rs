//! The baseline for the server load figures in BENCHMARKS.md: a bare hyper
//! hello-world server (hyper-util's HTTP/1.1 + h2c auto builder on a tokio
//! multi-thread runtime, no routing, no limits, no sandbox).
//!
//! `cargo run --release -p corral-server --example bare_hello -- 127.0.0.1:8081`
//! then `curl localhost:8081/` prints `Hello, world!`. `benches/server-load.sh`
//! runs it beside `corral-server` under the same `wrk` load.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare hyper listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let hello = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, world!\n",
                ))))
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hello)
                .await;
        });
    }
}
