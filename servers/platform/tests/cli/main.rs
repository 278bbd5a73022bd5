//! End-to-end tests of the `corral` client CLI: the real `corral` binary
//! against a real `corral-server` on a loopback port, and `corral dev`
//! serving on its own port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;
use common::Server;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// One finished `corral` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `corral ARGS` in `cwd` against `url` with `token` (no token: unset).
fn corral_at(url: &str, cwd: &Path, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(CORRAL);
    cmd.args(args).current_dir(cwd).env("CORRAL_URL", url);
    match token {
        Some(t) => cmd.env("CORRAL_TOKEN", t),
        None => cmd.env_remove("CORRAL_TOKEN"),
    };
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `corral ARGS` against `s` with its admin token; asserts success.
fn corral_ok(s: &Server, cwd: &Path, args: &[&str]) -> String {
    let r = corral_at(&s.url(""), cwd, Some(&s.token), args);
    assert_eq!(r.code, 0, "corral {args:?}: {r:?}");
    r.stdout
}

async fn get(url: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .request(http::Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Lines of a child's stdout and stderr, read on threads.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(format!("stderr: {line}"));
            }
        });
    }
    rx
}

/// Waits up to `within` for a line containing `needle`; returns it.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {needle:?} within {within:?} ({e}); saw {seen:#?}"),
        }
    }
}

/// The `fuel` row of `corral usage`'s text.
fn fuel_of(usage: &str) -> u64 {
    let row = usage
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("fuel "))
        .unwrap_or_else(|| panic!("no fuel row: {usage}"));
    row.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{row:?}: {e}"))
}

/// The `cpu time` row of `corral usage`'s text, in microseconds.
fn cpu_us_of(usage: &str) -> u64 {
    let row = usage
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("cpu time "))
        .unwrap_or_else(|| panic!("no cpu time row: {usage}"));
    let us = row
        .trim()
        .strip_suffix(" µs")
        .unwrap_or_else(|| panic!("{row:?}"));
    us.parse().unwrap_or_else(|e| panic!("{row:?}: {e}"))
}

