//! The web platform pieces the prelude takes from well-kept crates instead
//! of carrying its own: `URL` and `URLSearchParams` (the WHATWG URL standard
//! as the `url` crate implements it, its `quirks` module being the standard's
//! getters and setters, and `form_urlencoded`), `TextDecoder`'s encodings
//! (`encoding_rs`, every WHATWG label) and `atob`/`btoa` (`base64`, with the
//! standard's forgiving-base64 rules).
//!
//! Engine-neutral: the QuickJS host functions ([`super::host`]) and the V8
//! ones wrap these. Strings arrive as UTF-8 (a lone surrogate already
//! U+FFFD, as WebIDL's USVString asks) or, where the standard tells a lone
//! surrogate apart, as QuickJS's WTF-8. Every input is a guest value already
//! inside the tenant's heap, and the work is linear in it; what could grow
//! past it (decoded text) is capped by the runtime's memory limit.

use base64::Engine as _;
use encoding_rs::{DecoderResult, Encoding};
use url::{Url, quirks};

/// A URL as the standard has it: the crate's parse, and for a `file:` URL the
/// host and path the current standard gives, which can differ from the
/// crate's. The `url` crate (2.5.8) still runs two steps the standard has
/// dropped, both for `file:` only: a host is erased when the path starts
/// with a Windows drive letter (`file://host/C:/`), and leading empty path
/// segments are removed (`file:////foo`). Its own test suite lists these
/// cases as expected failures. So the `file:` states of the basic URL parser
/// (file, file slash, file host, path start, path) run here, on top of the
/// crate's host parser, query and fragment; everything else is the crate's.
struct Parsed {
    url: Url,
    file: Option<FilePart>,
}

/// A `file:` URL's host (serialized, `""` for the empty host) and path
/// segments (percent-encoded).
#[derive(Clone)]
struct FilePart {
    host: String,
    path: Vec<String>,
}

/// The standard's input clean-up: leading and trailing C0 controls and
/// spaces are stripped, then tabs and newlines removed.
fn clean_input(input: &str, strip: bool) -> String {
    let s = if strip {
        input.trim_matches(|c: char| c <= ' ')
    } else {
        input
    };
    s.chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// The part after `file:` when `input` (cleaned) has the scheme `file`, or
/// all of it when it has no scheme; `None` for any other scheme.
fn file_rest(input: &str) -> Option<&str> {
    let bytes = input.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        let end = bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .unwrap_or(bytes.len());
        if bytes.get(end) == Some(&b':') {
            return input[..end]
                .eq_ignore_ascii_case("file")
                .then(|| &input[end + 1..]);
        }
    }
    Some(input)
}

fn is_slash(c: Option<char>) -> bool {
    matches!(c, Some('/' | '\\'))
}

/// A Windows drive letter: an ASCII letter then `:` or `|`.
fn is_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && matches!(b[1], b':' | b'|')
}

fn is_normalized_drive(s: &str) -> bool {
    is_drive(s) && s.as_bytes()[1] == b':'
}

/// Whether `s` starts with a Windows drive letter (then ends, or goes on
/// with `/`, `\`, `?` or `#`).
fn starts_with_drive(s: &str) -> bool {
    s.len() >= 2
        && s.is_char_boundary(2)
        && is_drive(&s[..2])
        && matches!(s.as_bytes().get(2), None | Some(b'/' | b'\\' | b'?' | b'#'))
}

