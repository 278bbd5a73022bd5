//! The admin token: generated on first start, printed once, stored only as an
//! argon2 hash, verified with argon2 against `Authorization: Bearer <token>`.
//!
//! Accounts hold API tokens of their own ([`AccountTokens`]):
//! `corral_acct_<id>_<secret>`, 256 random bits of secret stored only as a
//! BLAKE2b hash (a fast hash is enough for a random secret; argon2 is for
//! tokens a person might choose), shown once, revocable, checked from RAM.
//! An account token acts for its account's apps only ([`Principal`]).
//!
//! [`AdminGate`] is what the server asks: it verifies a token with argon2
//! once and then recognises it from RAM (a keyed hash, compared in constant
//! time), throttles attempts that need argon2 per client address (429
//! `too_many_attempts`), and runs argon2 on the blocking pool with its own
//! small concurrency bound, so bogus tokens cannot take the CPU or the admin
//! slots from anyone else.
//!
//! ```
//! use corral_server::auth::AdminAuth;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (auth, token) = AdminAuth::load_or_create(dir.path(), None).unwrap();
//! let token = token.expect("a fresh data dir gets a new token");
//! assert!(auth.verify(&token));
//! assert!(!auth.verify("corral_wrong"));
//! // The second start reads the stored hash and prints nothing.
//! let (again, none) = AdminAuth::load_or_create(dir.path(), None).unwrap();
//! assert!(none.is_none() && again.verify(&token));
//! ```

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use std::collections::HashMap;

use blake2::digest::consts::U32;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2b, Blake2bMac512};
use corral::TenantId;
use corral::storage::TokenRecord;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, Response, StatusCode, header};
use subtle::ConstantTimeEq;

/// File under the data dir holding the token's argon2 hash.
pub const TOKEN_HASH_FILE: &str = "admin-token.argon2";

/// Prefix of generated tokens, so they are recognisable in secret scanners.
pub const TOKEN_PREFIX: &str = "corral_";

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Reading or writing the hash file failed.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The stored or configured hash is not an argon2 PHC string.
    #[error("admin token hash is not a valid argon2 PHC string: {0}")]
    BadHash(argon2::password_hash::Error),
}

/// The admin token's hash, held in RAM.
#[derive(Clone)]
pub struct AdminAuth {
    phc: String,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth").finish_non_exhaustive()
    }
}

impl AdminAuth {
    /// Wraps an argon2 PHC hash (`$argon2id$v=19$…`).
    ///
    /// ```
    /// use corral_server::auth::{AdminAuth, AuthError};
    /// assert!(matches!(AdminAuth::from_hash("plain"), Err(AuthError::BadHash(_))));
    /// ```
    pub fn from_hash(phc: &str) -> Result<Self, AuthError> {
        PasswordHash::new(phc).map_err(AuthError::BadHash)?;
        Ok(Self {
            phc: phc.trim().to_owned(),
        })
    }

