//! Connect and challenge tokens, byte for byte against the reference C implementation's golden
//! vectors (`tests/vectors`, with their fixed inputs), and across implementations: a token
//! minted by the standard's Rust port is read here, and one minted here connects that port's
//! client to its server over UDP.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sturnus_netcode::token::{CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_BYTES, TokenSpec};
use sturnus_netcode::{ChallengeToken, ConnectToken, Key, NetcodeError, PrivateConnectToken};

const PROTOCOL_ID: u64 = 0x1122_3344_5566_7788;
const CLIENT_ID: u64 = 0x0102_0304_0506_0708;
const TIMEOUT_SECONDS: i32 = 15;
const CREATE_TIMESTAMP: u64 = 1_720_000_000;
const EXPIRE_TIMESTAMP: u64 = 1_720_000_100;
const CHALLENGE_SEQUENCE: u64 = 1000;
const PRIVATE_KEY: Key = [
    0x60, 0x6a, 0xbe, 0x6e, 0xc9, 0x19, 0x10, 0xea, 0x9a, 0x65, 0x62, 0xf6, 0x6f, 0x2b, 0x30, 0xe4,
    0x43, 0x71, 0xd6, 0x2c, 0xd1, 0x99, 0x27, 0x26, 0x6b, 0x3c, 0x60, 0xf4, 0xb7, 0x15, 0xab, 0xa1,
];

fn ramp<const N: usize>(f: impl Fn(usize) -> usize) -> [u8; N] {
    std::array::from_fn(|i| u8::try_from(f(i) % 256).unwrap())
}

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn server_addresses() -> Vec<SocketAddr> {
    vec!["127.0.0.1:40000".parse().unwrap(), "[::1]:50000".parse().unwrap()]
}

fn private_token() -> PrivateConnectToken {
    PrivateConnectToken {
        client_id: CLIENT_ID,
        timeout_seconds: TIMEOUT_SECONDS,
        server_addresses: server_addresses(),
        client_to_server_key: ramp(|i| i),
        server_to_client_key: ramp(|i| 255 - i),
        user_data: ramp(|i| i),
    }
}

fn nonce() -> [u8; 24] {
    ramp(|i| 100 + i)
}

#[test]
fn the_private_part_is_byte_exact_with_the_reference() {
    let plain = private_token().write().unwrap();
    assert_eq!(plain[..], vector("private_connect_token_plaintext")[..]);
    let sealed = private_token().seal(PROTOCOL_ID, EXPIRE_TIMESTAMP, &nonce(), &PRIVATE_KEY);
    let sealed = sealed.unwrap();
    assert_eq!(sealed[..], vector("private_connect_token_encrypted")[..]);
    // And the reference's sealed bytes open to the same fields.
    let reference: [u8; 1024] = vector("private_connect_token_encrypted").try_into().unwrap();
    let opened = PrivateConnectToken::open(
        &reference,
        PROTOCOL_ID,
        EXPIRE_TIMESTAMP,
        &nonce(),
        &PRIVATE_KEY,
    )
    .unwrap();
    assert_eq!(opened, private_token());
}

#[test]
fn a_private_part_opens_only_with_its_key_protocol_and_expiry() {
    let sealed =
        private_token().seal(PROTOCOL_ID, EXPIRE_TIMESTAMP, &nonce(), &PRIVATE_KEY).unwrap();
    let open = |sealed: &[u8; 1024], protocol, expire, key: &Key| {
        PrivateConnectToken::open(sealed, protocol, expire, &nonce(), key)
    };
    let wrong_key: Key = ramp(|i| i * 3);
    assert_eq!(
        open(&sealed, PROTOCOL_ID, EXPIRE_TIMESTAMP, &wrong_key),
        Err(NetcodeError::Decrypt)
    );
    assert_eq!(
        open(&sealed, PROTOCOL_ID + 1, EXPIRE_TIMESTAMP, &PRIVATE_KEY),
        Err(NetcodeError::Decrypt)
    );
    // A token whose expiry was moved forward does not open: the expiry is authenticated.
    assert_eq!(
        open(&sealed, PROTOCOL_ID, EXPIRE_TIMESTAMP + 1, &PRIVATE_KEY),
        Err(NetcodeError::Decrypt)
    );
    for at in [0, 500, 1007, 1008, 1023] {
        let mut tampered = sealed;
        tampered[at] ^= 1;
        assert_eq!(
            open(&tampered, PROTOCOL_ID, EXPIRE_TIMESTAMP, &PRIVATE_KEY),
            Err(NetcodeError::Decrypt),
            "byte {at}"
        );
    }
}

