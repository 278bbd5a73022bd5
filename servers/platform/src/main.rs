//! `corral-server`: see `corral-server --help`.
use std::process::ExitCode;

use clap::Parser;
use corral_server::app::{ServerError, app};
use corral_server::cli::{Cli, Command};
use corral_server::{commands, config::ProcessEnv, http};

/// The log filter when `CORRAL_LOG` is unset. wasmtime-wasi's preview-1
/// calls carry `#[instrument]` spans at INFO: under plain `info` every
/// guest `fd_write` built, formatted and dropped a span (about 3% of the
/// server's CPU on a WAGI hello under load), and those spans say nothing an
/// operator needs. `CORRAL_LOG` still turns them back on.
const DEFAULT_LOG: &str = "info,wasmtime_wasi=warn";

fn main() -> ExitCode {
    quiet_error_backtraces();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corral-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, ServerError> {
    let cfg = cli.load_config(&ProcessEnv)?;
    for warning in &cfg.env_warnings {
        tracing::warn!("{warning}");
    }
    let command = cli.action();
    if !matches!(command, Command::Serve) {
        return commands::run(&cfg, command).await;
    }
    let started = app(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Io {
            what: format!("binding {}", cfg.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "local_addr".into(),
        source,
    })?;
    let signal = commands::shutdown_signal()?;
    if let Some(token) = &started.new_admin_token {
        println!("admin token: {token}  (shown once; only its argon2 hash is stored)");
    }
    println!("corral-server listening on http://{addr}  (try: curl http://{addr}/apps/demo/)");
    let app = started.app.clone();
    let report = http::serve(listener, started.app.clone(), &cfg.http, async move {
        signal.await;
        app.start_draining();
    })
    .await;
    started.app.shutdown().await;
    tracing::info!(
        connections = report.connections,
        drained = report.drained,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Turns off backtrace capture in error values unless `RUST_LIB_BACKTRACE`
/// says otherwise; panics still print theirs under `RUST_BACKTRACE`.
///
/// With `RUST_BACKTRACE=1` in the environment, std captures a backtrace for
/// every error value that asks (`wasmtime::Error` does), and wasmtime builds
/// one such error whenever a component store is dropped, that is on every
/// component request: about 10% of the server's CPU under load went to
/// unwinding stacks nobody reads. Errors reach logs and clients as their
/// messages, never their backtraces.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in `main`, before the tokio runtime, the
        // epoch ticker or any other thread of ours exists; jemalloc read
        // its `MALLOC_CONF` when it initialised, before `main`. Nothing
        // reads the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
}
