//! # sturnus-relay
//!
//! A relay for client-hosted games (UNET's "no dedicated server"): a match host with no public
//! address reaches its players through it, and the relay never holds a game key.
//!
//! - [`token`]: [`RelayKey`], [`AllocationSpec`], [`Allocation`] — the sealed allocation token
//!   the matchmaker mints and the relay opens with its key alone (no store lookup).
//! - [`wire`]: the 8-byte relay header and the BIND proof.
//! - [`Relay`]: the sans-IO core — bindings, forwarding with slot rewriting, per-allocation
//!   rate limits, idle timeouts, PEER_GONE notices, counters for everything dropped.
//! - [`RelayServer`]: drives a [`Relay`] over a [`sturnus_socket::Socket`] with batched I/O.
//! - [`RelaySocket`] / [`RelaySocketFactory`]: the game side, a [`sturnus_socket::Socket`]
//!   that carries a game's datagrams through the relay. The host (slot 0) sees each client as
//!   its own virtual address ([`RelaySocket::peer_address`]); a client sees the host as the
//!   relay's address. So `SecureHost` (netcode) and the plain transport `Host` run over it
//!   unchanged, and their payloads stay end-to-end encrypted: the relay forwards bytes.
//!
//! ## Example: mint, bind, relay
//!
//! ```
//! use std::time::Instant;
//! use sturnus_relay::{Allocation, AllocationSpec, Relay, RelayConfig, RelayKey, wire};
//!
//! # fn main() -> Result<(), sturnus_relay::RelayError> {
//! let key = RelayKey::generate()?;
//! let relay_addr = "192.0.2.1:7000".parse().unwrap();
//! let spec = AllocationSpec {
//!     session: 42, slot: 0, expires_unix: 2_000, packets_per_sec: 0, bytes_per_sec: 0,
//! };
//! let host = Allocation::mint(&spec, &key, relay_addr, 1_000)?;
//! let mut relay = Relay::new(RelayConfig::default(), key)?;
//! # #[expect(clippy::disallowed_methods, reason = "an example's base instant")]
//! let now = Instant::now();
//! let mut bind = [0; wire::BIND_LEN];
//! wire::write_bind(&mut bind, host.session, host.slot, &host.sealed, &host.bind_key, 1);
//! let from = "198.51.100.7:5000".parse().unwrap();
//! let reply = relay.handle(now, 1_000, from, &mut bind).expect("BOUND");
//! let header = wire::Header::parse(&bind[..reply.len]).unwrap();
//! assert_eq!(header.kind, wire::Kind::Bound);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod relay;
mod server;
mod socket;
pub mod token;
pub mod wire;

pub use relay::{Forward, Relay, RelayConfig, RelayStats};
pub use server::RelayServer;
pub use socket::{DEFAULT_KEEPALIVE, RelaySocket, RelaySocketFactory, RelaySocketStats};
pub use token::{Allocation, AllocationSpec, HOST_SLOT, RelayKey};

/// Errors of the relay crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// Sealing a token failed.
    #[error("sealing an allocation token failed")]
    Seal,
    /// An allocation spec that cannot be minted.
    #[error("invalid allocation spec: {0}")]
    InvalidSpec(&'static str),
    /// Bytes that are not an allocation.
    #[error("malformed allocation: {0}")]
    Malformed(&'static str),
    /// A configuration field is out of range.
    #[error("invalid relay configuration: {field} {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// The socket layer failed.
    #[error(transparent)]
    Socket(#[from] sturnus_socket::SocketError),
}
