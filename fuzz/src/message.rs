//! The message layer's framing, as a server hears it from a player and a client from its
//! server.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ChannelId, ChannelLayout, ClientStats, Login, Message, MessageId, NetworkClient, NetworkServer,
    PasswordAuthenticator, Player, PlayerId, Qos, ServerConfig, driver,
};

/// A message with a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
pub struct Chat(pub String);

/// A message with floats, options and a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
pub struct Move {
    /// A float.
    pub x: f32,
    /// Another.
    pub y: f64,
    /// An option.
    pub tag: Option<u8>,
    /// A sequence of tuples.
    pub path: Vec<(i16, u64)>,
}

/// An enum message; `Quit` makes the server kick the player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
pub enum Cmd {
    /// A number.
    Ping(u32),
    /// A struct variant.
    Say {
        /// Text.
        text: String,
        /// Bytes.
        bytes: Vec<u8>,
    },
    /// Asks to be kicked.
    Quit,
}

/// The ids a record can put in front of its payload: the layer's own messages, then the
/// harness's. A record with another selector sends its payload as it is.
fn known_ids() -> [MessageId; 6] {
    [
        MessageId::of_path("sturnus_message::auth::AuthRequest"),
        MessageId::of_path("sturnus_message::auth::AuthResponse"),
        MessageId::of_path("sturnus_message::auth::Goodbye"),
        Chat::ID,
        Move::ID,
        Cmd::ID,
    ]
}

/// A server running offline with two local players, both with handlers: one authenticated,
/// with its client, and one that has not yet presented credentials. The channel layout is the
/// default (eleven typed channels, one of each kind) and one raw channel, with raw handlers on
/// both sides. Input is a sequence of records (a selector byte, a channel byte, a length byte,
/// the payload): the selector's bit 0 says which side receives it (0: the server; 1: the
/// authenticated player's client, from the server), bit 1 which player the server hears it
/// from (0: the authenticated one; 1: the newcomer, so credentials reach the authenticator),
/// and bits 2 to 4 pick a known message id to put in front of the payload (6 and 7: none). The
/// channel byte, modulo the number of channels plus one, names the channel it arrives on (the
/// last: one the layout does not have).
///
/// Time is virtual: every record is a frame later than the one before.
///
/// Checks, besides not panicking, each side's books: every message received is handled or
/// counted in exactly one drop counter.
pub struct MessageHarness {
    server: NetworkServer,
    client: NetworkClient,
    player: PlayerId,
    /// A player whose client never speaks: what the fuzzer sends for it is all it says.
    newcomer: (NetworkClient, PlayerId),
    ids: [MessageId; 6],
    buf: Vec<u8>,
    now: Instant,
}

impl std::fmt::Debug for MessageHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageHarness").field("player", &self.player).finish_non_exhaustive()
    }
}

