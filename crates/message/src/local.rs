//! Host mode's in-memory path between a server and a local client: encoded messages in two
//! queues, with no transport and no socket in between.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use sturnus_transport::ChannelId;

/// Buffers kept for reuse, so a steady exchange stops allocating.
const SPARE_BUFFERS: usize = 64;

/// The two directions of one local connection.
#[derive(Debug, Default)]
pub(crate) struct LocalPipe {
    pub(crate) to_server: Queue,
    pub(crate) to_client: Queue,
    pub(crate) client_closed: bool,
    pub(crate) server_closed: bool,
    spare: Vec<Vec<u8>>,
}

pub(crate) type SharedPipe = Arc<Mutex<LocalPipe>>;

/// One direction: messages with their channels.
pub(crate) type Queue = VecDeque<(ChannelId, Vec<u8>)>;

impl LocalPipe {
    /// A copy of `bytes` in a recycled buffer.
    pub(crate) fn buffer(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Returns a buffer for reuse.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }
}

/// Takes the next message of one direction into `into` (its old buffer goes back for reuse,
/// so nothing is copied); returns its channel.
pub(crate) fn pop(
    pipe: &SharedPipe,
    queue: fn(&mut LocalPipe) -> &mut Queue,
    into: &mut Vec<u8>,
) -> Option<ChannelId> {
    let mut pipe = pipe.lock();
    let (channel, mut buf) = queue(&mut pipe).pop_front()?;
    std::mem::swap(into, &mut buf);
    pipe.recycle(buf);
    Some(channel)
}

/// Queues a copy of `bytes` on `channel` in one direction.
pub(crate) fn push(
    pipe: &SharedPipe,
    queue: fn(&mut LocalPipe) -> &mut Queue,
    channel: ChannelId,
    bytes: &[u8],
) {
    let mut pipe = pipe.lock();
    let buf = pipe.buffer(bytes);
    queue(&mut pipe).push_back((channel, buf));
}

/// Whether the other side has dropped its end without closing it.
pub(crate) fn abandoned(pipe: &SharedPipe) -> bool {
    Arc::strong_count(pipe) == 1
}
