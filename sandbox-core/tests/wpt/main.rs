//! Web-platform-tests conformance of the JavaScript tenants' web APIs.
//!
//! Each WPT file in `manifest.toml` runs in a fresh Corral JS tenant under
//! the upstream `testharness.js`: one module holds the harness, the file's
//! `META: script=` helpers and the test, wrapped by `runner.js`, and one
//! request to it answers with every subtest's result. The test prints
//! passed/total per area and fails when an area passes fewer subtests than
//! `baseline.toml` records (raise the baseline as conformance improves;
//! never lower it). Failures listed in `expectations.toml`, each with its
//! reason, are reported as expected.
//!
//! The WPT files are vendored under `upstream/` (see its README.md for
//! where each came from), so the test runs by default:
//!
//! ```text
//! cargo test -p corral --test wpt -- --nocapture
//! ```
//!
//! `CORRAL_WPT_DIR=/path/to/wpt` reads them from a WPT checkout instead.
//! `CORRAL_WPT_ONLY=substring` runs the matching files only (no baseline
//! check); `CORRAL_WPT_DUMP=dir` also writes each generated module there, which
//! is what `scripts/wpt-workerd` runs under workerd for the comparison column;
//! `CORRAL_WPT_REPORT=file` writes every subtest's result as JSON.
#![cfg(feature = "js")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::{Backend, InvokeContext, Limits, QuickJsBackend, TenantLog};
use serde::Deserialize;

/// How long one file may take before its unfinished subtests count as
/// timed out. WPT's own default is 10 s; these files finish in milliseconds
/// unless a test waits for something Corral never does.
const FILE_TIMEOUT_MS: u64 = 3_000;

const RUNNER_JS: &str = include_str!("runner.js");

#[derive(Debug, Deserialize)]
struct Manifest {
    commit: String,
    area: BTreeMap<String, Area>,
}

