//! The WAGI output parser, reachable from the fuzz targets in `fuzz/`.
//!
//! Not part of Corral's API: hidden from the docs and free to change. It
//! exposes exactly what a guest's stdout goes through, so the fuzzer drives
//! the same code a tenant does.

use bytes::Bytes;
use http::Response;
use tokio::sync::oneshot;
use wasmtime_wasi::p2::OutputStream;

use super::wagi::{CappedOutput, parse_cgi};
use crate::{Body, SandboxError};

/// Parses a guest's whole stdout as a CGI response.
pub fn parse_cgi_response(out: &[u8]) -> Result<Response<Bytes>, SandboxError> {
    parse_cgi(Bytes::copy_from_slice(out))
}

/// A guest's stdout as the WAGI runner sees it, written to in pieces.
#[derive(Debug)]
pub struct CgiStdout {
    out: CappedOutput,
    head: oneshot::Receiver<Response<Body>>,
}

impl CgiStdout {
    /// Stdout capped at `cap` bytes.
    pub fn new(cap: u64) -> Self {
        let (tx, head) = oneshot::channel();
        Self {
            out: CappedOutput::new(cap, tx),
            head,
        }
    }

    /// One guest write; an error is what traps the guest.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.out
            .write(Bytes::copy_from_slice(bytes))
            .map_err(|e| e.to_string())
    }

    /// Whether a write passed the cap.
    pub fn overflowed(&self) -> bool {
        self.out.overflowed()
    }

    /// The event stream's response, once its head went out.
    pub fn streamed_head(&mut self) -> Option<Response<Body>> {
        self.head.try_recv().ok()
    }

    /// The buffered output (empty once streaming).
    pub fn take(&self) -> Bytes {
        self.out.take()
    }

    /// Ends the event stream's body, as the runner does when the guest exits.
    pub fn finish(&self) {
        drop(self.out.take_stream());
    }
}