/// Percent-encodes `c` into `out` with the path percent-encode set (the
/// crate's, so that paths agree with the URLs it parses).
fn push_path_char(out: &mut String, c: char) {
    if c.is_ascii()
        && !c.is_ascii_control()
        && !matches!(c, ' ' | '"' | '<' | '>' | '`' | '#' | '?' | '{' | '}')
    {
        out.push(c);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn shorten(path: &mut Vec<String>) {
    if !(path.len() == 1 && is_normalized_drive(&path[0])) {
        path.pop();
    }
}

/// The path state of a special URL, for `file:`: `input` appended to `path`
/// up to `?`, `#` (unless `setter`, where they are encoded) or its end.
fn file_path_state(path: &mut Vec<String>, input: &str, setter: bool) {
    let mut chars = input.chars();
    loop {
        let mut buffer = String::new();
        let end = loop {
            match chars.next() {
                None => break None,
                Some(c @ ('/' | '\\')) => break Some(c),
                Some(c @ ('?' | '#')) if !setter => break Some(c),
                Some(c) => push_path_char(&mut buffer, c),
            }
        };
        let slash = is_slash(end);
        let lower = buffer.to_ascii_lowercase();
        let double = matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e");
        let single = matches!(lower.as_str(), "." | "%2e");
        if double {
            shorten(path);
            if !slash {
                path.push(String::new());
            }
        } else if single {
            if !slash {
                path.push(String::new());
            }
        } else {
            if path.is_empty() && is_drive(&buffer) {
                buffer.replace_range(1..2, ":");
            }
            path.push(buffer);
        }
        if !slash {
            return;
        }
    }
}

/// A `file:` host: `None` where the host parser fails.
fn file_host(buffer: &str) -> Option<String> {
    if buffer.is_empty() {
        return Some(String::new());
    }
    if is_drive(buffer) {
        return None; // `:` and `|` are forbidden host code points
    }
    // The crate's file host state, `localhost` becoming the empty host.
    let url = Url::parse(&format!("file://{buffer}/")).ok()?;
    Some(url.host_str().unwrap_or("").to_owned())
}

/// The standard's file state for `input` (cleaned), from `file:` on.
fn file_state(input: &str, base: Option<&FilePart>) -> Option<FilePart> {
    let rest = file_rest(input)?;
    let mut chars = rest.chars();
    let first = chars.next();
    if is_slash(first) {
        let rest1 = chars.as_str();
        if is_slash(rest1.chars().next()) {
            // File host state.
            let rest2 = &rest1[1..];
            let end = rest2.find(['/', '\\', '?', '#']).unwrap_or(rest2.len());
            let buffer = &rest2[..end];
            let mut part = FilePart {
                host: String::new(),
                path: Vec::new(),
            };
            if is_drive(buffer) {
                file_path_state(&mut part.path, rest2, false);
            } else {
                part.host = file_host(buffer)?;
                // Path start state: one slash is the path's start.
                let after = &rest2[end..];
                let after = if is_slash(after.chars().next()) {
                    &after[1..]
                } else {
                    after
                };
                file_path_state(&mut part.path, after, false);
            }
            return Some(part);
        }
        // File slash state.
        let mut part = FilePart {
            host: String::new(),
            path: Vec::new(),
        };
        if let Some(base) = base {
            part.host.clone_from(&base.host);
            if !starts_with_drive(rest1)
                && base.path.first().is_some_and(|s| is_normalized_drive(s))
            {
                part.path.push(base.path[0].clone());
            }
        }
        file_path_state(&mut part.path, rest1, false);
        return Some(part);
    }
    match base {
        Some(base) => {
            let mut part = base.clone();
            match first {
                None | Some('?' | '#') => {}
                Some(_) => {
                    if starts_with_drive(rest) {
                        part.path.clear();
                    } else {
                        shorten(&mut part.path);
                    }
                    file_path_state(&mut part.path, rest, false);
                }
            }
            Some(part)
        }
        None => {
            let mut part = FilePart {
                host: String::new(),
                path: Vec::new(),
            };
            file_path_state(&mut part.path, rest, false);
            Some(part)
        }
    }
}

/// The basic URL parser: the crate's, with the standard's `file:` host and
/// path (see [`Parsed`]).
fn parse(input: &str, base: Option<&Parsed>) -> Option<Parsed> {
    let url = Url::options()
        .base_url(base.map(|b| &b.url))
        .parse(input)
        .ok()?;
    let file = if url.scheme() == "file" {
        let input = clean_input(input, true);
        let base = base.and_then(|b| b.file.as_ref());
        Some(file_state(&input, base)?)
    } else {
        None
    };
    Some(Parsed { url, file })
}

/// The href the standard serializes. For a non-`file:` URL it is the crate's
/// but for `/.`: the standard writes `/.` before a path that starts with
/// `//` exactly when there is no host (so the path cannot read as one); the
/// crate's setters can leave it out, or keep a stale one.
fn href(p: &Parsed) -> String {
    let url = &p.url;
    let mut tail = String::new();
    if let Some(q) = url.query() {
        tail.push('?');
        tail.push_str(q);
    }
    if let Some(f) = url.fragment() {
        tail.push('#');
        tail.push_str(f);
    }
    if let Some(file) = &p.file {
        let mut out = format!("file://{}", file.host);
        for segment in &file.path {
            out.push('/');
            out.push_str(segment);
        }
        out.push_str(&tail);
        return out;
    }
    let s = url.as_str();
    let path = url.path();
    if url.cannot_be_a_base() || !s.ends_with(&format!("{path}{tail}")) {
        return s.to_owned();
    }
    let head = &s[..s.len() - path.len() - tail.len()];
    let scheme = url.scheme();
    let authority = &head[scheme.len() + 1..];
    let mut out = String::with_capacity(s.len() + 2);
    if let Some(auth) = authority.strip_prefix("//") {
        // The authority has no `/`: one there is a stale `/.`.
        out.push_str(scheme);
        out.push_str("://");
        out.push_str(auth.split('/').next().unwrap_or(""));
    } else {
        out.push_str(scheme);
        out.push(':');
        if path.starts_with("//") {
            out.push_str("/.");
        }
    }
    out.push_str(path);
    out.push_str(&tail);
    out
}

/// The origin, with the standard's rule for `blob:` (the origin of the URL
/// in its path when that is http(s), else opaque).
fn origin(url: &Url) -> String {
    if url.scheme() == "blob" {
        return match Url::parse(url.path()) {
            Ok(inner) if matches!(inner.scheme(), "http" | "https") => quirks::origin(&inner),
            _ => "null".to_owned(),
        };
    }
    quirks::origin(url)
}

/// A URL's components, in the order the prelude's `URL` keeps them: href,
/// origin, protocol, username, password, host, hostname, port, pathname,
/// search, hash.
fn components(p: &Parsed) -> Vec<String> {
    let url = &p.url;
    let (host, pathname) = match &p.file {
        Some(file) => {
            let mut path = String::new();
            for segment in &file.path {
                path.push('/');
                path.push_str(segment);
            }
            (file.host.clone(), path)
        }
        None => (
            quirks::host(url).to_owned(),
            quirks::pathname(url).to_owned(),
        ),
    };
    let hostname = match &p.file {
        Some(file) => file.host.clone(),
        None => quirks::hostname(url).to_owned(),
    };
    vec![
        href(p),
        origin(url),
        quirks::protocol(url).to_owned(),
        quirks::username(url).to_owned(),
        quirks::password(url).to_owned(),
        host,
        hostname,
        quirks::port(url).to_owned(),
        pathname,
        quirks::search(url).to_owned(),
        quirks::hash(url).to_owned(),
    ]
}

/// The URL parser: `input` against `base`, or `None` where the standard
/// returns failure (a bad base fails too).
pub(crate) fn url_parse(input: &str, base: Option<&str>) -> Option<Vec<String>> {
    let base = match base {
        Some(base) => Some(parse(base, None)?),
        None => None,
    };
    parse(input, base.as_ref()).map(|p| components(&p))
}

/// The setter `field` (an index into the components; `origin` has none)
/// applied to the URL `href` serializes, with the standard's rules: a value
/// a setter refuses leaves the URL as it was. `None` when `href` itself is
/// refused (the `href` setter throws then) or `field` is not a setter.
pub(crate) fn url_set(href_in: &str, field: u32, value: &str) -> Option<Vec<String>> {
    let mut p = parse(href_in, None)?;
    if field == 0 {
        return parse(value, None).map(|p| components(&p));
    }
    if let Some(file) = p.file.as_mut() {
        match field {
            // A file: URL has no credentials or port.
            3 | 4 | 7 => {}
            5 | 6 => {
                let value = clean_input(value, false);
                let end = value.find(['/', '\\', '?', '#']).unwrap_or(value.len());
                if let Some(host) = file_host(&value[..end]) {
                    file.host = host;
                }
            }
            8 => {
                let value = clean_input(value, false);
                let value = match value.chars().next() {
                    Some('/' | '\\') => &value[1..],
                    _ => &value[..],
                };
                file.path.clear();
                file_path_state(&mut file.path, value, true);
            }
            2 => {
                // Leaving file: is refused with an empty host; otherwise
                // the crate says which scheme, and the rest stays as is.
                let mut probe = p.url.clone();
                let _ = quirks::set_protocol(&mut probe, value);
                if probe.scheme() != "file" && !file.host.is_empty() {
                    let whole = href(&p);
                    let moved = format!("{}:{}", probe.scheme(), &whole["file:".len()..]);
                    p = parse(&moved, None)?;
                }
            }
            9 => quirks::set_search(&mut p.url, value),
            10 => quirks::set_hash(&mut p.url, value),
            _ => return None,
        }
        return Some(components(&p));
    }
    let url = &mut p.url;
    // The setters' `Err(())` means "ignored", as in the standard.
    match field {
        2 => drop(quirks::set_protocol(url, value)),
        3 => drop(quirks::set_username(url, value)),
        4 => drop(quirks::set_password(url, value)),
        5 => drop(quirks::set_host(url, value)),
        6 => drop(quirks::set_hostname(url, value)),
        7 => drop(quirks::set_port(url, value)),
        8 => quirks::set_pathname(url, value),
        9 => quirks::set_search(url, value),
        10 => quirks::set_hash(url, value),
        _ => return None,
    }
    // Through the serialization again: `/.` mended, and a URL that became
    // file: gets its file part.
    let mut whole = href(&p);
    if field == 8
        && !p.url.cannot_be_a_base()
        && clean_input(value, false).is_empty()
        && whole[p.url.scheme().len()..].starts_with("://")
    {
        // Emptying a non-special URL's path where it has a host leaves it
        // empty (the crate keeps `/`).
        if !is_special(p.url.scheme()) && p.url.path() == "/" {
            let tail_len = whole.len() - whole.find(['?', '#']).unwrap_or(whole.len());
            let cut = whole.len() - tail_len - 1;
            whole.remove(cut);
        }
    }
    parse(&whole, None).map(|p| components(&p))
}

fn is_special(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "ws" | "wss" | "ftp" | "file")
}

/// application/x-www-form-urlencoded parsing: names and values, flattened
/// (`[name0, value0, name1, value1, …]`), percent-decoded as UTF-8.
pub(crate) fn form_parse(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in form_urlencoded::parse(input.as_bytes()) {
        out.push(name.into_owned());
        out.push(value.into_owned());
    }
    out
}

/// application/x-www-form-urlencoded serializing of a flattened list (an
/// odd last item is ignored).
pub(crate) fn form_serialize(list: &[String]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for pair in list.chunks_exact(2) {
        out.append_pair(&pair[0], &pair[1]);
    }
    out.finish()
}

/// `URLSearchParams.sort`: a stable sort of a flattened list by name, in
/// UTF-16 code unit order.
pub(crate) fn form_sort(list: &[String]) -> Vec<String> {
    let mut pairs: Vec<&[String]> = list.chunks_exact(2).collect();
    pairs.sort_by(|a, b| a[0].encode_utf16().cmp(b[0].encode_utf16()));
    pairs.concat()
}

/// The encoding a `TextDecoder` label names (any WHATWG label, after ASCII
/// whitespace is trimmed, in any case), as its lowercased name. `None` for an
/// unknown label and for the replacement encoding, which `TextDecoder`
/// refuses.
pub(crate) fn encoding_name(label: &str) -> Option<String> {
    Encoding::for_label_no_replacement(label.as_bytes()).map(|e| e.name().to_ascii_lowercase())
}

fn encoding(name: &str) -> Option<&'static Encoding> {
    Encoding::for_label_no_replacement(name.as_bytes())
}

