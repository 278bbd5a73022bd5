//! `multipart/form-data` parsing for `Request.formData()` and
//! `Response.formData()`: RFC 7578 as WPT's `fetch/api/body/formdata-parsing`
//! pins it down (no preamble, header lines that are `token: value` with no
//! bare CR, LF or NUL, padding but no junk after a delimiter, names and
//! filenames taken as they are: the HTML encoder's `%0A`/`%0D`/`%22`
//! escapes are one-way, and a part's `Content-Type` read as Fetch's
//! "extract a MIME type" does).
//!
//! A small parser of its own: the body is already whole in the tenant's
//! heap, so a streaming, async parser (`multer`, the well-kept one, is built
//! on futures and `http` bodies) would buy nothing but an async runtime in
//! a synchronous host call. This one only finds boundaries and reads each
//! part's headers; it copies nothing (parts are byte ranges of the body,
//! which the prelude turns into strings and `File`s in the tenant's heap).
//!
//! Bounds: at most [`MAX_PARTS`] parts and [`MAX_HEADER_BYTES`] of headers
//! per part; the work is linear in the body (each search starts where the
//! last one ended).
//!
//! Engine-neutral, like [`super::web`].

/// Most parts one body may have.
pub(crate) const MAX_PARTS: usize = 10_000;

/// Most bytes of headers one part may have.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The `name` parameter of its `Content-Disposition`.
    pub(crate) name: String,
    /// The `filename` parameter, when it is a file.
    pub(crate) filename: Option<String>,
    /// Its `Content-Type`, when it has one.
    pub(crate) content_type: Option<String>,
    /// Where its content lies in the body.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Why a body is not `multipart/form-data` that can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultipartError {
    /// No usable boundary in the content type.
    NoBoundary,
    /// The body does not follow the format.
    Malformed,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts,
    /// A part's headers pass [`MAX_HEADER_BYTES`].
    HeadersTooLarge,
}

impl MultipartError {
    /// The message the guest's TypeError carries.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::NoBoundary => {
                "formData(): the multipart/form-data content type has no valid boundary"
            }
            Self::Malformed => "formData(): the body is not valid multipart/form-data",
            Self::TooManyParts => "formData(): the body has more than 10000 parts",
            Self::HeadersTooLarge => "formData(): a part's headers pass 16384 bytes",
        }
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type (quoted
/// or not), if it is a valid RFC 2046 boundary (1 to 70 characters).
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (essence, mut rest) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    // The parameters, as the MIME Sniffing standard reads them: a quoted
    // value may hold `;`.
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t']);
        if rest.is_empty() {
            return None;
        }
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..key_end].trim();
        rest = &rest[key_end..];
        let Some(after) = rest.strip_prefix('=') else {
            continue;
        };
        let value = if let Some(quoted) = after.strip_prefix('"') {
            let (value, used) = unquote(quoted);
            rest = &quoted[used..];
            value
        } else {
            let end = after.find(';').unwrap_or(after.len());
            rest = &after[end..];
            after[..end].trim().to_owned()
        };
        if key.eq_ignore_ascii_case("boundary") {
            return (1..=70).contains(&value.len()).then_some(value);
        }
    }
}

/// A quoted string's value (its opening quote already taken; backslash
/// escapes undone; an unclosed one runs to the end) and the bytes it used.
fn unquote(rest: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, i + 1),
            '\\' => match chars.next() {
                Some((_, c)) => out.push(c),
                None => return (out, rest.len()),
            },
            c => out.push(c),
        }
    }
    (out, rest.len())
}

/// Where `needle` first occurs in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(p) => i += p,
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Whether `s` is a non-empty HTTP token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

const HTTP_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// A MIME type parsed and serialized again (the MIME Sniffing standard's
/// "parse a MIME type" and "serialize a MIME type"), or `None` when it is
/// not one.
pub(crate) fn mime_type(input: &str) -> Option<String> {
    let input = input.trim_matches(HTTP_SPACE);
    let (kind, rest) = input.split_once('/')?;
    if !is_token(kind) {
        return None;
    }
    let (subtype, mut rest) = rest
        .split_once(';')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    let subtype = subtype.trim_end_matches(HTTP_SPACE);
    if !is_token(subtype) {
        return None;
    }
    let mut out = format!(
        "{}/{}",
        kind.to_ascii_lowercase(),
        subtype.to_ascii_lowercase()
    );
    let mut names: Vec<String> = Vec::new();
    while let Some(params) = rest {
        let params = params.trim_start_matches(HTTP_SPACE);
        let name_end = params.find([';', '=']).unwrap_or(params.len());
        let name = params[..name_end].to_ascii_lowercase();
        let after = &params[name_end..];
        let Some(after) = after.strip_prefix('=') else {
            rest = after.strip_prefix(';');
            continue;
        };
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let (v, used) = unquote(quoted);
            value = v;
            let tail = &quoted[used..];
            rest = tail.find(';').map(|i| &tail[i + 1..]);
        } else {
            let end = after.find(';').unwrap_or(after.len());
            value = after[..end].trim_end_matches(HTTP_SPACE).to_owned();
            rest = after.get(end + 1..).filter(|_| end < after.len());
            if value.is_empty() {
                continue;
            }
        }
        let value_ok = value
            .chars()
            .all(|c| c == '\t' || (' '..='~').contains(&c) || ('\u{80}'..='\u{FF}').contains(&c));
        if is_token(&name) && value_ok && !names.contains(&name) {
            out.push(';');
            out.push_str(&name);
            out.push('=');
            if is_token(&value) {
                out.push_str(&value);
            } else {
                out.push('"');
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            names.push(name);
        }
    }
    Some(out)
}

