//! netcode 1.02 input as a server and a client receive it: packets (read in the normative
//! order, through one replay window per side that lives across inputs), connect tokens (the
//! client's copy, whole), the sealed private part of a connection request, and sealed
//! challenge tokens. Inputs are tried as each; some are forged to open (sealed under the
//! harness's own key, as a peer holding the key would), so the readers behind the decryption
//! are reached too.

use sturnus_netcode::packet::{self, Allowed, Packet};
use sturnus_netcode::replay::ReplayWindow;
use sturnus_netcode::token::{
    CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_NONCE_BYTES, CONNECT_TOKEN_PRIVATE_BYTES, TokenSpec,
};
use sturnus_netcode::{ChallengeToken, ConnectToken, Key, PrivateConnectToken};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
const KEY: Key = [7; 32];
const NONCE: [u8; CONNECT_TOKEN_NONCE_BYTES] = [9; CONNECT_TOKEN_NONCE_BYTES];

/// What the readers made of the inputs.
#[derive(Debug, Default)]
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
}

impl NetcodeHarness {
    /// A fresh harness.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tries `data` as a packet to each side and as every kind of token; never panics.
    pub fn feed(&mut self, data: &[u8]) {
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
        seeds
    }

    /// One line of counts.
    pub fn report(&self) -> String {
        format!(
            "packets read {} (sealed round trips {}), tokens read {}, private parts read {} \
             (sealed round trips {}), challenge tokens opened {}, rejected {}",
            self.packets_read,
            self.forged_read,
            self.tokens_read,
            self.private_read,
            self.private_opened,
            self.challenges_opened,
            self.rejected
        )
    }
}
