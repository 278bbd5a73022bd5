//! The native coders behind `CompressionStream` and `DecompressionStream`
//! ("gzip", "deflate" and "deflate-raw", on `flate2` with its pure-Rust
//! miniz_oxide backend).
//!
//! Containment: a tenant keeps at most [`MAX_CODERS`] coders open at once,
//! counted across all its runtimes, and each open coder's state, which lives
//! in the host outside the tenant's heap (a compressor's hash chains and
//! window take 344 KiB), is charged to its runtime's memory while it is open
//! ([`footprint`], [`Coders::charged`]): the engine takes it out of the
//! heap's limit, so a tenant holding coders open has that much less heap, and
//! one whose heap is full cannot open one ([`CoderError::NoRoom`]). The
//! output of one chunk is handed out in pieces of at most
//! [`PIECE`] bytes, each copied into the tenant's heap by the caller as it
//! is made, so the host never holds more than a few pieces and the tenant's
//! memory limit counts all of it; and one chunk's output stops with
//! [`CoderError::TooLarge`] past the caller's `limit`, so a small
//! decompression bomb cannot grow past the tenant's memory (nor keep the
//! host busy inflating what could never be kept).
//!
//! Engine-neutral, like [`super::web`]: the QuickJS host functions and the
//! V8 ones wrap these.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compression, Decompress, FlushDecompress, Status};

/// Most coders a runtime keeps open at once.
pub(crate) const MAX_CODERS: usize = 32;

/// The largest piece of output handed to the caller at once.
pub(crate) const PIECE: usize = 64 * 1024;

/// Input fed to a coder per step, so each step's output stays small.
const STEP: usize = 4 * 1024;

/// Host bytes an open compressor holds: flate2 1.1's miniz_oxide compressor
/// state is 344 KiB whatever the format (measured with a counting global
/// allocator), plus up to 64 KiB of output its sink keeps capacity for
/// (what the final flush of its lookahead buffer makes).
const ENCODER_BYTES: usize = 416 * 1024;

/// Host bytes an open gzip decoder holds: 74 KiB of state plus the 32 KiB
/// its sink keeps capacity for (one inflated buffer's worth).
const GUNZIP_BYTES: usize = 112 * 1024;

/// Host bytes an open zlib or raw inflater holds: 42 KiB of state plus the
/// [`PIECE`]-sized buffer each `write` inflates into.
const INFLATE_BYTES: usize = 112 * 1024;

/// The host bytes a coder for `format` holds while open, charged to the
/// tenant's memory (see the module's doc).
pub(crate) fn footprint(format: Format, compress: bool) -> usize {
    match (format, compress) {
        (_, true) => ENCODER_BYTES,
        (Format::Gzip, false) => GUNZIP_BYTES,
        (Format::Deflate | Format::DeflateRaw, false) => INFLATE_BYTES,
    }
}

/// A Compression Streams format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Gzip,
    Deflate,
    DeflateRaw,
}

impl Format {
    /// The format a `CompressionStream` argument names (exactly, as the
    /// standard's enum does).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "deflate-raw" => Some(Self::DeflateRaw),
            _ => None,
        }
    }
}

/// Why a coder gave no (more) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoderError {
    /// The compressed data is not valid (a TypeError).
    Corrupt,
    /// Data follows the end of the compressed stream (a TypeError).
    TrailingData,
    /// The compressed stream ended early (a TypeError).
    Truncated,
    /// One chunk's output would pass the limit (a RangeError).
    TooLarge,
    /// Too many coders open in this runtime (a RangeError).
    TooMany,
    /// The tenant's memory has no room for another coder's state (a
    /// RangeError).
    NoRoom,
    /// No such coder (a TypeError; the prelude never asks).
    Unknown,
    /// The caller could not keep a piece of output (its heap is full).
    OutOfMemory,
}

impl CoderError {
    /// The message the guest's exception carries.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Corrupt => "DecompressionStream: the compressed data is corrupt",
            Self::TrailingData => {
                "DecompressionStream: data follows the end of the compressed stream"
            }
            Self::Truncated => "DecompressionStream: the compressed stream ended early",
            Self::TooLarge => {
                "DecompressionStream: one chunk's output would pass half the tenant's memory limit"
            }
            Self::TooMany => {
                "CompressionStream/DecompressionStream: too many streams open at once (the limit is 32)"
            }
            Self::NoRoom => {
                "CompressionStream/DecompressionStream: the tenant's memory has no room for another stream's state"
            }
            Self::Unknown => "CompressionStream/DecompressionStream: the stream is closed",
            Self::OutOfMemory => "out of memory",
        }
    }

    /// Whether the guest sees a RangeError (else a TypeError).
    pub(crate) fn is_range(self) -> bool {
        matches!(self, Self::TooLarge | Self::TooMany | Self::NoRoom)
    }
}

