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
