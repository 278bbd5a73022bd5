//! [`ImportOptions`]: what an import may keep from the archive.
//!
//! An archive is written by another node, or by whoever handed it over: its
//! tier and usage rows are claims, not facts. By default an imported app lands
//! on this node's default tier with fresh usage; an operator who trusts the
//! archive asks to keep either.

/// What [`Platform::import_tenant`](super::Platform::import_tenant) keeps
/// from the archive. Default: neither the tier nor the usage.
///
/// ```
/// use corral::platform::ImportOptions;
/// let o = ImportOptions::new();
/// assert!(!o.keeps_tier() && !o.keeps_usage());
/// let o = ImportOptions::new().keep_tier(true).keep_usage(true);
/// assert!(o.keeps_tier() && o.keeps_usage());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct ImportOptions {
    keep_tier: bool,
    keep_usage: bool,
}

impl ImportOptions {
    /// Keep nothing: the node's default tier, fresh usage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the archive's tier. It must be one of this node's tiers, else
    /// the import fails with [`PlatformError::UnknownTier`](super::PlatformError::UnknownTier)
    /// (`unknown_tier`). Default: `false`, the app gets the node's default tier.
    pub fn keep_tier(mut self, keep: bool) -> Self {
        self.keep_tier = keep;
        self
    }

    /// Keep the archive's usage rows (every month it carries; the current
    /// month's totals continue from them). Default: `false`, the app starts
    /// with no usage.
    pub fn keep_usage(mut self, keep: bool) -> Self {
        self.keep_usage = keep;
        self
    }

    /// Whether the archive's tier is kept.
    pub fn keeps_tier(&self) -> bool {
        self.keep_tier
    }

    /// Whether the archive's usage is kept.
    pub fn keeps_usage(&self) -> bool {
        self.keep_usage
    }
}