    /// Hashes `token` with argon2id and a random salt.
    ///
    /// ```
    /// use corral_server::auth::AdminAuth;
    /// let auth = AdminAuth::hash_token("s3cret");
    /// assert!(auth.phc().starts_with("$argon2id$"));
    /// assert!(auth.verify("s3cret"));
    /// ```
    pub fn hash_token(token: &str) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(token.as_bytes(), &salt)
            .expect("argon2 with default parameters hashes any input")
            .to_string();
        Self { phc }
    }

    /// The PHC string.
    pub fn phc(&self) -> &str {
        &self.phc
    }

    /// Whether `token` matches (argon2 recomputation, constant-time compare).
    /// This costs tens of milliseconds by design: call it off the async
    /// executor, for example in `spawn_blocking`.
    pub fn verify(&self, token: &str) -> bool {
        self.verify_in(token, &mut Vec::new())
    }

    /// [`verify`](Self::verify), with argon2's working memory (about 19 MiB
    /// at the default cost) in `scratch`, grown once and reused. The server
    /// keeps one scratch while verifications queue: a fresh block per attempt
    /// would be freed into the arena of whichever blocking thread ran it, and
    /// a burst of wrong tokens would leave one block behind per thread. It
    /// frees it once none waits ([`AdminGate::check`]).
    ///
    /// ```
    /// use corral_server::auth::AdminAuth;
    /// let auth = AdminAuth::hash_token("s3cret");
    /// let mut scratch = Vec::new();
    /// assert!(!auth.verify_in("guess", &mut scratch));
    /// let grown = scratch.len();
    /// assert!(auth.verify_in("s3cret", &mut scratch));
    /// assert_eq!(scratch.len(), grown); // reused, not grown again
    /// ```
    pub fn verify_in(&self, token: &str, scratch: &mut Vec<argon2::Block>) -> bool {
        let Ok(hash) = PasswordHash::new(&self.phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let (Ok(params), Ok(algorithm)) = (
            argon2::Params::try_from(&hash),
            argon2::Algorithm::try_from(hash.algorithm),
        ) else {
            return false;
        };
        let version = match hash.version.map(argon2::Version::try_from) {
            None => argon2::Version::default(),
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        if scratch.len() < params.block_count() {
            scratch.resize(params.block_count(), argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(token.as_bytes(), salt, &mut out, &mut scratch[..])
            .is_ok()
            // `Output`'s equality is constant-time.
            && argon2::password_hash::Output::new(&out).is_ok_and(|got| got == expected)
    }

    /// Uses `configured` when set; otherwise reads `<data_dir>/admin-token.argon2`,
    /// or creates it with a new random token. The token is returned only when it
    /// was just created: print it once, it is not stored anywhere.
    pub fn load_or_create(
        data_dir: &Path,
        configured: Option<&str>,
    ) -> Result<(Self, Option<String>), AuthError> {
        if let Some(phc) = configured {
            return Ok((Self::from_hash(phc)?, None));
        }
        let path = data_dir.join(TOKEN_HASH_FILE);
        let io = |source| AuthError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Self::from_hash(text.trim())?, None)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let token = generate_token();
        let auth = Self::hash_token(&token);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&path).map_err(io)?;
        file.write_all(format!("{}\n", auth.phc).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok((auth, Some(token)))
    }
}

/// A new random token: `corral_` followed by 64 hex digits (256 bits from the OS).
///
/// ```
/// let t = corral_server::auth::generate_token();
/// assert_eq!(t.len(), 7 + 64);
/// assert!(t.starts_with("corral_"));
/// ```
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + 64);
    s.push_str(TOKEN_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The token of an `Authorization: Bearer <token>` header, if well-formed.
///
/// ```
/// use http::HeaderMap;
/// let mut h = HeaderMap::new();
/// h.insert("authorization", "Bearer abc".parse().unwrap());
/// assert_eq!(corral_server::auth::bearer(&h), Some("abc"));
/// h.insert("authorization", "Basic abc".parse().unwrap());
/// assert_eq!(corral_server::auth::bearer(&h), None);
/// ```
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Attempts needing argon2 that one client address may make at once
/// (the burst) before it is throttled.
pub const FAILED_ATTEMPTS_BURST: u32 = 30;

/// After the burst, one more attempt per client address per this interval.
pub const FAILED_ATTEMPT_INTERVAL: Duration = Duration::from_secs(2);

/// Client addresses the throttle tracks at most; while it is full (after
/// dropping addresses whose allowance has refilled), every address shares
/// one allowance, so many or spoofed addresses cannot grow memory. A token
/// already verified is never throttled, so this only delays a first login
/// during such a flood.
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// argon2 verifications running at once, host-wide (each takes one core for
/// tens of milliseconds and about 19 MiB).
pub const ARGON2_CONCURRENCY: usize = 1;

/// argon2 verifications waiting at most; past that an attempt is refused
/// with 429 `too_many_attempts` at once instead of queueing.
pub const ARGON2_QUEUE: usize = 16;

/// Prefix of account tokens: `corral_acct_<id>_<secret>` (id: 12 hex
/// digits, secret: 64). Admin tokens are `corral_` and hex only, so the two
/// never look alike.
pub const ACCOUNT_TOKEN_PREFIX: &str = "corral_acct_";

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Principal {
    /// The operator's admin token: every route.
    Admin,
    /// An account token: the account's own apps and the account itself.
    Account(TenantId),
}

type SecretHash = [u8; 32];

fn secret_hash(secret: &str) -> SecretHash {
    Blake2b::<U32>::digest(secret.as_bytes()).into()
}

/// The account tokens, in RAM: id → (account, hash of the secret). Loaded
/// from the store at start and kept in step by the admin routes that issue
/// and revoke tokens.
///
/// ```
/// use corral_server::auth::AccountTokens;
/// let tokens = AccountTokens::default();
/// let (rec, token) = AccountTokens::issue(&"acme".parse().unwrap());
/// assert!(token.starts_with("corral_acct_"));
/// tokens.insert(&rec);
/// assert_eq!(tokens.check(&token), Some(Some("acme".parse().unwrap())));
/// let last = if token.ends_with('0') { "1" } else { "0" };
/// let forged = format!("{}{last}", &token[..token.len() - 1]);
/// assert_eq!(tokens.check(&forged), Some(None), "known id, wrong secret");
/// assert_eq!(tokens.check("corral_0123"), None, "not an account token");
/// tokens.remove(&rec.id);
/// assert_eq!(tokens.check(&token), None);
/// ```
#[derive(Debug, Default)]
pub struct AccountTokens {
    by_id: RwLock<HashMap<String, (TenantId, SecretHash)>>,
}

impl AccountTokens {
    /// The tokens of `records` (from [`Store::tokens`](corral::storage::Store::tokens)).
    pub fn load(records: impl IntoIterator<Item = TokenRecord>) -> Self {
        let t = Self::default();
        for r in records {
            t.insert(&r);
        }
        t
    }

    /// A new token for `account`: the record to store and the token to show
    /// once (it is nowhere else).
    pub fn issue(account: &TenantId) -> (TokenRecord, String) {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut secret);
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let (id, secret) = (hex(&id), hex(&secret));
        let token = format!("{ACCOUNT_TOKEN_PREFIX}{id}_{secret}");
        let rec = TokenRecord::new(id, account.clone(), secret_hash(&secret).to_vec());
        (rec, token)
    }

    /// Remembers a stored token (a hash of the wrong length never matches).
    pub fn insert(&self, rec: &TokenRecord) {
        let Ok(hash) = SecretHash::try_from(rec.hash.as_slice()) else {
            return;
        };
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.id.clone(), (rec.account.clone(), hash));
    }

    /// Forgets a revoked token.
    pub fn remove(&self, id: &str) {
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Forgets every token of a deleted account.
    pub fn remove_account(&self, account: &TenantId) {
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (a, _)| a != account);
    }

    /// Whether the token of this id is still valid (not revoked, its
    /// account not deleted): a console session made with it ends when not.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// The id part of an account token (`corral_acct_<id>_<secret>`).
    ///
    /// ```
    /// use corral_server::auth::AccountTokens;
    /// assert_eq!(AccountTokens::id_of("corral_acct_0a1b_ffff"), Some("0a1b"));
    /// assert_eq!(AccountTokens::id_of("corral_0a1b"), None);
    /// ```
    pub fn id_of(token: &str) -> Option<&str> {
        Some(token.strip_prefix(ACCOUNT_TOKEN_PREFIX)?.split_once('_')?.0)
    }

    /// `None`: not an account token, or an id this node does not know (the
    /// caller may still try it as the admin token). `Some(None)`: a known
    /// id with the wrong secret. `Some(Some(account))`: valid.
    pub fn check(&self, token: &str) -> Option<Option<TenantId>> {
        let rest = token.strip_prefix(ACCOUNT_TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        let (account, want) = by_id.get(id)?;
        let ok: bool = secret_hash(secret).ct_eq(want).into();
        Some(ok.then(|| account.clone()))
    }
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// No `Authorization: Bearer <token>` → 401 `unauthorized`.
    #[error("missing Authorization: Bearer <admin token>")]
    Missing,
    /// The token is not the admin token nor a live account token → 401
    /// `unauthorized`. The message does not say which kind it was taken for:
    /// a revoked account token reads the same as a wrong one.
    #[error("wrong or revoked token")]
    Wrong,
    /// A valid account token on a route or app outside its account → 403
    /// `forbidden`.
    #[error("this token acts for account {account} only")]
    Forbidden {
        /// The token's account.
        account: TenantId,
    },
    /// Too many attempts from this client (or too many verifications queued
    /// host-wide) → 429 `too_many_attempts` with `Retry-After`.
    #[error("too many admin token attempts; retry in {} s", retry_after.as_secs())]
    TooManyAttempts {
        /// When to try again (whole seconds, at least 1).
        retry_after: Duration,
    },
}

impl Denied {
    /// The stable JSON error response.
    ///
    /// ```
    /// use corral_server::auth::Denied;
    /// let r = Denied::Wrong.to_response();
    /// assert_eq!(r.status(), 401);
    /// assert_eq!(r.headers()["www-authenticate"], "Bearer");
    /// let r = Denied::TooManyAttempts { retry_after: std::time::Duration::from_secs(2) }.to_response();
    /// assert_eq!(r.status(), 429);
    /// assert_eq!(r.headers()["retry-after"], "2");
    /// ```
    pub fn to_response(&self) -> Response<crate::http::Body> {
        match self {
            Self::Missing | Self::Wrong => {
                let mut r = crate::http::error(StatusCode::UNAUTHORIZED, "unauthorized", self);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            Self::Forbidden { account } => crate::http::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({
                    "error": "forbidden",
                    "account": account,
                    "message": self.to_string(),
                }),
            ),
            Self::TooManyAttempts { retry_after } => {
                let mut r = crate::http::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    &serde_json::json!({
                        "error": "too_many_attempts",
                        "retry_after": retry_after.as_secs(),
                        "message": self.to_string(),
                    }),
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs()),
                );
                r
            }
        }
    }
}