#[test]
fn the_public_token_is_byte_exact_with_the_reference() {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: CLIENT_ID,
        server_addresses: server_addresses(),
        expire_seconds: i32::try_from(EXPIRE_TIMESTAMP - CREATE_TIMESTAMP).unwrap(),
        timeout_seconds: TIMEOUT_SECONDS,
        user_data: ramp(|i| i),
    };
    let keys = (ramp(|i| i), ramp(|i| 255 - i));
    let token =
        ConnectToken::generate_with(&spec, &PRIVATE_KEY, CREATE_TIMESTAMP, nonce(), keys).unwrap();
    let reference = vector("connect_token");
    assert_eq!(token.write().unwrap()[..], reference[..]);
    let read = ConnectToken::read(&reference).unwrap();
    assert_eq!(read, token);
    assert_eq!(read.server_addresses, server_addresses());
}

#[test]
fn the_challenge_token_is_byte_exact_with_the_reference() {
    let key: Key = ramp(|i| i * 2);
    let token = ChallengeToken { client_id: CLIENT_ID, user_data: ramp(|i| i) };
    let sealed = token.seal(CHALLENGE_SEQUENCE, &key).unwrap();
    let reference: [u8; CHALLENGE_TOKEN_BYTES] =
        vector("challenge_token_encrypted").try_into().unwrap();
    assert_eq!(sealed, reference);
    assert_eq!(ChallengeToken::open(&reference, CHALLENGE_SEQUENCE, &key).unwrap(), token);
    assert_eq!(
        ChallengeToken::open(&reference, CHALLENGE_SEQUENCE + 1, &key),
        Err(NetcodeError::Decrypt)
    );
}

#[test]
fn bad_tokens_are_errors_never_panics() {
    let good = vector("connect_token");
    assert!(ConnectToken::read(&good[..100]).is_err());
    let mut wrong_version = good.clone();
    wrong_version[7] = b'9';
    assert_eq!(ConnectToken::read(&wrong_version), Err(NetcodeError::Version));
    // The address count: 0 and 33 are refused; an address of an unknown type too.
    let count_at = 13 + 8 + 8 + 8 + 24 + 1024 + 4;
    for count in [0_u32, 33, u32::MAX] {
        let mut bad = good.clone();
        bad[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        assert_eq!(ConnectToken::read(&bad), Err(NetcodeError::ServerAddresses), "{count}");
    }
    let mut bad_type = good.clone();
    bad_type[count_at + 4] = 3;
    assert!(matches!(ConnectToken::read(&bad_type), Err(NetcodeError::Malformed(_))));
    // Tokens for no server, or for 33, are not minted.
    let mut spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: 1,
        server_addresses: Vec::new(),
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data: [0; 256],
    };
    assert_eq!(
        ConnectToken::generate(&spec, &PRIVATE_KEY, 0).unwrap_err(),
        NetcodeError::ServerAddresses
    );
    spec.server_addresses = vec!["127.0.0.1:1".parse().unwrap(); 33];
    assert_eq!(
        ConnectToken::generate(&spec, &PRIVATE_KEY, 0).unwrap_err(),
        NetcodeError::ServerAddresses
    );
    // 32 IPv6 addresses fit the private part.
    spec.server_addresses = vec!["[::1]:1".parse().unwrap(); 32];
    assert!(ConnectToken::generate(&spec, &PRIVATE_KEY, 0).is_ok());
}

