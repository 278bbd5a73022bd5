//! The host functions behind the prelude: UTF-8, randomness, the tenant log
//! and the tenant KV. They reach the current request through [`HostState`].

use std::sync::Arc;

use corral_limits::TenantId;
use parking_lot::Mutex;
use rand::RngCore;
use rquickjs::{Ctx, Exception, Function, Object, TypedArray};

use crate::{TenantKv, TenantLog};

/// Largest `crypto.getRandomValues` request, as in the Web Crypto spec.
const MAX_RANDOM_BYTES: usize = 65_536;

/// What the host functions may touch during one request.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) tenant: TenantId,
    pub(crate) log: Arc<TenantLog>,
    pub(crate) kv: Option<Arc<dyn TenantKv>>,
}

/// The request currently running in a tenant's runtime, if any.
#[derive(Debug, Default)]
pub(crate) struct HostState {
    scope: Mutex<Option<Scope>>,
}

impl HostState {
    pub(crate) fn enter(&self, scope: Scope) {
        *self.scope.lock() = Some(scope);
    }

    pub(crate) fn leave(&self) {
        *self.scope.lock() = None;
    }

    pub(crate) fn with_scope<R>(&self, f: impl FnOnce(Option<&Scope>) -> R) -> R {
        f(self.scope.lock().as_ref())
    }
}

/// Copies the bytes a typed array views.
#[allow(unsafe_code)]
pub(crate) fn copy_bytes(array: &TypedArray<'_, u8>) -> Vec<u8> {
    // SAFETY: `as_bytes` aliases memory owned by QuickJS and is only valid
    // while no JavaScript runs. We copy it out at once, before returning to
    // the engine, and the slice never escapes this expression.
    unsafe { array.as_bytes() }
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Runs a KV operation for the tenant of the current request. The error is
/// the message the guest's exception carries (shared by every JS engine).
pub(crate) fn kv_op<T>(
    state: &HostState,
    op: impl FnOnce(&dyn TenantKv, &TenantId) -> Result<T, crate::KvError>,
) -> Result<T, String> {
    state.with_scope(|scope| match scope {
        Some(Scope {
            kv: Some(kv),
            tenant,
            ..
        }) => op(kv.as_ref(), tenant).map_err(|e| format!("KV: {e}")),
        Some(_) => Err("KV: this tenant has no KV store".to_owned()),
        None => Err("KV: not available outside a request".to_owned()),
    })
}

fn kv<'js>(
    ctx: &Ctx<'js>,
    state: &HostState,
    op: impl FnOnce(&dyn TenantKv, &TenantId) -> Result<KvOut, crate::KvError>,
) -> rquickjs::Result<KvOut> {
    kv_op(state, op).map_err(|msg| Exception::throw_message(ctx, &msg))
}

enum KvOut {
    Value(Option<Vec<u8>>),
    Done,
    Deleted(bool),
    Keys(Vec<String>),
}

/// Builds the `__corral_host` object the prelude takes its host functions from.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, state: &Arc<HostState>) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;

    host.set(
        "encodeUtf8",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            TypedArray::<u8>::new(ctx, s.into_bytes())
        })?,
    )?;
    host.set(
        "decodeUtf8",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, bytes: TypedArray<'js, u8>, fatal: bool| {
                let bytes = copy_bytes(&bytes);
                match String::from_utf8(bytes) {
                    Ok(s) => Ok(s),
                    Err(_) if fatal => Err(Exception::throw_type(&ctx, "invalid UTF-8")),
                    Err(e) => Ok(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                }
            },
        )?,
    )?;
    host.set(
        "randomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, n: usize| {
            if n > MAX_RANDOM_BYTES {
                return Err(Exception::throw_range(&ctx, "too many random bytes"));
            }
            let mut buf = vec![0u8; n];
            rand::rng().fill_bytes(&mut buf);
            TypedArray::<u8>::new(ctx, buf)
        })?,
    )?;
    let st = state.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |line: String| {
            st.with_scope(|scope| {
                if let Some(scope) = scope {
                    scope.log.push(&line);
                }
            })
        })?,
    )?;
    let st = state.clone();
    host.set(
        "kvGet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String| -> rquickjs::Result<Option<TypedArray<'js, u8>>> {
                let out = kv(&ctx, &st, |kv, t| {
                    kv.get(t, &key).map(|v| KvOut::Value(v.map(|b| b.to_vec())))
                })?;
                match out {
                    KvOut::Value(Some(bytes)) => Ok(Some(TypedArray::<u8>::new(ctx, bytes)?)),
                    _ => Ok(None),
                }
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvPut",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String, value: TypedArray<'js, u8>| -> rquickjs::Result<()> {
                let value = copy_bytes(&value);
                kv(&ctx, &st, |kv, t| {
                    kv.put(t, &key, &value).map(|()| KvOut::Done)
                })?;
                Ok(())
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvDelete",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String| -> rquickjs::Result<bool> {
                match kv(&ctx, &st, |kv, t| kv.delete(t, &key).map(KvOut::Deleted))? {
                    KvOut::Deleted(existed) => Ok(existed),
                    _ => Ok(false),
                }
            },
        )?,
    )?;
    let st = state.clone();
    host.set(
        "kvList",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, prefix: String, limit: usize| -> rquickjs::Result<Vec<String>> {
                match kv(&ctx, &st, |kv, t| {
                    kv.list(t, &prefix, limit).map(KvOut::Keys)
                })? {
                    KvOut::Keys(keys) => Ok(keys),
                    _ => Ok(Vec::new()),
                }
            },
        )?,
    )?;

    ctx.globals().set("__corral_host", host)
}
