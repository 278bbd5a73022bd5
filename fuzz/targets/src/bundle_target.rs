//! `bundle`: what a deploy upload is, and the files a tar bundle unpacks to.

use corral::Kind;
use corral::platform::{Bundle, MAX_BUNDLE_FILES};
use corral_storage::validate_key;

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/wasm"),
    Some("application/javascript; charset=utf-8"),
    Some("application/x-tar"),
    Some("application/octet-stream"),
    Some(""),
    Some("text/html"),
];

/// What a WebAssembly upload must deploy as, by the binary format's header:
/// after `\0asm`, bytes 4..6 are the version and 6..8 the layer, 1 for a
/// component (0 for a core module); text starting with `(component` is a
/// component too. Written out here, not by calling `Kind::of_wasm`, so the
/// target checks it.
fn wasm_kind(upload: &[u8]) -> Kind {
    let component = match upload {
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => true,
        _ => upload.trim_ascii_start().starts_with(b"(component"),
    };
    if component {
        Kind::Component
    } else {
        Kind::Wasm
    }
}

/// Byte 0 picks the `Content-Type`; the rest is the upload.
///
/// Invariants: a refusal is `invalid_bundle`; an accepted bundle's code is the
/// upload itself or the tar's `app.wasm`/`app.js`, the kind follows the
/// content type or the bytes (a WebAssembly binary's header tells a component
/// from a core module), and every static file path is a valid storage
/// key (no traversal, no empty or dot segment) under the file cap.
pub fn bundle(data: &[u8]) {
    let Some((&sel, upload)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(sel) % CONTENT_TYPES.len()];
    match Bundle::detect(upload.to_vec(), ct) {
        Err(e) => assert_eq!(e.code(), "invalid_bundle", "{e:?}"),
        Ok(b) => {
            let is_tar = matches!(ct, Some("application/x-tar"))
                || (matches!(ct, None | Some("" | "application/octet-stream"))
                    && !upload.starts_with(b"\0asm")
                    && upload.get(257..262) == Some(b"ustar"));
            if is_tar {
                assert!(b.static_files().len() <= MAX_BUNDLE_FILES);
                for path in b.static_files().keys() {
                    assert!(
                        validate_key(path.as_bytes()).is_ok(),
                        "static file {path:?} is no valid key"
                    );
                }
                assert!(b.size() <= upload.len() as u64);
            } else {
                assert_eq!(b.code_bytes(), upload);
                assert!(b.static_files().is_empty());
                let kind = match ct {
                    Some("application/wasm") => wasm_kind(upload),
                    Some(c) if c.starts_with("application/javascript") => Kind::Js,
                    _ if upload.starts_with(b"\0asm") => wasm_kind(upload),
                    _ => Kind::Js,
                };
                assert_eq!(b.kind(), kind);
            }
        }
    }
}
