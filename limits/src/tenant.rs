//! Tenant identity shared by every Corral crate.

use std::fmt;
use std::str::FromStr;

/// The longest tenant name: one DNS label.
pub const MAX_TENANT_LEN: usize = 63;

/// A tenant (app) name, validated like a DNS label so it can be used as a
/// subdomain (`<app>.<base_domain>`), a path segment and a storage key alike.
///
/// Rules: 1–63 characters, lowercase ASCII letters, digits and `-`, neither
/// starting nor ending with `-`.
///
/// ```
/// use corral_limits::{TenantId, InvalidTenantId};
///
/// let id: TenantId = "hello-world".parse().unwrap();
/// assert_eq!(id.as_str(), "hello-world");
/// assert!(matches!("Bad_Name".parse::<TenantId>(), Err(InvalidTenantId::BadChar { .. })));
/// assert!(matches!("".parse::<TenantId>(), Err(InvalidTenantId::Empty)));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantId(Box<str>);

/// Why a string is not a valid [`TenantId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTenantId {
    /// The name is empty.
    #[error("tenant name is empty")]
    Empty,
    /// The name is longer than [`MAX_TENANT_LEN`].
    #[error("tenant name is {len} characters long; the limit is {MAX_TENANT_LEN}")]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// The name holds a character other than `a-z`, `0-9` or `-`.
    #[error("tenant name has {ch:?} at byte {at}; only a-z, 0-9 and '-' are allowed")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts or ends with `-`.
    #[error("tenant name must not start or end with '-'")]
    EdgeHyphen,
}

impl TenantId {
    /// Validates `name` and wraps it.
    ///
    /// ```
    /// # use corral_limits::TenantId;
    /// assert!(TenantId::new("a1").is_ok());
    /// assert!(TenantId::new("-a").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, InvalidTenantId> {
        if name.is_empty() {
            return Err(InvalidTenantId::Empty);
        }
        if name.len() > MAX_TENANT_LEN {
            return Err(InvalidTenantId::TooLong { len: name.len() });
        }
        if let Some((at, ch)) = name
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(InvalidTenantId::BadChar { ch, at });
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(InvalidTenantId::EdgeHyphen);
        }
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    ///
    /// ```
    /// # use corral_limits::TenantId;
    /// assert_eq!(TenantId::new("demo").unwrap().as_str(), "demo");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(TenantId::new("a").unwrap().as_str(), "a");
        assert_eq!(TenantId::new(&"a".repeat(63)).unwrap().as_str().len(), 63);
        assert_eq!(
            TenantId::new(&"a".repeat(64)),
            Err(InvalidTenantId::TooLong { len: 64 })
        );
        assert_eq!(
            TenantId::new("a.b"),
            Err(InvalidTenantId::BadChar { ch: '.', at: 1 })
        );
        assert_eq!(
            TenantId::new("../x"),
            Err(InvalidTenantId::BadChar { ch: '.', at: 0 })
        );
        assert_eq!(TenantId::new("a-"), Err(InvalidTenantId::EdgeHyphen));
        assert_eq!(
            TenantId::new("ü"),
            Err(InvalidTenantId::BadChar { ch: 'ü', at: 0 })
        );
        let back: TenantId = serde_json::from_str("\"ok-1\"").unwrap();
        assert_eq!(back.as_str(), "ok-1");
        assert!(serde_json::from_str::<TenantId>("\"NO\"").is_err());
    }
}
