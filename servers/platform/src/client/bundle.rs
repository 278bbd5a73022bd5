//! What `corral deploy` and `corral dev` ship, detected from a path:
//!
//! - a `.js`/`.mjs` file: a JavaScript app (`application/javascript`);
//! - a `.wasm` file: a WebAssembly (WAGI) module (`application/wasm`);
//! - a directory with `static/`: a tar of its `app.js` or `app.wasm` plus
//!   every file under `static/` (`application/x-tar`);
//! - a directory without `static/`: its `app.js` or `app.wasm` alone.
//!
//! In a directory, an `app.wat` newer than its `app.wasm` (or without one) is
//! compiled to `app.wasm` first, so a WAT app needs no other toolchain.
//!
//! ```
//! use corral_server::client::bundle::{Source, Payload};
//! let dir = std::env::temp_dir().join(format!("corral-bundle-doc-{}", std::process::id()));
//! std::fs::create_dir_all(dir.join("static")).unwrap();
//! std::fs::write(dir.join("app.js"), "export default { fetch() { return new Response('hi') } }").unwrap();
//! std::fs::write(dir.join("static/index.html"), "<h1>hi</h1>").unwrap();
//! let source = Source::detect(&dir).unwrap();
//! let bundle = source.build().unwrap();
//! assert_eq!(bundle.content_type(), "application/x-tar");
//! assert!(matches!(bundle, Payload::Tar { files: 2, .. }));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ClientError, io_at};

/// Why a path holds no app to ship.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A directory without `app.js`, `app.wasm` or `app.wat`.
    #[error("{}: no app.js, app.wasm or app.wat here (corral init NAME writes one)", dir.display())]
    NoApp {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory with both `app.js` and `app.wasm` (or `app.wat`).
    #[error("{}: both app.js and app.wasm (or app.wat); keep one", dir.display())]
    TwoApps {
        /// The directory.
        dir: PathBuf,
    },
    /// A file that is neither JavaScript nor WebAssembly.
    #[error("{}: not a .js, .mjs or .wasm file", path.display())]
    UnknownKind {
        /// The file.
        path: PathBuf,
    },
    /// A `.wasm` file without the WebAssembly magic number.
    #[error("{}: not a WebAssembly module (no \\0asm header)", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// `app.wat` does not compile.
    #[error("{}: {source}", path.display())]
    Wat {
        /// The WAT file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: wat::Error,
    },
    /// A symbolic link under `static/`: not followed, so a bundle holds only
    /// the directory's own files.
    #[error("{}: symbolic links are not bundled", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
}

/// The kind of an app's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppKind {
    /// A JavaScript module.
    Js,
    /// A WebAssembly module (possibly from `app.wat`).
    Wasm,
}

/// Where an app's source is: what [`Source::detect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// One code file.
    File {
        /// The file.
        path: PathBuf,
        /// Its kind.
        kind: AppKind,
    },
    /// A directory with `app.js`, `app.wasm` or `app.wat`, and maybe `static/`.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The code's kind.
        kind: AppKind,
        /// Whether it has `static/`.
        has_static: bool,
    },
}

/// A built bundle, ready to `PUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// A JavaScript module.
    Js(Vec<u8>),
    /// A WebAssembly module.
    Wasm(Vec<u8>),
    /// A tar of the code and `static/**`.
    Tar {
        /// The archive.
        bytes: Vec<u8>,
        /// Files in it (the code file included).
        files: usize,
    },
}

impl Payload {
    /// The `content-type` the admin API expects for it.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Js(_) => "application/javascript",
            Self::Wasm(_) => "application/wasm",
            Self::Tar { .. } => "application/x-tar",
        }
    }

    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Js(b) | Self::Wasm(b) => b,
            Self::Tar { bytes, .. } => bytes,
        }
    }

    /// The same bundle as the platform's [`corral::platform::Bundle`].
    pub fn into_bundle(self) -> Result<corral::platform::Bundle, corral::platform::PlatformError> {
        use corral::Kind;
        use corral::platform::Bundle;
        match self {
            Self::Js(b) => Ok(Bundle::code(Kind::Js, b)),
            // The header tells a component from a module, as the server does.
            Self::Wasm(b) => Ok(Bundle::code(Kind::of_wasm(&b), b)),
            Self::Tar { bytes, .. } => Bundle::detect(bytes, Some("application/x-tar")),
        }
    }
}

const CODE_FILES: [&str; 3] = ["app.js", "app.wasm", "app.wat"];

