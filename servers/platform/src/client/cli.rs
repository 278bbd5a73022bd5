//! The `corral` command line and what each command prints.
//!
//! ```
//! use clap::Parser;
//! use corral_server::client::cli::{Cli, Command};
//! let cli = Cli::try_parse_from(["corral", "--json", "logs", "hello", "--follow"]).unwrap();
//! assert!(cli.json);
//! assert!(matches!(cli.command, Command::Logs { follow: true, .. }));
//! let cli = Cli::try_parse_from(["corral", "init", "--wasm", "hello"]).unwrap();
//! assert!(matches!(cli.command, Command::Init { wasm: true, .. }));
//! assert!(Cli::try_parse_from(["corral", "init", "--js", "--wasm", "x"]).is_err());
//! let cli = Cli::try_parse_from(["corral", "init", "--component", "hello"]).unwrap();
//! assert!(matches!(cli.command, Command::Init { component: true, .. }));
//! assert!(Cli::try_parse_from(["corral", "init", "--wasm", "--component", "x"]).is_err());
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::api::{ApiClient, DEFAULT_URL, query_value};
use super::bundle::{AppKind, Source};
use super::template::{self, Template};
use super::{ClientError, dev};

/// The exit codes, as `--help` shows them (see [`super::Exit`]).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a local failure: a file, a bundle, the dev server
  2  bad command line
  3  configuration: CORRAL_URL invalid or https://, CORRAL_TOKEN unset
  4  the server could not be reached or did not answer in time
  5  the API answered 404 (no such app)
  6  the API refused the token (401, 403)
  7  the API answered another error (its code and message are printed)