/// Fetch's "extract a MIME type" over a part's `Content-Type` values: each
/// split at commas outside quotes; the last one that parses wins, `""` when
/// none does.
fn extract_mime(values: &[String]) -> String {
    let mut found = None;
    for value in values {
        let mut start = 0;
        let mut quoted = false;
        let bytes = value.as_bytes();
        for i in 0..=bytes.len() {
            match bytes.get(i) {
                Some(b'"') => quoted = !quoted,
                Some(b'\\') if quoted => {}
                Some(b',') if !quoted => {}
                Some(_) => continue,
                None => {}
            }
            if i < bytes.len() && (bytes[i] != b',' || quoted) {
                continue;
            }
            if let Some(m) = mime_type(&value[start..i]).filter(|m| m != "*/*") {
                found = Some(m);
            }
            start = i + 1;
        }
    }
    found.unwrap_or_default()
}

/// A `Content-Disposition: form-data` header's `name` and `filename`.
fn disposition(value: &str) -> Option<(String, Option<String>)> {
    let mut rest = value.trim_start();
    let kind_end = rest.find(';').unwrap_or(rest.len());
    if !rest[..kind_end].trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    rest = &rest[kind_end..];
    let (mut name, mut filename) = (None, None);
    while let Some(after) = rest.strip_prefix(';') {
        let after = after.trim_start();
        let eq = after.find('=')?;
        let key = after[..eq].trim().to_ascii_lowercase();
        let raw = after[eq + 1..].trim_start();
        let (value, next) = if let Some(quoted) = raw.strip_prefix('"') {
            // Browsers do not escape with backslashes: the value runs to the
            // next quote.
            let close = quoted.find('"')?;
            (quoted[..close].to_owned(), &quoted[close + 1..])
        } else {
            let end = raw.find(';').unwrap_or(raw.len());
            (raw[..end].trim().to_owned(), &raw[end..])
        };
        match key.as_str() {
            "name" if name.is_none() => name = Some(value),
            "filename" if filename.is_none() => filename = Some(value),
            _ => {}
        }
        rest = next.trim_start();
    }
    Some((name?, filename))
}

