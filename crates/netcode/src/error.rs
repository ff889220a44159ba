//! The crate's errors.

/// What can go wrong making or reading netcode tokens and packets. Reading network input
/// never panics: a bad token or packet is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetcodeError {
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed")]
    Random,
    /// A token needs between 1 and 32 server addresses.
    #[error("a connect token holds 1 to 32 server addresses")]
    ServerAddresses,
    /// Too short, or a field out of range.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The version string is not netcode 1.02's.
    #[error("not a netcode 1.02 token or packet")]
    Version,
    /// Decryption failed: a wrong key, a wrong protocol id or expiry, or tampering.
    #[error("decryption failed")]
    Decrypt,
}
