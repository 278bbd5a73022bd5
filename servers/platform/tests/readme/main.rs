//! The README's "Deploy your first app" runs as written: every shell block
//! marked `<!-- readme-test -->` is run, in order, by one `bash` (as a reader
//! pastes them into one terminal) against a real `corral-server` on a
//! loopback port, with the `corral` binary of this build on `PATH`.
//!
//! What the test changes is only what the README tells a reader to put in:
//! the admin token (`corral_...`, "the admin token: line of the first
//! start"), the server's address (`localhost:8080`, with `CORRAL_URL` set to
//! match, as the README says for a server on another port), and an account
//! token and its id (`corral_acct_...` and `<id>`, "the token just printed"
//! and "the id printed with it"), taken from what the commands before printed:
//! so the script is fed to `bash` step by step, a step ending before each
//! line that needs an earlier line's output. The server runs with
//! the embedded defaults, as `cargo run --release -p corral-server` does,
//! except for the RAM and disk thresholds (a shared test machine's disk must
//! not refuse deploys), and the commands run in a directory holding a copy
//! of the repository's `deploy/apps`, their "repository root".

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
use common::Server;

/// The marker line before each block the test runs.
const MARKER: &str = "<!-- readme-test -->";

/// The embedded defaults, but deploys never refused for the host's RAM or disk.
const CONFIG: &str =
    "[thresholds]\nram = { fire = 1.0, rearm = 1.0 }\ndisk = { fire = 1.0, rearm = 1.0 }\n";

/// The bodies of the ```` ```sh ```` blocks that follow a [`MARKER`] line.
fn marked_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        // A block in a list item is indented as its marker is.
        let indent = &line[..line.len() - line.trim_start().len()];
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.strip_prefix(indent),
            Some("```sh"),
            "{MARKER} must be followed by a ```sh block"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.strip_prefix(indent).unwrap_or(l))
            .collect();
        blocks.push(body.join("\n") + "\n");
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What the test's `echo` prints after each step.
const DONE: &str = "__readme_step_done__";

/// The script cut before each line with a value from an earlier line's
/// output (`corral_acct_...`, `<id>`), so that output is there to read.
fn steps(script: &str) -> Vec<String> {
    let mut steps = vec![String::new()];
    for line in script.lines() {
        if line.contains("corral_acct_...") || line.contains("<id>") {
            steps.push(String::new());
        }
        let step = steps.last_mut().unwrap();
        step.push_str(line);
        step.push('\n');
    }
    steps
}

/// The last `"key":"value"` string in `output`'s JSON lines.
fn last_json_str(output: &str, key: &str) -> String {
    output
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v[key].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no {key} printed>"))
}

/// Asserts that `needles` occur in `text` in this order (a needle's
/// leading newline pins it to the start of a line).
fn in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for needle in needles {
        match text[at..].find(needle) {
            // A needle's final newline may start the next one's line.
            Some(i) => at += i + needle.trim_end_matches('\n').len(),
            None => panic!("{needle:?} not found (in order) in the README's output:\n{text}"),
        }
    }
}