/// Parses a `multipart/form-data` body delimited by `boundary`.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The body starts with the first delimiter: no preamble.
    if !body.starts_with(dash.as_bytes()) {
        return Err(MultipartError::Malformed);
    }
    let mut at = dash.len();
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` closes the body (then padding, and CRLF
        // and an epilogue or the end); else padding, then CRLF.
        let close = body[at..].starts_with(b"--");
        if close {
            at += 2;
        }
        while matches!(body.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        if close {
            return if at == body.len() || body[at..].starts_with(b"\r\n") {
                Ok(parts)
            } else {
                Err(MultipartError::Malformed)
            };
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err(MultipartError::Malformed);
        }
        at += 2;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        // The headers, up to an empty line.
        let (mut name, mut filename, mut types) = (None, None, None::<Vec<String>>);
        let head_start = at;
        loop {
            let eol = find(body, b"\r\n", at).ok_or(MultipartError::Malformed)?;
            if eol - head_start > MAX_HEADER_BYTES {
                return Err(MultipartError::HeadersTooLarge);
            }
            let line = &body[at..eol];
            at = eol + 2;
            if line.is_empty() {
                break;
            }
            if line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(MultipartError::Malformed);
            }
            let line = String::from_utf8_lossy(line);
            let (key, value) = line.split_once(':').ok_or(MultipartError::Malformed)?;
            let key = key.trim_matches([' ', '\t']);
            if !is_token(key) {
                return Err(MultipartError::Malformed);
            }
            let value = value.trim_matches([' ', '\t']);
            if key.eq_ignore_ascii_case("content-disposition") {
                let (n, f) = disposition(value).ok_or(MultipartError::Malformed)?;
                name = Some(n);
                filename = f;
            } else if key.eq_ignore_ascii_case("content-type") {
                types.get_or_insert_with(Vec::new).push(value.to_owned());
            }
        }
        let name = name.ok_or(MultipartError::Malformed)?;
        let end = find(body, delim.as_bytes(), at).ok_or(MultipartError::Malformed)?;
        parts.push(Part {
            name,
            filename,
            content_type: types.map(|t| extract_mime(&t)),
            start: at,
            end,
        });
        at = end + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=x; BOUNDARY=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(boundary("multipart/mixed; boundary=abc"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn parts_and_files() {
        let body = b"--XX\r\n\
Content-Disposition: form-data; name=\"a%22b\"\r\n\r\n\
one\r\ntwo\r\n--XX  \r\n\
content-disposition: form-data; name=f; filename=\"x.txt\"\r\n\
Content-Type: text/plain\r\n\r\n\
--XY\r\n--XX--\r\nepilogue";
        let parts = parse(body, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "a%22b");
        assert_eq!(&body[parts[0].start..parts[0].end], b"one\r\ntwo");
        assert_eq!(parts[1].filename.as_deref(), Some("x.txt"));
        assert_eq!(parts[1].content_type.as_deref(), Some("text/plain"));
        assert_eq!(&body[parts[1].start..parts[1].end], b"--XY");
        assert_eq!(parse(b"--XX--", "XX").unwrap(), vec![]);
    }

    #[test]
    fn mime_types() {
        assert_eq!(
            mime_type(" Text/HTML;;x=\"y\"").as_deref(),
            Some("text/html;x=y")
        );
        assert_eq!(
            mime_type("a/b; q=\"x y\"; Q=z").as_deref(),
            Some("a/b;q=\"x y\"")
        );
        assert_eq!(mime_type("text"), None);
        assert_eq!(mime_type("text/\u{e9}"), None);
        assert_eq!(
            extract_mime(&["text/html, text/plain".into()]),
            "text/plain"
        );
        assert_eq!(
            extract_mime(&["text/html".into(), "bad".into()]),
            "text/html"
        );
        assert_eq!(extract_mime(&["".into()]), "");
    }

    #[test]
    fn malformed_and_bounded() {
        for bad in [
            &b""[..],
            b"--XX\r\nContent-Disposition: form-data; name=a\r\n\r\nno end",
            b"--XX\r\nContent-Type: text/plain\r\n\r\nx\r\n--XX--",
            b"--XX\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XX--",
            b"--XXjunk\r\n",
            b"pre\r\n--XX\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XX--",
            b"--XX\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XX--junk",
            b"--XX\r\nBad Name: x\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XX--",
            b"--XX\r\nContent-Disposition: form-data; name=\"a\nb\"\r\n\r\nx\r\n--XX--",
        ] {
            assert_eq!(parse(bad, "XX"), Err(MultipartError::Malformed), "{bad:?}");
        }
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n");
        }
        many.extend_from_slice(b"--B--");
        assert_eq!(parse(&many, "B"), Err(MultipartError::TooManyParts));
        let mut big = b"--B\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'p', MAX_HEADER_BYTES));
        big.extend_from_slice(b"\r\n\r\nv\r\n--B--");
        assert_eq!(parse(&big, "B"), Err(MultipartError::HeadersTooLarge));
    }

    /// Bodies and content types spliced from the format's own pieces (a
    /// fixed xorshift stream): the parser answers each, never panics, and
    /// every part it returns lies inside the body.
    #[test]
    fn arbitrary_input_never_panics() {
        const PIECES: [&[u8]; 16] = [
            b"--B",
            b"\r\n",
            b"\r",
            b"\n",
            b"--",
            b" ",
            b"\t",
            b"\0",
            b"\"",
            b";",
            b":",
            b"Content-Disposition: form-data; name=\"a\"",
            b"; filename=\"f\"",
            b"Content-Type: text/x;q=\"v\\\"w\", a/b",
            "\u{e9}".as_bytes(),
            b"\xFF",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut body = Vec::new();
            for _ in 0..next() % 24 {
                body.extend_from_slice(PIECES[(next() % 16) as usize]);
            }
            if let Ok(parts) = parse(&body, "B") {
                for p in parts {
                    assert!(p.start <= p.end && p.end <= body.len());
                }
            }
            let text = String::from_utf8_lossy(&body);
            let _ = boundary(&format!("multipart/form-data; boundary={text}"));
            let _ = mime_type(&text);
            let _ = extract_mime(&[text.into_owned()]);
        }
    }
}
