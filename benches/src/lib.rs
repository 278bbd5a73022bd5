//! Shared helpers for Corral benches.
