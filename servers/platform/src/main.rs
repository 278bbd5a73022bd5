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
    raise_fd_limit();
    reserve_fd_table();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One worker more than cores: see `corral::worker_threads`.
    let runtime = corral::size_workers(&mut tokio::runtime::Builder::new_multi_thread())
        .enable_all()
        .build()
        .expect("tokio runtime");
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

/// Descriptors the file table is sized for at start ([`reserve_fd_table`]):
/// 16,384 slots, 128 KiB of kernel memory (not counted in RSS).
const FD_TABLE_SLOTS: i32 = 16 << 10;

/// Grows the process's file-descriptor table once, while `main` is still
/// the only thread.
///
/// Every warm WebAssembly app holds a descriptor (the memfd of its
/// copy-on-write memory image), as does every connection, so the table
/// grows while apps wake. Each time the highest descriptor passes a power of
/// two, Linux copies the table and, in a process with more than one thread,
/// waits for an RCU grace period (`synchronize_rcu` in `expand_fdtable`):
/// milliseconds, during which every other thread opening a file waits as
/// well. Waking 500 WebAssembly apps crossed 128, 256 and 512 and stalled
/// both runtime workers each time, in the middle of reading artifacts: the
/// cold starts' p99 (BENCHMARKS.md, "wagi30"). The table never shrinks, so
/// growing it now, single-threaded, costs no grace period, and never again
/// below this size. Under a lower `RLIMIT_NOFILE` it grows as far as the
/// limit lets it; nothing else changes.
fn reserve_fd_table() {
    let mut slots = FD_TABLE_SLOTS;
    while slots >= 64 {
        // The lowest free descriptor at or above `slots - 1`: the table grows
        // to hold it, and keeps its size once the duplicate is closed (dropped).
        if rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), slots - 1).is_ok() {
            return;
        }
        // EINVAL: past the soft limit. Try a smaller table.
        slots /= 2;
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as servers that hold
/// many descriptors do (nginx's `worker_rlimit_nofile`, systemd's default
/// for services is a soft 1,024 under a hard 524,288). Each warm WebAssembly
/// app holds a descriptor and each connection one: under a soft 1,024 the
/// node would fail near 1,000 warm apps with EMFILE. The hard limit is the
/// operator's to set (`LimitNOFILE=` in the unit); this only stops a low
/// default soft limit from binding first.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            eprintln!("corral-server: raising RLIMIT_NOFILE to its hard limit failed: {e}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` of `/proc/self/status`: the slots of the descriptor table.
    fn fd_table_slots() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("an FDSize line")
    }

    #[test]
    fn the_soft_fd_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        raise_fd_limit();
        let lim = getrlimit(Resource::Nofile);
        assert_eq!(lim.current, lim.maximum);
    }

    #[test]
    fn the_fd_table_is_grown_once_to_its_reserve() {
        reserve_fd_table();
        let slots = fd_table_slots();
        // As large as asked, unless the soft limit forbids a descriptor that
        // high (then as large as it allows, and never below 64).
        let limited =
            rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), FD_TABLE_SLOTS - 1).is_err();
        assert!(
            slots >= FD_TABLE_SLOTS as usize || (limited && slots >= 64),
            "FDSize {slots}"
        );
        // Closing the duplicate left no descriptor open up there.
        let next = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 0).unwrap();
        use std::os::fd::AsRawFd;
        assert!(next.as_raw_fd() < 1024, "{}", next.as_raw_fd());
    }
}
