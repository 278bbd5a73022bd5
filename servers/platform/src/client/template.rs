//! The apps `corral init` writes: a JavaScript app with a test, or a
//! WebAssembly (WAGI) app written in WAT and compiled here, so neither
//! needs a toolchain beyond the `corral` binary (the JavaScript test
//! needs Node 18 or newer).
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
    /// writes a line to its log (stderr) and greets on stdout.
    Wasm,
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
corral dev             # serve it on http://127.0.0.1:8787/, reloading on save
corral deploy          # ship it to $CORRAL_URL with $CORRAL_TOKEN; prints its URL
corral logs {{name}}     # the lines it writes to stderr
corral usage {{name}}    # this month's requests, fuel, bytes
```

There is no test runner for WAT here: `corral dev` then `curl http://127.0.0.1:8787/`
is the check (it answers "Hello from {{name}}!").
"#;

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
                ("README.md", fill(README_WASM).into_bytes()),
            ]
        }
    };
    for (file, bytes) in &files {
        let path = dir.join(file);
        std::fs::write(&path, bytes).map_err(io_at(&path))?;
    }
    Ok(files.into_iter().map(|(f, _)| f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_template_compiles_and_refuses_overwrites() {
        let d = std::env::temp_dir().join(format!("corral-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let files = init(&d.join("w"), "w", Template::Wasm).unwrap();
        assert_eq!(files, ["app.wat", "app.wasm", "README.md"]);
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