#[test]
fn readme_deploy_your_first_app_runs_verbatim() {
    // The README's commands are curl and tar lines: a machine without them
    // cannot run its walk (skipped, saying so, as the Node template test is).
    for tool in ["curl", "tar"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIPPED: no {tool} on PATH");
            return;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = marked_blocks(&readme);
    assert_eq!(
        blocks.len(),
        4,
        "the CLI walk, its curl form, accounts, components"
    );
    assert!(blocks[0].contains("corral deploy"), "{}", blocks[0]);

    // The quick start's two set-up commands stay exactly two.
    let quick = &readme[readme.find("## Quick start").unwrap()..];
    let quick = &quick[quick.find("```sh\n").unwrap() + 6..];
    let quick: Vec<&str> = quick[..quick.find("```").unwrap()]
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(
        quick,
        ["cargo run --release -p corral-server", "scripts/test"]
    );

    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s = Server::start_with(&tmp.path().join("server"), None, CONFIG);
    let addr = s.addr.to_string();

    let script = blocks.concat();
    assert_eq!(
        script.matches("CORRAL_TOKEN=corral_...").count(),
        1,
        "the README's token line changed: {script}"
    );
    assert!(
        !script.replace("localhost:8080", "").contains("8080"),
        "an address the README does not name: {script}"
    );
    let script = script
        .replace(
            "CORRAL_TOKEN=corral_...",
            &format!("CORRAL_TOKEN={}", s.token),
        )
        .replace("localhost:8080", &addr);

    let home = tmp.path().join("home");
    let work = tmp.path().join("repo");
    std::fs::create_dir_all(&home).unwrap();
    copy_dir(&root.join("deploy/apps"), &work.join("deploy/apps"));
    let components = "sandbox-core/tests/fixtures/components";
    std::fs::create_dir_all(work.join(components)).unwrap();
    std::fs::copy(
        root.join(components).join("echo.wasm"),
        work.join(components).join("echo.wasm"),
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_corral")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut bash = Command::new("bash")
        .current_dir(&work)
        .env("PATH", path)
        .env("HOME", &home)
        .env("CORRAL_URL", format!("http://{addr}"))
        .env_remove("CORRAL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // A hung command (a stream that never ends) fails the test instead of CI.
    let (finished, watch) = std::sync::mpsc::channel::<()>();
    // Its own process group: the kill reaches the command that hangs too.
    let group = format!("-{}", bash.id());
    std::thread::spawn(move || {
        if watch.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
    });
    let mut stdin = bash.stdin.take().unwrap();
    let mut lines = BufReader::new(bash.stdout.take().unwrap()).lines();
    let mut stderr = bash.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    writeln!(stdin, "set -euo pipefail").unwrap();
    let mut stdout = String::new();
    for step in steps(&script) {
        let step = step
            .replace("corral_acct_...", &last_json_str(&stdout, "token"))
            .replace("<id>", &last_json_str(&stdout, "id"));
        // A command reading stdin would eat the script: none of them does,
        // and `< /dev/null` would change what a reader runs.
        writeln!(stdin, "{step}\necho {DONE}").unwrap();
        stdin.flush().unwrap();
        loop {
            match lines.next() {
                Some(Ok(line)) => match line.strip_suffix(DONE) {
                    Some(rest) => {
                        // Output without a final newline (curl's JSON): end its line.
                        if !rest.is_empty() {
                            stdout.push_str(rest);
                            stdout.push('\n');
                        }
                        break;
                    }
                    None => {
                        stdout.push_str(&line);
                        stdout.push('\n');
                    }
                },
                _ => {
                    drop(stdin);
                    let status = bash.wait().unwrap();
                    panic!(
                        "the README's commands failed ({status}) at:\n{step}\n\
                         stdout:\n{stdout}\nstderr:\n{}",
                        stderr.join().unwrap()
                    );
                }
            }
        }
    }
    drop(stdin);
    assert!(bash.wait().unwrap().success());
    let _ = finished.send(());
    let stderr = stderr.join().unwrap();
    assert!(!stderr.contains("corral: "), "{stderr}");

    // What the README's comments say each command prints.
    let app_url = format!("http://{addr}/apps/hello/");
    in_order(
        &stdout,
        &[
            "Hello from Corral! (GET)\n",
            "created hello/ (app.js, app.test.mjs, README.md)\n",
            "\ndeployed hello (JavaScript, 541 bytes, tier free)\n",
            &format!("\n{app_url}\n"),
            "\nHello, Corral, from hello!\n",
            "\nhello: greeted Corral\n",
            "\nhello (tier free), ",
            "\n  requests     1 of 10000\n",
            "\nNAME ",
            "\ndemo ",
            "\nhello ",
            "\nhello: tier pro\n",
            "\ndeleted hello\n",
            // The curl form.
            r#""name":"hello","replaced":false,"static_files":0,"tier":"free"}"#,
            "\nHello, Corral! (visit 1)",
            "\nHello, world! (visit 2)",
            // Usage survives a delete: the CLI's request and these two.
            r#""requests":3,"#,
            r#"{"lines":["visit 1 from Corral","visit 2 from world"]}"#,
            r#""name":"site","replaced":false,"static_files":1,"#,
            // (Read as lines: the headers' CRLF is a newline here.)
            "\nHTTP/1.1 200 OK\n",
            "\netag: \"",
            "<h1>Served from Corral's asset cache</h1>",
            r#"{"path":"/api/hello","method":"GET"}"#,
            r#""name":"clock","replaced":false,"#,
            "id: 1\ndata: ",
            "id: 5\ndata: ",
            "event: done\ndata: bye\n",
            r#""name":"site","#,
            r#""state":"warm""#,
            r#""name":"hello","tier":"pro","#,
            r#"{"deleted":true,"name":"site"}"#,
            r#"{"deleted":true,"name":"hello"}"#,
            r#""imported":"hello"}"#,
            "\nHello, again! (visit 3)",
            // Accounts.
            r#"{"apps":[],"#,
            r#""name":"acme","tier":"pro"}"#,
            r#""name":"acme-hello","replaced":false,"static_files":0,"tier":"pro"}"#,
            r#""tier":"pro","usage":{"#,
            r#""tenant":"acme"}}"#,
            r#""token":"corral_acct_"#,
            r#""name":"acme-two","replaced":false,"static_files":0,"tier":"pro"}"#,
            "\nNAME ",
            "\nacme-hello  pro   acme ",
            "\nacme-two    pro   acme ",
            r#"{"account":"acme","bytes":553,"#,
            r#""name":"hello","tier":"pro","#,
            r#""revoked":true}"#,
            r#"{"error":"unauthorized","#,
            // Components.
            "\ncreated hello-c/ (app.wasm, src/, wit/, build.sh, test.sh, README.md)\n",
            "\ndeployed hello-c (WebAssembly component, 101762 bytes, tier free)\n",
            "\nHello from C\n",
            r#"{"bytes":66003,"#,
            r#""kind":"component","name":"echo-c","#,
            "\necho, echo\n",
        ],
    );
    // The account token's `corral apps`: the header and acme's two apps only.
    let apps_of_acme = &stdout[stdout.rfind("\nNAME ").unwrap() + 1..];
    let apps_of_acme = &apps_of_acme[..apps_of_acme.find("\n{").unwrap()];
    assert_eq!(apps_of_acme.lines().count(), 3, "{apps_of_acme}");
    assert_eq!(stdout.matches("\nid: ").count(), 5, "five ticks: {stdout}");
    // The walk removed what it said it removed, and the import brought hello back.
    let names = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(s.app_names());
    assert_eq!(
        names,
        [
            "acme-hello",
            "acme-two",
            "clock",
            "demo",
            "echo-c",
            "hello",
            "hello-c"
        ],
        "site deleted, hello imported back"
    );
    assert!(work.join("hello/app.js").is_file());
    assert!(work.join("hello.corral").is_file());
    // Seconds, not minutes: the clock stream is five of them.
    eprintln!("README walk took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));
}