#[derive(Debug, Deserialize)]
struct Area {
    tests: Vec<String>,
    #[serde(default)]
    support: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Expectations {
    #[serde(default)]
    skip: Vec<Skip>,
    #[serde(default)]
    fail: Vec<Fail>,
}

#[derive(Debug, Deserialize)]
struct Skip {
    file: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct Fail {
    file: String,
    test: String,
    reason: String,
}

impl Fail {
    /// `*` is every subtest of the file, `prefix*` every subtest whose name
    /// starts with `prefix`, anything else one subtest by its exact name.
    fn matches(&self, name: &str) -> bool {
        match self.test.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.test == name,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Baseline {
    #[serde(default)]
    passed: BTreeMap<String, u64>,
}

/// What runner.js answers for one file.
#[derive(Debug, Deserialize)]
struct FileResult {
    harness: Harness,
    results: Vec<Subtest>,
}

#[derive(Debug, Deserialize)]
struct Harness {
    status: String,
    message: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize, Clone)]
struct Subtest {
    name: String,
    status: String,
    message: Option<String>,
}

fn here(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wpt")
        .join(file)
}

fn read_toml<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let text = std::fs::read_to_string(here(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The `META: script=` helpers of a test file, as paths from the WPT root.
fn meta_scripts(test: &str, source: &str) -> Vec<String> {
    let dir = Path::new(test).parent().unwrap_or(Path::new(""));
    source
        .lines()
        .take_while(|l| l.starts_with("//") || l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("// META:"))
        .filter_map(|l| l.trim().strip_prefix("script="))
        .map(|s| match s.strip_prefix('/') {
            Some(abs) => abs.to_owned(),
            None => normalize(&dir.join(s)),
        })
        .collect()
}

/// `a/b/../c` as `a/c` (helper paths are relative to the test's folder).
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.to_str().unwrap_or_default().split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The module that runs `test` (see runner.js): the harness, the helpers
/// and the test in one function, then the runner.
fn build_module(
    root: &Path,
    test: &str,
    support: &BTreeMap<String, String>,
) -> Result<String, String> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| format!("{p}: {e}"));
    let harness = read("resources/testharness.js")?;
    let source = read(test)?;
    let wpt = serde_json::json!({
        "file": test,
        "timeoutMs": FILE_TIMEOUT_MS,
        "files": support,
    });
    let mut module = format!("const WPT = {wpt};\nfunction wptRun(hook) {{\n{harness}\n;hook();\n");
    for script in meta_scripts(test, &source) {
        let text = read(&script)?;
        let _ = writeln!(module, "// {script}\n{text}\n;");
    }
    let _ = writeln!(module, "// {test}\n{source}\n}}\n{RUNNER_JS}");
    Ok(module)
}

/// Runs one module in a fresh tenant. An error (the module does not
/// deploy, the request fails) is the harness's error.
async fn run_module(module: &str) -> FileResult {
    let limits = Limits::builder()
        .wall_clock(Duration::from_millis(FILE_TIMEOUT_MS * 3))
        .memory_bytes(256 << 20)
        .max_output_bytes(64 << 20)
        .build();
    let error = |message: String| FileResult {
        harness: Harness {
            status: "ERROR".into(),
            message: Some(message),
        },
        results: Vec::new(),
    };
    let backend = QuickJsBackend::new();
    let program = match backend
        .precompile(module.as_bytes(), &limits)
        .and_then(|a| backend.load(&a, &limits))
    {
        Ok(p) => p,
        Err(e) => return error(format!("deploying: {e}")),
    };
    let log = Arc::new(TenantLog::new(limits.max_log_bytes));
    let cx = InvokeContext::new("wpt".parse().unwrap(), Arc::new(limits), log);
    let request = http::Request::get("/").body(Bytes::new()).unwrap();
    let response = match program.invoke(cx, request).await {
        Ok(r) => r,
        Err(e) => return error(format!("running: {e}")),
    };
    let body = match corral::Body::collect_response(response).await {
        Ok(r) => r.into_body(),
        Err(e) => return error(format!("reading the results: {e}")),
    };
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        let head =
            String::from_utf8_lossy(&body[body.len().min(1000)..body.len().min(1300)]).into_owned();
        error(format!("the results: {e}: {head}"))
    })
}

/// One file's subtests as counted: a harness error or timeout is one more
/// failing subtest, so a file that cannot even load counts against its area.
fn counted(result: &FileResult) -> Vec<Subtest> {
    let mut subtests = result.results.clone();
    if result.harness.status != "OK" {
        subtests.push(Subtest {
            name: "(harness)".into(),
            status: result.harness.status.clone(),
            message: result.harness.message.clone(),
        });
    }
    subtests
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: u64,
    total: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wpt_conformance() {
    let root = std::env::var_os("CORRAL_WPT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| here("upstream"));
    let only = std::env::var("CORRAL_WPT_ONLY").ok();
    let dump = std::env::var_os("CORRAL_WPT_DUMP").map(PathBuf::from);
    let manifest: Manifest = read_toml("manifest.toml");
    let expectations: Expectations = read_toml("expectations.toml");
    let baseline: Baseline = read_toml("baseline.toml");
    println!(
        "WPT at upstream {}, from {}",
        manifest.commit,
        root.display()
    );

    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut report = serde_json::Map::new();
    let mut unexpected = Vec::new();
    let mut expected_pass = Vec::new();
    for (name, area) in &manifest.area {
        let tally = tallies.entry(name.clone()).or_default();
        let mut support = BTreeMap::new();
        for file in &area.support {
            let text = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("support file {file}: {e}"));
            support.insert(file.clone(), text);
        }
        for test in &area.tests {
            if only.as_deref().is_some_and(|o| !test.contains(o)) {
                continue;
            }
            if let Some(skip) = expectations.skip.iter().find(|s| &s.file == test) {
                println!("  skip {test}: {}", skip.reason);
                continue;
            }
            let module = build_module(&root, test, &support)
                .unwrap_or_else(|e| panic!("building the module for {test}: {e}"));
            if let Some(dir) = &dump {
                let out = dir.join(name).join(test.replace('/', "__"));
                std::fs::create_dir_all(out.parent().unwrap()).unwrap();
                std::fs::write(out, &module).unwrap();
            }
            let result = run_module(&module).await;
            let subtests = counted(&result);
            let passed = subtests.iter().filter(|s| s.status == "PASS").count() as u64;
            println!("  {test}: {passed}/{}", subtests.len());
            tally.passed += passed;
            tally.total += subtests.len() as u64;
            for s in &subtests {
                let listed = expectations
                    .fail
                    .iter()
                    .find(|f| &f.file == test && f.matches(&s.name));
                match (s.status == "PASS", listed) {
                    (false, None) => unexpected.push(format!(
                        "{test} | {} | {}: {}",
                        s.name,
                        s.status,
                        s.message.as_deref().unwrap_or("")
                    )),
                    (true, Some(f)) if !f.test.ends_with('*') => {
                        expected_pass.push(format!("{test} | {} (listed: {})", s.name, f.reason));
                    }
                    _ => {}
                }
            }
            report.insert(test.clone(), serde_json::to_value(&subtests).unwrap());
        }
    }

    if let Some(path) = std::env::var_os("CORRAL_WPT_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    if !unexpected.is_empty() {
        println!("failing, not in expectations.toml:");
        for line in &unexpected {
            println!("  {line}");
        }
    }
    if !expected_pass.is_empty() {
        println!("passing, but listed as failing in expectations.toml:");
        for line in &expected_pass {
            println!("  {line}");
        }
    }
    let mut all = Tally::default();
    let mut dropped = Vec::new();
    println!("area: passed/total (baseline)");
    for (name, t) in &tallies {
        let floor = baseline.passed.get(name).copied().unwrap_or(0);
        println!("wpt {name}: {}/{} ({floor})", t.passed, t.total);
        all.passed += t.passed;
        all.total += t.total;
        if t.passed < floor {
            dropped.push(format!("{name}: {} < {floor}", t.passed));
        }
    }
    println!("wpt overall: {}/{}", all.passed, all.total);
    if only.is_none() {
        assert!(
            dropped.is_empty(),
            "fewer subtests pass than baseline.toml records: {dropped:?}"
        );
    }
}
