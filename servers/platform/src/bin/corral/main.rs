//! `corral`: the client CLI for app developers; see `corral --help` and
//! [`corral_server::client`].
use std::process::ExitCode;

use clap::Parser;
use corral_server::client::{Exit, cli};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let json = args.json;
    let token = std::env::var("CORRAL_TOKEN").ok();
    let result = tokio::runtime::Runtime::new()
        .map_err(|source| corral_server::client::ClientError::Io {
            path: "tokio runtime".into(),
            source,
        })
        .and_then(|rt| rt.block_on(cli::run(args, token, ctrl_c())));
    match result {
        Ok(out) if json => {
            if !out.json.is_null() {
                println!("{}", out.json);
            }
            Exit::Ok.into()
        }
        Ok(out) => {
            print!("{}", out.text);
            Exit::Ok.into()
        }
        Err(e) => {
            if json {
                eprintln!("{}", e.to_json());
            } else {
                eprintln!("corral: {e}");
            }
            e.exit().into()
        }
    }
}

/// SIGINT or SIGTERM.
async fn ctrl_c() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