/// Why a decode gave no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// `fatal` and the bytes are not valid in the encoding (a TypeError).
    Malformed,
    /// The text would not fit in the tenant's memory (a RangeError).
    TooLarge,
    /// No such encoding or stream (a TypeError; the prelude never asks).
    Unknown,
    /// Too many streams decoding at once (a RangeError).
    TooManyStreams,
}

impl DecodeError {
    /// The message the guest's exception carries.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Malformed => "TextDecoder: the data is not valid in its encoding",
            Self::TooLarge => "TextDecoder: the text would not fit in the tenant's memory",
            Self::Unknown => "TextDecoder: no such encoding",
            Self::TooManyStreams => "TextDecoder: too many streams decoding at once",
        }
    }

    /// Whether the guest sees a RangeError (else a TypeError).
    pub(crate) fn is_range(self) -> bool {
        matches!(self, Self::TooLarge | Self::TooManyStreams)
    }
}

/// Input bytes decoded per step, so the text grows in steps the memory cap
/// checks, never in one allocation sized by the input.
const DECODE_STEP: usize = 64 * 1024;

/// Decodes `src` with `decoder` (`last`: the stream ends here), the text
/// never longer than `limit` bytes of UTF-8 (nor its buffer larger).
fn decode_with(
    decoder: &mut encoding_rs::Decoder,
    src: &[u8],
    fatal: bool,
    last: bool,
    limit: usize,
) -> Result<String, DecodeError> {
    let mut out = String::new();
    let mut rest = src;
    loop {
        let step = rest.len().min(DECODE_STEP);
        let end = last && step == rest.len();
        let need = if fatal {
            decoder.max_utf8_buffer_length_without_replacement(step)
        } else {
            decoder.max_utf8_buffer_length(step)
        }
        .ok_or(DecodeError::TooLarge)?;
        let spare = out.capacity() - out.len();
        if spare < need {
            // Grow by doubling, never past the cap: a step that finds no
            // room left ends with TooLarge below.
            let want = (out.capacity() * 2)
                .max(out.len() + need)
                .min(limit.max(out.capacity()));
            out.reserve_exact(want - out.len());
        }
        let room = out.capacity() - out.len() >= need;
        let (full, read) = if fatal {
            let (result, read) =
                decoder.decode_to_string_without_replacement(&rest[..step], &mut out, end);
            match result {
                DecoderResult::Malformed(..) => return Err(DecodeError::Malformed),
                DecoderResult::OutputFull => (true, read),
                DecoderResult::InputEmpty => (false, read),
            }
        } else {
            let (result, read, _) = decoder.decode_to_string(&rest[..step], &mut out, end);
            (result == encoding_rs::CoderResult::OutputFull, read)
        };
        rest = &rest[read..];
        if full {
            if room || out.capacity() >= limit {
                return Err(DecodeError::TooLarge);
            }
        } else if rest.is_empty() {
            return Ok(out);
        }
    }
}