/// The admin check the server runs on every guarded request.
///
/// A token argon2 has accepted is remembered as a keyed BLAKE2b hash (a
/// random key per process, so the RAM copy is useless elsewhere) and
/// recognised from then on with one hash and a constant-time compare.
/// Anything else needs argon2, which is throttled per client address
/// ([`FAILED_ATTEMPTS_BURST`], [`FAILED_ATTEMPT_INTERVAL`]) and runs on the
/// blocking pool, [`ARGON2_CONCURRENCY`] at a time with at most
/// [`ARGON2_QUEUE`] waiting.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::net::{IpAddr, Ipv4Addr};
/// use corral_server::auth::{AdminAuth, AdminGate, Denied};
///
/// let gate = AdminGate::new(AdminAuth::hash_token("s3cret"));
/// let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// let mut h = http::HeaderMap::new();
/// h.insert("authorization", "Bearer s3cret".parse().unwrap());
/// gate.check(&h, client).await.unwrap();
/// gate.check(&h, client).await.unwrap();
/// assert_eq!(gate.argon2_runs(), 1); // the second time came from RAM
/// h.insert("authorization", "Bearer guess".parse().unwrap());
/// assert_eq!(gate.check(&h, client).await, Err(Denied::Wrong));
/// # });
/// ```
pub struct AdminGate {
    auth: AdminAuth,
    tokens: AccountTokens,
    /// The MAC key, random per process.
    key: [u8; 64],
    /// The MAC of the token argon2 accepted (one hash has one token).
    verified: RwLock<Option<Vec<u8>>>,
    throttle: Throttle,
    argon2: Arc<tokio::sync::Semaphore>,
    /// argon2's working memory, shared by the (one at a time) verifications
    /// of a burst, and freed when the last of them ends: a node that logs in
    /// once does not hold 19 MiB for the rest of its life (a fifth of the
    /// RSS of 10,000 parked apps, BENCHMARKS.md "Parked apps").
    scratch: Arc<Mutex<Vec<argon2::Block>>>,
    waiting: AtomicUsize,
    argon2_runs: AtomicU64,
}