#[test]
fn generated_tokens_have_fresh_keys_and_nonces() {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: 7,
        server_addresses: server_addresses(),
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data: [1; 256],
    };
    let a = ConnectToken::generate(&spec, &PRIVATE_KEY, 1000).unwrap();
    let b = ConnectToken::generate(&spec, &PRIVATE_KEY, 1000).unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.client_to_server_key, b.client_to_server_key);
    assert_ne!(a.client_to_server_key, a.server_to_client_key);
    assert_eq!(a.expire_timestamp, 1030);
    let opened = PrivateConnectToken::open(
        &a.private_data,
        PROTOCOL_ID,
        a.expire_timestamp,
        &a.nonce,
        &PRIVATE_KEY,
    )
    .unwrap();
    assert_eq!(opened.client_to_server_key, a.client_to_server_key);
    assert_eq!(opened.user_data, [1; 256]);
    // A negative expiry never expires (development).
    let forever = TokenSpec { expire_seconds: -1, ..spec };
    assert_eq!(
        ConnectToken::generate(&forever, &PRIVATE_KEY, 1000).unwrap().expire_timestamp,
        u64::MAX
    );
}

#[expect(clippy::disallowed_methods, reason = "tokens carry wall-clock timestamps")]
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_token_minted_by_the_standards_rust_port_is_read_here() {
    let user_data: [u8; 256] = ramp(|i| i * 7);
    let addresses = server_addresses();
    let bytes = netcode::generate_connect_token(
        &addresses,
        &addresses,
        30,
        TIMEOUT_SECONDS,
        CLIENT_ID,
        PROTOCOL_ID,
        &PRIVATE_KEY,
        &user_data,
    )
    .unwrap();
    let token = ConnectToken::read(&bytes).unwrap();
    assert_eq!(token.protocol_id, PROTOCOL_ID);
    assert_eq!(token.server_addresses, addresses);
    assert_eq!(token.expire_timestamp - token.create_timestamp, 30);
    let private = PrivateConnectToken::open(
        &token.private_data,
        PROTOCOL_ID,
        token.expire_timestamp,
        &token.nonce,
        &PRIVATE_KEY,
    )
    .unwrap();
    assert_eq!(private.client_id, CLIENT_ID);
    assert_eq!(private.user_data, user_data);
    assert_eq!(private.client_to_server_key, token.client_to_server_key);
    // Written back, it is the same 2048 bytes.
    assert_eq!(token.write().unwrap()[..], bytes[..]);
}

#[test]
fn a_token_minted_here_connects_the_standards_rust_port() {
    let mut server =
        netcode::Server::new("127.0.0.1:0".parse().unwrap(), PROTOCOL_ID, &PRIVATE_KEY, 0.0)
            .unwrap();
    server.start(4).unwrap();
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: CLIENT_ID,
        server_addresses: vec![server.address()],
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data: ramp(|i| 255 - i),
    };
    let token = ConnectToken::generate(&spec, &PRIVATE_KEY, unix_now()).unwrap();
    let bytes: Box<[u8; CONNECT_TOKEN_BYTES]> = token.write().unwrap();
    let mut client = netcode::Client::new("127.0.0.1:0".parse().unwrap(), 0.0).unwrap();
    client.connect(&bytes).unwrap();

    // Virtual time for both (they take it as an input); real sockets on the loopback.
    let mut time = 0.0;
    let mut echoed = 0;
    for _ in 0..2000 {
        time += 1.0 / 60.0;
        client.update(time);
        server.update(time);
        if client.state() == netcode::ClientState::Connected {
            client.send_packet(&[7; 100]).unwrap();
        }
        while let Some((payload, _)) = server.receive_packet(0) {
            assert_eq!(payload, [7; 100]);
            echoed += 1;
        }
        if echoed >= 10 {
            break;
        }
        std::thread::yield_now();
        wait_a_little();
    }
    assert!(echoed >= 10, "the port's client never delivered with our token: {:?}", client.state());
    assert_eq!(server.client_id(0), CLIENT_ID);
    assert_eq!(server.client_user_data(0), Some(&spec.user_data));
    client.disconnect();
}

