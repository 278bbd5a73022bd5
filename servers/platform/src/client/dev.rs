//! `corral dev`: the app on a local, embedded platform, reloaded on change.
//!
//! The dev server is the real server code ([`crate::app::app`] and
//! [`crate::http::serve`]) on a throwaway data directory, with the tiers of
//! the node's config (`--config`, else the built-in tiers), so the app runs
//! under the same limits it will get when deployed. Every request to the dev
//! port goes to the app (as if a proxy set `X-Corral-App`), at `/`. The
//! source is polled ([`DevOptions::poll`]); on a change it is rebuilt and
//! redeployed without a restart, and a build or deploy failure is printed
//! while the previous version keeps serving. The app's log lines
//! (`console.log`, stderr) are printed as they arrive. The host's RAM and
//! disk thresholds never refuse the app: the machine is the developer's.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use corral::TenantId;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::bundle::Source;
use super::{ClientError, io_at};
use crate::app::{App, DEMO_APP, ServerError};
use crate::config::ServerConfig;
use crate::http::Body;
use crate::routes::APP_HEADER;

/// What `corral dev` runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DevOptions {
    /// The app's source: a file or a directory ([`Source::detect`]).
    pub path: PathBuf,
    /// The app's name.
    pub name: TenantId,
    /// The tier; `None` is the config's default tier.
    pub tier: Option<String>,
    /// Where to listen. Default: `127.0.0.1:8787`.
    pub listen: SocketAddr,
    /// A `corral.toml` whose tiers (and other platform settings) to use.
    /// Default: none, the built-in tiers.
    pub config: Option<PathBuf>,
    /// How often the source is checked for changes. Default: 250 ms.
    pub poll: Duration,
}

impl DevOptions {
    /// Options for app `name` at `path`, with the defaults above.
    pub fn new(path: PathBuf, name: TenantId) -> Self {
        Self {
            path,
            name,
            tier: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            config: None,
            poll: Duration::from_millis(250),
        }
    }
}

/// A developer's machine is no shared node: its RAM and disk thresholds
/// (which make a node refuse new tenants) are set to never fire, so a busy
/// laptop still runs the one app. The tier's per-request limits stay.
fn never_refuse_for_host_load(platform: &mut toml::Table) {
    let never = || {
        let mut t = toml::Table::new();
        t.insert("fire".into(), toml::Value::Float(1.0));
        t.insert("rearm".into(), toml::Value::Float(1.0));
        toml::Value::Table(t)
    };
    let thresholds = platform
        .entry("thresholds")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = thresholds {
        t.insert("ram".into(), never());
        t.insert("disk".into(), never());
    }
}

/// Every request to the app, whatever its host and path.
#[derive(Clone)]
struct DevService {
    app: App,
    name: HeaderValue,
}

impl hyper::service::Service<Request<Incoming>> for DevService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.headers_mut().insert(APP_HEADER, self.name.clone());
        let app = self.app.clone();
        Box::pin(async move { Ok(app.handle(req).await) })
    }
}

/// Runs the dev server until `shutdown` resolves; `ready` is called once
/// with the address it serves on. Must be called inside a tokio runtime.
pub async fn run(
    opts: DevOptions,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(SocketAddr, &str),
) -> Result<(), ClientError> {
    let data = tempfile::Builder::new()
        .prefix("corral-dev-")
        .tempdir()
        .map_err(io_at(std::env::temp_dir()))?;
    let text = match &opts.config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(io_at(p))?),
        None => None,
    };
    let mut cfg =
        ServerConfig::load(text.as_deref(), &crate::cli::no_env()).map_err(ServerError::from)?;
    cfg.listen = opts.listen;
    cfg.data_dir = data.path().to_owned();
    cfg.base_domain = None;
    cfg.http.drain_timeout = Duration::from_secs(2);
    never_refuse_for_host_load(&mut cfg.platform);
    let started = crate::app::app(&cfg).await?;
    let platform = started.app.platform().clone();
    // The server's first start deploys its demo app; a dev server has one app.
    if let Ok(demo) = TenantId::new(DEMO_APP)
        && demo != opts.name
    {
        platform.remove(&demo).map_err(ServerError::from)?;
    }
    let mut source = Source::detect(&opts.path)?;
    let mut fingerprint = source.fingerprint();
    let info = platform
        .deploy(
            &opts.name,
            opts.tier.as_deref(),
            source.build()?.into_bundle().map_err(ServerError::from)?,
        )
        .await
        .map_err(ServerError::from)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(io_at(format!("binding {}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(io_at("local_addr"))?;
    let service = DevService {
        app: started.app.clone(),
        // A TenantId is lowercase ASCII letters, digits and '-': always a header value.
        name: HeaderValue::from_str(opts.name.as_str()).expect("a valid app name"),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = cfg.http.clone();
    let server = tokio::spawn(async move {
        crate::http::serve(listener, service, &limits, async {
            let _ = stop_rx.await;
        })
        .await
    });
    ready(addr, &info.tier);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut seen = 0u64;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(opts.poll) => {}
        }
        if let Ok((lines, next)) = platform.logs_after(&opts.name, seen) {
            for line in lines {
                println!("[{}] {line}", opts.name);
            }
            seen = next;
        }
        let now = source.fingerprint();
        if now == fingerprint {
            continue;
        }
        fingerprint = now;
        let deployed = async {
            source = Source::detect(&opts.path)?;
            let bundle = source.build()?.into_bundle().map_err(ServerError::from)?;
            let info = platform
                .deploy(&opts.name, opts.tier.as_deref(), bundle)
                .await
                .map_err(ServerError::from)?;
            Ok::<_, ClientError>(info)
        }
        .await;
        match deployed {
            Ok(info) => println!(
                "corral dev: reloaded {} ({} bytes, version {})",
                opts.name,
                info.bytes,
                platform
                    .app(&opts.name)
                    .ok()
                    .flatten()
                    .map_or(0, |a| a.version)
            ),
            Err(e) => {
                eprintln!("corral dev: reload failed, still serving the previous version: {e}")
            }
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    started.app.shutdown().await;
    drop(data);
    Ok(())
}