fn new_decoder(name: &str, ignore_bom: bool) -> Result<encoding_rs::Decoder, DecodeError> {
    let encoding = encoding(name).ok_or(DecodeError::Unknown)?;
    // TextDecoder strips its own encoding's BOM, never sniffs another one.
    Ok(if ignore_bom {
        encoding.new_decoder_without_bom_handling()
    } else {
        encoding.new_decoder_with_bom_removal()
    })
}

/// `TextDecoder.decode` outside a stream: all of `src`, then the end.
pub(crate) fn decode(
    name: &str,
    ignore_bom: bool,
    src: &[u8],
    fatal: bool,
    limit: usize,
) -> Result<String, DecodeError> {
    decode_with(&mut new_decoder(name, ignore_bom)?, src, fatal, true, limit)
}

/// Most streams a runtime decodes at once (each an `encoding_rs` decoder of
/// a few dozen bytes in the host): a fixed cap, so a tenant opening streams
/// without end gets a RangeError, never host growth.
pub(crate) const MAX_DECODER_STREAMS: usize = 1024;

/// The decoders of `TextDecoder`s in the middle of a stream (`decode(…,
/// { stream: true })`), by handle. A decoder outside a stream keeps none.
#[derive(Default)]
pub(crate) struct Decoders {
    slots: Vec<Option<encoding_rs::Decoder>>,
    free: Vec<u32>,
}

