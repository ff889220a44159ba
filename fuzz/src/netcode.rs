//! netcode 1.02 input as a server receives it: connect tokens (the client's copy, whole), the
//! sealed private part of a connection request, and sealed challenge tokens. Inputs are tried
//! as each; a few are forged to open (sealed under the harness's own key), so the readers
//! behind the decryption are reached too.

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

    /// Tries `data` as every kind of token; never panics.
    pub fn feed(&mut self, data: &[u8]) {
        match ConnectToken::read(data) {
            Ok(_) => self.tokens_read += 1,
            Err(_) => self.rejected += 1,
        }
        match PrivateConnectToken::read(data) {
            Ok(_) => self.private_read += 1,
            Err(_) => self.rejected += 1,
        }
        // Sealed under the harness's key: a plaintext the fuzzer shaped reaches the reader.
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

    /// A valid token and a valid private part, to mutate.
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
        vec![public, private]
    }

    /// One line of counts.
    pub fn report(&self) -> String {
        format!("{self:?}")
    }
}
