//! The channel layout: which channels a connection has, their kinds, and which carry raw bytes.

use sturnus_transport::{ChannelId, EndpointConfig, MAX_CHANNELS, Qos};

use crate::{Message, MessageError};

/// The channels of every connection, by [`ChannelId`]: each has a quality of service
/// ([`Qos`]) and is either **typed** (carries messages: a two-byte id, then the payload) or
/// **raw** (carries the bytes game code gives [`send_raw`](crate::ServerContext::send_raw),
/// untouched, to a raw handler). Any number of channels may share a kind; up to 255.
///
/// Both peers must use the same layout, and so must the transport under them (its channels
/// are checked when the server or client starts: build the transport from
/// [`endpoint_config`](Self::endpoint_config)). The message layer's own messages
/// (authentication, goodbyes) go on the first typed `ReliableFragmentedSequenced` channel, which
/// every layout needs.
///
/// The default layout has one typed channel of each of the eleven kinds, channel *i* being
/// `Qos::ALL[i]`, so a message's `qos` always finds a channel.
///
/// ```
/// use sturnus_message::{ChannelLayout, Qos};
///
/// let mut layout = ChannelLayout::new();
/// let control = layout.add(Qos::ReliableFragmentedSequenced).unwrap();
/// let moves = layout.add(Qos::StateUpdate).unwrap();
/// let shots = layout.add(Qos::StateUpdate).unwrap(); // two of one kind, independent
/// let voice = layout.add_raw(Qos::Unreliable).unwrap();
/// assert_eq!((control.0, moves.0, shots.0, voice.0), (0, 1, 2, 3));
/// assert!(layout.is_raw(voice) && !layout.is_raw(moves));
/// assert_eq!(layout.first_of(Qos::StateUpdate), Some(moves));
/// assert_eq!(layout.endpoint_config().channels.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLayout {
    kinds: Vec<Qos>,
    raw: Vec<bool>,
    /// The first typed channel of each kind, by `Qos::ALL` index (looked up on every send).
    first: [Option<ChannelId>; Qos::ALL.len()],
}

impl Default for ChannelLayout {
    fn default() -> Self {
        Self::typed(&Qos::ALL)
    }
}

/// A kind's index in `Qos::ALL`.
fn kind_index(qos: Qos) -> usize {
    Qos::ALL.iter().position(|q| *q == qos).unwrap_or(0)
}

impl ChannelLayout {
    /// An empty layout (add at least a typed `ReliableFragmentedSequenced` channel).
    pub fn new() -> Self {
        Self { kinds: Vec::new(), raw: Vec::new(), first: [None; Qos::ALL.len()] }
    }

    /// A layout of typed channels of these kinds, in order (at most 255; more are left out).
    pub fn typed(kinds: &[Qos]) -> Self {
        let mut layout = Self::new();
        for &qos in kinds.iter().take(MAX_CHANNELS) {
            let _ = layout.add(qos);
        }
        layout
    }

    fn push(&mut self, qos: Qos, raw: bool) -> Result<ChannelId, MessageError> {
        let id = u8::try_from(self.kinds.len())
            .ok()
            .filter(|_| self.kinds.len() < MAX_CHANNELS)
            .ok_or(MessageError::Config { field: "channels", reason: "at most 255 channels" })?;
        self.kinds.push(qos);
        self.raw.push(raw);
        let first = &mut self.first[kind_index(qos)];
        if !raw && first.is_none() {
            *first = Some(ChannelId(id));
        }
        Ok(ChannelId(id))
    }

    /// Adds a typed channel of kind `qos`; returns its id.
    pub fn add(&mut self, qos: Qos) -> Result<ChannelId, MessageError> {
        self.push(qos, false)
    }

    /// Adds a raw channel of kind `qos`; returns its id.
    pub fn add_raw(&mut self, qos: Qos) -> Result<ChannelId, MessageError> {
        self.push(qos, true)
    }

    /// The kinds of the channels, by id: what the transport must be configured with.
    pub fn kinds(&self) -> &[Qos] {
        &self.kinds
    }

    /// How many channels there are.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// A channel's kind (`None`: no such channel).
    pub fn qos(&self, channel: ChannelId) -> Option<Qos> {
        self.kinds.get(usize::from(channel.0)).copied()
    }

    /// Whether a channel carries raw bytes.
    pub fn is_raw(&self, channel: ChannelId) -> bool {
        self.raw.get(usize::from(channel.0)).copied().unwrap_or(false)
    }

    /// The first typed channel of kind `qos`.
    pub fn first_of(&self, qos: Qos) -> Option<ChannelId> {
        self.first[kind_index(qos)]
    }

    /// The transport's default settings with this layout's channels, and incoming connections
    /// untrusted (held to the transport's small reassembly budgets) until the server trusts
    /// them, when their player authenticates.
    pub fn endpoint_config(&self) -> EndpointConfig {
        EndpointConfig {
            channels: self.kinds.clone(),
            trust_incoming: false,
            ..EndpointConfig::default()
        }
    }

    /// Checks the layout holds the control channel; returns its id.
    pub(crate) fn control(&self) -> Result<ChannelId, MessageError> {
        self.first_of(INTERNAL_QOS).ok_or(MessageError::Config {
            field: "channels",
            reason: "must include a typed ReliableFragmentedSequenced channel (the message \
                     layer's own)",
        })
    }

    /// The typed channel `T` goes on unless a send names one.
    pub(crate) fn channel_of<T: Message>(&self) -> Result<ChannelId, MessageError> {
        match T::CHANNEL {
            Some(channel) => Ok(channel),
            None => self.first_of(T::QOS).ok_or(MessageError::NoChannel(T::QOS)),
        }
    }

    /// Checks that typed messages may go on `channel`.
    pub(crate) fn check_typed(&self, channel: ChannelId) -> Result<(), MessageError> {
        match self.raw.get(usize::from(channel.0)) {
            None => Err(MessageError::UnknownChannel(channel)),
            Some(true) => Err(MessageError::RawChannel(channel)),
            Some(false) => Ok(()),
        }
    }

    /// Checks that raw bytes may go on `channel`.
    pub(crate) fn check_raw(&self, channel: ChannelId) -> Result<(), MessageError> {
        match self.raw.get(usize::from(channel.0)) {
            None => Err(MessageError::UnknownChannel(channel)),
            Some(false) => Err(MessageError::TypedChannel(channel)),
            Some(true) => Ok(()),
        }
    }

    /// Checks that a transport has exactly these channels.
    pub(crate) fn check_transport(&self, channels: &[Qos]) -> Result<(), MessageError> {
        if channels == self.kinds.as_slice() {
            Ok(())
        } else {
            Err(MessageError::ChannelMismatch {
                layout: self.kinds.clone(),
                transport: channels.to_vec(),
            })
        }
    }
}

/// The largest encoded message each channel takes: `max`, or less where the transport's
/// channel takes less (an unfragmented channel holds one packet). Worked out once, when a
/// transport is given, rather than asked of it on every send.
pub(crate) fn limits(
    max: usize,
    transport: Option<&dyn sturnus_transport::Transport>,
) -> Vec<usize> {
    let Some(transport) = transport else { return Vec::new() };
    (0..transport.channels().len())
        .map(|i| {
            let channel = ChannelId(u8::try_from(i).unwrap_or(u8::MAX));
            transport.max_message_size(channel).map_or(max, |limit| limit.min(max))
        })
        .collect()
}

/// The kind of channel the layer's own messages (authentication, goodbyes) use.
pub(crate) const INTERNAL_QOS: Qos = Qos::ReliableFragmentedSequenced;
