//! The admin token: generated on first start, printed once, stored only as an
//! argon2 hash, verified with argon2 against `Authorization: Bearer <token>`.
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
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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
        let Ok(hash) = PasswordHash::new(&self.phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(token.as_bytes(), &hash)
            .is_ok()
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
}