impl std::fmt::Debug for Decoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoders")
            .field("open", &(self.slots.len() - self.free.len()))
            .finish()
    }
}

impl Decoders {
    /// A new stream's decoder, by handle.
    pub(crate) fn open(&mut self, name: &str, ignore_bom: bool) -> Result<u32, DecodeError> {
        let decoder = new_decoder(name, ignore_bom)?;
        if let Some(handle) = self.free.pop() {
            self.slots[handle as usize] = Some(decoder);
            return Ok(handle);
        }
        if self.slots.len() >= MAX_DECODER_STREAMS {
            return Err(DecodeError::TooManyStreams);
        }
        self.slots.push(Some(decoder));
        Ok(u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX))
    }

    /// The next part of stream `handle`'s text (`last`: the stream ends).
    pub(crate) fn decode(
        &mut self,
        handle: u32,
        src: &[u8],
        fatal: bool,
        last: bool,
        limit: usize,
    ) -> Result<String, DecodeError> {
        let decoder = self
            .slots
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
            .ok_or(DecodeError::Unknown)?;
        decode_with(decoder, src, fatal, last, limit)
    }

    /// Frees stream `handle`'s decoder (an unknown handle is ignored).
    pub(crate) fn close(&mut self, handle: u32) {
        if let Some(slot) = self.slots.get_mut(handle as usize)
            && slot.take().is_some()
        {
            self.free.push(handle);
        }
    }
}

