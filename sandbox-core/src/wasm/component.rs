//! The component backend: WebAssembly components serving `wasi:http/proxy`
//! (the world that Spin, `wasmtime serve` and Fastly run), unchanged, under
//! the same fuel, wall-clock, memory, stack and output limits as WAGI
//! modules, on the same pooling allocator.
//!
//! A component is compiled once at deploy into a `CRLC` artifact; a cold
//! start deserializes it and pre-instantiates it against the host's
//! `wasi:http/proxy` imports into a [`ProxyPre`], so each request only
//! instantiates (from the pool) and calls `wasi:http/incoming-handler.handle`.
//!
//! What a component can reach: `wasi:http/types`, `wasi:io`, clocks, random,
//! stdout/stderr (both go to the tenant's log), and the tenant's KV through
//! `wasi:keyvalue/store` and `batch` (0.2.0-draft; see the `keyvalue`
//! module); the rest of WASI
//! preview 2 is linked (as `wasmtime serve -S cli` does) but inert. No preopened
//! directories, no sockets, no host environment variables. Outbound HTTP
//! (`wasi:http/outgoing-handler`) is refused unless the host is in the
//! tenant's [`Limits::outbound_hosts`]; a component that fails after a
//! refusal ends with [`SandboxError::OutboundRefused`].
//!
//! ```
//! use corral::wasm::ComponentBackend;
//! use corral::{Backend, EngineConfig, Kind, Limits, SandboxError, WasmEngine};
//!
//! let engine = WasmEngine::new(EngineConfig::default().instances(4)).unwrap();
//! let backend = ComponentBackend::new(engine).unwrap();
//! // A component that does not serve wasi:http/proxy is refused at deploy.
//! let err = backend.precompile(b"(component)", &Limits::default()).unwrap_err();
//! assert!(matches!(err, SandboxError::InvalidModule { .. }));
//! // Deploys tell components from WAGI modules by the binary's header.
//! assert_eq!(Kind::of_wasm(b"\0asm\x0d\0\x01\0"), Kind::Component);
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use corral_metering::StreamFigures;

use super::keyvalue::{self, KvHost, KvView};
use super::{DeadlinePassed, Limiter, Progress, wagi};
use crate::{
    Backend, Body, BodySender, BoxFuture, InvocationStats, InvokeContext, Kind, Limits, Program,
    SandboxError, WasmEngine,
};

/// Magic of the backend's artifact: `b"CRLC"`, then the CRC32 of the
/// serialized component (u32 LE), then the component as wasmtime
/// serialized it.
const ARTIFACT_MAGIC: &[u8; 4] = b"CRLC";

/// How long after the response head the host keeps collecting the body
/// before it starts streaming it. A handler that writes its body and returns
/// within this time (nearly every one) gets a whole body with its final
/// figures; a body still being written after it (an event stream, a large
/// echo) goes out as it is written.
const STREAM_AFTER: Duration = Duration::from_millis(5);
/// Most body bytes collected before streaming starts regardless of time, so
/// a large body never sits whole in host memory.
const COLLECT_MAX: usize = 256 << 10;
/// Chunks buffered between a streaming guest and the client.
const STREAM_BUFFER: usize = 4;

/// Per-store state: WASI (no preopens, sockets or environment), the HTTP
/// context, the resource table, the memory limiter, the outbound policy and
/// the tenant's KV.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: Limiter,
    outbound: Outbound,
    kv: KvHost,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The outbound HTTP policy of one request: the tenant's allow-list, and the
/// first host it refused (so a guest that fails after a refusal is reported
/// as refused, not as a bare trap). Allowed requests run inside the
/// request's wall clock: their time is the guest's time.
#[derive(Debug)]
struct Outbound {
    allowed: Arc<[String]>,
    deadline: Instant,
    refused: Option<String>,
    sent: u64,
}

