//! The fuzz targets' bodies, shared by the cargo-fuzz targets and the stable smoke driver.
//!
//! - [`packet_decode`] and [`EndpointHarness`]: the transport's packet decoding and a live
//!   endpoint fed hostile datagrams, raw and as records on real, tagged packet headers.
//! - [`message::MessageHarness`]: the message layer's framing (a two-byte id, then postcard) as
//!   a server receives it from a player and a client from its server, authentication and the
//!   layer's own messages included.
//! - [`object::ObjectHarness`]: the object layer's wire input: spawns (full state), updates
//!   (SyncVar deltas and collection operations), despawns, ownership and RPC arguments on a
//!   client, Commands on the server.
//! - [`netcode::NetcodeHarness`]: netcode 1.02 packets (through replay windows), connect
//!   tokens, private parts and challenge tokens, as a server and a client read them.
//! - [`relay::RelayHarness`]: the relay's datagrams (every header type, BINDs of real
//!   allocations altered, anything else) from bound and unknown addresses, as time passes.
//!
//! Every body must never panic, whatever the bytes.

pub mod message;
pub mod netcode;
pub mod object;
pub mod relay;
mod transport;

pub use transport::{EndpointCounts, EndpointHarness, MIN_ACCEPTED_PERCENT, packet_decode};

/// Splits fuzz input into records of `header` bytes, then a length byte, then up to that many
/// bytes of payload (fewer at the end of the input).
pub(crate) fn records<const N: usize>(mut data: &[u8]) -> impl Iterator<Item = ([u8; N], &[u8])> {
    std::iter::from_fn(move || {
        let (header, rest) = data.split_first_chunk::<N>()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len).min(rest.len());
        let (payload, next) = rest.split_at(len);
        data = next;
        Some((*header, payload))
    })
}

/// A message as the message layer frames it: the id, little-endian, then the postcard body.
pub fn frame<T: sturnus_message::Message>(msg: &T) -> Vec<u8> {
    let mut bytes = T::ID.0.to_le_bytes().to_vec();
    // The harnesses' own messages always encode.
    bytes.extend(postcard::to_allocvec(msg).expect("encodable"));
    bytes
}

/// One record in the [`records`] format.
pub fn record<const N: usize>(header: [u8; N], payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(payload.len()).unwrap_or(u8::MAX);
    let mut out = header.to_vec();
    out.push(len);
    out.extend_from_slice(&payload[..usize::from(len)]);
    out
}
