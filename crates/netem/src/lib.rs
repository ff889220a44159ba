//! # sturnus-netem
//!
//! A seeded, sans-IO model of a network path, for testing game networking under the conditions
//! players actually have: latency, jitter, uniform and bursty loss, duplication, reordering and a
//! rate limit with a bounded queue.
//!
//! It is the leaf of the Sturnus stack:
//!
//! ```text
//!  sturnus            facade, NetworkManager
//!  sturnus-object     networked objects
//!  sturnus-message    servers, clients, typed messages
//!  sturnus-transport  connections + QoS channels
//!  sturnus-socket     Socket / SocketFactory; UDP, loopback, ConditionedSocket ──┐
//!  sturnus-netem      this crate: the link model  <─────────────────────────────┘
//! ```
//!
//! A [`Link`] reads no clock and touches no socket: time is an argument of every call. That
//! makes it usable inside a deterministic simulation (a virtual clock that jumps from event to
//! event) as well as behind a real socket (`sturnus_socket::ConditionedSocket`). The same
//! [`LinkConfig`], seed and calls always give the same result.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sturnus_netem::{Link, Preset};
//!
//! let mut link = Link::new(Preset::Wifi.config(), 42).unwrap();
//! let start = Instant::now();
//! for i in 0..1000u32 {
//!     link.send(start + Duration::from_millis(u64::from(i)), i.to_le_bytes().to_vec());
//! }
//! // Jump the clock to each delivery instead of sleeping.
//! let mut arrived = 0;
//! while let Some(due) = link.poll_timeout() {
//!     while link.poll_deliver(due).is_some() {
//!         arrived += 1;
//!     }
//! }
//! let stats = link.stats();
//! assert_eq!(arrived, stats.sent - stats.lost - stats.dropped_queue_full + stats.duplicated);
//! assert!(stats.lost > 0, "a Wi-Fi link loses something over 1000 datagrams");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod link;
mod rng;

pub use config::{GilbertElliott, LinkConfig, Preset};
pub use error::NetemError;
pub use link::{Fate, Link, LinkStats, Packet};
pub use rng::Rng;
