//! How a layer above composes the message layer: [`ServerDispatch`] and [`ClientDispatch`]
//! (the dispatch model is explained on [`ServerDispatch`]).

use crate::{ClientContext, ClientEvent, MessageId, PlayerId, ServerContext, ServerEvent};

/// What a dispatcher made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dispatched {
    /// It was the dispatcher's, and it handled it.
    Handled,
    /// No one knows this id: dropped and counted as unknown (against the sender's error
    /// budget, on a server).
    Unknown,
    /// The id is known but the payload did not decode: dropped and counted.
    Undecodable,
}

/// A layer above a [`NetworkServer`](crate::NetworkServer), given every typed message without
/// a handler, and every lifecycle event, during
/// [`update_with`](crate::NetworkServer::update_with).
///
/// # One dispatch model
///
/// Game code registers a **typed handler** per message type (`register_handler(|player,
/// Say(text)| …)`); it runs inside `update`, on the caller's thread, with a handle that can
/// reply, broadcast or kick. Nothing is queued between the transport and the handler: the
/// message is decoded straight from the bytes the transport lends, and the handler runs as
/// soon as the transport is free again, so a handler's reply joins the same flush.
///
/// A layer above (the object layer) does not register closures that push into a shared queue.
/// It passes itself to [`NetworkServer::update_with`](crate::NetworkServer::update_with) (or
/// the client's) as a dispatcher, and receives, in arrival order, the typed messages no handler
/// claimed and every lifecycle event, with the server context to act on. The bytes it gets are
/// copied once into a reused buffer (it may send, which needs the transport they came from);
/// it needs no `Arc<Mutex<…>>` and keeps no second copy of any state.
///
/// Why not a poll-only API, as renet's `receive_message(client, channel) -> Option<Bytes>`
/// or bevy_replicon's per-channel byte queues? Those hand out owned buffers per message (a
/// copy or an allocation each), leave decoding and routing by type to every caller, and lose
/// the order between channels. Handlers keep the ordering and the typing. Game code that prefers
/// to poll registers a typed queue instead (`register_queue::<Say>()`, then
/// `while let Some((player, Say(text))) = server.poll_message()` after `update`): decoded once,
/// kept in a reused queue, no allocation per message of a fixed-size type.
pub trait ServerDispatch {
    /// A typed message from an authenticated player that no handler claimed: `body` is its
    /// payload (after the two-byte id), lent.
    fn message(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        id: MessageId,
        body: &[u8],
    ) -> Dispatched;

    /// A lifecycle event, before the server's callbacks and poll queue see it.
    fn event(&mut self, server: &mut ServerContext, event: &ServerEvent) {
        let _ = (server, event);
    }
}

/// A layer above a [`NetworkClient`](crate::NetworkClient), given every typed message without
/// a handler, and every lifecycle event, during
/// [`update_with`](crate::NetworkClient::update_with).
pub trait ClientDispatch {
    /// A typed message from the server that no handler claimed: `body` is its payload, lent.
    fn message(&mut self, client: &mut ClientContext, id: MessageId, body: &[u8]) -> Dispatched;

    /// A lifecycle event, before the client's callbacks and poll queue see it.
    fn event(&mut self, client: &mut ClientContext, event: &ClientEvent) {
        let _ = (client, event);
    }
}
