//! The crate's error type.

use std::io;
use std::net::SocketAddr;

/// Errors of the socket layer.
///
/// Transient conditions of a datagram socket (would-block, interrupted calls, ICMP errors such as
/// port-unreachable that surface as connection-refused) are **not** errors: sockets absorb and
/// count them in [`SocketStats`](crate::SocketStats).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another socket is already bound to this address.
    #[error("address {0} is already in use")]
    AddressInUse(SocketAddr),
    /// The datagram is larger than this socket can send in one piece.
    #[error("datagram of {len} bytes is larger than the {max}-byte maximum of this socket")]
    DatagramTooLarge {
        /// The size that was offered.
        len: usize,
        /// The largest datagram this socket sends.
        max: usize,
    },
    /// The destination's address family cannot be reached from this socket (an IPv6 destination
    /// from an IPv4 socket).
    #[error("cannot send to {to} from a socket bound to {local}")]
    AddressFamily {
        /// This socket's address.
        local: SocketAddr,
        /// The destination.
        to: SocketAddr,
    },
    /// A socket configuration is out of range; `field` names the bad field.
    #[error("invalid socket configuration: {field} {reason}")]
    InvalidConfig {
        /// The field that is out of range.
        field: &'static str,
        /// What the field must satisfy.
        reason: &'static str,
    },
    /// A link-emulator configuration was rejected.
    #[error(transparent)]
    Netem(#[from] sturnus_netem::NetemError),
    /// An operating-system call failed in a way that is not transient.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation, such as `bind` or `send_to`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SocketError {
    /// Wraps an I/O error with the name of the operation that failed.
    pub fn io(op: &'static str, source: io::Error) -> Self {
        SocketError::Io { op, source }
    }
}
