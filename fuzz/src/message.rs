//! The message layer's framing, as a server hears it from a player and a client from its
//! server.

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ClientStats, Login, Message, MessageId, NetworkClient, NetworkServer, PasswordAuthenticator,
    Player, PlayerId, ServerConfig,
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
/// with its client, and one that has not yet presented credentials. Input is a sequence of
/// records (a selector byte, a length byte, the payload): the selector's bit 0 says which side
/// receives it (0: the server; 1: the authenticated player's client, from the server), bit 1
/// which player the server hears it from (0: the authenticated one; 1: the newcomer, so
/// credentials reach the authenticator), and bits 2 to 4 pick a known message id to put in
/// front of the payload (6 and 7: none).
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
        let mut server = NetworkServer::new(ServerConfig::default()).expect("the default is valid");
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
        server.start_offline().expect("not started");
        let (client, player) = join(&mut server);
        let newcomer = arrive(&mut server);
        Self { server, client, player, newcomer, ids: known_ids(), buf: Vec::new() }
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
        for ([selector], payload) in crate::records::<1>(data) {
            self.buf.clear();
            if let Some(id) = self.ids.get(usize::from((selector >> 2) & 7)) {
                self.buf.extend_from_slice(&id.0.to_le_bytes());
            }
            self.buf.extend_from_slice(payload);
            match selector & 3 {
                0 => self.server.handle_raw(self.player, &self.buf),
                2 => self.server.handle_raw(self.newcomer.1, &self.buf),
                _ => self.client.handle_raw(&self.buf),
            }
            // Answers travel, and local departures are noticed.
            let _ = self.server.update();
            let _ = self.client.update();
            self.check();
            // Accepted or sent away: another newcomer takes its place.
            let newcomer = self.server.player(self.newcomer.1).map(|p| p.is_authenticated());
            if newcomer != Some(false) {
                self.server.disconnect(self.newcomer.1);
                self.newcomer = arrive(&mut self.server);
            }
            let gone = self.server.player(self.player).is_none();
            if gone || !self.client.is_authenticated() {
                self.server.disconnect(self.player);
                (self.client, self.player) = join(&mut self.server);
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
        // Selectors: id index << 2 | newcomer << 1 | to the client.
        vec![
            [crate::record([2], &auth), crate::record([12], &chat)].concat(),
            [crate::record([2], &wrong), crate::record([0], &auth)].concat(),
            [crate::record([16], &mv), crate::record([20], &say), crate::record([21], &say)]
                .concat(),
            [crate::record([4], &[0]), crate::record([5], &[1, 3, b'n', b'o', b'!'])].concat(),
            [crate::record([9], &[2, 0]), crate::record([20], &quit)].concat(),
            crate::record([8], &[3, 4, b'q', b'u', b'i', b't']),
            crate::record([14], &chat),
        ]
    }
}

/// A new local player, authenticated.
fn join(server: &mut NetworkServer) -> (NetworkClient, PlayerId) {
    let mut client = server.connect_local().expect("the server runs");
    let login = Login { name: "ada".into(), password: "sesame".into() };
    client.set_credentials(&login).expect("encodable");
    let player = server.players().max().expect("just joined");
    for _ in 0..4 {
        let _ = client.update();
        let _ = server.update();
    }
    assert!(client.is_authenticated(), "the local player authenticates");
    (client, player)
}

/// A new local player that never authenticates by itself: its client is kept but never
/// updated, so it sends nothing.
fn arrive(server: &mut NetworkServer) -> (NetworkClient, PlayerId) {
    let client = server.connect_local().expect("the server runs");
    let player = server.players().max().expect("just joined");
    (client, player)
}

/// A message body: postcard.
fn body<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encodable")
}
