//! The subcommands other than `serve`: each builds the platform from the same
//! config and calls one of its methods.

use std::io::Write;
use std::process::ExitCode;

use corral::TenantId;
use corral::platform::ImportOptions;

use crate::app::{ServerError, platform};
use crate::cli::{Command, TenantCommand};
use crate::config::ServerConfig;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

fn print_json(v: &impl serde::Serialize) -> Result<(), ServerError> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    writeln!(std::io::stdout(), "{text}").map_err(io("writing to stdout"))
}

/// Runs `command` (anything but `serve`) and returns the process exit code.
/// Must be called inside a tokio runtime.
pub async fn run(cfg: &ServerConfig, command: Command) -> Result<ExitCode, ServerError> {
    match command {
        Command::Config => {
            print!("{}", cfg.to_toml());
            return Ok(ExitCode::SUCCESS);
        }
        Command::AdminToken => {
            let token = crate::auth::generate_token();
            let hash = crate::auth::AdminAuth::hash_token(&token);
            print_json(&serde_json::json!({"token": token, "token_hash": hash.phc()}))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Tenant {
            command: TenantCommand::Move { name, to },
        } => return move_app(cfg, &name, &to).await,
        Command::Serve => unreachable!("serve is handled by main"),
        _ => {}
    }
    let p = platform(cfg)?;
    let code = match command {
        Command::Probe => {
            print_json(&p.host())?;
            ExitCode::SUCCESS
        }
        Command::Scrub => {
            let s = p.scrub()?;
            print_json(&s)?;
            if s.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Tenant {
            command: TenantCommand::Export { name },
        } => {
            let id =
                TenantId::new(&name).map_err(|source| ServerError::InvalidName { name, source })?;
            let bytes = p.export_tenant(&id)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(io("writing the archive to stdout"))?;
            ExitCode::SUCCESS
        }
        Command::Tenant {
            command:
                TenantCommand::Import {
                    file,
                    keep_tier,
                    keep_usage,
                },
        } => {
            let bytes = std::fs::read(&file).map_err(io(format!("reading {}", file.display())))?;
            let options = ImportOptions::new()
                .keep_tier(keep_tier)
                .keep_usage(keep_usage);
            let id = p.import_tenant(bytes, options).await?;
            let app = p.app(&id)?;
            print_json(&serde_json::json!({"imported": id, "app": app}))?;
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    };
    p.shutdown().await;
    Ok(code)
}

/// `tenant move`: asks the server running on this node, on its `listen`
/// address (loopback when it listens on every address), to move the app.
async fn move_app(cfg: &ServerConfig, name: &str, to: &str) -> Result<ExitCode, ServerError> {
    let mut addr = cfg.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token = std::env::var("CORRAL_TOKEN").ok();
    let client_error = |e| ServerError::Client(Box::new(e));
    let client =
        crate::client::ApiClient::new(&format!("http://{addr}"), token).map_err(client_error)?;
    let id = TenantId::new(name).map_err(|source| ServerError::InvalidName {
        name: name.to_owned(),
        source,
    })?;
    let body = serde_json::json!({ "to": to }).to_string();
    let moved = client
        .call(
            http::Method::POST,
            &format!("/api/apps/{id}/move"),
            Some((body.into(), "application/json")),
        )
        .await
        .map_err(client_error)?;
    print_json(&moved)?;
    Ok(ExitCode::SUCCESS)
}

/// Installs the SIGTERM and SIGINT (Ctrl-C) handlers now and returns a
/// future that resolves on the first of them.
///
/// The handlers are installed before the future is polled: call this before
/// announcing the listening address, so that a supervisor which sends SIGTERM
/// as soon as it sees the server up gets a drain, not the default action
/// (immediate death, exit status "signal 15").
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