impl Outbound {
    /// Whether `authority` (`host` or `host:port`) is on the allow-list: an
    /// entry `host` allows every port of it, `host:port` that port only.
    fn allows(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host);
        self.allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(authority) || a.eq_ignore_ascii_case(host))
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        if !self.allows(&authority) {
            tracing::debug!(%authority, "outbound HTTP refused");
            self.refused.get_or_insert(authority);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.sent += 1;
        // Never wait past the request's own deadline for a connection or a
        // byte: the guest's wall clock bounds what it waits for.
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut options = options.unwrap_or_default();
        for t in [
            &mut options.connect_timeout,
            &mut options.first_byte_timeout,
            &mut options.between_bytes_timeout,
        ] {
            *t = Some(t.map_or(left, |t| t.min(left)));
        }
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(|b| b.boxed_unsync()),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The component [`Backend`]: precompiles `wasi:http/proxy` components and
/// loads them into pre-instantiated programs.
#[derive(Clone)]
pub struct ComponentBackend {
    engine: WasmEngine,
    linker: Arc<Linker<State>>,
}

impl std::fmt::Debug for ComponentBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentBackend")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl ComponentBackend {
    /// A backend on `engine` (the same engine, pool and epoch ticker as the
    /// WAGI backend), with the `wasi:http/proxy` imports linked (async).
    pub fn new(engine: WasmEngine) -> Result<Self, SandboxError> {
        let mut linker = Linker::new(engine.wasmtime());
        // All of WASI preview 2 (as `wasmtime serve -S cli` links it), not
        // only the proxy world's imports: toolchains such as componentize-js
        // import wasi:cli's terminal and environment interfaces too. They
        // stay inert: no preopens, sockets refused, no environment.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::internal("linking WASI", e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::internal("linking wasi:http", e))?;
        // The tenant KV, for components that import wasi:keyvalue; the
        // others never see it.
        keyvalue::add_to_linker(&mut linker, |s: &mut State| KvView {
            host: &mut s.kv,
            table: &mut s.table,
        })
        .map_err(|e| SandboxError::internal("linking wasi:keyvalue", e))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The engine this backend compiles for.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// Pre-instantiates `component`: every import must be one of the proxy
    /// world's, and it must export `wasi:http/incoming-handler`.
    fn proxy_pre(&self, component: &Component) -> Result<ProxyPre<State>, SandboxError> {
        let invalid = |e: wasmtime::Error| SandboxError::InvalidModule {
            reason: format!("not a wasi:http/proxy component: {e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(invalid)?;
        ProxyPre::new(pre).map_err(invalid)
    }
}

impl Backend for ComponentBackend {
    fn kind(&self) -> Kind {
        Kind::Component
    }

    fn precompile(&self, source: &[u8], _limits: &Limits) -> Result<Vec<u8>, SandboxError> {
        let invalid = |e: wasmtime::Error| SandboxError::InvalidModule {
            reason: format!("{e:#}"),
        };
        let component = Component::new(self.engine.wasmtime(), source).map_err(invalid)?;
        self.proxy_pre(&component)?;
        let serialized = component.serialize().map_err(invalid)?;
        Ok(super::seal(ARTIFACT_MAGIC, &serialized))
    }

    fn load(&self, artifact: &[u8], _limits: &Limits) -> Result<Arc<dyn Program>, SandboxError> {
        let body = super::unseal(ARTIFACT_MAGIC, "component", artifact)?;
        // SAFETY: as for `Module::deserialize` in the WAGI backend:
        // `Component::deserialize` trusts its input to be machine code this
        // wasmtime produced with a compatible config. `body` is exactly what
        // `precompile` got from `Component::serialize` on this engine's
        // configuration (wasmtime checks version and config itself), the
        // CRC32 just verified guards against corruption on disk, and
        // artifacts are written only by the registry, never uploaded.
        #[allow(unsafe_code)]
        let component =
            unsafe { Component::deserialize(self.engine.wasmtime(), body) }.map_err(|e| {
                SandboxError::CorruptArtifact {
                    reason: format!("{e:#}"),
                }
            })?;
        let pre = self.proxy_pre(&component)?;
        Ok(Arc::new(ComponentProgram {
            engine: self.engine.clone(),
            pre,
        }))
    }
}

/// A loaded, warm component (its [`ProxyPre`]).
struct ComponentProgram {
    engine: WasmEngine,
    pre: ProxyPre<State>,
}

impl std::fmt::Debug for ComponentProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentProgram").finish_non_exhaustive()
    }
}

impl Program for ComponentProgram {
    fn invoke(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, SandboxError>> {
        Box::pin(self.invoke_inner(cx, request))
    }
}

/// How a run ended, and what it used.
struct Outcome {
    result: Result<(), SandboxError>,
    stats: InvocationStats,
}

type Head = Result<http::Response<HyperOutgoingBody>, ErrorCode>;

impl ComponentProgram {
    async fn invoke_inner(
        self: Arc<Self>,
        cx: InvokeContext,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, SandboxError> {
        let limits = cx.limits.clone();
        let started = Instant::now();
        let log = wagi::LogOutput::new(&cx.log, limits.max_log_bytes);
        // No preopens, no sockets, no inherited environment or arguments.
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            self.engine.wasmtime(),
            State {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limiter: Limiter {
                    limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                    peak: 0,
                    memory_denied: false,
                },
                outbound: Outbound {
                    allowed: limits.outbound_hosts.clone().into(),
                    deadline: started + limits.wall_clock,
                    refused: None,
                    sent: 0,
                },
                kv: KvHost::new(cx.tenant.clone(), cx.kv.clone()),
            },
        );
        let (mut parts, body) = request.into_parts();
        // wasi:http wants an authority; a frontend that routed by path may
        // have passed none.
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
        let (head_tx, mut head_rx) = tokio::sync::oneshot::channel::<Head>();
        let (req, out) = {
            let mut view = store.data_mut().http();
            let req = view
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| SandboxError::BadResponse {
                    reason: format!("request not accepted by wasi:http: {e:#}"),
                })?;
            let out = view
                .new_response_outparam(head_tx)
                .map_err(|e| SandboxError::internal("creating the response outparam", e))?;
            (req, out)
        };
        let progress = Arc::new(Progress::default());
        let pre = self.pre.clone();
        let metered = self.engine.is_metered();
        let mut run = Box::pin(run_to_end(
            pre,
            store,
            (req, out),
            limits.clone(),
            started,
            log,
            progress.clone(),
            metered,
        ));

        // The run ends before setting a response (an error, or a guest that
        // never answered), or the response head comes out.
        let mut ended: Option<Outcome> = None;
        // `biased`: the run first, so a component that answers in its first
        // poll sends the head before this task's waker is registered with
        // `head_rx` (which would wake the running task itself: a wasted
        // poll, and an idle worker woken to steal it; see the WAGI path).
        let head = tokio::select! {
            biased;
            outcome = &mut run => {
                let head = head_rx.try_recv().ok();
                ended = Some(outcome);
                head
            }
            head = &mut head_rx => head.ok(),
        };
        let response = match head {
            Some(Ok(response)) => response,
            Some(Err(code)) => {
                let outcome = match ended {
                    Some(o) => o,
                    None => run.await,
                };
                outcome.result?;
                return Err(SandboxError::BadResponse {
                    reason: format!("the component answered with an error: {code:?}"),
                });
            }
            None => {
                let outcome = match ended {
                    Some(o) => o,
                    None => run.await,
                };
                outcome.result?;
                return Err(SandboxError::BadResponse {
                    reason: "the component returned without setting a response".into(),
                });
            }
        };
        let (parts, mut body) = response.into_parts();
        let mut head = http::Response::from_parts(parts, ());
        // The host owns the framing.
        head.headers_mut().remove(http::header::CONTENT_LENGTH);
        head.headers_mut().remove(http::header::TRANSFER_ENCODING);

        // Collect the body while the guest writes it, for a short while.
        let cap = limits.max_output_bytes;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total: u64 = 0;
        let mut body_done = false;
        let collect_until = tokio::time::Instant::now() + STREAM_AFTER;
        loop {
            if body_done && ended.is_some() {
                break;
            }
            tokio::select! {
                frame = body.frame(), if !body_done => match frame {
                    None => body_done = true,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            total += data.len() as u64;
                            if total > cap {
                                return Err(SandboxError::OutputTooLarge { limit: cap });
                            }
                            chunks.push(data);
                            if total as usize > COLLECT_MAX {
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let outcome = match ended.take() {
                            Some(o) => o,
                            None => run.await,
                        };
                        outcome.result?;
                        return Err(SandboxError::BadResponse {
                            reason: format!("the component's body failed: {e}"),
                        });
                    }
                },
                outcome = &mut run, if ended.is_none() => ended = Some(outcome),
                () = tokio::time::sleep_until(collect_until) => break,
            }
        }
        if body_done && let Some(Outcome { result, stats }) = ended.take() {
            result?;
            let mut response = head.map(|()| Body::full(concat(chunks)));
            response.extensions_mut().insert(stats);
            return Ok(response);
        }
        if let Some(Outcome { result: Err(e), .. }) = ended {
            // The guest failed while its body was still open: nothing was
            // sent yet, so the request fails as a whole.
            return Err(e);
        }
        Ok(stream_rest(
            head, chunks, total, body, body_done, run, ended, cap, started, progress,
        ))
    }
}

/// Joins collected chunks without copying the common single-chunk case.
fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => chunks.concat().into(),
    }
}