impl Source {
    /// Finds the app at `path` (see the [module docs](self)).
    pub fn detect(path: &Path) -> Result<Self, ClientError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::Missing {
                    path: path.to_owned(),
                }
                .into());
            }
            Err(e) => return Err(io_at(path)(e)),
        };
        if meta.is_file() {
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("js" | "mjs") => AppKind::Js,
                Some("wasm") => AppKind::Wasm,
                _ => {
                    return Err(BundleError::UnknownKind {
                        path: path.to_owned(),
                    }
                    .into());
                }
            };
            return Ok(Self::File {
                path: path.to_owned(),
                kind,
            });
        }
        let has = |f: &str| path.join(f).is_file();
        let kind = match (has("app.js"), has("app.wasm") || has("app.wat")) {
            (true, true) => {
                return Err(BundleError::TwoApps {
                    dir: path.to_owned(),
                }
                .into());
            }
            (true, false) => AppKind::Js,
            (false, true) => AppKind::Wasm,
            (false, false) => {
                return Err(BundleError::NoApp {
                    dir: path.to_owned(),
                }
                .into());
            }
        };
        Ok(Self::Dir {
            dir: path.to_owned(),
            kind,
            has_static: path.join("static").is_dir(),
        })
    }

    /// The app name this source suggests: a directory's name, or a file's
    /// stem (`hello.js` → `hello`); a file called `app.*` is named after
    /// its directory.
    pub fn default_name(&self) -> Option<String> {
        let dir_name = |p: &Path| -> Option<String> {
            let abs = std::path::absolute(p).ok()?;
            let abs = abs.components().collect::<PathBuf>();
            Some(abs.file_name()?.to_str()?.to_owned())
        };
        match self {
            Self::Dir { dir, .. } => dir_name(dir),
            Self::File { path, .. } => match path.file_stem()?.to_str()? {
                "app" => dir_name(
                    path.parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new(".")),
                ),
                stem => Some(stem.to_owned()),
            },
        }
    }

    /// The code's kind.
    pub fn kind(&self) -> AppKind {
        match self {
            Self::File { kind, .. } | Self::Dir { kind, .. } => *kind,
        }
    }

    /// Builds the bundle: reads the code (compiling `app.wat` when it is
    /// newer than `app.wasm`) and, for a directory with `static/`, tars it.
    pub fn build(&self) -> Result<Payload, ClientError> {
        match self {
            Self::File { path, kind } => {
                let bytes = std::fs::read(path).map_err(io_at(path))?;
                code_payload(path, *kind, bytes)
            }
            Self::Dir {
                dir,
                kind,
                has_static,
            } => {
                let (name, bytes) = match kind {
                    AppKind::Js => {
                        let p = dir.join("app.js");
                        ("app.js", std::fs::read(&p).map_err(io_at(&p))?)
                    }
                    AppKind::Wasm => ("app.wasm", wasm_of_dir(dir)?),
                };
                let code = code_payload(&dir.join(name), *kind, bytes)?;
                if !has_static {
                    return Ok(code);
                }
                tar_bundle(dir, name, code.bytes())
            }
        }
    }

    /// A fingerprint of every file the bundle is built from (paths, sizes
    /// and modification times): it changes when a build would.
    pub fn fingerprint(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let stat = |p: PathBuf| {
            let m = std::fs::metadata(&p).ok();
            let (len, mtime) = m.map_or((0, None), |m| (m.len(), m.modified().ok()));
            (p, len, mtime)
        };
        match self {
            Self::File { path, .. } => vec![stat(path.clone())],
            Self::Dir { dir, .. } => {
                let mut out: Vec<_> = CODE_FILES.iter().map(|f| stat(dir.join(f))).collect();
                let mut files = Vec::new();
                // A listing error shows up as a changed (shorter) fingerprint.
                let _ = walk(&dir.join("static"), &mut files);
                out.extend(files.into_iter().map(stat));
                out.push(stat(dir.join("static")));
                out
            }
        }
    }
}

fn code_payload(path: &Path, kind: AppKind, bytes: Vec<u8>) -> Result<Payload, ClientError> {
    match kind {
        AppKind::Js => Ok(Payload::Js(bytes)),
        AppKind::Wasm if bytes.starts_with(b"\0asm") => Ok(Payload::Wasm(bytes)),
        AppKind::Wasm => Err(BundleError::NotWasm {
            path: path.to_owned(),
        }
        .into()),
    }
}