impl std::fmt::Debug for AdminGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGate")
            .field("argon2_runs", &self.argon2_runs())
            .finish_non_exhaustive()
    }
}

impl AdminGate {
    /// A gate over `auth`'s hash, with the default throttle.
    pub fn new(auth: AdminAuth) -> Self {
        let quota = Quota::with_period(FAILED_ATTEMPT_INTERVAL)
            .expect("a positive interval")
            .allow_burst(NonZeroU32::new(FAILED_ATTEMPTS_BURST).expect("a positive burst"));
        let mut key = [0u8; 64];
        OsRng.fill_bytes(&mut key);
        Self {
            auth,
            tokens: AccountTokens::default(),
            key,
            verified: RwLock::new(None),
            throttle: Throttle::new(quota, MAX_TRACKED_CLIENTS),
            argon2: Arc::new(tokio::sync::Semaphore::new(ARGON2_CONCURRENCY)),
            scratch: Arc::default(),
            waiting: AtomicUsize::new(0),
            argon2_runs: AtomicU64::new(0),
        }
    }

    /// A gate with its own throttle (tests use a small one).
    #[cfg(test)]
    fn with_throttle(auth: AdminAuth, throttle: Throttle) -> Self {
        Self {
            throttle,
            ..Self::new(auth)
        }
    }