/// The body is still being written: a task forwards it as it comes, drives
/// the guest to its end, and reports the run's figures through the
/// response's [`StreamFigures`]. A failure (fuel, wall clock, output size)
/// ends the body with that error; a client that goes away drops the guest.
#[allow(clippy::too_many_arguments)]
fn stream_rest(
    head: http::Response<()>,
    chunks: Vec<Bytes>,
    mut total: u64,
    mut body: HyperOutgoingBody,
    mut body_done: bool,
    run: impl Future<Output = Outcome> + Send + 'static,
    mut ended: Option<Outcome>,
    cap: u64,
    started: Instant,
    progress: Arc<Progress>,
) -> http::Response<Body> {
    let at_head = started.elapsed();
    let at_head_cpu = progress.cpu.get();
    let (tx, stream) = Body::channel(STREAM_BUFFER);
    let mut response = head.map(|()| stream);
    response.extensions_mut().insert(InvocationStats {
        wall_time: at_head,
        cpu_time: at_head_cpu,
        ..InvocationStats::default()
    });
    // Still the request's own run: its compute share and runtime slot stay
    // held until the body ends (an event stream is counted by the streams
    // layer in front, as for WAGI).
    response.extensions_mut().insert(corral_limits::Attached);
    let figures = StreamFigures::new();
    response.extensions_mut().insert(figures.clone());
    tokio::spawn(async move {
        let mut run = std::pin::pin!(run);
        let report_dropped = |figures: &StreamFigures| {
            figures.add(
                progress.fuel.load(Ordering::Relaxed),
                progress.cpu.get().saturating_sub(at_head_cpu),
                started.elapsed().saturating_sub(at_head),
                progress.peak_memory.load(Ordering::Relaxed),
            );
        };
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                report_dropped(&figures);
                return;
            }
        }
        let mut failure: Option<SandboxError> = None;
        while !body_done {
            tokio::select! {
                frame = body.frame() => match frame {
                    None => body_done = true,
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        total += data.len() as u64;
                        if total > cap {
                            failure = Some(SandboxError::OutputTooLarge { limit: cap });
                            break;
                        }
                        if !send_or_closed(&tx, data, &mut run, &mut ended).await {
                            report_dropped(&figures);
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        failure = Some(SandboxError::BadResponse {
                            reason: format!("the component's body failed: {e}"),
                        });
                        break;
                    }
                },
                outcome = &mut run, if ended.is_none() => ended = Some(outcome),
                () = tx.closed() => {
                    report_dropped(&figures);
                    return;
                }
            }
        }
        let outcome = match ended {
            Some(o) if failure.is_none() => Some(o),
            // Over the output cap: the guest is stopped here.
            _ if failure.is_some() => None,
            _ => tokio::select! {
                o = &mut run => Some(o),
                () = tx.closed() => None,
            },
        };
        match outcome {
            Some(Outcome { result, stats }) => {
                figures.add(
                    stats.fuel_consumed,
                    stats.cpu_time.saturating_sub(at_head_cpu),
                    stats.wall_time.saturating_sub(at_head),
                    stats.peak_memory,
                );
                // The run's own failure (fuel, deadline) explains a broken body best.
                if let Err(e) = result {
                    failure = Some(e);
                }
            }
            None => report_dropped(&figures),
        }
        if let Some(err) = failure {
            figures.failed(err.error_kind());
            tx.abort(err).await;
        }
    });
    response
}

