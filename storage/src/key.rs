//! Key and path validation.

use crate::InvalidKey;

/// The longest key or path, in bytes.
pub const MAX_KEY_LEN: usize = 512;

fn check_chars(s: &str) -> Result<(), InvalidKey> {
    for (at, ch) in s.char_indices() {
        if ch == '\0' {
            return Err(InvalidKey::Nul { at });
        }
        if ch.is_control() {
            return Err(InvalidKey::Control { at });
        }
        if ch == '\\' {
            return Err(InvalidKey::Backslash);
        }
    }
    Ok(())
}

fn utf8(raw: &[u8]) -> Result<&str, InvalidKey> {
    if raw.len() > MAX_KEY_LEN {
        return Err(InvalidKey::TooLong {
            len: raw.len(),
            max: MAX_KEY_LEN,
        });
    }
    std::str::from_utf8(raw).map_err(|e| InvalidKey::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// Validates a KV key, static-file path or artifact key and returns it as `&str`.
///
/// Rules: 1–[`MAX_KEY_LEN`] bytes of UTF-8, no NUL or other control
/// characters, no backslash, `/`-separated segments that are neither empty
/// nor `.` / `..`.
///
/// ```
/// use corral_storage::{validate_key, InvalidKey};
/// assert_eq!(validate_key(b"static/app.js"), Ok("static/app.js"));
/// assert_eq!(validate_key(b"/etc"), Err(InvalidKey::EmptySegment));
/// assert_eq!(validate_key(&[0x66, 0xff]), Err(InvalidKey::NotUtf8 { valid_up_to: 1 }));
/// assert_eq!(validate_key(&[b'a'; 513]), Err(InvalidKey::TooLong { len: 513, max: 512 }));
/// ```
pub fn validate_key(raw: &[u8]) -> Result<&str, InvalidKey> {
    if raw.is_empty() {
        return Err(InvalidKey::Empty);
    }
    let s = utf8(raw)?;
    check_chars(s)?;
    for seg in s.split('/') {
        if seg.is_empty() {
            return Err(InvalidKey::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(InvalidKey::DotSegment);
        }
    }
    Ok(s)
}

/// Validates a listing prefix: like [`validate_key`] but may be empty and
/// may end with `/` (no `.`/`..` segments, no NUL or control characters).
///
/// ```
/// use corral_storage::{validate_prefix, InvalidKey};
/// assert_eq!(validate_prefix(b"users/"), Ok("users/"));
/// assert_eq!(validate_prefix(b""), Ok(""));
/// assert_eq!(validate_prefix(b"../"), Err(InvalidKey::DotSegment));
/// ```
pub fn validate_prefix(raw: &[u8]) -> Result<&str, InvalidKey> {
    let s = utf8(raw)?;
    check_chars(s)?;
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(InvalidKey::DotSegment);
    }
    Ok(s)
}

/// The exclusive upper bound of all strings starting with `prefix` under
/// byte-wise comparison (`None`: unbounded). A string, not raw bytes, so
/// both backends can bind it as text: UTF-8 byte order is code point order,
/// so the prefix with its last character bumped to the next scalar value
/// bounds every string that starts with the prefix.
pub(crate) fn prefix_upper(prefix: &str) -> Option<String> {
    let mut s = prefix.to_owned();
    while let Some(last) = s.pop() {
        let mut next = last as u32 + 1;
        if next == 0xD800 {
            next = 0xE000; // skip the surrogates, which are not scalar values
        }
        if let Some(c) = char::from_u32(next) {
            s.push(c);
            return Some(s);
        }
    }
    None
}