    /// The gate with `tokens` as its account tokens.
    #[must_use]
    pub fn with_account_tokens(mut self, tokens: AccountTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The account tokens, to add to and revoke from.
    pub fn account_tokens(&self) -> &AccountTokens {
        &self.tokens
    }

    /// argon2 verifications run so far (each costs tens of milliseconds).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// Checks the bearer token of `headers` for a request from `client`:
    /// who it acts for.
    pub async fn check(
        &self,
        headers: &http::HeaderMap,
        client: IpAddr,
    ) -> Result<Principal, Denied> {
        let token = bearer(headers).ok_or(Denied::Missing)?;
        if self.known(token) {
            return Ok(Principal::Admin);
        }
        match self.tokens.check(token) {
            Some(Some(account)) => return Ok(Principal::Account(account)),
            Some(None) => {
                // A known id with a wrong secret: a guess, throttled like one.
                self.throttle.attempt(client)?;
                return Err(Denied::Wrong);
            }
            None => {}
        }
        self.throttle.attempt(client)?;
        // Bound the queue as well as the work: past it, refuse at once.
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= ARGON2_QUEUE {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Denied::TooManyAttempts {
                retry_after: Duration::from_secs(1),
            });
        }
        let permit = self.argon2.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.expect("the argon2 semaphore is never closed");
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let auth = self.auth.clone();
        let owned = token.to_owned();
        let scratch = self.scratch.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut scratch = scratch.lock().unwrap_or_else(|e| e.into_inner());
            auth.verify_in(&owned, &mut scratch)
        })
        .await
        .unwrap_or(false);
        // Nobody queued behind this one: give the block back. One that got
        // the permit meanwhile holds the lock (or allocates anew), so
        // `try_lock` never frees a block in use.
        if self.waiting.load(Ordering::Acquire) == 0
            && let Ok(mut scratch) = self.scratch.try_lock()
        {
            *scratch = Vec::new();
        }
        if !ok {
            return Err(Denied::Wrong);
        }
        let mac = self.mac(token).finalize().into_bytes().to_vec();
        *self.verified.write().unwrap_or_else(|e| e.into_inner()) = Some(mac);
        Ok(Principal::Admin)
    }

    fn mac(&self, token: &str) -> Blake2bMac512 {
        let mut mac =
            <Blake2bMac512 as KeyInit>::new_from_slice(&self.key).expect("a 64-byte key fits");
        mac.update(token.as_bytes());
        mac
    }

    /// Whether `token` is the one argon2 already accepted (constant-time compare).
    fn known(&self, token: &str) -> bool {
        let verified = self.verified.read().unwrap_or_else(|e| e.into_inner());
        verified
            .as_deref()
            .is_some_and(|want| self.mac(token).verify_slice(want).is_ok())
    }
}