/// The whole walk of the issue for one template: init, deploy, request the
/// printed URL, see the log line, the request in usage, re-tier, delete.
/// `requests_for_fuel` requests in all must show nonzero fuel in usage.
async fn walk(
    template: &str,
    name: &str,
    query: &str,
    answer: &str,
    log_line: &str,
    requests_for_fuel: u64,
) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("server"), None);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let out = corral_ok(&s, &work, &["init", template, name]);
    assert!(out.starts_with(&format!("created {name}/ (")), "{out}");
    let dir = work.join(name);

    let out = corral_ok(&s, &dir, &["deploy"]);
    let url = s.url(&format!("/apps/{name}/"));
    assert_eq!(out.lines().last(), Some(url.as_str()), "{out}");
    assert!(out.starts_with(&format!("deployed {name} (")), "{out}");
    assert!(out.contains("tier test"), "{out}");

    let (status, body) = get(&format!("{url}{query}")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, answer));

    let logs = corral_ok(&s, &dir, &["logs", name]);
    assert_eq!(logs.lines().collect::<Vec<_>>(), [log_line], "{logs}");

    let usage = corral_ok(&s, &dir, &["usage", name]);
    assert!(
        usage.starts_with(&format!("{name} (tier test), ")),
        "{usage}"
    );
    assert!(usage.contains("\n  requests     1 (no quota)\n"), "{usage}");
    // The one request's work shows at once as CPU time, for either engine.
    assert!(
        cpu_us_of(&usage) > 0,
        "no CPU time after one request: {usage}"
    );
    let usage: Value =
        serde_json::from_str(&corral_ok(&s, &dir, &["--json", "usage", name])).unwrap();
    assert_eq!(usage["usage"]["requests"], 1, "{usage}");
    assert!(usage["usage"]["cpu_us"].as_u64() > Some(0), "{usage}");
    // Fuel shows in usage once the requests have burned one unit of it: at
    // once for WebAssembly (instructions); for JavaScript, whose unit is an
    // interrupt tick of 10,000 QuickJS polls, after about 20 of these
    // greetings (one is ~500 polls; the count is deterministic).
    for _ in 1..requests_for_fuel {
        assert_eq!(get(&format!("{url}{query}")).await.0, StatusCode::OK);
    }
    let usage = corral_ok(&s, &dir, &["usage", name]);
    assert!(
        usage.contains(&format!(
            "\n  requests     {requests_for_fuel} (no quota)\n"
        )),
        "{usage}"
    );
    assert!(
        fuel_of(&usage) > 0,
        "no fuel after {requests_for_fuel}: {usage}"
    );

    let apps = corral_ok(&s, &dir, &["apps"]);
    assert!(apps.starts_with("NAME"), "{apps}");
    assert!(
        apps.lines()
            .any(|l| l.split_whitespace().take(2).eq([name, "test"])),
        "{apps}"
    );

    // A second deploy is an update.
    let out = corral_ok(&s, &dir, &["deploy"]);
    assert!(out.starts_with(&format!("updated {name} (")), "{out}");

    assert_eq!(
        corral_ok(&s, &dir, &["tier", name, "one"]),
        format!("{name}: tier one\n")
    );
    let apps: Value = serde_json::from_str(&corral_ok(&s, &dir, &["--json", "apps"])).unwrap();
    let app = apps.as_array().unwrap().iter().find(|a| a["name"] == name);
    assert_eq!(app.map(|a| &a["tier"]), Some(&Value::from("one")), "{apps}");

    assert_eq!(
        corral_ok(&s, &dir, &["delete", name]),
        format!("deleted {name}\n")
    );
    assert_eq!(get(&url).await.0, StatusCode::NOT_FOUND);
    let r = corral_at(&s.url(""), &dir, Some(&s.token), &["usage", name]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.starts_with("corral: not_found: "), "{r:?}");
    assert!(r.stderr.contains("(HTTP 404)"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_init_deploy_request_logs_usage_delete() {
    walk(
        "--js",
        "hello",
        "?name=Ada",
        "Hello, Ada, from hello!\n",
        "hello: greeted Ada",
        40,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_init_deploy_request_logs_usage_delete() {
    walk(
        "--wasm",
        "hello-wasm",
        "",
        "Hello from hello-wasm!\n",
        "hello-wasm: handled a request",
        1,
    )
    .await;
}

/// The JavaScript template's own test passes under Node's runner (skipped,
/// saying so, where no `node` is installed).
#[test]
fn js_template_test_passes_under_node() {
    let Ok(version) = Command::new("node").arg("--version").output() else {
        eprintln!("SKIPPED: no node on PATH");
        return;
    };
    assert!(version.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let r = corral_at("http://127.0.0.1:1", tmp.path(), None, &["init", "greeter"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = Command::new("node")
        .arg("--test")
        .current_dir(tmp.path().join("greeter"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# pass 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_api_code_and_exit_codes_are_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("server"), None);
    let cwd = tmp.path();
    let url = s.url("");

    // 3: no token; https.
    let r = corral_at(&url, cwd, None, &["apps"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("CORRAL_TOKEN is not set"), "{r:?}");
    let r = corral_at("https://corral.example.com", cwd, Some("t"), &["apps"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("https is not supported"), "{r:?}");
    let r = corral_at("https://x", cwd, Some("t"), &["--json", "apps"]);
    let e: Value = serde_json::from_str(&r.stderr).unwrap();
    assert_eq!(e["error"], "https_unsupported");

    // 4: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = corral_at(&dead, cwd, Some("t"), &["apps"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.starts_with("corral: cannot reach "), "{r:?}");

    // 6: a wrong token.
    let r = corral_at(&url, cwd, Some("corral_wrong"), &["apps"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("(HTTP 401)"), "{r:?}");

    // 5, with --json: the API's own error body on stderr, nothing on stdout.
    let r = corral_at(&url, cwd, Some(&s.token), &["--json", "logs", "nope"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.stdout, "");
    let e: Value = serde_json::from_str(&r.stderr).unwrap();
    assert_eq!(e["error"], "not_found", "{e}");

    // 7: the API refused for another reason (an unknown tier), code and message printed.
    std::fs::write(cwd.join("x.js"), common::js_text("x")).unwrap();
    let r = corral_at(
        &url,
        cwd,
        Some(&s.token),
        &["deploy", "x.js", "--tier", "gold"],
    );
    assert_eq!(r.code, 7, "{r:?}");
    assert!(r.stderr.starts_with("corral: unknown_tier: "), "{r:?}");

    // 2: a bad app name is a usage error, before any request.
    let r = corral_at(&dead, cwd, Some("t"), &["usage", "Not_A_Name"]);
    assert_eq!(r.code, 2, "{r:?}");
    // 1: nothing to deploy.
    let r = corral_at(&url, cwd, Some(&s.token), &["deploy", "missing-dir"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no such file or directory"), "{r:?}");

    // An account token deploys into its account and may not re-tier (403 forbidden: 6).
    let (status, _) = s
        .admin(
            Method::PUT,
            "/api/accounts/acme",
            br#"{"tier":"test"}"#,
            "application/json",
        )
        .await;
    assert_eq!(status, 200);
    let (status, tok) = s
        .admin(
            Method::POST,
            "/api/accounts/acme/tokens",
            b"",
            "application/json",
        )
        .await;
    assert_eq!(status, 200, "{tok}");
    let acme = tok["token"].as_str().unwrap();
    let r = corral_at(
        &url,
        cwd,
        Some(acme),
        &["deploy", "x.js", "--name", "acme-x"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = corral_at(&url, cwd, Some(acme), &["--json", "apps"]);
    let apps: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    assert_eq!(apps[0]["account"], "acme");
    let r = corral_at(&url, cwd, Some(acme), &["tier", "acme-x", "one"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.starts_with("corral: forbidden: "), "{r:?}");
}

/// A directory with `static/` goes as a tar of `app.js` and `static/**`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_a_directory_with_static_files_as_a_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("server"), None);
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/apps/site");
    let index = std::fs::read_to_string(site.join("static/index.html")).unwrap();
    let out = corral_ok(&s, tmp.path(), &["deploy", site.to_str().unwrap()]);
    assert!(
        out.starts_with("deployed site (JavaScript, ")
            && out.contains(", 1 static file, tier test)"),
        "{out}"
    );
    let (status, body) = get(&s.url("/apps/site/")).await;
    assert_eq!((status, body), (StatusCode::OK, index));
    let (status, body) = get(&s.url("/apps/site/api/hello")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"path":"/api/hello","method":"GET"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines_and_ends_when_the_app_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("server"), None);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    corral_ok(&s, &work, &["init", "tail"]);
    corral_ok(&s, &work.join("tail"), &["deploy"]);
    assert_eq!(get(&s.url("/apps/tail/?name=one")).await.0, StatusCode::OK);

    let mut child = Command::new(CORRAL)
        .args(["logs", "tail", "--follow"])
        .env("CORRAL_URL", s.url(""))
        .env("CORRAL_TOKEN", &s.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    // The kept line first, then the new one.
    assert_eq!(
        wait_line(&rx, "greeted", Duration::from_secs(10)),
        "tail: greeted one"
    );
    assert_eq!(get(&s.url("/apps/tail/?name=two")).await.0, StatusCode::OK);
    assert_eq!(
        wait_line(&rx, "greeted", Duration::from_secs(10)),
        "tail: greeted two"
    );
    corral_ok(&s, &work, &["delete", "tail"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "logs --follow still running after the delete"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_a_js_app_and_reloads_an_edit_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let r = corral_at(
        "http://127.0.0.1:1",
        tmp.path(),
        None,
        &["init", "--js", "devapp"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("devapp");
    let mut child = Command::new(CORRAL)
        .args(["dev", "--port", "0"])
        .current_dir(&dir)
        .env_remove("CORRAL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let ready = wait_line(&rx, "corral dev: serving devapp", Duration::from_secs(60));
    assert!(ready.contains("(tier free)"), "{ready}");
    let url = ready
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();

    let (status, body) = get(&format!("{url}?name=Ada")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Hello, Ada, from devapp!\n")
    );
    // The app's console.log line is printed.
    assert_eq!(
        wait_line(&rx, "greeted", Duration::from_secs(10)),
        "[devapp] devapp: greeted Ada"
    );

    // An edit is served without a restart.
    let app = dir.join("app.js");
    let js = std::fs::read_to_string(&app).unwrap();
    std::fs::write(&app, js.replace("`Hello, ", "`Howdy, ")).unwrap();
    wait_line(&rx, "corral dev: reloaded devapp", Duration::from_secs(20));
    let (status, body) = get(&format!("{url}?name=Ada")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Howdy, Ada, from devapp!\n")
    );

    // A broken edit is reported and the last good version keeps serving.
    std::fs::write(&app, "export default { fetch( ").unwrap();
    wait_line(
        &rx,
        "stderr: corral dev: reload failed",
        Duration::from_secs(20),
    );
    let (status, body) = get(&url).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Howdy, world, from devapp!\n")
    );

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "corral dev exited with {status}");
}

/// `corral init --component`: the prebuilt `wasi:http/proxy` component and
/// its C source, deployed as a component, with its log line and its fuel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_init_deploy_request_logs_usage_delete() {
    let tmp = tempfile::tempdir().unwrap();
    // The component is ~100 KB: over the test tier's 64 KiB bundle cap.
    let config = format!(
        "{}\n[tiers.comp]\ncompute_shares = 2\nmemory_bytes = 268435456\n\
         fuel_per_request = 1000000000\nwall_clock = \"5s\"\nburst = 0\n\
         max_body_bytes = 1024\nmax_bundle_bytes = 1048576\nidle_timeout = \"10m\"\n\
         max_streams = 1\n",
        common::CONFIG
    );
    let s = Server::start_with(&tmp.path().join("server"), None, &config);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let out = corral_ok(&s, &work, &["init", "--component", "hello-c"]);
    assert!(
        out.starts_with("created hello-c/ (app.wasm, src/, wit/, build.sh, test.sh, README.md)\n"),
        "{out}"
    );
    assert!(
        out.contains("app.wasm is prebuilt from src/hello.c"),
        "{out}"
    );
    let dir = work.join("hello-c");
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-core/tests/fixtures/components");
    assert_eq!(
        std::fs::read(dir.join("app.wasm")).unwrap(),
        std::fs::read(fixtures.join("hello.wasm")).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.join("src/hello.c")).unwrap(),
        std::fs::read(fixtures.join("c/hello.c")).unwrap()
    );
    assert!(dir.join("wit/deps/http.wit").is_file());

    let out = corral_ok(&s, &dir, &["deploy", "--tier", "comp"]);
    let url = s.url("/apps/hello-c/");
    assert!(
        out.starts_with("deployed hello-c (WebAssembly component, ") && out.contains("tier comp)"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some(url.as_str()), "{out}");
    let (status, body) = get(&url).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Hello from C\n"));

    let logs = corral_ok(&s, &dir, &["logs", "hello-c"]);
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        ["hello: handling a request"],
        "{logs}"
    );
    let usage = corral_ok(&s, &dir, &["usage", "hello-c"]);
    assert!(usage.contains("\n  requests     1 (no quota)\n"), "{usage}");
    assert!(fuel_of(&usage) > 0, "{usage}");
    assert_eq!(
        corral_ok(&s, &dir, &["delete", "hello-c"]),
        "deleted hello-c\n"
    );
    assert_eq!(get(&url).await.0, StatusCode::NOT_FOUND);
}

/// The WebAssembly templates' `test.sh` passes: it serves the app with
/// `corral dev` (from PATH) and checks its answer (skipped, saying so,
/// without curl).
#[test]
fn wasm_and_component_templates_test_sh_pass() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no curl on PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(CORRAL).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    for (flag, name, answer) in [
        ("--wasm", "tw", "Hello from tw!"),
        ("--component", "tc", "Hello from C"),
    ] {
        let r = corral_at(
            "http://127.0.0.1:1",
            tmp.path(),
            None,
            &["init", flag, name],
        );
        assert_eq!(r.code, 0, "{r:?}");
        let out = Command::new(tmp.path().join(name).join("test.sh"))
            .env("PATH", &path)
            .env_remove("CORRAL_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{flag}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("ok: http://127.0.0.1:")
                && stdout.ends_with(&format!(" answers: {answer}\n")),
            "{flag}: {stdout}"
        );
    }
    // A changed answer fails the test.
    let app = tmp.path().join("tw/app.wat");
    let wat = std::fs::read_to_string(&app).unwrap();
    std::fs::write(&app, wat.replace("Hello from tw!", "Howdy from tw!")).unwrap();
    let out = Command::new(tmp.path().join("tw/test.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered: Howdy from tw!"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
