//! The hasher of the tenant map: a seeded folded-multiply hash (the
//! construction of `foldhash`/`ahash`'s fallback), a few nanoseconds for a
//! tenant name where std's SipHash-1-3 costs tens.
//!
//! The seed is random per map (from std's `RandomState`), so bucket positions
//! are not predictable from outside the process. It is not a keyed PRF like
//! SipHash; the keys here are tenant names, which the operator's registry
//! admits, not arbitrary request data.

use std::hash::{BuildHasher, Hasher};

const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`TenantHasher`]s with one random seed per map.
#[derive(Clone, Debug)]
pub(crate) struct TenantHash {
    seed: u64,
}

impl Default for TenantHash {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(K1);
        Self { seed }
    }
}

impl BuildHasher for TenantHash {
    type Hasher = TenantHasher;

    #[inline]
    fn build_hasher(&self) -> TenantHasher {
        TenantHasher { acc: self.seed }
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct TenantHasher {
    acc: u64,
}

impl TenantHasher {
    #[inline(always)]
    fn mix(&mut self, v: u64) {
        self.acc = folded_multiply(self.acc ^ v, K1);
    }
}

impl Hasher for TenantHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // The length goes in first, so inputs differing only by trailing
        // zero bytes (padding below) still differ.
        self.acc = self.acc.wrapping_add(bytes.len() as u64).wrapping_mul(K2);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i) | 0x100);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.acc ^ K2, K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn distinct_names_spread() {
        let h = TenantHash::default();
        let mut seen = HashSet::new();
        let mut low = HashSet::new();
        for i in 0..100_000 {
            let v = h.hash_one(format!("tenant-{i}"));
            seen.insert(v);
            low.insert(v & 0xffff);
        }
        assert_eq!(seen.len(), 100_000);
        // 100,000 names in 65,536 low-bit buckets: a uniform hash fills
        // 65,536 x (1 - e^(-100,000/65,536)) = about 51,290 of them.
        assert!(low.len() > 50_500, "{}", low.len());
        assert_ne!(h.hash_one("a"), h.hash_one("a\0"));
        assert_ne!(h.hash_one(""), h.hash_one("\0"));
    }

    #[test]
    fn seeds_differ_between_maps() {
        let (a, b) = (TenantHash::default(), TenantHash::default());
        assert_ne!(a.hash_one("shop"), b.hash_one("shop"));
    }
}