/// `TextEncoder.encodeInto`: as much of `wtf8` (a guest string; a lone
/// surrogate is written as U+FFFD) as fits whole in `room` bytes of UTF-8,
/// and how many UTF-16 code units of the string that is.
pub(crate) fn encode_into(wtf8: &[u8], room: usize) -> (usize, Vec<u8>) {
    let mut out = Vec::with_capacity(room.min(wtf8.len()));
    let mut read = 0;
    let mut i = 0;
    while i < wtf8.len() {
        let lead = wtf8[i];
        let len = match lead {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        }
        .min(wtf8.len() - i);
        if out.len() + len > room {
            break;
        }
        let seq = &wtf8[i..i + len];
        if len == 3 && lead == 0xED && seq[1] >= 0xA0 {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        } else {
            out.extend_from_slice(seq);
        }
        read += if len == 4 { 2 } else { 1 };
        i += len;
    }
    (read, out)
}

/// The forgiving-base64 decode `atob` uses: ASCII whitespace is skipped,
/// padding is optional where the length allows it; `None` (an
/// InvalidCharacterError) for anything else. The bytes come back as a
/// string of code points U+0000..U+00FF.
pub(crate) fn atob(input: &str) -> Option<String> {
    let mut data: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' '))
        .collect();
    if data.len().is_multiple_of(4) {
        for _ in 0..2 {
            if data.last() == Some(&b'=') {
                data.pop();
            }
        }
    }
    if data.len() % 4 == 1
        || !data
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    {
        return None;
    }
    const FORGIVING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    let bytes = FORGIVING.decode(&data).ok()?;
    Some(bytes.iter().map(|&b| char::from(b)).collect())
}