Errors go to stderr as `corral: <code>: <message>`; with --json, as the API's
JSON error body (or {\"error\": <kind>, \"message\": ...}).";

/// corral: build, run and deploy apps on a Corral server.
///
/// Talks to the server's admin API over plain HTTP: CORRAL_URL (default
/// http://127.0.0.1:8080; https is not supported, so run it on the server's
/// host or through an SSH tunnel) with CORRAL_TOKEN (the admin token, or an
/// account token corral_acct_..., which reaches only its account's apps).
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// The server (plain http://host:port; https is not supported).
    #[arg(long, global = true, env = "CORRAL_URL", default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,

    /// Print JSON for scripts: the API's answer (one JSON object a line for
    /// `logs --follow`); errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A `corral` command.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Write a new app into the directory NAME: a JavaScript app with a test
    /// (the default), a WebAssembly app in WAT, or a wasi:http component.
    Init {
        /// A JavaScript app (app.js, app.test.mjs): the default.
        #[arg(long, conflicts_with_all = ["wasm", "component"])]
        js: bool,
        /// A WebAssembly (WAGI) app: app.wat, the app.wasm built from it, test.sh.
        #[arg(long, conflicts_with = "component")]
        wasm: bool,
        /// A wasi:http/proxy component: app.wasm prebuilt from src/hello.c
        /// (building C components needs clang, wasi-libc, wasm-tools and the
        /// proxy adapter: see its build.sh), wit/, test.sh.
        #[arg(long)]
        component: bool,
        /// The app's name (lowercase letters, digits, '-'), also its directory.
        name: String,
    },
    /// Serve the app locally on an embedded platform with its tier's limits,
    /// reloading it when its files change. Every request to the port goes to
    /// the app; its log lines are printed. No server or token needed.
    Dev {
        /// The app: a directory (app.js, app.wasm or app.wat, and static/),
        /// a .js or a .wasm file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The app's name (default: the directory's or file's name).
        #[arg(long)]
        name: Option<String>,
        /// The tier whose limits to run under (default: the config's default tier).
        #[arg(long)]
        tier: Option<String>,
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// A corral.toml whose tiers to use (default: the built-in tiers).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Build the app's bundle, deploy it (a new app or a new version) and print its URL.
    Deploy {
        /// The app: a directory (app.js, app.wasm or app.wat, and static/),
        /// a .js or a .wasm file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The app's name (default: the directory's or file's name).
        #[arg(long)]
        name: Option<String>,
        /// The tier (admin token only).
        #[arg(long, conflicts_with = "account")]
        tier: Option<String>,
        /// The account to deploy into (an account token deploys into its own).
        #[arg(long)]
        account: Option<String>,
    },
    /// List the apps the token can see.
    Apps,
    /// This month's usage of an app beside its tier's quotas.
    Usage {
        /// The app.
        name: String,
    },
    /// The app's recent log lines (console.log, stderr).
    Logs {
        /// The app.
        name: String,
        /// Keep printing new lines as they arrive (until Ctrl-C or the app is deleted).
        #[arg(long, short)]
        follow: bool,
    },
    /// Delete an app: its code, static files and data (its month's usage stays).
    Delete {
        /// The app.
        name: String,
    },
    /// Move an app to another tier (an app alone in its account; admin token only).
    Tier {
        /// The app.
        name: String,
        /// The tier.
        tier: String,
    },
}

/// What a finished command prints: `text` for people, `json` for `--json`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Outcome {
    /// The human form (printed as is; ends with a newline unless empty).
    pub text: String,
    /// The JSON form.
    pub json: Value,
}

impl Outcome {
    fn new(text: String, json: Value) -> Self {
        Self { text, json }
    }
}

fn app_name(name: &str) -> Result<corral::TenantId, ClientError> {
    corral::TenantId::new(name).map_err(|source| ClientError::InvalidName {
        name: name.to_owned(),
        source,
    })
}

fn name_of(source: &Source, given: Option<&str>) -> Result<corral::TenantId, ClientError> {
    match given {
        Some(n) => app_name(n),
        None => {
            let n = source.default_name().unwrap_or_default();
            app_name(&n)
        }
    }
}

/// Runs `cli`; `token` is `CORRAL_TOKEN`. Commands that stream (`dev`,
/// `logs --follow`) print as they go and return an empty [`Outcome`];
/// `shutdown` ends them (Ctrl-C in the binary).
pub async fn run(
    cli: Cli,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Outcome, ClientError> {
    let api = || ApiClient::new(&cli.url, token.clone());
    match &cli.command {
        Command::Init {
            wasm,
            component,
            name,
            ..
        } => {
            let template = match (wasm, component) {
                (true, _) => Template::Wasm,
                (_, true) => Template::Component,
                _ => Template::Js,
            };
            let dir = PathBuf::from(name);
            let files = template::init(&dir, name, template)?;
            // Directories once each (`src/`, `wit/`), in the order written.
            let mut shown: Vec<String> = Vec::new();
            for f in &files {
                let top = match f.split_once('/') {
                    Some((d, _)) => format!("{d}/"),
                    None => (*f).to_owned(),
                };
                if !shown.contains(&top) {
                    shown.push(top);
                }
            }
            let mut text = format!("created {name}/ ({})\n", shown.join(", "));
            match template {
                Template::Js => {
                    let _ = writeln!(text, "test it:   cd {name} && node --test");
                }
                _ => {
                    let _ = writeln!(text, "test it:   cd {name} && ./test.sh");
                }
            }
            if template == Template::Component {
                let _ = writeln!(
                    text,
                    "note:      app.wasm is prebuilt from src/hello.c; build.sh rebuilds it \
                     (clang, wasi-libc, wasm-tools, the proxy adapter)"
                );
            }
            let _ = writeln!(text, "run it:    cd {name} && corral dev");
            let _ = writeln!(text, "ship it:   cd {name} && corral deploy");
            Ok(Outcome::new(
                text,
                json!({"name": name, "dir": dir, "files": files}),
            ))
        }
        Command::Dev {
            path,
            name,
            tier,
            port,
            config,
        } => {
            let source = Source::detect(path)?;
            let name = name_of(&source, name.as_deref())?;
            let mut opts = dev::DevOptions::new(path.clone(), name.clone());
            opts.tier = tier.clone();
            opts.config = config.clone();
            opts.listen = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            let json = cli.json;
            dev::run(opts, shutdown, |addr, tier| {
                if json {
                    println!(
                        "{}",
                        json!({"name": name, "tier": tier, "url": format!("http://{addr}/")})
                    );
                } else {
                    println!(
                        "corral dev: serving {name} (tier {tier}) on http://{addr}/ ; \
                         watching {}, Ctrl-C stops",
                        path.display()
                    );
                }
            })
            .await?;
            Ok(Outcome::new(String::new(), Value::Null))
        }
        Command::Deploy {
            path,
            name,
            tier,
            account,
        } => {
            let api = api()?;
            let source = Source::detect(path)?;
            let name = name_of(&source, name.as_deref())?;
            let payload = source.build()?;
            let mut query = Vec::new();
            if let Some(t) = tier {
                query.push(format!("tier={}", query_value(t)));
            }
            if let Some(a) = account {
                query.push(format!("account={}", query_value(a)));
            }
            let mut target = format!("/api/apps/{name}");
            if !query.is_empty() {
                target = format!("{target}?{}", query.join("&"));
            }
            let ct = payload.content_type();
            let mut info = api
                .call(
                    Method::PUT,
                    &target,
                    Some((Bytes::from(payload.bytes().to_vec()), ct)),
                )
                .await?;
            let url = api.app_url(name.as_str());
            // The server tells a component from a module by its header.
            let kind = match (source.kind(), info["kind"].as_str()) {
                (_, Some("component")) => "WebAssembly component",
                (AppKind::Js, _) => "JavaScript",
                (AppKind::Wasm, _) => "WebAssembly",
            };
            let text = format!(
                "{} {name} ({kind}, {} bytes{}, tier {})\n{url}\n",
                if info["replaced"].as_bool() == Some(true) {
                    "updated"
                } else {
                    "deployed"
                },
                info["bytes"],
                match info["static_files"].as_u64() {
                    Some(1) => ", 1 static file".to_owned(),
                    Some(n) if n > 1 => format!(", {n} static files"),
                    _ => String::new(),
                },
                info["tier"].as_str().unwrap_or("?"),
            );
            if let Some(obj) = info.as_object_mut() {
                obj.insert("url".into(), Value::String(url));
            }
            Ok(Outcome::new(text, info))
        }
        Command::Apps => {
            let apps = api()?.call(Method::GET, "/api/apps", None).await?;
            Ok(Outcome::new(apps_table(&apps), apps))
        }
        Command::Usage { name } => {
            let name = app_name(name)?;
            let usage = api()?
                .call(Method::GET, &format!("/api/apps/{name}/usage"), None)
                .await?;
            Ok(Outcome::new(usage_text(name.as_str(), &usage), usage))
        }
        Command::Logs { name, follow } => {
            let name = app_name(name)?;
            let api = api()?;
            if *follow {
                follow_logs(&api, name.as_str(), cli.json, shutdown).await?;
                return Ok(Outcome::new(String::new(), Value::Null));
            }
            let logs = api
                .call(Method::GET, &format!("/api/apps/{name}/logs"), None)
                .await?;
            let mut text = String::new();
            for line in logs["lines"].as_array().into_iter().flatten() {
                let _ = writeln!(text, "{}", line.as_str().unwrap_or_default());
            }
            Ok(Outcome::new(text, logs))
        }
        Command::Delete { name } => {
            let name = app_name(name)?;
            let done = api()?
                .call(Method::DELETE, &format!("/api/apps/{name}"), None)
                .await?;
            Ok(Outcome::new(format!("deleted {name}\n"), done))
        }
        Command::Tier { name, tier } => {
            let name = app_name(name)?;
            let body = serde_json::to_vec(&json!({ "tier": tier })).unwrap_or_default();
            let info = api()?
                .call(
                    Method::PATCH,
                    &format!("/api/apps/{name}"),
                    Some((Bytes::from(body), "application/json")),
                )
                .await?;
            Ok(Outcome::new(
                format!(
                    "{name}: tier {}\n",
                    info["tier"].as_str().unwrap_or(tier.as_str())
                ),
                info,
            ))
        }
    }
}

/// `GET /api/apps` as a table.
fn apps_table(apps: &Value) -> String {
    let rows: Vec<[String; 5]> = apps
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            [
                s("name"),
                s("tier"),
                s("account"),
                s("kind"),
                a["bytes"].as_u64().map(bytes_text).unwrap_or_default(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no apps\n".into();
    }
    let head = ["NAME", "TIER", "ACCOUNT", "KIND", "SIZE"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&head))
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn bytes_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `GET /api/apps/{name}/usage` for people.
fn usage_text(name: &str, report: &Value) -> String {
    let u = &report["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let of = |used: String, quota: &Value, fmt: fn(u64) -> String| match quota.as_u64() {
        Some(q) => format!("{used} of {}", fmt(q)),
        None => format!("{used} (no quota)"),
    };
    let period = match (u["period"]["year"].as_i64(), u["period"]["month"].as_u64()) {
        (Some(y), Some(m)) => format!("{y:04}-{m:02}"),
        _ => "this month".into(),
    };
    let refused: Vec<String> = u["refused"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    let mut out = format!(
        "{name} (tier {}), {period}\n",
        report["tier"].as_str().unwrap_or("?")
    );
    let rows = [
        (
            "requests",
            of(n("requests").to_string(), &report["requests_quota"], |q| {
                q.to_string()
            }),
        ),
        (
            "refused",
            if refused.is_empty() {
                "0".into()
            } else {
                refused.join(", ")
            },
        ),
        ("errors", n("errors").to_string()),
        ("exec time", format!("{} ms", n("exec_time_ms"))),
        ("fuel", n("fuel").to_string()),
        ("cpu time", format!("{} µs", n("cpu_us"))),
        ("peak memory", bytes_text(n("peak_memory"))),
        (
            "storage",
            of(
                bytes_text(n("storage_bytes")),
                &report["storage_quota"],
                bytes_text,
            ),
        ),
        ("bytes in", bytes_text(n("bytes_in"))),
        ("bytes out", bytes_text(n("bytes_out"))),
        ("cold starts", n("cold_starts").to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<12} {v}");
    }
    out
}

/// `GET /api/apps/{name}/logs?follow=1`: prints each `data:` line of the
/// event stream as it arrives, until the stream ends or `shutdown`.
async fn follow_logs(
    api: &ApiClient,
    name: &str,
    json: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ClientError> {
    use http_body_util::BodyExt;
    use std::io::Write as _;
    let path = format!("/api/apps/{name}/logs?follow=1");
    let resp = api
        .open(Method::GET, &path, None, Some(super::api::REQUEST_TIMEOUT))
        .await?;
    let mut body = resp.into_body();
    let mut pending = Vec::<u8>::new();
    let mut event: Option<String> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let frame = tokio::select! {
            () = &mut shutdown => return Ok(()),
            f = body.frame() => f,
        };
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|source| ClientError::Read {
            url: format!("{}{path}", api.base()),
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut out = std::io::stdout().lock();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            if line.is_empty() {
                event = None;
            } else if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_owned());
            } else if let Some(text) = line.strip_prefix("data:") {
                match event.as_deref() {
                    // The server says the app is gone: the stream is over.
                    Some("end") => {
                        let _ = out.flush();
                        return Ok(());
                    }
                    Some(_) => {}
                    None => {
                        let text = text.strip_prefix(' ').unwrap_or(text);
                        let text = if json {
                            json!({ "line": text }).to_string()
                        } else {
                            text.to_owned()
                        };
                        let _ = writeln!(out, "{text}");
                    }
                }
            }
        }
        let _ = out.flush();
    }
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
    fn help_documents_env_https_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "CORRAL_URL",
            "CORRAL_TOKEN",
            "https is not supported",
            "Exit codes:",
            "7  the API answered another error",
        ] {
            assert!(help.contains(needle), "{needle} missing from --help");
        }
        for sub in [
            "init", "dev", "deploy", "apps", "usage", "logs", "delete", "tier",
        ] {
            assert!(help.contains(sub), "{sub} missing from --help");
        }
    }

    #[test]
    fn usage_and_apps_render() {
        let report = json!({
            "usage": {"tenant": "hello", "period": {"year": 2026, "month": 3}, "requests": 2,
                      "refused": {"rate_limited": 4}, "bytes_out": 2048},
            "tier": "free", "requests_quota": 100, "storage_quota": null
        });
        let text = usage_text("hello", &report);
        assert!(text.starts_with("hello (tier free), 2026-03\n"), "{text}");
        assert!(text.contains("  requests     2 of 100\n"), "{text}");
        assert!(text.contains("  refused      rate_limited 4\n"), "{text}");
        assert!(text.contains("  bytes out    2.0 KiB\n"), "{text}");
        assert!(text.contains("  storage      0 B (no quota)\n"), "{text}");
        let apps = json!([{"name": "hello", "tier": "free", "account": "hello", "kind": "js", "bytes": 12}]);
        assert_eq!(
            apps_table(&apps),
            "NAME   TIER  ACCOUNT  KIND  SIZE\nhello  free  hello    js    12 B\n"
        );
        assert_eq!(apps_table(&json!([])), "no apps\n");
    }
}