/// A compressor: a `flate2` writer over a vector the output collects in.
trait Encoder: std::io::Write + Send {
    fn sink(&mut self) -> &mut Vec<u8>;
    fn end(&mut self) -> std::io::Result<()>;
}

macro_rules! encoder {
    ($t:ty) => {
        impl Encoder for $t {
            fn sink(&mut self) -> &mut Vec<u8> {
                self.get_mut()
            }
            fn end(&mut self) -> std::io::Result<()> {
                self.try_finish()
            }
        }
    };
}
encoder!(flate2::write::GzEncoder<Vec<u8>>);
encoder!(flate2::write::ZlibEncoder<Vec<u8>>);
encoder!(flate2::write::DeflateEncoder<Vec<u8>>);

enum Coder {
    Encode(Box<dyn Encoder>),
    Gunzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    /// Inflates zlib (`deflate`) or raw deflate data; `ended` once the
    /// stream's last block is in.
    Inflate {
        inflate: Box<Decompress>,
        ended: bool,
    },
}

/// Where a coder's output goes: pieces of at most [`PIECE`] bytes, counted
/// against a limit. `emit` returns false when the caller could not keep one.
struct Out<'a> {
    emit: &'a mut dyn FnMut(&[u8]) -> bool,
    total: usize,
    limit: usize,
}

