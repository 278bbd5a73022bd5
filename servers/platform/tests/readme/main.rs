//! The README's "Deploy your first app" runs as written: every shell block
//! marked `<!-- readme-test -->` is run, in order, by one `bash` (as a reader
//! pastes them into one terminal) against a real `corral-server` on a
//! loopback port, with the `corral` binary of this build on `PATH`.
//!
//! What the test changes is only what the README tells a reader to put in:
//! the token (`corral_...`, "the admin token: line of the first start") and
//! the server's address (`localhost:8080`, with `CORRAL_URL` set to match,
//! as the README says for a server on another port). The server runs with
//! the embedded defaults, as `cargo run --release -p corral-server` does,
//! except for the RAM and disk thresholds (a shared test machine's disk must
//! not refuse deploys), and the commands run in a directory holding a copy
//! of the repository's `deploy/apps`, their "repository root".

use std::path::Path;
use std::process::Command;
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
        let fence = lines.next().unwrap_or_default();
        assert_eq!(fence, "```sh", "{MARKER} must be followed by a ```sh block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = marked_blocks(&readme);
    assert_eq!(blocks.len(), 2, "the CLI walk and its curl form");
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
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_corral")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(&work)
        .env("PATH", path)
        .env("HOME", &home)
        .env("CORRAL_URL", format!("http://{addr}"))
        .env_remove("CORRAL_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's commands failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

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
            "\nHTTP/1.1 200 OK\r\n",
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
        ],
    );
    assert_eq!(stdout.matches("\nid: ").count(), 5, "five ticks: {stdout}");
    // The walk removed what it said it removed, and the import brought hello back.
    let names = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(s.app_names());
    assert!(names.contains(&"hello".to_owned()), "{names:?}");
    assert!(!names.contains(&"site".to_owned()), "{names:?}");
    assert!(work.join("hello/app.js").is_file());
    assert!(work.join("hello.corral").is_file());
    // Seconds, not minutes: the clock stream is five of them.
    eprintln!("README walk took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));
}
