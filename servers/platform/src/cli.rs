//! The command line.
//!
//! ```
//! use clap::Parser;
//! use corral_server::cli::{Cli, Command, TenantCommand};
//!
//! let cli = Cli::try_parse_from(["corral-server"]).unwrap();
//! assert!(matches!(cli.action(), Command::Serve));
//! let cli = Cli::try_parse_from(["corral-server", "--listen", "127.0.0.1:0", "tenant", "export", "demo"]).unwrap();
//! assert!(matches!(cli.action(), Command::Tenant { command: TenantCommand::Export { .. } }));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, EnvSource, ServerConfig};

/// corral-server: host many tenant apps (WebAssembly, JavaScript) on one
/// machine, each inside hard limits, metered per tenant.
///
/// With no arguments it serves on 127.0.0.1:8080 with data in ./corral-data,
/// deploys a demo app at /apps/demo/ on first start, and prints a new admin
/// token once. Settings come from the embedded defaults, then --config, then
/// CORRAL_* environment variables (CORRAL_LISTEN, CORRAL_HTTP__DRAIN_TIMEOUT, …),
/// then the flags below.
#[derive(Debug, Parser)]
#[command(name = "corral-server", version, about, long_about)]
pub struct Cli {
    /// Config file (TOML); see deploy/corral.toml for every setting.
    #[arg(short, long, global = true, env = "CORRAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on (overrides `listen`). Port 0 picks a free port;
    /// the address in use is printed on start.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Data directory: database, artifacts, admin token hash (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Serve tenants at <app>.<DOMAIN> (overrides `base_domain`).
    #[arg(long, global = true, value_name = "DOMAIN")]
    pub base_domain: Option<String>,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A subcommand.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Serve tenant apps and the admin API (the default).
    Serve,
    /// Probe the host (RAM, CPUs, disk) and print the derived budget as JSON.
    Probe,
    /// Verify the checksum of every stored blob; exits 1 if any is corrupt.
    Scrub,
    /// Export or import one tenant (bundle, KV and usage) as a CRC-verified archive.
    Tenant {
        /// The tenant operation.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config,
    /// Make a new admin token and print it with its argon2 hash as JSON
    /// (`{"token": …, "token_hash": …}`). Nodes that share one store share
    /// one token: give each the hash as `[admin] token_hash` (or
    /// `CORRAL_ADMIN__TOKEN_HASH`) and keep the token for clients.
    AdminToken,
}

/// `corral-server tenant …`
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum TenantCommand {
    /// Write the tenant's archive to standard output: `tenant export NAME > NAME.corral`.
    Export {
        /// The app name.
        name: String,
    },
    /// Import an archive written by `tenant export`. Everything is verified
    /// before anything is written; a corrupt archive imports nothing. The app
    /// lands on the default tier with fresh usage unless the flags keep the
    /// archive's.
    Import {
        /// The archive file.
        file: PathBuf,
        /// Keep the archive's tier (it must be one of this node's tiers,
        /// else the import fails with unknown_tier).
        #[arg(long)]
        keep_tier: bool,
        /// Keep the archive's usage months.
        #[arg(long)]
        keep_usage: bool,
    },
    /// Move an app to a peer node (`[nodes.peers]`) while it keeps answering,
    /// through the server running on this node (`POST /api/apps/NAME/move`,
    /// with the admin token in CORRAL_TOKEN). Prints the move as JSON.
    Move {
        /// The app name.
        name: String,
        /// The peer node, by its name in `[nodes.peers]`.
        #[arg(long)]
        to: String,
    },
}

impl Cli {
    /// The subcommand, `serve` when none was given.
    pub fn action(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }

    /// Loads the config file and environment overrides from `env`, then applies the flags.
    pub fn load_config(&self, env: &dyn EnvSource) -> Result<ServerConfig, ConfigError> {
        let mut cfg = ServerConfig::load_file(self.config.as_deref(), env)?;
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(d) = &self.base_domain {
            cfg.base_domain = Some(d.clone());
        }
        Ok(cfg)
    }
}

/// An empty environment, for callers that want defaults only.
pub fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_every_option() {
        let help = Cli::command().render_long_help().to_string();
        for opt in [
            "--config",
            "--listen",
            "--data-dir",
            "--base-domain",
            "CORRAL_CONFIG",
        ] {
            assert!(help.contains(opt), "{opt} missing from --help");
        }
        for sub in ["serve", "probe", "scrub", "tenant", "config"] {
            assert!(help.contains(sub), "{sub} missing from --help");
        }
    }

    #[test]
    fn flags_override_config() {
        let cli = Cli::try_parse_from([
            "corral-server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
            "--base-domain",
            "example.com",
            "serve",
        ])
        .unwrap();
        let env = BTreeMap::from([("CORRAL_LISTEN".to_string(), "0.0.0.0:1".to_string())]);
        let cfg = cli.load_config(&env).unwrap();
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.base_domain.as_deref(), Some("example.com"));
        let import =
            Cli::try_parse_from(["corral-server", "tenant", "import", "a.corral"]).unwrap();
        assert!(
            matches!(import.action(), Command::Tenant { command: TenantCommand::Import { file, keep_tier: false, keep_usage: false } } if file == std::path::Path::new("a.corral"))
        );
        let keep = Cli::try_parse_from([
            "corral-server",
            "tenant",
            "import",
            "a.corral",
            "--keep-tier",
            "--keep-usage",
        ])
        .unwrap();
        assert!(matches!(
            keep.action(),
            Command::Tenant {
                command: TenantCommand::Import {
                    keep_tier: true,
                    keep_usage: true,
                    ..
                }
            }
        ));
        assert!(Cli::try_parse_from(["corral-server", "tenant", "export"]).is_err());
    }
}
