//! # sturnus-testkit
//!
//! The workspace's one deterministic test harness (not published; tests, benchmarks and fuzz
//! targets depend on it, no library does):
//!
//! - [`SimNet`] and [`SimEndpoint`]: a virtual network of sans-IO transport endpoints joined by
//!   [`sturnus_netem`] links, on a virtual clock. A [`SimEndpoint`] implements
//!   [`sturnus_transport::Transport`], so any layer above the transport (messages, objects) runs
//!   its tests on it: lossy, delayed, in virtual time, the same every run for the same seed.
//!   [`SimNet::run_until`] is the loop of such a test.
//! - [`sim::Sim`]: the transport's own simulation on top of it, stepping every endpoint and
//!   copying their events out.
//! - [`Pair`]: two connected endpoints and a lossless wire that allocates nothing, for the
//!   zero-allocation test, the benchmarks and the fuzz harness.
//! - [`counting::Counting`]: a global allocator that counts.
//! - [`crowd::CrowdSocket`] (Linux): one real UDP socket speaking for tens of thousands of
//!   loopback client addresses, for tests and benchmarks of a server with a crowd of clients.
//! - [`logs::capture_logs`]: logs written during a closure, for the lifecycle-log tests.
//! - [`reads::ReadLog`]: a socket that stamps its reads, for tests of a driver's
//!   `read_interval`.
//! - [`RedisServer`]: a private `redis-server` on 127.0.0.1 and a free port, stopped on drop,
//!   for the Redis store's tests (which never mock Redis).
//!
//! Nothing reads the wall clock but [`origin`], which picks where a virtual clock starts, and
//! [`reads::ReadLog`], which times real reads.

pub mod counting;
#[cfg(target_os = "linux")]
pub mod crowd;
pub mod logs;
pub mod net;
pub mod pair;
pub mod reads;
pub mod redis;
pub mod sim;

pub use net::{Delivery, SIM_PORT, SendFilter, SentCount, SimEndpoint, SimNet, origin, sim_addr};
pub use pair::{Pair, Side};
pub use redis::RedisServer;

/// The lossy link the upper layers' scenario tests run over: `loss` (10 % in most), plus 2 %
/// duplicates, 5 % reordering and a millisecond of jitter on two of latency.
pub fn lossy_link(loss: f64) -> sturnus_netem::LinkConfig {
    use std::time::Duration;
    sturnus_netem::LinkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        loss,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
        ..sturnus_netem::LinkConfig::perfect()
    }
}
