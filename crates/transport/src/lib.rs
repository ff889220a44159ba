//! # sturnus-transport
//!
//! The low-level API of Sturnus (UNET's transport layer): connections over UDP with
//! per-channel quality of service, as a sans-IO protocol core and a thin driver.
//!
//! ```text
//!  sturnus-message    servers, clients, typed messages
//!  sturnus-transport  this crate: Endpoint (sans-IO core) + Host (driver over a Socket)
//!  sturnus-socket     Socket / SocketFactory; UDP, loopback, conditioned
//!  sturnus-netem      the link model for tests
//! ```
//!
//! - [`Endpoint`] is the protocol: many connections, a handshake that keeps no state for
//!   strangers and cannot amplify, secrets from the operating system, packets tagged so that an
//!   off-path attacker cannot inject them (plaintext: see `PROTOCOL.md`, *Security*),
//!   acknowledgements, RTT-based resends, a congestion window, fragmentation, and the eleven
//!   [`Qos`] kinds of channel. It never reads the clock or touches a socket; see its
//!   documentation for the driving contract.
//! - [`Host`] drives an endpoint over any [`sturnus_socket::Socket`] with UNET's poll model:
//!   [`Host::receive`] returns Connect, Data, Disconnect or Nothing, all on the caller's thread.
//! - [`ThreadedHost`] runs the same host on a background I/O thread (UNET's default), so acks,
//!   resends and timers keep going while the application is busy.
//! - [`EndpointConfig`] holds every tunable, with defaults and a `validate()` that names the bad
//!   field. The wire format is specified in `PROTOCOL.md` beside this crate.
//!
//! ```
//! use std::time::Duration;
//! use sturnus_socket::UdpSocketFactory;
//! use sturnus_transport::{ChannelId, EndpointConfig, Host, HostEvent, Qos};
//!
//! # fn main() -> Result<(), sturnus_transport::HostError> {
//! // Channel 0 reliable and ordered, channel 1 unreliable: both sides use the same layout.
//! let config = EndpointConfig { channels: vec![Qos::ReliableSequenced, Qos::Unreliable], ..Default::default() };
//! let factory = UdpSocketFactory::default();
//! let mut server = Host::bind(config.clone(), &factory, "127.0.0.1:0".parse().unwrap())?;
//! let (mut client, conn) = Host::connect_to(config, &factory, server.local_addr())?;
//! client.send(conn, ChannelId(0), b"hello")?;
//!
//! let mut greeting = None;
//! for _ in 0..1000 {
//!     let _ = client.receive()?; // drives the client: handshake, sends, resends
//!     match server.receive()? {
//!         HostEvent::Data { channel, payload, .. } if channel == ChannelId(0) => {
//!             greeting = Some(payload.to_vec());
//!             break;
//!         }
//!         HostEvent::Nothing => server.wait(Some(Duration::from_millis(2)))?,
//!         _ => {}
//!     }
//! }
//! assert_eq!(greeting.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```
// One audited exception: the cache-prefetch hint in `proto::prefetch`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod handoff;
mod host;
mod link;
mod memory;
pub mod proto;
mod qos;
mod threaded;

pub use config::{
    AddressLimits, EndpointConfig, MAX_CHANNELS, MAX_CONFIG_DURATION, MAX_CONNECTIONS_LIMIT,
    MAX_FRAGMENT_RECORD_OVERHEAD, MAX_MEMORY_SETTING, MAX_READ_INTERVAL, MAX_REPEAT_COUNT,
};
pub use error::{
    ConfigError, ConnectError, DecodeError, HostError, QueueLimit, RandomnessError, SendError,
};
pub use host::{Host, HostEvent, HostStats, ReadPacer};
pub use link::{PeerIdentity, Transport};
pub use memory::{MEMORY_MAX_MESSAGE, MemoryNetwork, MemoryTransport};
pub use proto::connection::{Bytes, ConnectionStats};
pub use proto::control::RejectReason;
pub use proto::endpoint::{
    AcceptFilter, ConnectionId, DisconnectReason, Endpoint, EndpointStats, Event, Transmit,
};
pub use proto::limits::address_prefix;
pub use qos::{ChannelId, Qos};
pub use threaded::ThreadedHost;
