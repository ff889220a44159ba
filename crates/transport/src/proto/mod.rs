//! The sans-IO protocol core: no sockets, threads or clock reads (`Instant::now` is disallowed
//! by the workspace `clippy.toml`); time is always an argument.

pub mod ack;
pub(crate) mod addr_hash;
pub(crate) mod addr_table;
pub(crate) mod channel;
pub mod codec;
pub(crate) mod congestion;
pub(crate) mod connection;
pub mod control;
pub(crate) mod endpoint;
pub(crate) mod limits;
pub mod packet;
pub(crate) mod pool;
pub mod prefetch;
pub mod rtt;
pub(crate) mod secrets;
pub mod seq;
pub mod siphash;
pub(crate) mod time;
