//! # sturnus-transport
//!
//! The low-level API of Sturnus (UNET's transport layer): connections over UDP with per-channel
//! quality of service, built as a sans-IO protocol core.
//!
//! **Status: under construction.** This crate holds the protocol's building blocks — the wire
//! format of data packets and message records, wrapping sequence numbers, acknowledgement
//! tracking, the RTT estimator, the eleven QoS kinds and the endpoint configuration. The
//! endpoint state machine (handshake, channels, fragmentation, flow control) and the `Host`
//! driver come next; see `PROTOCOL.md` for the wire format.
//!
//! ```text
//!  sturnus-message    servers, clients, typed messages
//!  sturnus-transport  this crate: connections + QoS channels
//!  sturnus-socket     Socket / SocketFactory; UDP, loopback, conditioned
//!  sturnus-netem      the link model for tests
//! ```
//!
//! ```
//! use sturnus_transport::{EndpointConfig, Qos};
//!
//! let config = EndpointConfig { channels: vec![Qos::ReliableSequenced, Qos::StateUpdate], ..Default::default() };
//! config.validate().unwrap();
//! assert_eq!(config.max_message_size(Qos::StateUpdate), 1186);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod host;
pub mod proto;
mod qos;

pub use config::{
    EndpointConfig, MAX_CHANNELS, MAX_CONNECTIONS_LIMIT, MAX_FRAGMENT_RECORD_OVERHEAD,
};
pub use error::{ConfigError, ConnectError, DecodeError, HostError, SendError};
pub use host::{Host, HostEvent, HostStats};
pub use proto::connection::ConnectionStats;
pub use proto::control::RejectReason;
pub use proto::endpoint::{
    AcceptFilter, ConnectionId, DisconnectReason, Endpoint, EndpointStats, Event, Transmit,
};
pub use qos::{ChannelId, Qos};
