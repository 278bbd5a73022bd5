//! The hashing behind `crypto.subtle`: `digest` (SHA-1, SHA-256, SHA-384,
//! SHA-512) and HMAC `sign`/`verify`, on the RustCrypto `sha1`, `sha2` and
//! `hmac` crates. The prelude does the Web Crypto API's algorithm
//! normalization, key objects and errors; these functions only hash.
//!
//! Engine-neutral, like [`super::web`]: the QuickJS host functions and the
//! V8 ones wrap these. Every input is a guest buffer already inside the
//! tenant's heap; every output is at most 64 bytes.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A hash function Web Crypto names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The hash a Web Crypto algorithm name names ("SHA-256"), in any ASCII
    /// case, as the standard's algorithm normalization matches names.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [
            ("SHA-1", Self::Sha1),
            ("SHA-256", Self::Sha256),
            ("SHA-384", Self::Sha384),
            ("SHA-512", Self::Sha512),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, h)| h)
    }
}

/// `crypto.subtle.digest`.
pub(crate) fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => Sha1::digest(data).to_vec(),
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha384 => Sha384::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// HMAC's `sign`: the MAC of `data` under `key`.
pub(crate) fn hmac_sign(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length: `new_from_slice` never fails.
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match hash {
        Hash::Sha1 => mac::<Hmac<Sha1>>(key, data),
        Hash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        Hash::Sha384 => mac::<Hmac<Sha384>>(key, data),
        Hash::Sha512 => mac::<Hmac<Sha512>>(key, data),
    }
}

/// HMAC's `verify`: whether `signature` is the MAC of `data` under `key`,
/// compared in constant time (`hmac`'s `verify_slice`).
pub(crate) fn hmac_verify(hash: Hash, key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8], sig: &[u8]) -> bool {
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.verify_slice(sig).is_ok()
    }
    match hash {
        Hash::Sha1 => check::<Hmac<Sha1>>(key, data, signature),
        Hash::Sha256 => check::<Hmac<Sha256>>(key, data, signature),
        Hash::Sha384 => check::<Hmac<Sha384>>(key, data, signature),
        Hash::Sha512 => check::<Hmac<Sha512>>(key, data, signature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn digests_match_known_answers() {
        assert_eq!(Hash::from_name("sHa-256"), Some(Hash::Sha256));
        assert_eq!(Hash::from_name("SHA256"), None);
        assert_eq!(
            hex(&digest(Hash::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&digest(Hash::Sha256, b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest(Hash::Sha384, b"").len(), 48);
        assert_eq!(digest(Hash::Sha512, b"").len(), 64);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sign(Hash::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_verify(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &mac
        ));
        assert!(!hmac_verify(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing!",
            &mac
        ));
        assert!(!hmac_verify(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &mac[..31]
        ));
        assert_eq!(hmac_sign(Hash::Sha512, b"", b"").len(), 64);
    }
}
