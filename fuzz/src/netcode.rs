//! netcode 1.02 input as a server and a client receive it: packets (read in the normative
//! order, through one replay window per side that lives across inputs), connect tokens (the
//! client's copy, whole), the sealed private part of a connection request, and sealed
//! challenge tokens. Inputs are tried as each; some are forged to open (sealed under the
//! harness's own key, as a peer holding the key would), so the readers behind the decryption
//! are reached too.
//!
//! The same input also goes to a server and two clients of the native profile, as a datagram:
//! to the server from a stranger's address (it must keep nothing and answer smaller), from a
//! client waiting for its accept, and from a connected one; and to both clients. A client
//! waiting for its accept must never be connected by an input (that would be a forged accept
//! taken).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::client::{Client, ClientState};
use sturnus_netcode::native::{self, NativeConfig};
use sturnus_netcode::packet::{self, Allowed, Packet};
use sturnus_netcode::replay::ReplayWindow;
use sturnus_netcode::server::{Server, ServerConfig};
use sturnus_netcode::token::{
    CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_NONCE_BYTES, CONNECT_TOKEN_PRIVATE_BYTES, TokenSpec,
};
use sturnus_netcode::{ChallengeToken, ConnectToken, Key, PrivateConnectToken};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
const KEY: Key = [7; 32];
const NONCE: [u8; CONNECT_TOKEN_NONCE_BYTES] = [9; CONNECT_TOKEN_NONCE_BYTES];

/// The native profile's endpoints the inputs are sent to.
#[derive(Debug)]
struct Native {
    now: Instant,
    server: Server,
    /// Sent its response, never delivered: it waits for an accept.
    waiting: Client,
    /// Connected.
    connected: Client,
    replies: u64,
    challenges: u64,
}

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const WAITING: ([u8; 4], u16) = ([10, 0, 1, 1], 5000);
const CONNECTED: ([u8; 4], u16) = ([10, 0, 1, 2], 5000);
const STRANGER: ([u8; 4], u16) = ([10, 0, 9, 9], 5000);

impl Native {
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    fn new() -> Self {
        let now = Instant::now();
        let mut config = ServerConfig::new(PROTOCOL_ID, KEY, SERVER.into());
        config.native = Some(NativeConfig::from_secret([5; 32], Duration::from_secs(5)));
        let mut server = Server::new(&config).expect("a valid configuration");
        let timeout = Duration::from_secs(5);
        let client =
            || Client::native(SERVER.into(), PROTOCOL_ID, None, timeout, now).expect("randomness");
        let (mut waiting, mut connected) = (client(), client());
        // The waiting client: request, challenge, and its response is not delivered.
        waiting.update(now);
        exchange(&mut server, &mut waiting, WAITING.into(), now, 2);
        assert_eq!(waiting.state(), ClientState::SendingResponse);
        while waiting.poll_transmit().is_some() {}
        connected.update(now);
        exchange(&mut server, &mut connected, CONNECTED.into(), now, 8);
        assert_eq!(connected.state(), ClientState::Connected);
        while server.poll_event().is_some() {}
        while connected.poll_event().is_some() {}
        Self { now, server, waiting, connected, replies: 0, challenges: 0 }
    }