/// Lets the loopback deliver (real sockets: a wait for them, not a timing assertion).
#[expect(clippy::disallowed_methods, reason = "real sockets of the peer implementation")]
fn wait_a_little() {
    std::thread::sleep(Duration::from_millis(1));
}

/// renetcode 2.0.0 writes its own client id, 8 bytes, in front of the standard's 2048.
const RENETCODE_PREFIX: usize = 8;

#[test]
fn a_token_minted_by_renetcode_is_read_here() {
    let address: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let user_data: [u8; 256] = ramp(|i| i + 1);
    let token = renetcode::ConnectToken::generate(
        Duration::from_secs(1_720_000_000),
        PROTOCOL_ID,
        300,
        CLIENT_ID,
        TIMEOUT_SECONDS,
        vec![address],
        Some(&user_data),
        &PRIVATE_KEY,
    )
    .unwrap();
    let mut bytes = Vec::new();
    token.write(&mut bytes).unwrap();
    bytes.resize(RENETCODE_PREFIX + CONNECT_TOKEN_BYTES, 0);
    let ours = ConnectToken::read(&bytes[RENETCODE_PREFIX..]).unwrap();
    assert_eq!(ours.server_addresses, [address]);
    assert_eq!(ours.expire_timestamp, 1_720_000_300);
    let private = PrivateConnectToken::open(
        &ours.private_data,
        PROTOCOL_ID,
        ours.expire_timestamp,
        &ours.nonce,
        &PRIVATE_KEY,
    )
    .unwrap();
    assert_eq!((private.client_id, private.user_data), (CLIENT_ID, user_data));
}

#[test]
fn a_token_minted_here_connects_renetcodes_client_to_its_server() {
    let server_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let client_addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    let now = Duration::from_secs(unix_now());
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: CLIENT_ID,
        server_addresses: vec![server_addr],
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data: ramp(|i| i * 3),
    };
    let token = ConnectToken::generate(&spec, &PRIVATE_KEY, now.as_secs()).unwrap();
    let mut bytes = CLIENT_ID.to_le_bytes().to_vec();
    bytes.extend_from_slice(&token.write().unwrap()[..]);
    let their_token = renetcode::ConnectToken::read(&mut &bytes[..]).unwrap();
    let mut client = renetcode::NetcodeClient::new(
        now,
        renetcode::ClientAuthentication::Secure { connect_token: their_token },
    )
    .unwrap();
    let mut server = renetcode::NetcodeServer::new(renetcode::ServerConfig {
        current_time: now,
        max_clients: 4,
        protocol_id: PROTOCOL_ID,
        public_addresses: vec![server_addr],
        authentication: renetcode::ServerAuthentication::Secure { private_key: PRIVATE_KEY },
    });
    // In memory, stepping both: their endpoints are sans-IO.
    let mut connected_user_data = None;
    let step = Duration::from_millis(50);
    for _ in 0..100 {
        let mut to_server = Vec::new();
        if let Some((packet, _)) = client.update(step) {
            to_server.push(packet.to_vec());
        }
        server.update(step);
        for mut packet in to_server {
            match server.process_packet(client_addr, &mut packet) {
                renetcode::ServerResult::PacketToSend { payload, .. } => {
                    let mut reply = payload.to_vec();
                    client.process_packet(&mut reply);
                }
                renetcode::ServerResult::ClientConnected { user_data, payload, .. } => {
                    connected_user_data = Some(*user_data);
                    let mut reply = payload.to_vec();
                    client.process_packet(&mut reply);
                }
                _ => {}
            }
        }
        if client.is_connected() && connected_user_data.is_some() {
            break;
        }
    }
    assert!(client.is_connected(), "renetcode's client did not connect with our token");
    assert_eq!(connected_user_data, Some(spec.user_data));
}