/// Sends `data`, driving the guest while the client is slow (so a guest
/// blocked on nothing but its own output still meets its deadline). `false`
/// when the client went away.
async fn send_or_closed(
    tx: &BodySender,
    data: Bytes,
    run: &mut std::pin::Pin<&mut impl Future<Output = Outcome>>,
    ended: &mut Option<Outcome>,
) -> bool {
    let send = tx.send(data);
    tokio::pin!(send);
    loop {
        tokio::select! {
            sent = &mut send => return sent.is_ok(),
            outcome = run.as_mut(), if ended.is_none() => *ended = Some(outcome),
        }
    }
}

/// Runs the component's handler to its end under the tier's fuel, memory
/// and wall clock, then classifies how it ended.
#[allow(clippy::too_many_arguments)]
async fn run_to_end(
    pre: ProxyPre<State>,
    mut store: Store<State>,
    (req, out): (
        wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
    ),
    limits: Arc<Limits>,
    started: Instant,
    log: wagi::LogOutput,
    progress: Arc<Progress>,
    metered: bool,
) -> Outcome {
    let deadline = started + limits.wall_clock;
    let fuel = limits.fuel_per_request;
    store.limiter(|s| &mut s.limiter);
    if metered {
        if let Err(e) = store.set_fuel(fuel) {
            return Outcome {
                result: Err(SandboxError::internal("setting fuel", e)),
                stats: InvocationStats::default(),
            };
        }
        store.set_epoch_deadline(1);
        let progress = progress.clone();
        store.epoch_deadline_callback(move |cx| {
            let used = fuel.saturating_sub(cx.get_fuel().unwrap_or(fuel));
            progress.fuel.store(used, Ordering::Relaxed);
            let peak = cx.data().limiter.peak as u64;
            progress.peak_memory.store(peak, Ordering::Relaxed);
            if Instant::now() >= deadline {
                Err(DeadlinePassed.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
    }
    let call = async {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    };
    // The timeout also cuts a guest blocked in a host call (a pollable, an
    // outbound request).
    let call = progress.cpu.time_async(call);
    let outcome = if metered {
        tokio::time::timeout(limits.wall_clock, call).await
    } else {
        Ok(call.await)
    };
    log.finish();
    let fuel_consumed = if metered {
        fuel.saturating_sub(store.get_fuel().unwrap_or(0))
    } else {
        0
    };
    let state = store.data();
    let stats = InvocationStats {
        fuel_consumed,
        cpu_time: progress.cpu.get(),
        wall_time: started.elapsed(),
        peak_memory: state.limiter.peak as u64,
        cold_start: false,
    };
    let result = match outcome {
        Err(_elapsed) => Err(SandboxError::Deadline {
            limit: limits.wall_clock,
        }),
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(classify(err, &limits, fuel_consumed, state)),
    };
    // Dropping the store here closes the response body if the guest left it
    // open, and frees the instance back to the pool.
    drop(store);
    Outcome { result, stats }
}

/// Maps a failed run to its typed error.
fn classify(
    err: wasmtime::Error,
    limits: &Limits,
    fuel_consumed: u64,
    state: &State,
) -> SandboxError {
    if err.is::<DeadlinePassed>() {
        return SandboxError::Deadline {
            limit: limits.wall_clock,
        };
    }
    if err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return SandboxError::Overloaded {
            reason: format!("{err}"),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::FuelExhausted {
            limit: limits.fuel_per_request,
            consumed: fuel_consumed,
        },
        Some(Trap::StackOverflow) => SandboxError::StackOverflow,
        Some(Trap::Interrupt) => SandboxError::Deadline {
            limit: limits.wall_clock,
        },
        _ if state.limiter.memory_denied => SandboxError::MemoryLimit {
            limit: limits.memory_bytes,
        },
        _ if state.outbound.refused.is_some() => SandboxError::OutboundRefused {
            authority: state.outbound.refused.clone().unwrap_or_default(),
        },
        Some(trap) => SandboxError::Trap {
            message: trap.to_string(),
        },
        None => SandboxError::Trap {
            message: format!("{err:#}"),
        },
    }
}
