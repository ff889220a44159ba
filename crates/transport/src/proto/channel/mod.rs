//! Channels: the per-QoS sending and receiving halves.

pub(crate) mod recv;
pub(crate) mod send;