/// Per-client allowance of attempts that need argon2, over a bounded table.
struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    max_keys: usize,
    last_sweep: Mutex<Instant>,
}

/// The key every client shares once the table is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl Throttle {
    fn new(quota: Quota, max_keys: usize) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            max_keys,
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Spends one attempt of `client`'s allowance.
    fn attempt(&self, client: IpAddr) -> Result<(), Denied> {
        let key = self.key_for(client);
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            Denied::TooManyAttempts {
                retry_after: Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64),
            }
        })
    }

    /// The client's own key while the table has room, else the shared one.
    fn key_for(&self, client: IpAddr) -> IpAddr {
        let key = client_key(client);
        if self.limiter.len() < self.max_keys {
            return key;
        }
        // Full: drop addresses whose allowance has refilled, at most once a
        // second (the sweep walks the whole table).
        if let Ok(mut last) = self.last_sweep.try_lock()
            && last.elapsed() >= Duration::from_secs(1)
        {
            *last = Instant::now();
            self.limiter.retain_recent();
        }
        if self.limiter.len() < self.max_keys {
            key
        } else {
            OVERFLOW
        }
    }
}

/// The throttle key of a client address: IPv4 as is, IPv6 by its /64 (one
/// host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
///
/// ```
/// # use std::net::IpAddr;
/// use corral_server::auth::client_key;
/// let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
/// let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
/// assert_eq!(client_key(a), client_key(b));
/// let v4: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
/// assert_eq!(client_key(v4), "192.0.2.7".parse::<IpAddr>().unwrap());
/// ```
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_is_private_and_token_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, token) = AdminAuth::load_or_create(dir.path(), None).unwrap();
        let token = token.unwrap();
        let stored = std::fs::read_to_string(dir.path().join(TOKEN_HASH_FILE)).unwrap();
        assert_eq!(stored.trim(), auth.phc());
        assert!(!stored.contains(&token[TOKEN_PREFIX.len()..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_HASH_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(auth.verify(&token));
        assert!(!auth.verify(&token[..token.len() - 1]));
        assert!(!auth.verify(""));
    }

    #[test]
    fn configured_hash_wins_and_bad_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let known = AdminAuth::hash_token("letmein");
        let (auth, token) = AdminAuth::load_or_create(dir.path(), Some(known.phc())).unwrap();
        assert!(token.is_none());
        assert!(auth.verify("letmein"));
        assert!(!dir.path().join(TOKEN_HASH_FILE).exists());
        std::fs::write(dir.path().join(TOKEN_HASH_FILE), "garbage").unwrap();
        assert!(matches!(
            AdminAuth::load_or_create(dir.path(), None),
            Err(AuthError::BadHash(_))
        ));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearertok".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
    fn headers(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small(burst: u32, max_keys: usize) -> Throttle {
        let quota = Quota::with_period(Duration::from_secs(3600))
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap());
        Throttle::new(quota, max_keys)
    }

    #[tokio::test]
    async fn a_correct_token_costs_argon2_once_then_comes_from_ram() {
        let gate = AdminGate::new(AdminAuth::hash_token("right"));
        let me = ip("192.0.2.1");
        for _ in 0..20 {
            gate.check(&headers("right"), me).await.unwrap();
        }
        assert_eq!(gate.argon2_runs(), 1);
        // Near misses are not mistaken for the remembered token, and each
        // costs a verification of its own.
        for wrong in ["righ", "right!", "rightt", "RIGHT"] {
            assert_eq!(
                gate.check(&headers(wrong), me).await,
                Err(Denied::Wrong),
                "{wrong:?}"
            );
        }
        assert_eq!(gate.argon2_runs(), 5);
        gate.check(&headers("right"), me).await.unwrap();
        assert_eq!(gate.argon2_runs(), 5);
        assert_eq!(
            gate.check(&http::HeaderMap::new(), me).await,
            Err(Denied::Missing)
        );
        assert_eq!(gate.argon2_runs(), 5);
    }

    /// argon2's ~19 MiB block is not held once no verification is running
    /// or waiting: a node that logged in once keeps none of it.
    #[tokio::test]
    async fn the_argon2_block_is_freed_when_no_verification_waits() {
        let gate = AdminGate::new(AdminAuth::hash_token("right"));
        gate.check(&headers("right"), ip("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(gate.argon2_runs(), 1);
        let held = gate.scratch.lock().unwrap().capacity();
        assert_eq!(held, 0, "{held} argon2 blocks still held");
        assert_eq!(
            gate.check(&headers("wrong"), ip("192.0.2.2")).await,
            Err(Denied::Wrong)
        );
        assert_eq!(gate.scratch.lock().unwrap().capacity(), 0);
    }

    #[tokio::test]
    async fn failed_attempts_are_throttled_per_client() {
        let gate = AdminGate::with_throttle(AdminAuth::hash_token("right"), small(3, 100));
        gate.check(&headers("right"), ip("192.0.2.1"))
            .await
            .unwrap();
        let attacker = ip("198.51.100.7");
        for _ in 0..3 {
            assert_eq!(
                gate.check(&headers("guess"), attacker).await,
                Err(Denied::Wrong)
            );
        }
        let runs = gate.argon2_runs();
        for _ in 0..5 {
            let denied = gate.check(&headers("guess"), attacker).await;
            assert!(
                matches!(denied, Err(Denied::TooManyAttempts { retry_after }) if retry_after >= Duration::from_secs(1)),
                "{denied:?}"
            );
        }
        // A throttled attempt costs no argon2 at all.
        assert_eq!(gate.argon2_runs(), runs);
        // Other clients keep their own allowance, and a token already
        // verified is accepted from RAM even for the throttled address.
        assert_eq!(
            gate.check(&headers("guess"), ip("203.0.113.9")).await,
            Err(Denied::Wrong)
        );
        gate.check(&headers("right"), attacker).await.unwrap();
    }

    #[test]
    fn the_throttle_table_is_bounded_and_overflow_shares_one_allowance() {
        let t = small(2, 4);
        for i in 0..4 {
            t.attempt(ip(&format!("10.0.0.{i}"))).unwrap();
        }
        // Full, and nothing has refilled (one cell an hour): new addresses
        // share one allowance of two attempts.
        t.attempt(ip("10.0.1.1")).unwrap();
        t.attempt(ip("10.0.1.2")).unwrap();
        assert!(matches!(
            t.attempt(ip("10.0.1.3")),
            Err(Denied::TooManyAttempts { .. })
        ));
        for i in 0..1000 {
            let _ = t.attempt(ip(&format!("10.1.{}.{}", i / 256, i % 256)));
        }
        assert!(t.limiter.len() <= 5, "{} keys", t.limiter.len());
    }

    #[test]
    fn one_ipv6_host_is_one_client() {
        let t = small(2, 100);
        t.attempt(ip("2001:db8::1")).unwrap();
        t.attempt(ip("2001:db8::ffff:2")).unwrap();
        assert!(matches!(
            t.attempt(ip("2001:db8::abcd:3")),
            Err(Denied::TooManyAttempts { .. })
        ));
        t.attempt(ip("2001:db8:0:1::1")).unwrap();
    }
}
