//! The sans-IO protocol core: no sockets, threads or clock reads (`Instant::now` is disallowed
//! by the workspace `clippy.toml`); time is always an argument.

pub mod ack;
pub mod codec;
pub mod packet;
pub mod rtt;
pub mod seq;