    fn feed(&mut self, data: &[u8]) {
        let (before, connected) = (self.server.connected_clients(), self.waiting.state());
        self.server.handle_datagram(self.now, 1_800_000_000, STRANGER.into(), &mut data.to_vec());
        while let Some((to, reply)) = self.server.poll_transmit() {
            assert!(reply.len() < data.len(), "a reply of {} to {} bytes", reply.len(), data.len());
            assert_eq!(to, SocketAddr::from(STRANGER));
            self.replies += 1;
        }
        assert_eq!(self.server.connected_clients(), before, "a stranger took a slot");
        assert_eq!(self.server.pending_clients(), 0);
        // A well-formed request with the input as its key: a challenge, smaller, and its
        // cookie refused from any other address.
        let mut key = [0; 32];
        let len = data.len().min(32);
        key[..len].copy_from_slice(&data[..len]);
        let mut request = vec![0; native::REQUEST_BYTES];
        request[0] = native::REQUEST_TYPE;
        request[1..14].copy_from_slice(native::NATIVE_VERSION_INFO);
        request[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
        request[22..54].copy_from_slice(&key);
        let mut response = request.clone();
        self.server.handle_datagram(self.now, 1_800_000_000, STRANGER.into(), &mut request);
        let (_, challenge) = self.server.poll_transmit().expect("a challenge to a request");
        assert_eq!(challenge.len(), native::CHALLENGE_BYTES);
        assert_eq!(challenge[1..9], key[..8]);
        self.challenges += 1;
        response[0] = native::RESPONSE_TYPE;
        response[54..86].copy_from_slice(&challenge[9..]);
        let refused = self.server.stats().cookies_refused;
        let elsewhere = ([10, 0, 9, data.first().copied().unwrap_or(0)], 5001);
        self.server.handle_datagram(self.now, 1_800_000_000, elsewhere.into(), &mut response);
        assert!(self.server.poll_transmit().is_none(), "a cookie taken from another address");
        assert_eq!(self.server.stats().cookies_refused, refused + 1);
        assert_eq!(self.server.connected_clients(), before);
        for from in [WAITING, CONNECTED] {
            self.server.handle_datagram(self.now, 1_800_000_000, from.into(), &mut data.to_vec());
        }
        self.waiting.handle_datagram(self.now, SERVER.into(), &mut data.to_vec());
        if self.waiting.state() == ClientState::Connected && connected != ClientState::Connected {
            panic!("an input connected a client waiting for its accept: a forged accept taken");
        }
        self.connected.handle_datagram(self.now, SERVER.into(), &mut data.to_vec());
        // Time stands still: the handshake states stay as set up (no timeout) for every input.
        for client in [&mut self.waiting, &mut self.connected] {
            client.update(self.now);
            while let Some((_, bytes)) = client.poll_transmit() {
                client.recycle(bytes);
            }
            while client.poll_event().is_some() {}
        }
        self.server.update(self.now);
        while let Some((_, bytes)) = self.server.poll_transmit() {
            self.server.recycle(bytes);
        }
        while self.server.poll_event().is_some() {}
    }
}

/// Delivers between `server` and `client` (at `address`) both ways, `rounds` times.
fn exchange(
    server: &mut Server,
    client: &mut Client,
    address: SocketAddr,
    now: Instant,
    rounds: u32,
) {
    for _ in 0..rounds {
        while let Some((_, mut bytes)) = client.poll_transmit() {
            server.handle_datagram(now, 1_800_000_000, address, &mut bytes);
        }
        while let Some((_, mut bytes)) = server.poll_transmit() {
            client.handle_datagram(now, SERVER.into(), &mut bytes);
        }
        if client.state() == ClientState::SendingResponse && rounds == 2 {
            return;
        }
    }
}

/// What the readers made of the inputs.
#[derive(Debug)]
pub struct NetcodeHarness {
    server_window: ReplayWindow,
    client_window: ReplayWindow,
    packets_read: u64,
    forged_read: u64,
    tokens_read: u64,
    private_opened: u64,
    private_read: u64,
    challenges_opened: u64,
    rejected: u64,
    native: Native,
}

impl Default for NetcodeHarness {
    fn default() -> Self {
        Self {
            server_window: ReplayWindow::new(),
            client_window: ReplayWindow::new(),
            packets_read: 0,
            forged_read: 0,
            tokens_read: 0,
            private_opened: 0,
            private_read: 0,
            challenges_opened: 0,
            rejected: 0,
            native: Native::new(),
        }
    }
}

impl NetcodeHarness {
    /// A fresh harness.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tries `data` as a packet to each side and as every kind of token; never panics.
    pub fn feed(&mut self, data: &[u8]) {
        self.native.feed(data);
        // As the bytes came: a packet to a server, then to a client.
        for (allowed, window) in
            [(Allowed::SERVER, &mut self.server_window), (Allowed::CLIENT, &mut self.client_window)]
        {
            let mut bytes = data.to_vec();
            match packet::read(&mut bytes, PROTOCOL_ID, Some(&KEY), allowed, Some(window), 0) {
                Ok(_) => self.packets_read += 1,
                Err(_) => self.rejected += 1,
            }
        }
        // Sealed under the key, as a peer holding it would: the first byte picks the type and
        // the next eight the sequence, the rest is the payload; the reader must return it.
        if let Some((&kind, rest)) = data.split_first() {
            let (sequence, payload) = match rest.split_first_chunk::<8>() {
                Some((sequence, payload)) => (u64::from_le_bytes(*sequence), payload),
                None => (0, rest),
            };
            let packet = match kind % 3 {
                0 => Packet::KeepAlive { client_index: u32::from(kind), max_clients: 4096 },
                1 => Packet::Disconnect,
                _ => Packet::Payload(payload),
            };
            let mut out = [0; sturnus_netcode::MAX_PACKET_BYTES];
            if let Ok(len) = packet::write(&packet, sequence, PROTOCOL_ID, &KEY, &mut out) {
                // Read twice through a fresh window: the first is the packet, the second a
                // replay.
                let mut window = ReplayWindow::new();
                let mut again = out;
                let read = packet::read(
                    &mut out[..len],
                    PROTOCOL_ID,
                    Some(&KEY),
                    Allowed::SERVER,
                    Some(&mut window),
                    0,
                );
                match read {
                    Ok((seq, back)) if seq == sequence && back == packet => self.forged_read += 1,
                    other => panic!("a sealed {packet:?} (seq {sequence}) read as {other:?}"),
                }
                let replayed = packet::read(
                    &mut again[..len],
                    PROTOCOL_ID,
                    Some(&KEY),
                    Allowed::SERVER,
                    Some(&mut window),
                    0,
                );
                assert!(replayed.is_err(), "a replay of seq {sequence} was accepted");
            }
        }
        let mut plain = [0; CONNECT_TOKEN_PRIVATE_BYTES];
        let len = data.len().min(CONNECT_TOKEN_PRIVATE_BYTES - 16);
        plain[..len].copy_from_slice(&data[..len]);
        if let Ok(token) = PrivateConnectToken::read(&plain) {
            if let Ok(sealed) = token.seal(PROTOCOL_ID, u64::MAX, &NONCE, &KEY) {
                match PrivateConnectToken::open(&sealed, PROTOCOL_ID, u64::MAX, &NONCE, &KEY) {
                    Ok(opened) if opened == token => self.private_opened += 1,
                    _ => panic!("a token sealed here did not open to itself"),
                }
            }
        }
        if let Ok(sealed) = <[u8; CHALLENGE_TOKEN_BYTES]>::try_from(data) {
            match ChallengeToken::open(&sealed, 1, &KEY) {
                Ok(_) => self.challenges_opened += 1,
                Err(_) => self.rejected += 1,
            }
        }
        if let Ok(sealed) = <[u8; CONNECT_TOKEN_PRIVATE_BYTES]>::try_from(data) {
            if PrivateConnectToken::open(&sealed, PROTOCOL_ID, u64::MAX, &NONCE, &KEY).is_err() {
                self.rejected += 1;
            }
        }
    }