impl Out<'_> {
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), CoderError> {
        while !bytes.is_empty() {
            let n = bytes.len().min(PIECE);
            self.total += n;
            if self.total > self.limit {
                return Err(CoderError::TooLarge);
            }
            if !(self.emit)(&bytes[..n]) {
                return Err(CoderError::OutOfMemory);
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Hands out what a writer-based coder has buffered in `sink`.
    fn drain(&mut self, sink: &mut Vec<u8>) -> Result<(), CoderError> {
        let out = self.push(sink);
        sink.clear();
        out
    }
}

fn corrupt(_: std::io::Error) -> CoderError {
    CoderError::Corrupt
}

impl Coder {
    fn new(format: Format, compress: bool) -> Self {
        let level = Compression::default();
        match (format, compress) {
            (Format::Gzip, true) => {
                Self::Encode(Box::new(flate2::write::GzEncoder::new(Vec::new(), level)))
            }
            (Format::Deflate, true) => {
                Self::Encode(Box::new(flate2::write::ZlibEncoder::new(Vec::new(), level)))
            }
            (Format::DeflateRaw, true) => Self::Encode(Box::new(
                flate2::write::DeflateEncoder::new(Vec::new(), level),
            )),
            (Format::Gzip, false) => {
                Self::Gunzip(Box::new(flate2::write::GzDecoder::new(Vec::new())))
            }
            (Format::Deflate | Format::DeflateRaw, false) => Self::Inflate {
                inflate: Box::new(Decompress::new(format == Format::Deflate)),
                ended: false,
            },
        }
    }

    /// Feeds `input` in steps, handing out the output as it comes.
    fn write(&mut self, input: &[u8], out: &mut Out<'_>) -> Result<(), CoderError> {
        match self {
            Self::Encode(e) => {
                for step in input.chunks(STEP) {
                    e.write_all(step).map_err(corrupt)?;
                    out.drain(e.sink())?;
                }
                Ok(())
            }
            Self::Gunzip(d) => {
                let mut rest = input;
                while !rest.is_empty() {
                    let step = rest.len().min(STEP);
                    // One `write` inflates at most the decoder's 32 KiB
                    // buffer's worth, so `sink` stays small.
                    let n = d.write(&rest[..step]).map_err(corrupt)?;
                    out.drain(d.get_mut())?;
                    if n == 0 {
                        // The member and its trailer are in: what is left
                        // follows the end of the stream.
                        return Err(CoderError::TrailingData);
                    }
                    rest = &rest[n..];
                }
                // What the decoder still buffers.
                d.flush().map_err(corrupt)?;
                out.drain(d.get_mut())
            }
            Self::Inflate { inflate, ended } => {
                let mut buf = vec![0u8; PIECE];
                let mut rest = input;
                loop {
                    if *ended {
                        return if rest.is_empty() {
                            Ok(())
                        } else {
                            Err(CoderError::TrailingData)
                        };
                    }
                    let (in0, out0) = (inflate.total_in(), inflate.total_out());
                    let status = inflate
                        .decompress(rest, &mut buf, FlushDecompress::None)
                        .map_err(|_| CoderError::Corrupt)?;
                    let read = usize::try_from(inflate.total_in() - in0).unwrap_or(usize::MAX);
                    let made = usize::try_from(inflate.total_out() - out0).unwrap_or(usize::MAX);
                    rest = &rest[read.min(rest.len())..];
                    out.push(&buf[..made])?;
                    if status == Status::StreamEnd {
                        *ended = true;
                    } else if read == 0 && made == 0 {
                        // No progress: everything given has been taken.
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The host bytes this coder is charged ([`footprint`]).
    fn bytes(&self) -> usize {
        match self {
            Self::Encode(_) => ENCODER_BYTES,
            Self::Gunzip(_) => GUNZIP_BYTES,
            Self::Inflate { .. } => INFLATE_BYTES,
        }
    }

    /// Ends the stream: a compressor's last output, or a decompressor's
    /// check that its stream ended.
    fn finish(&mut self, out: &mut Out<'_>) -> Result<(), CoderError> {
        match self {
            Self::Encode(e) => {
                e.end().map_err(corrupt)?;
                out.drain(e.sink())
            }
            Self::Gunzip(d) => {
                // Fails when the member or its trailer is incomplete, or
                // the trailer's CRC or length does not match.
                let finished = d.try_finish();
                out.drain(d.get_mut())?;
                finished.map_err(|_| CoderError::Truncated)
            }
            Self::Inflate { ended, .. } => {
                if *ended {
                    Ok(())
                } else {
                    Err(CoderError::Truncated)
                }
            }
        }
    }
}

/// The coders of the streams open in one runtime, by handle.
#[derive(Default)]
pub(crate) struct Coders {
    slots: Vec<Option<Coder>>,
    free: Vec<u32>,
    /// The sum of the open coders' [`footprint`]s.
    charged: usize,
    /// Coders open in all the tenant's runtimes (shared by their `Coders`),
    /// against [`MAX_CODERS`].
    tenant_open: Arc<AtomicUsize>,
}

impl Drop for Coders {
    fn drop(&mut self) {
        self.tenant_open
            .fetch_sub(self.open_count(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Coders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coders")
            .field("open", &self.open_count())
            .field("charged", &self.charged)
            .finish()
    }
}

impl Coders {
    /// Coders of one runtime of a tenant whose runtimes all count their open
    /// coders in `tenant_open`.
    pub(crate) fn counted_in(tenant_open: Arc<AtomicUsize>) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            charged: 0,
            tenant_open,
        }
    }

    /// How many coders are open.
    pub(crate) fn open_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The host bytes the open coders are charged to the tenant's memory:
    /// the engine keeps the heap's limit that much below the tenant's.
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// A new coder, by handle: a compressor when `compress`, else a
    /// decompressor. `has_room` is asked first whether the tenant's memory
    /// can give up the coder's [`footprint`]; when it says no, no coder is
    /// made.
    pub(crate) fn open(
        &mut self,
        format: Format,
        compress: bool,
        has_room: &mut dyn FnMut(usize) -> bool,
    ) -> Result<u32, CoderError> {
        if self.tenant_open.fetch_add(1, Ordering::Relaxed) >= MAX_CODERS {
            self.tenant_open.fetch_sub(1, Ordering::Relaxed);
            return Err(CoderError::TooMany);
        }
        let bytes = footprint(format, compress);
        if !has_room(bytes) {
            self.tenant_open.fetch_sub(1, Ordering::Relaxed);
            return Err(CoderError::NoRoom);
        }
        let coder = Some(Coder::new(format, compress));
        self.charged += bytes;
        if let Some(handle) = self.free.pop() {
            self.slots[handle as usize] = coder;
            return Ok(handle);
        }
        self.slots.push(coder);
        Ok(u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX))
    }

    /// Coder `handle` and an output sink of at most `limit` bytes to `emit`.
    fn open_coder<'a>(
        &mut self,
        handle: u32,
        limit: usize,
        emit: &'a mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(&mut Coder, Out<'a>), CoderError> {
        let coder = self
            .slots
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
            .ok_or(CoderError::Unknown)?;
        Ok((
            coder,
            Out {
                emit,
                total: 0,
                limit,
            },
        ))
    }

    /// Feeds `input` to coder `handle`; its output goes to `emit` in pieces
    /// of at most [`PIECE`] bytes, at most `limit` bytes in all. A coder that
    /// fails is closed.
    pub(crate) fn write(
        &mut self,
        handle: u32,
        input: &[u8],
        limit: usize,
        emit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), CoderError> {
        let (coder, mut out) = self.open_coder(handle, limit, emit)?;
        let result = coder.write(input, &mut out);
        if result.is_err() {
            self.close(handle);
        }
        result
    }

    /// Ends coder `handle`'s stream (its last output to `emit`, as in
    /// [`Self::write`]) and closes it, whatever the result.
    pub(crate) fn finish(
        &mut self,
        handle: u32,
        limit: usize,
        emit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), CoderError> {
        let (coder, mut out) = self.open_coder(handle, limit, emit)?;
        let result = coder.finish(&mut out);
        self.close(handle);
        result
    }

    /// Frees coder `handle` (an unknown handle is ignored).
    pub(crate) fn close(&mut self, handle: u32) {
        if let Some(slot) = self.slots.get_mut(handle as usize)
            && let Some(coder) = slot.take()
        {
            self.charged -= coder.bytes();
            self.tenant_open.fetch_sub(1, Ordering::Relaxed);
            self.free.push(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(coders: &mut Coders, h: u32, input: &[u8], limit: usize) -> Result<Vec<u8>, CoderError> {
        let mut all = Vec::new();
        coders.write(h, input, limit, &mut |b| {
            assert!(b.len() <= PIECE);
            all.extend_from_slice(b);
            true
        })?;
        Ok(all)
    }

    fn end(coders: &mut Coders, h: u32) -> Result<Vec<u8>, CoderError> {
        let mut all = Vec::new();
        coders.finish(h, usize::MAX, &mut |b| {
            all.extend_from_slice(b);
            true
        })?;
        Ok(all)
    }

    fn roundtrip(format: Format, data: &[u8]) {
        let mut c = Coders::default();
        let h = c.open(format, true, &mut |_| true).unwrap();
        let mut z = run(&mut c, h, &data[..data.len() / 2], usize::MAX).unwrap();
        z.extend(run(&mut c, h, &data[data.len() / 2..], usize::MAX).unwrap());
        z.extend(end(&mut c, h).unwrap());
        assert_eq!(c.open_count(), 0);
        let d = c.open(format, false, &mut |_| true).unwrap();
        let mut plain = Vec::new();
        for byte in z.chunks(7) {
            plain.extend(run(&mut c, d, byte, usize::MAX).unwrap());
        }
        plain.extend(end(&mut c, d).unwrap());
        assert_eq!(plain, data, "{format:?}");
        // Truncated input is an error at the end; data after it at once.
        let d = c.open(format, false, &mut |_| true).unwrap();
        run(&mut c, d, &z[..z.len() - 1], usize::MAX).unwrap();
        assert_eq!(end(&mut c, d), Err(CoderError::Truncated), "{format:?}");
        let d = c.open(format, false, &mut |_| true).unwrap();
        let mut junk = z.clone();
        junk.extend_from_slice(b"junk");
        assert_eq!(
            run(&mut c, d, &junk, usize::MAX),
            Err(CoderError::TrailingData)
        );
        assert_eq!(c.open_count(), 0, "a failed coder is closed");
    }

    #[test]
    fn the_cap_counts_the_coders_of_all_a_tenants_runtimes() {
        let tenant = Arc::new(AtomicUsize::new(0));
        let mut a = Coders::counted_in(tenant.clone());
        let mut b = Coders::counted_in(tenant.clone());
        for _ in 0..MAX_CODERS / 2 {
            a.open(Format::Gzip, true, &mut |_| true).unwrap();
        }
        for _ in MAX_CODERS / 2..MAX_CODERS {
            b.open(Format::Gzip, false, &mut |_| true).unwrap();
        }
        assert_eq!(
            a.open(Format::Gzip, true, &mut |_| true),
            Err(CoderError::TooMany)
        );
        assert_eq!(
            b.open(Format::Gzip, true, &mut |_| true),
            Err(CoderError::TooMany)
        );
        b.close(0);
        assert!(a.open(Format::Deflate, true, &mut |_| true).is_ok());
        assert_eq!(tenant.load(Ordering::Relaxed), MAX_CODERS);
        // A runtime dropped (after a limit, or parked) gives its coders back.
        drop(a);
        assert_eq!(tenant.load(Ordering::Relaxed), MAX_CODERS / 2 - 1);
        assert!(b.open(Format::Gzip, true, &mut |_| true).is_ok());
    }

    #[test]
    fn formats_roundtrip_in_pieces() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for format in [Format::Gzip, Format::Deflate, Format::DeflateRaw] {
            roundtrip(format, &data);
            roundtrip(format, b"");
        }
        assert_eq!(Format::from_name("GZIP"), None);
    }

    #[test]
    fn bombs_stop_at_the_limit_and_coders_are_capped() {
        let mut c = Coders::default();
        let h = c.open(Format::Gzip, true, &mut |_| true).unwrap();
        let zeros = vec![0u8; 8 << 20];
        let mut bomb = run(&mut c, h, &zeros, usize::MAX).unwrap();
        bomb.extend(end(&mut c, h).unwrap());
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let d = c.open(Format::Gzip, false, &mut |_| true).unwrap();
        assert_eq!(run(&mut c, d, &bomb, 1 << 20), Err(CoderError::TooLarge));
        assert_eq!(
            run(&mut c, 0, &[0x1f, 0x8b, 9], usize::MAX),
            Err(CoderError::Unknown)
        );
        let d = c.open(Format::Deflate, false, &mut |_| true).unwrap();
        assert_eq!(
            run(&mut c, d, b"not zlib", usize::MAX),
            Err(CoderError::Corrupt)
        );
        for _ in 0..MAX_CODERS {
            c.open(Format::DeflateRaw, false, &mut |_| true).unwrap();
        }
        assert_eq!(
            c.open(Format::Gzip, true, &mut |_| true),
            Err(CoderError::TooMany)
        );
        c.close(3);
        assert!(c.open(Format::Gzip, true, &mut |_| true).is_ok());
    }

    /// Every open coder is charged its footprint until it is closed, by
    /// `close`, by `finish` or by a failed `write`; a coder the tenant has
    /// no room for is never made.
    #[test]
    fn open_coders_are_charged_until_closed() {
        let mut c = Coders::default();
        let mut asked = Vec::new();
        let mut yes = |bytes| {
            asked.push(bytes);
            true
        };
        let e = c.open(Format::Gzip, true, &mut yes).unwrap();
        let d = c.open(Format::Deflate, false, &mut yes).unwrap();
        assert_eq!(asked, [ENCODER_BYTES, INFLATE_BYTES]);
        assert_eq!(c.charged(), ENCODER_BYTES + INFLATE_BYTES);
        assert_eq!(
            c.open(Format::Gzip, false, &mut |_| false),
            Err(CoderError::NoRoom)
        );
        assert_eq!(c.open_count(), 2, "a refused coder is not made");
        assert_eq!(c.charged(), ENCODER_BYTES + INFLATE_BYTES);
        assert_eq!(
            run(&mut c, d, b"not zlib", usize::MAX),
            Err(CoderError::Corrupt)
        );
        assert_eq!(
            c.charged(),
            ENCODER_BYTES,
            "a failed coder is no longer charged"
        );
        end(&mut c, e).unwrap();
        assert_eq!(c.charged(), 0);
        let g = c.open(Format::Gzip, false, &mut |_| true).unwrap();
        assert_eq!(c.charged(), GUNZIP_BYTES);
        c.close(g);
        c.close(g);
        assert_eq!(c.charged(), 0, "closing twice releases once");
    }

    /// Damaged streams (one byte of a real one changed, or cut short) fed in
    /// odd-sized pieces: every decoder answers with output or an error, never
    /// a panic, and stays within its limit.
    #[test]
    fn damaged_input_never_panics() {
        let data: Vec<u8> = (0..5_000u32).map(|i| (i * 31 % 7) as u8).collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for format in [Format::Gzip, Format::Deflate, Format::DeflateRaw] {
            let mut c = Coders::default();
            let h = c.open(format, true, &mut |_| true).unwrap();
            let mut z = run(&mut c, h, &data, usize::MAX).unwrap();
            z.extend(end(&mut c, h).unwrap());
            for _ in 0..500 {
                let mut bad = z.clone();
                let at = (next() % bad.len() as u64) as usize;
                bad[at] ^= 1 << (next() % 8);
                bad.truncate(bad.len() - (next() % 4) as usize);
                let d = c.open(format, false, &mut |_| true).unwrap();
                let mut rest = &bad[..];
                let mut failed = false;
                while !rest.is_empty() {
                    let n = ((next() % 97) as usize + 1).min(rest.len());
                    if run(&mut c, d, &rest[..n], 64 << 10).is_err() {
                        failed = true;
                        break;
                    }
                    rest = &rest[n..];
                }
                if !failed {
                    let _ = end(&mut c, d);
                }
                assert_eq!(c.open_count(), 0, "{format:?}: the coder is closed");
            }
        }
    }
}
