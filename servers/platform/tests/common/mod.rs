//! What the end-to-end test binaries share: the test config, and a handle on
//! a real `corral-server` process on a loopback port chosen by the OS.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Test tiers: no rate limit (tests send bursts), small caps where a test needs them.
pub const CONFIG: &str = r#"
base_domain = "corral.test"
default_tier = "test"
usage_flush_interval = "1s"

[http]
drain_timeout = "20s"

# The tests deploy new apps whatever the shared test machine's disk and RAM look like.
[thresholds]
ram = { fire = 1.0, rearm = 1.0 }
disk = { fire = 1.0, rearm = 1.0 }

[tiers.test]
compute_shares = 4
memory_bytes = 268435456
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 2

[tiers.one]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1

[tiers.quota3]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 100000000
wall_clock = "5s"
burst = 0
requests_per_month = 3
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1

[tiers.spin]
compute_shares = 1
memory_bytes = 67108864
fuel_per_request = 20000000
wall_clock = "200ms"
burst = 0
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1
"#;

pub const BIN: &str = env!("CARGO_BIN_EXE_corral-server");

/// The environment variable naming another `corral-server` binary to test
/// (a release build, for figures); unset, the tests run [`BIN`]. Not
/// `CORRAL_*`: the server reads those as settings.
pub const BIN_ENV: &str = "E2E_SERVER_BIN";

/// The binary under test: `$E2E_SERVER_BIN` when set, else [`BIN`].
pub fn bin() -> PathBuf {
    std::env::var_os(BIN_ENV).map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub token: String,
    pub dir: PathBuf,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

impl Server {
    /// Starts the binary on `dir`; `token` is the admin token from an earlier start.
    pub fn start(dir: &Path, token: Option<&str>) -> Server {
        Self::start_with(dir, token, CONFIG)
    }

    /// [`start`](Self::start) with another config file.
    pub fn start_with(dir: &Path, token: Option<&str>, config_text: &str) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("corral.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut child = Command::new(bin())
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("serve")
            .env("CORRAL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut token = token.map(str::to_owned);
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(t) = line.strip_prefix("admin token: ") {
                token = Some(t.split_whitespace().next().unwrap().to_owned());
            }
            if let Some(rest) = line.strip_prefix("corral-server listening on http://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            token: token.expect("no admin token printed on first start"),
            dir: dir.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's memory now, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// CPU time the server has used so far (user + system), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> std::time::Duration {
        cpu_time(self.pid())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
        let resp = self.client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    /// `GET path`, with the body unread (for streams).
    pub async fn open(&self, path: &str) -> http::Response<hyper::body::Incoming> {
        let req = Request::get(self.url(path)).body(Full::default()).unwrap();
        self.client.request(req).await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Bytes) {
        let (s, _, b) = self
            .send(Request::get(self.url(path)).body(Full::default()).unwrap())
            .await;
        (s, b)
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        ct: &str,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", ct)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let (s, _, b) = self.send(req).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// `GET /api/apps`, as the list of app names.
    pub async fn app_names(&self) -> Vec<String> {
        let (status, apps) = self
            .admin(Method::GET, "/api/apps", b"", "text/plain")
            .await;
        assert_eq!(status, 200, "{apps}");
        apps.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn deploy_js(&self, name: &str, tier: &str, js: &str) -> (StatusCode, Value) {
        self.admin(
            Method::PUT,
            &format!("/api/apps/{name}?tier={tier}"),
            js.as_bytes(),
            "application/javascript",
        )
        .await
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGKILL (no drain, no last flush) and wait for the process to be gone.
    pub fn kill(mut self) -> (PathBuf, String) {
        self.signal("-KILL");
        let _ = self.child.wait();
        (self.dir.clone(), self.token.clone())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> (PathBuf, String) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
        (self.dir.clone(), self.token.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn js_text(text: &str) -> String {
    format!("export default {{ async fetch(req) {{ return new Response({text:?}); }} }};")
}

/// A process's resident memory, in bytes: `VmRSS` (now) and `VmHWM` (the peak).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
            kb * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }
}

/// Mebibytes, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// User plus system CPU time of a process, from fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks of 10 ms (`USER_HZ` is 100 on Linux).
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/<pid>/stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}