    /// A valid token, a valid private part and sealed packets, to mutate.
    pub fn seeds() -> Vec<Vec<u8>> {
        let spec = TokenSpec {
            protocol_id: PROTOCOL_ID,
            client_id: 42,
            server_addresses: vec![
                "127.0.0.1:7777".parse().unwrap(),
                "[::1]:7777".parse().unwrap(),
            ],
            expire_seconds: 30,
            timeout_seconds: 5,
            user_data: [3; 256],
        };
        let token =
            ConnectToken::generate_with(&spec, &KEY, 1_700_000_000, NONCE, ([1; 32], [2; 32]))
                .expect("a valid spec");
        let public = token.write().expect("it fits").to_vec();
        let private = PrivateConnectToken::open(
            &token.private_data,
            PROTOCOL_ID,
            token.expire_timestamp,
            &NONCE,
            &KEY,
        )
        .expect("it opens")
        .write()
        .expect("it fits")
        .to_vec();
        let mut seeds = vec![public, private];
        for (sequence, packet) in [
            (1_u64 << 63, Packet::KeepAlive { client_index: 3, max_clients: 4096 }),
            (5, Packet::Payload(&[1, 2, 3, 4, 5, 6, 7, 8])),
            (u64::MAX, Packet::Disconnect),
        ] {
            let mut out = [0; sturnus_netcode::MAX_PACKET_BYTES];
            let len =
                packet::write(&packet, sequence, PROTOCOL_ID, &KEY, &mut out).expect("it fits");
            seeds.push(out[..len].to_vec());
        }
        // The native handshake's packets, laid out as the module documents them.
        let mut request = vec![0; native::REQUEST_BYTES];
        request[0] = native::REQUEST_TYPE;
        request[1..14].copy_from_slice(native::NATIVE_VERSION_INFO);
        request[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
        request[22..54]
            .copy_from_slice(&NativeConfig::from_secret([6; 32], Duration::ZERO).public_key());
        let mut response = request.clone();
        response[0] = native::RESPONSE_TYPE;
        response[54..86].fill(0xc0);
        let mut challenge = vec![0x11; native::CHALLENGE_BYTES];
        challenge[0] = native::CHALLENGE_TYPE;
        let mut accept = vec![0x22; native::ACCEPT_BYTES];
        accept[0] = native::ACCEPT_TYPE;
        seeds.extend([request, response, challenge, accept]);
        seeds
    }

    /// One line of counts.
    pub fn report(&self) -> String {
        format!(
            "packets read {} (sealed round trips {}), tokens read {}, private parts read {} \
             (sealed round trips {}), challenge tokens opened {}, rejected {}; native: server \
             replies to a stranger {} (and challenges to well-formed requests {}), server {:?}, clients {:?} / {:?}",
            self.packets_read,
            self.forged_read,
            self.tokens_read,
            self.private_read,
            self.private_opened,
            self.challenges_opened,
            self.rejected,
            self.native.replies,
            self.native.challenges,
            self.native.server.stats(),
            self.native.waiting.stats(),
            self.native.connected.stats(),
        )
    }
}
