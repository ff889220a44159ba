//! The crate's error type.

/// Everything that can go wrong when configuring a link.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetemError {
    /// A [`LinkConfig`](crate::LinkConfig) field is out of range.
    #[error("invalid link config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field, as written in the struct (for example `burst_loss.bad_to_good`).
        field: &'static str,
        /// What the field must satisfy.
        reason: &'static str,
    },
    /// A preset name that [`Preset::from_str`](crate::Preset) does not know.
    #[error("unknown link preset `{0}` (expected one of: perfect, lan, wifi, 4g, bad)")]
    UnknownPreset(String),
}
