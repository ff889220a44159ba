//! # sturnus-socket
//!
//! The socket layer of Sturnus: it sends and receives datagrams and knows nothing of what they
//! mean. Reliability, ordering and connections live above it, in `sturnus-transport`.
//!
//! ```text
//!  sturnus            facade, NetworkManager
//!  sturnus-object     networked objects
//!  sturnus-message    servers, clients, typed messages
//!  sturnus-transport  connections + QoS channels, driven over a Socket
//!  sturnus-socket     this crate: Socket / SocketFactory; UDP, loopback, conditioned
//!  sturnus-netem      the link model used by ConditionedSocket
//! ```
//!
//! - [`Socket`]: non-blocking send and receive of single datagrams or batches, the local
//!   address, counters, and [`Socket::wait_readable`] so a driver can sleep until there is
//!   something to read or its next timer is due.
//! - [`SocketFactory`]: makes server and client sockets, so the code above never changes when
//!   the socket kind does.
//! - [`UdpSocketFactory`] / [`UdpSocket`]: UDP on mio and socket2 — IPv4, IPv6 and dual-stack,
//!   large kernel buffers by default, transient errors absorbed and counted.
//! - [`LoopbackSocketFactory`] / [`LoopbackNetwork`]: an in-process network for tests and for
//!   running a server and clients in one program, with bounded queues that drop and count.
//! - [`ConditionedSocket`]: wraps any socket and passes its traffic through a
//!   [`sturnus_netem::Link`] (latency, jitter, loss, duplication, reordering, rate).
//!
//! ## Example: an echo over UDP
//!
//! ```
//! use std::time::Duration;
//! use sturnus_socket::{Readiness, Socket, SocketFactory, UdpSocketFactory};
//!
//! # fn main() -> Result<(), sturnus_socket::SocketError> {
//! let factory = UdpSocketFactory::default();
//! let mut server = factory.server_socket("127.0.0.1:0".parse().unwrap())?;
//! let mut client = factory.client_socket(server.local_addr())?;
//! let mut buf = [0u8; 1500];
//!
//! let _ = client.send_to(b"ping", server.local_addr())?;
//! while server.wait_readable(Some(Duration::from_secs(5)))? == Readiness::Readable {
//!     if let Some(meta) = server.recv_from(&mut buf)? {
//!         let _ = server.send_to(&buf[..meta.len], meta.from)?; // echo it back
//!         break;
//!     }
//! }
//! client.wait_readable(Some(Duration::from_secs(5)))?;
//! let meta = client.recv_from(&mut buf)?.expect("the echo");
//! assert_eq!(&buf[..meta.len], b"ping");
//! # Ok(())
//! # }
//! ```
// Unsafe code (the Linux `recvmmsg`/`sendmmsg` fast paths) is confined to the `sys` module,
// which allows it with a SAFETY comment on every block.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod conditioned;
mod error;
#[cfg(target_os = "linux")]
mod gro;
mod loopback;
mod socket;
#[cfg(target_os = "linux")]
mod sys;
mod udp;

pub use conditioned::{Clock, ConditionedSocket, ManualClock, SystemClock};
pub use error::SocketError;
pub use loopback::{
    LoopbackConfig, LoopbackNetwork, LoopbackSocket, LoopbackSocketFactory, MAX_LOOPBACK_QUEUE,
};
pub use socket::{
    Outgoing, Readiness, RecvBatch, RecvMeta, SendStatus, Socket, SocketFactory, SocketStats,
    SocketWaker,
};
pub use udp::{
    BufferSizes, MAX_SOCKET_BUFFER_SIZE, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, UdpConfig,
    UdpSocket, UdpSocketFactory,
};