/// `btoa`: the base64 of a string's code points, each a byte; `None` (an
/// InvalidCharacterError) when one is past U+00FF. `text` is WTF-8 or UTF-8.
pub(crate) fn btoa(text: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b @ 0x00..=0x7F => {
                bytes.push(b);
                i += 1;
            }
            // U+0080..U+00FF: C2 80..BF or C3 80..BF.
            lead @ (0xC2 | 0xC3) if i + 1 < text.len() => {
                bytes.push(((lead & 0x03) << 6) | (text[i + 1] & 0x3F));
                i += 2;
            }
            _ => return None,
        }
    }
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_components_and_setters() {
        let parts = url_parse("../b?x=1#f", Some("HTTP://Ex.com:80/a/c")).unwrap();
        assert_eq!(parts[0], "http://ex.com/b?x=1#f");
        assert_eq!(parts[1], "http://ex.com");
        assert!(url_parse("http://[::1", None).is_none());
        assert!(url_parse("not a url", None).is_none());
        let set = url_set("http://a.com/", 7, "8080").unwrap();
        assert_eq!(set[0], "http://a.com:8080/");
        let ignored = url_set("http://a.com/", 7, "99999").unwrap();
        assert_eq!(ignored[0], "http://a.com/");
        assert!(url_set("http://a.com/", 0, "nope").is_none());
    }

    #[test]
    fn file_urls_keep_host_and_empty_segments() {
        let href = |input: &str, base: Option<&str>| url_parse(input, base).unwrap().remove(0);
        assert_eq!(
            href("file://example.net/C:/", None),
            "file://example.net/C:/"
        );
        assert_eq!(href("C|", Some("file://host/dir/file")), "file://host/C:");
        assert_eq!(
            href("/c:/foo/bar", Some("file://host/path")),
            "file://host/c:/foo/bar"
        );
        assert_eq!(href("file:////foo", None), "file:////foo");
        assert_eq!(href("file://localhost//a//../..//", None), "file://///");
        assert_eq!(href("..", Some("file:///C:/")), "file:///C:/");
        assert_eq!(href(" file:/a\\b?q#f ", None), "file:///a/b?q#f");
        let parts = url_parse("file://h/C:/a", None).unwrap();
        assert_eq!((&*parts[5], &*parts[8]), ("h", "/C:/a"));
        assert!(url_parse("file://exa mple/", None).is_none());
        // Setters on file: URLs keep the standard's host and path too.
        assert_eq!(
            url_set("file:///unicorn", 8, "//\\/").unwrap()[0],
            "file://////"
        );
        assert_eq!(
            url_set("file://h/C:/", 5, "other").unwrap()[0],
            "file://other/C:/"
        );
        assert_eq!(
            url_set("file://h/C:/", 5, "a:1").unwrap()[0],
            "file://h/C:/"
        );
        assert_eq!(url_set("file://h/C:/", 7, "8").unwrap()[0], "file://h/C:/");
        assert_eq!(url_set("file://h/x", 2, "http").unwrap()[0], "http://h/x");
        assert_eq!(url_set("file:///x", 2, "http").unwrap()[0], "file:///x");
        assert_eq!(
            url_set("file://h/x", 9, "a b").unwrap()[0],
            "file://h/x?a%20b"
        );
    }

    /// Random inputs built from the pieces the file: states care about:
    /// nothing panics, and a file: URL's href parses back to itself.
    #[test]
    fn file_urls_round_trip() {
        const PIECES: &[&str] = &[
            "/",
            "\\",
            "C:",
            "c|",
            "?",
            "#",
            ".",
            "..",
            "%2e",
            "\u{e9}",
            "\u{1F600}",
            " ",
            "\t",
            "host",
            "file:",
            "a",
            "[::1]",
            "localhost",
            "%",
            "//",
            "non-spec:",
        ];
        let bases = [
            None,
            Some("file:///C:/a/b"),
            Some("file://h/x/y"),
            Some("http://e.com/"),
        ];
        let mut seed = 0x2545_f491_u64;
        for _ in 0..20_000 {
            let mut input = String::new();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = 1 + (seed >> 60) as usize % 6;
            for _ in 0..len {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                input.push_str(PIECES[(seed >> 33) as usize % PIECES.len()]);
            }
            let base = bases[(seed >> 20) as usize % bases.len()];
            let Some(parts) = url_parse(&input, base) else {
                continue;
            };
            let again = url_parse(&parts[0], None).expect("an href parses");
            assert_eq!(again[0], parts[0], "{input:?} against {base:?}");
            for field in [5, 8, 9] {
                let set = url_set(&parts[0], field, &input).expect("setters keep a URL");
                assert_eq!(
                    url_parse(&set[0], None).unwrap()[0],
                    set[0],
                    "{input:?} set {field}"
                );
            }
        }
    }

    #[test]
    fn non_special_paths_and_blob_origins() {
        assert_eq!(
            url_set("non-spec:/", 8, "//p").unwrap()[0],
            "non-spec:/.//p"
        );
        assert_eq!(url_set("non-spec:/.//", 8, "p").unwrap()[0], "non-spec:/p");
        assert_eq!(
            url_set("non-spec:/.//p", 6, "h").unwrap()[0],
            "non-spec://h//p"
        );
        assert_eq!(url_set("foo:///some/path", 8, "").unwrap()[0], "foo://");
        assert_eq!(url_set("foo://h/p?q", 8, "\t").unwrap()[0], "foo://h?q");
        assert_eq!(
            url_set("foo:/x?u=a://b", 8, "").unwrap()[0],
            "foo:/?u=a://b"
        );
        let origin = |s: &str| url_parse(s, None).unwrap().remove(1);
        assert_eq!(origin("blob:https://a.com:443/x"), "https://a.com");
        assert_eq!(origin("blob:ftp://host/path"), "null");
        assert_eq!(origin("blob:blob:https://a.com/"), "null");
    }

    #[test]
    fn forms() {
        let list = form_parse("a=%FE%FF&b+c=d%20e&&=x");
        assert_eq!(list, ["a", "\u{FFFD}\u{FFFD}", "b c", "d e", "", "x"]);
        assert_eq!(form_serialize(&list[2..4]), "b+c=d+e");
        let sorted = form_sort(&[
            "\u{FFFD}".into(),
            "1".into(),
            "\u{1F600}".into(),
            "2".into(),
        ]);
        assert_eq!(sorted[1], "2", "U+1F600 sorts before U+FFFD in UTF-16");
    }

    #[test]
    fn decoding_is_capped_and_streams() {
        let big = vec![0xFFu8; 10_000];
        assert_eq!(
            decode("utf-8", false, &big, false, 1000),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(
            decode("utf-8", false, &[0xFF], true, 1000),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode("utf-8", false, b"\xEF\xBB\xBFa", false, 100).unwrap(),
            "a"
        );
        assert_eq!(
            decode("utf-8", true, b"\xEF\xBB\xBFa", false, 100).unwrap(),
            "\u{FEFF}a"
        );
        assert_eq!(decode("utf-16le", false, b"a\0", false, 100).unwrap(), "a");
        let mut d = Decoders::default();
        let h = d.open("utf-8", false).unwrap();
        assert_eq!(d.decode(h, b"\xE2\x82", false, false, 100).unwrap(), "");
        assert_eq!(d.decode(h, b"\xAC", false, true, 100).unwrap(), "\u{20AC}");
        d.close(h);
        for _ in 0..MAX_DECODER_STREAMS {
            d.open("utf-8", false).unwrap();
        }
        assert_eq!(d.open("utf-8", false), Err(DecodeError::TooManyStreams));
        assert_eq!(encoding_name(" Latin1 ").as_deref(), Some("windows-1252"));
        assert_eq!(encoding_name("replacement"), None);
    }

    #[test]
    fn encode_into_counts_utf16() {
        assert_eq!(
            encode_into("a\u{1F600}b".as_bytes(), 5),
            (3, "a\u{1F600}".as_bytes().to_vec())
        );
        assert_eq!(encode_into("\u{20AC}".as_bytes(), 2), (0, Vec::new()));
        assert_eq!(
            encode_into(b"\xED\xA0\x80", 3),
            (1, "\u{FFFD}".as_bytes().to_vec())
        );
    }

    #[test]
    fn base64() {
        assert_eq!(atob(" YW Jj\n").as_deref(), Some("abc"));
        assert_eq!(atob("YQ").as_deref(), Some("a"));
        assert_eq!(atob("YQ==").as_deref(), Some("a"));
        assert_eq!(atob("YQ="), None);
        assert_eq!(atob("Y"), None);
        assert_eq!(atob("YR==").as_deref(), Some("a"));
        assert_eq!(atob("/w==").as_deref(), Some("\u{FF}"));
        assert_eq!(btoa("\u{FF}a".as_bytes()).as_deref(), Some("/2E="));
        assert_eq!(btoa("\u{100}".as_bytes()), None);
    }
}