impl Default for MessageHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageHarness {
    /// A server with a password, handlers that answer, and an authenticated local player.
    pub fn new() -> Self {
        let now = driver::now();
        let config = ServerConfig { channels: layout(), ..ServerConfig::default() };
        let mut server = NetworkServer::new(config).expect("a valid config");
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
        server
            .register_handler(|mut player: Player<'_>, chat: Chat| {
                let _ = player.send(&chat);
            })
            .expect("distinct ids");
        server
            .register_handler(|mut player: Player<'_>, m: Move| {
                let _ = player.send(&m);
            })
            .expect("distinct ids");
        server
            .register_handler(|mut player: Player<'_>, cmd: Cmd| match cmd {
                Cmd::Quit => player.kick("quit"),
                other => {
                    let _ = player.send(&other);
                }
            })
            .expect("distinct ids");
        server
            .register_raw_handler(RAW, |mut player: Player<'_>, channel, bytes: &[u8]| {
                let _ = player.send_raw(channel, bytes);
            })
            .expect("a raw channel");
        server.start_offline(now).expect("not started");
        let (client, player) = join(&mut server, now);
        let newcomer = arrive(&mut server, now);
        Self { server, client, player, newcomer, ids: known_ids(), buf: Vec::new(), now }
    }

    /// What the two sides counted (the current player and client only): how deep the inputs
    /// reached.
    pub fn report(&self) -> String {
        format!(
            "server {:?}; player {:?}; client {:?}",
            self.server.stats(),
            self.server.player_stats(self.player),
            self.client.stats()
        )
    }

    /// Feeds one fuzz input.
    pub fn feed(&mut self, data: &[u8]) {
        for ([selector, channel], payload) in crate::records::<2>(data) {
            self.now += Duration::from_millis(10);
            let now = self.now;
            let channel = ChannelId(channel % (CHANNELS + 1));
            self.buf.clear();
            if let Some(id) = self.ids.get(usize::from((selector >> 2) & 7)) {
                self.buf.extend_from_slice(&id.0.to_le_bytes());
            }
            self.buf.extend_from_slice(payload);
            match selector & 3 {
                0 => self.server.handle_raw(self.player, channel, &self.buf),
                2 => self.server.handle_raw(self.newcomer.1, channel, &self.buf),
                _ => self.client.handle_raw(channel, &self.buf),
            }
            // Answers travel, and local departures are noticed.
            let _ = self.server.update(now);
            let _ = self.client.update(now);
            self.check();
            // Accepted or sent away: another newcomer takes its place.
            let newcomer = self.server.player(self.newcomer.1).map(|p| p.is_authenticated());
            if newcomer != Some(false) {
                self.server.disconnect(self.newcomer.1);
                self.newcomer = arrive(&mut self.server, now);
            }
            let gone = self.server.player(self.player).is_none();
            if gone || !self.client.is_authenticated() {
                self.server.disconnect(self.player);
                (self.client, self.player) = join(&mut self.server, now);
            }
        }
    }

    fn check(&self) {
        for player in [self.player, self.newcomer.1] {
            let Some(stats) = self.server.player_stats(player) else { continue };
            assert_eq!(
                stats.messages_received,
                stats.messages_handled + stats.dropped(),
                "every message from a player is handled or dropped once: {stats:?}"
            );
        }
        let stats = self.server.stats();
        assert_eq!(
            stats.auth_requests,
            stats.auth_accepted + stats.auth_rejected + stats.auth_throttled,
            "every authentication request is accepted, rejected or throttled: {stats:?}"
        );
        let stats: ClientStats = self.client.stats();
        assert_eq!(
            stats.messages_received,
            stats.messages_handled
                + stats.dropped_unknown
                + stats.dropped_undecodable
                + stats.dropped_oversized,
            "every message from the server is handled or dropped once: {stats:?}"
        );
    }

    /// Inputs that reach deep: valid credentials and messages, each with a known id.
    pub fn seeds() -> Vec<Vec<u8>> {
        let login = Login { name: "ada".into(), password: "sesame".into() };
        let credentials = postcard::to_allocvec(&login).expect("encodable");
        let chat = body(&Chat("hello".into()));
        let mv = body(&Move { x: 1.5, y: -2.0, tag: Some(3), path: vec![(1, 2), (-3, 400)] });
        let say = body(&Cmd::Say { text: "hi".into(), bytes: vec![1, 2, 3] });
        let quit = body(&Cmd::Quit);
        let auth = postcard::to_allocvec(&credentials).expect("encodable");
        let wrong = Login { name: "eve".into(), password: "guess".into() };
        let wrong = postcard::to_allocvec(&body(&wrong)).expect("encodable");
        // Selectors: id index << 2 | newcomer << 1 | to the client; channel 7 is the control
        // channel (the first ReliableFragmentedSequenced), 11 the raw one.
        vec![
            [crate::record([2, 7], &auth), crate::record([12, 7], &chat)].concat(),
            [crate::record([2, 7], &wrong), crate::record([0, 7], &auth)].concat(),
            [
                crate::record([16, 7], &mv),
                crate::record([20, 7], &say),
                crate::record([21, 7], &say),
            ]
            .concat(),
            [crate::record([4, 7], &[0]), crate::record([5, 7], &[1, 3, b'n', b'o', b'!'])]
                .concat(),
            [crate::record([9, 7], &[2, 0]), crate::record([20, 7], &quit)].concat(),
            crate::record([8, 7], &[3, 4, b'q', b'u', b'i', b't']),
            crate::record([14, 7], &chat),
            // Raw bytes both ways, and a typed message on the raw channel and on none.
            [crate::record([24, 11], b"raw"), crate::record([25, 11], b"raw")].concat(),
            [crate::record([12, 11], &chat), crate::record([12, 12], &chat)].concat(),
        ]
    }
}

/// The raw channel.
const RAW: ChannelId = ChannelId(11);
/// How many channels the layout has.
const CHANNELS: u8 = 12;

/// The default layout and a raw channel.
fn layout() -> ChannelLayout {
    let mut layout = ChannelLayout::default();
    let raw = layout.add_raw(Qos::ReliableSequenced).expect("room for a channel");
    debug_assert_eq!((raw, layout.len()), (RAW, usize::from(CHANNELS)));
    layout
}

/// A new local player, authenticated, with a raw handler.
fn join(server: &mut NetworkServer, now: Instant) -> (NetworkClient, PlayerId) {
    let mut client = server.connect_local(now).expect("the server runs");
    client.register_raw_handler(RAW, |_client, _channel, _bytes: &[u8]| {}).expect("a raw channel");
    let login = Login { name: "ada".into(), password: "sesame".into() };
    client.set_credentials(&login).expect("encodable");
    let player = server.players().max().expect("just joined");
    for _ in 0..4 {
        let _ = client.update(now);
        let _ = server.update(now);
    }
    assert!(client.is_authenticated(), "the local player authenticates");
    (client, player)
}

/// A new local player that never authenticates by itself: its client is kept but never
/// updated, so it sends nothing.
fn arrive(server: &mut NetworkServer, now: Instant) -> (NetworkClient, PlayerId) {
    let client = server.connect_local(now).expect("the server runs");
    let player = server.players().max().expect("just joined");
    (client, player)
}

/// A message body: postcard.
fn body<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encodable")
}