/// `dir/app.wasm`, compiled from `dir/app.wat` first when that is newer.
fn wasm_of_dir(dir: &Path) -> Result<Vec<u8>, ClientError> {
    let wasm = dir.join("app.wasm");
    let wat = dir.join("app.wat");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&wat), modified(&wasm)) {
        (Some(_), None) => true,
        (Some(t), Some(w)) => t > w,
        (None, _) => false,
    };
    if stale {
        let bytes = wat::parse_file(&wat).map_err(|source| BundleError::Wat {
            path: wat.clone(),
            source,
        })?;
        std::fs::write(&wasm, &bytes).map_err(io_at(&wasm))?;
        return Ok(bytes);
    }
    std::fs::read(&wasm).map_err(io_at(&wasm))
}

/// Every regular file under `dir`, sorted; symbolic links are refused.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ClientError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_at(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ty = e.file_type().map_err(io_at(&path))?;
        if ty.is_symlink() {
            return Err(BundleError::Symlink { path }.into());
        } else if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// A tar of `code` as `code_name` plus every file under `dir/static`, with
/// fixed modes and times so the same files always make the same bytes.
fn tar_bundle(dir: &Path, code_name: &str, code: &[u8]) -> Result<Payload, ClientError> {
    let mut files = Vec::new();
    walk(&dir.join("static"), &mut files)?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut append = |name: &Path, data: &[u8]| -> Result<(), ClientError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)
            .map_err(io_at(dir.join(name)))
    };
    append(Path::new(code_name), code)?;
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        let data = std::fs::read(f).map_err(io_at(f))?;
        append(rel, &data)?;
    }
    let bytes = tar.into_inner().map_err(io_at(dir))?;
    Ok(Payload::Tar {
        bytes,
        files: files.len() + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn detects_each_kind() {
        let d = tmp("kinds");
        std::fs::write(d.join("hello.js"), "export default {}").unwrap();
        let s = Source::detect(&d.join("hello.js")).unwrap();
        assert_eq!(s.kind(), AppKind::Js);
        assert_eq!(s.default_name().as_deref(), Some("hello"));
        assert_eq!(
            s.build().unwrap(),
            Payload::Js(b"export default {}".to_vec())
        );

        std::fs::write(d.join("x.wasm"), "nope").unwrap();
        let e = Source::detect(&d.join("x.wasm"))
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Bundle(BundleError::NotWasm { .. })),
            "{e}"
        );
        std::fs::write(d.join("x.txt"), "").unwrap();
        assert!(matches!(
            Source::detect(&d.join("x.txt")),
            Err(ClientError::Bundle(BundleError::UnknownKind { .. }))
        ));
        assert!(matches!(
            Source::detect(&d.join("gone")),
            Err(ClientError::Bundle(BundleError::Missing { .. }))
        ));

        let app = d.join("wat-app");
        std::fs::create_dir_all(&app).unwrap();
        assert!(matches!(
            Source::detect(&app),
            Err(ClientError::Bundle(BundleError::NoApp { .. }))
        ));
        std::fs::write(app.join("app.wat"), "(module)").unwrap();
        let s = Source::detect(&app).unwrap();
        assert_eq!(s.default_name().as_deref(), Some("wat-app"));
        let Payload::Wasm(bytes) = s.build().unwrap() else {
            panic!()
        };
        assert!(bytes.starts_with(b"\0asm"));
        assert_eq!(std::fs::read(app.join("app.wasm")).unwrap(), bytes);
        std::fs::write(app.join("app.js"), "").unwrap();
        assert!(matches!(
            Source::detect(&app),
            Err(ClientError::Bundle(BundleError::TwoApps { .. }))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tar_holds_code_and_static_files() {
        let d = tmp("tar");
        std::fs::create_dir_all(d.join("static/css")).unwrap();
        std::fs::write(d.join("app.js"), "js").unwrap();
        std::fs::write(d.join("static/index.html"), "<p>").unwrap();
        std::fs::write(d.join("static/css/a.css"), "p{}").unwrap();
        let s = Source::detect(&d).unwrap();
        let before = s.fingerprint();
        let Payload::Tar { bytes, files } = s.build().unwrap() else {
            panic!()
        };
        assert_eq!(files, 3);
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app.js", "static/css/a.css", "static/index.html"]);
        // Same files, same bytes.
        assert_eq!(s.build().unwrap().bytes(), &bytes[..]);
        std::fs::write(d.join("static/new.txt"), "n").unwrap();
        assert_ne!(s.fingerprint(), before);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
