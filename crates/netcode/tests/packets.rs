//! Packets and the replay window: the reference C implementation's golden vectors byte for
//! byte, every step of the normative read order, the replay window's edges, and garbage that
//! must never panic.
#![expect(
    clippy::cast_possible_truncation,
    reason = "the inputs are byte ramps and random bytes: keeping the low bits is the point"
)]

use std::collections::HashSet;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use sturnus_netcode::packet::{
    self, Allowed, MIN_PACKET_BYTES, Packet, PacketType, REQUEST_PACKET_BYTES, sequence_bytes,
};
use sturnus_netcode::replay::ReplayWindow;
use sturnus_netcode::{Key, MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES, NetcodeError, VERSION_INFO};

// The fixed inputs the vectors were made from (tests/vectors/README.md).
const PROTOCOL_ID: u64 = 0x1122_3344_5566_7788;
const CREATE_TIMESTAMP: u64 = 1_720_000_000;
const EXPIRE_TIMESTAMP: u64 = 1_720_000_100;
const CHALLENGE_SEQUENCE: u64 = 1000;
const PACKET_SEQUENCE: u64 = 0x11_2233_4455;
const CLIENT_INDEX: u32 = 7;
const MAX_CLIENTS: u32 = 32;

const PRIVATE_TOKEN: &[u8; 1024] = include_bytes!("vectors/private_connect_token_encrypted.bin");
const CHALLENGE_TOKEN: &[u8; 300] = include_bytes!("vectors/challenge_token_encrypted.bin");
const REQUEST: &[u8] = include_bytes!("vectors/packet_request.bin");
const DENIED: &[u8] = include_bytes!("vectors/packet_denied.bin");
const CHALLENGE: &[u8] = include_bytes!("vectors/packet_challenge.bin");
const RESPONSE: &[u8] = include_bytes!("vectors/packet_response.bin");
const KEEP_ALIVE: &[u8] = include_bytes!("vectors/packet_keep_alive.bin");
const PAYLOAD: &[u8] = include_bytes!("vectors/packet_payload.bin");
const DISCONNECT: &[u8] = include_bytes!("vectors/packet_disconnect.bin");

/// The key every packet vector is sealed with.
fn packet_key() -> Key {
    std::array::from_fn(|i| (i + 17) as u8)
}

fn other_key() -> Key {
    std::array::from_fn(|i| (i * 3 + 1) as u8)
}

fn token_nonce() -> [u8; 24] {
    std::array::from_fn(|i| (100 + i) as u8)
}

fn payload() -> Vec<u8> {
    (0..MAX_PAYLOAD_BYTES).map(|i| i as u8).collect()
}

fn write(packet: &Packet<'_>, sequence: u64) -> Vec<u8> {
    let mut out = [0; MAX_PACKET_BYTES];
    let len = packet::write(packet, sequence, PROTOCOL_ID, &packet_key(), &mut out).unwrap();
    out[..len].to_vec()
}

/// Reads a copy of `bytes` as a server or client would (with the packet key, no window) and
/// hands the result to `check`.
fn read_with<R>(
    bytes: &[u8],
    allowed: Allowed,
    replay: Option<&mut ReplayWindow>,
    check: impl FnOnce(Result<(u64, Packet<'_>), NetcodeError>) -> R,
) -> R {
    let mut copy = bytes.to_vec();
    check(packet::read(
        &mut copy,
        PROTOCOL_ID,
        Some(&packet_key()),
        allowed,
        replay,
        CREATE_TIMESTAMP,
    ))
}

fn read_err(bytes: &[u8], allowed: Allowed, replay: Option<&mut ReplayWindow>) -> NetcodeError {
    read_with(bytes, allowed, replay, |r| r.map(|(s, p)| format!("{s} {p:?}")).unwrap_err())
}

/// Seals an arbitrary body under an arbitrary prefix byte (what the writer refuses to make).
fn seal_raw(prefix: u8, sequence: u64, body: &[u8], key: &Key) -> Vec<u8> {
    let sequence_len = usize::from(prefix >> 4).clamp(1, 8);
    let mut out = vec![prefix];
    out.extend_from_slice(&sequence.to_le_bytes()[..sequence_len]);
    let mut sealed = body.to_vec();
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&sequence.to_le_bytes());
    let mut ad = VERSION_INFO.to_vec();
    ad.extend_from_slice(&PROTOCOL_ID.to_le_bytes());
    ad.push(prefix);
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(&nonce.into(), &ad, &mut sealed)
        .unwrap();
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&tag);
    out
}

fn prefix(packet_type: PacketType, sequence: u64) -> u8 {
    packet_type.number() | ((sequence_bytes(sequence) as u8) << 4)
}

// --- The golden vectors ---------------------------------------------------------------------

#[test]
fn request_matches_the_c_vector_both_ways() {
    let request = Packet::Request {
        protocol_id: PROTOCOL_ID,
        expire_timestamp: EXPIRE_TIMESTAMP,
        token_nonce: token_nonce(),
        private_token: PRIVATE_TOKEN,
    };
    assert_eq!(write(&request, PACKET_SEQUENCE), REQUEST);
    assert_eq!(REQUEST.len(), REQUEST_PACKET_BYTES);
    read_with(REQUEST, Allowed::SERVER, None, |r| assert_eq!(r, Ok((0, request))));
}

#[test]
fn denied_matches_the_c_vector_both_ways() {
    assert_eq!(write(&Packet::Denied, PACKET_SEQUENCE), DENIED);
    read_with(DENIED, Allowed::CLIENT, None, |r| {
        assert_eq!(r, Ok((PACKET_SEQUENCE, Packet::Denied)))
    });
}

#[test]
fn challenge_matches_the_c_vector_both_ways() {
    let challenge = Packet::Challenge { sequence: CHALLENGE_SEQUENCE, token: CHALLENGE_TOKEN };
    assert_eq!(write(&challenge, PACKET_SEQUENCE), CHALLENGE);
    read_with(CHALLENGE, Allowed::CLIENT, None, |r| {
        assert_eq!(r, Ok((PACKET_SEQUENCE, challenge)))
    });
}

#[test]
fn response_matches_the_c_vector_both_ways() {
    let response = Packet::Response { sequence: CHALLENGE_SEQUENCE, token: CHALLENGE_TOKEN };
    assert_eq!(write(&response, PACKET_SEQUENCE), RESPONSE);
    read_with(RESPONSE, Allowed::SERVER, None, |r| assert_eq!(r, Ok((PACKET_SEQUENCE, response))));
}

#[test]
fn keep_alive_matches_the_c_vector_both_ways() {
    let keep_alive = Packet::KeepAlive { client_index: CLIENT_INDEX, max_clients: MAX_CLIENTS };
    assert_eq!(write(&keep_alive, PACKET_SEQUENCE), KEEP_ALIVE);
    for allowed in [Allowed::CLIENT, Allowed::SERVER] {
        read_with(KEEP_ALIVE, allowed, None, |r| assert_eq!(r, Ok((PACKET_SEQUENCE, keep_alive))));
    }
}

#[test]
fn payload_matches_the_c_vector_both_ways() {
    let data = payload();
    assert_eq!(write(&Packet::Payload(&data), PACKET_SEQUENCE), PAYLOAD);
    read_with(PAYLOAD, Allowed::CLIENT, Some(&mut ReplayWindow::new()), |r| {
        assert_eq!(r, Ok((PACKET_SEQUENCE, Packet::Payload(&data))))
    });
}

#[test]
fn disconnect_matches_the_c_vector_both_ways() {
    assert_eq!(write(&Packet::Disconnect, PACKET_SEQUENCE), DISCONNECT);
    read_with(DISCONNECT, Allowed::SERVER, None, |r| {
        assert_eq!(r, Ok((PACKET_SEQUENCE, Packet::Disconnect)))
    });
}

#[test]
fn the_vectors_take_five_sequence_bytes_low_byte_first() {
    assert_eq!(DENIED[0], PacketType::Denied.number() | 5 << 4);
    assert_eq!(DENIED[1..6], [0x55, 0x44, 0x33, 0x22, 0x11]);
    assert_eq!(DENIED.len(), 1 + 5 + 16);
}

// --- Writing --------------------------------------------------------------------------------

#[test]
fn sequence_numbers_take_as_few_bytes_as_they_need() {
    for (sequence, bytes) in [
        (0, 1),
        (0xff, 1),
        (0x100, 2),
        (0xffff, 2),
        (0x1_0000, 3),
        (0x11_2233_4455, 5),
        (1 << 56, 8),
        (1 << 63, 8),
        (u64::MAX, 8),
    ] {
        assert_eq!(sequence_bytes(sequence), bytes, "sequence {sequence:#x}");
        let written = write(&Packet::Disconnect, sequence);
        assert_eq!(written[0] >> 4, bytes as u8, "sequence {sequence:#x}");
        assert_eq!(written.len(), 1 + bytes + 16);
        assert_eq!(written[1..=bytes], sequence.to_le_bytes()[..bytes]);
        read_with(&written, Allowed::SERVER, None, |r| {
            assert_eq!(r, Ok((sequence, Packet::Disconnect)))
        });
    }
}

#[test]
fn payloads_of_1_to_1200_bytes_round_trip_and_others_are_refused() {
    let data = payload();
    for len in [1, 2, 100, 1199, 1200] {
        let written = write(&Packet::Payload(&data[..len]), 77);
        assert_eq!(written.len(), 1 + 1 + len + 16);
        read_with(&written, Allowed::SERVER, None, |r| {
            assert_eq!(r, Ok((77, Packet::Payload(&data[..len]))))
        });
    }
    let mut out = [0; 2000];
    let big = vec![0; MAX_PAYLOAD_BYTES + 1];
    for bad in [&[][..], &big[..]] {
        assert_eq!(
            packet::write(&Packet::Payload(bad), 1, PROTOCOL_ID, &packet_key(), &mut out),
            Err(NetcodeError::PayloadSize(bad.len()))
        );
    }
}

#[test]
fn a_buffer_too_small_is_an_error_not_a_panic() {
    let data = payload();
    let mut small = [0; 100];
    assert_eq!(
        packet::write(&Packet::Payload(&data), 1, PROTOCOL_ID, &packet_key(), &mut small),
        Err(NetcodeError::BufferTooSmall(1 + 1 + 1200 + 16))
    );
    let request = Packet::Request {
        protocol_id: PROTOCOL_ID,
        expire_timestamp: EXPIRE_TIMESTAMP,
        token_nonce: token_nonce(),
        private_token: PRIVATE_TOKEN,
    };
    assert_eq!(
        packet::write(&request, 0, PROTOCOL_ID, &packet_key(), &mut small),
        Err(NetcodeError::BufferTooSmall(REQUEST_PACKET_BYTES))
    );
    let mut exact = [0; 18];
    assert_eq!(packet::write(&Packet::Denied, 1, PROTOCOL_ID, &packet_key(), &mut exact), Ok(18));
    assert_eq!(
        packet::write(&Packet::Denied, 1, PROTOCOL_ID, &packet_key(), &mut exact[..17]),
        Err(NetcodeError::BufferTooSmall(18))
    );
}

#[test]
fn a_request_for_another_protocol_is_not_written() {
    let request = Packet::Request {
        protocol_id: PROTOCOL_ID + 1,
        expire_timestamp: EXPIRE_TIMESTAMP,
        token_nonce: token_nonce(),
        private_token: PRIVATE_TOKEN,
    };
    let mut out = [0; MAX_PACKET_BYTES];
    assert_eq!(
        packet::write(&request, 0, PROTOCOL_ID, &packet_key(), &mut out),
        Err(NetcodeError::ProtocolId(PROTOCOL_ID + 1))
    );
}

// --- The read order, one step at a time -----------------------------------------------------

#[test]
fn step_1_packets_under_18_bytes_are_dropped_unread() {
    // Every prefix, even ones that would be fine: the size is checked first.
    for len in 0..MIN_PACKET_BYTES {
        for first in [0x00, 0x15, 0x16, 0x0f, 0x90] {
            let mut bytes = vec![0; len];
            if let Some(b) = bytes.first_mut() {
                *b = first;
            }
            assert_eq!(
                read_err(&bytes, Allowed::SERVER.with(PacketType::Denied), None),
                NetcodeError::PacketTooSmall(len),
                "{len} bytes starting {first:#x}"
            );
        }
    }
    // 18 bytes is enough to be read (and here to be a valid denied packet).
    let denied = write(&Packet::Denied, 5);
    assert_eq!(denied.len(), MIN_PACKET_BYTES);
    read_with(&denied, Allowed::CLIENT, None, |r| assert_eq!(r, Ok((5, Packet::Denied))));
}

#[test]
fn step_2_types_7_to_15_are_dropped() {
    let mut bytes = write(&Packet::Payload(&[1, 2, 3]), 9);
    for packet_type in 7..16 {
        bytes[0] = (bytes[0] & 0xf0) | packet_type;
        let all = Allowed::SERVER.with(PacketType::Denied).with(PacketType::Challenge);
        assert_eq!(read_err(&bytes, all, None), NetcodeError::PacketType(packet_type));
    }
}

#[test]
fn step_3_types_wrong_for_the_role_are_dropped_before_decryption() {
    // A genuine challenge: a client reads it, a server drops it.
    read_with(CHALLENGE, Allowed::CLIENT, None, |r| assert!(r.is_ok()));
    assert_eq!(read_err(CHALLENGE, Allowed::SERVER, None), NetcodeError::PacketNotAllowed(2));
    // A genuine response the other way round.
    read_with(RESPONSE, Allowed::SERVER, None, |r| assert!(r.is_ok()));
    assert_eq!(read_err(RESPONSE, Allowed::CLIENT, None), NetcodeError::PacketNotAllowed(3));
    assert_eq!(read_err(DENIED, Allowed::SERVER, None), NetcodeError::PacketNotAllowed(1));
    assert_eq!(read_err(REQUEST, Allowed::CLIENT, None), NetcodeError::PacketNotAllowed(0));
    // A narrower set: a server not yet connected to this address takes no payload.
    let narrow = Allowed::SERVER.without(PacketType::Payload);
    assert_eq!(read_err(PAYLOAD, narrow, None), NetcodeError::PacketNotAllowed(5));
    assert_eq!(read_err(PAYLOAD, Allowed::NONE, None), NetcodeError::PacketNotAllowed(5));
    // Before decryption: a forged challenge (wrong key) is "not allowed", not "decrypt".
    let forged = seal_raw(prefix(PacketType::Challenge, 1), 1, &[0; 308], &other_key());
    assert_eq!(read_err(&forged, Allowed::SERVER, None), NetcodeError::PacketNotAllowed(2));
}

#[test]
fn step_4_sequence_byte_counts_outside_1_to_8_are_dropped() {
    let genuine = write(&Packet::Payload(&[7; 40]), 3);
    for count in [0u8, 9, 10, 15] {
        let mut bytes = genuine.clone();
        bytes[0] = PacketType::Payload.number() | count << 4;
        assert_eq!(read_err(&bytes, Allowed::SERVER, None), NetcodeError::SequenceBytes(count));
    }
    // The same for the other types (a type-0 prefix with sequence bytes is not a request).
    let mut bytes = genuine.clone();
    bytes[0] = PacketType::KeepAlive.number();
    assert_eq!(read_err(&bytes, Allowed::SERVER, None), NetcodeError::SequenceBytes(0));
}

#[test]
fn step_5_packets_too_short_for_their_sequence_and_tag_are_dropped() {
    // 18 to 24 bytes pass step 1 but cannot hold 8 sequence bytes and a tag.
    for len in MIN_PACKET_BYTES..1 + 8 + 16 {
        let mut bytes = vec![0xaa; len];
        bytes[0] = PacketType::Disconnect.number() | 8 << 4;
        assert_eq!(
            read_err(&bytes, Allowed::SERVER, None),
            NetcodeError::PacketTruncated(len),
            "{len} bytes"
        );
    }
    // Exactly 1 + 8 + 16 is long enough to be a genuine disconnect.
    let disconnect = write(&Packet::Disconnect, u64::MAX);
    assert_eq!(disconnect.len(), 25);
    read_with(&disconnect, Allowed::SERVER, None, |r| {
        assert_eq!(r, Ok((u64::MAX, Packet::Disconnect)))
    });
}

#[test]
fn step_6_a_replayed_packet_is_dropped() {
    let mut window = ReplayWindow::new();
    for packet in [
        Packet::KeepAlive { client_index: 1, max_clients: 2 },
        Packet::Payload(&[1, 2, 3]),
        Packet::Disconnect,
    ] {
        let sequence = 100 + u64::from(packet.packet_type().number());
        let bytes = write(&packet, sequence);
        read_with(&bytes, Allowed::SERVER, Some(&mut window), |r| {
            assert_eq!(r, Ok((sequence, packet)))
        });
        assert_eq!(
            read_err(&bytes, Allowed::SERVER, Some(&mut window)),
            NetcodeError::Replayed(sequence),
            "{packet:?} replayed"
        );
    }
}

#[test]
fn step_6_the_replay_test_comes_before_decryption() {
    // An old sequence with a garbage tag is dropped as a replay, without decrypting.
    let mut window = ReplayWindow::new();
    window.advance(1000);
    let mut forged = write(&Packet::Payload(&[5; 10]), 1000);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(read_err(&forged, Allowed::SERVER, Some(&mut window)), NetcodeError::Replayed(1000));
    let too_old = seal_raw(prefix(PacketType::Payload, 10), 10, &[5; 10], &other_key());
    assert_eq!(read_err(&too_old, Allowed::SERVER, Some(&mut window)), NetcodeError::Replayed(10));
}

#[test]
fn step_6_only_keep_alive_payload_and_disconnect_are_replay_checked() {
    // Challenges, responses and denials are not replay-protected: the same one reads twice,
    // and it does not move the window.
    let mut window = ReplayWindow::new();
    for (bytes, allowed) in
        [(CHALLENGE, Allowed::CLIENT), (DENIED, Allowed::CLIENT), (RESPONSE, Allowed::SERVER)]
    {
        for _ in 0..2 {
            read_with(bytes, allowed, Some(&mut window), |r| assert!(r.is_ok()));
        }
    }
    assert_eq!(window.newest(), None);
}

#[test]
fn step_7_tampering_a_wrong_key_or_protocol_is_dropped() {
    let genuine = write(&Packet::Payload(&[9; 30]), 500);
    read_with(&genuine, Allowed::SERVER, None, |r| assert!(r.is_ok()));
    // Every byte after the prefix flipped (the sequence, body and tag).
    for at in 1..genuine.len() {
        let mut bytes = genuine.clone();
        bytes[at] ^= 0x40;
        assert_eq!(read_err(&bytes, Allowed::SERVER, None), NetcodeError::Decrypt, "byte {at}");
    }
    // The prefix byte is authenticated: a valid but different type.
    let mut bytes = genuine.clone();
    bytes[0] = prefix(PacketType::KeepAlive, 500);
    assert_eq!(read_err(&bytes, Allowed::SERVER, None), NetcodeError::Decrypt);
    // Another key, another protocol, no key.
    let mut copy = genuine.clone();
    let wrong_key =
        packet::read(&mut copy, PROTOCOL_ID, Some(&other_key()), Allowed::SERVER, None, 0);
    assert_eq!(wrong_key, Err(NetcodeError::Decrypt));
    let mut copy = genuine.clone();
    let wrong_protocol =
        packet::read(&mut copy, PROTOCOL_ID ^ 1, Some(&packet_key()), Allowed::SERVER, None, 0);
    assert_eq!(wrong_protocol, Err(NetcodeError::Decrypt));
    let mut copy = genuine.clone();
    let no_key = packet::read(&mut copy, PROTOCOL_ID, None, Allowed::SERVER, None, 0);
    assert_eq!(no_key, Err(NetcodeError::NoKey));
    // The vectors themselves, opened with the client → server key instead: dropped.
    let mut copy = KEEP_ALIVE.to_vec();
    let c2s: Key = std::array::from_fn(|i| i as u8);
    assert_eq!(
        packet::read(&mut copy, PROTOCOL_ID, Some(&c2s), Allowed::CLIENT, None, 0),
        Err(NetcodeError::Decrypt)
    );
}

#[test]
fn step_8_a_forged_packet_with_a_fresh_sequence_does_not_move_the_window() {
    let mut window = ReplayWindow::new();
    let first = write(&Packet::Payload(&[1]), 10);
    read_with(&first, Allowed::SERVER, Some(&mut window), |r| assert!(r.is_ok()));
    assert_eq!(window.newest(), Some(10));

    // An attacker who cannot seal sends sequence 1_000_000 (under another key, and the genuine
    // packet tampered): were the window moved, everything genuine below 999_745 would be "old".
    let forged =
        seal_raw(prefix(PacketType::Payload, 1_000_000), 1_000_000, &[6; 20], &other_key());
    assert_eq!(read_err(&forged, Allowed::SERVER, Some(&mut window)), NetcodeError::Decrypt);
    let mut tampered = write(&Packet::Disconnect, 2_000_000);
    tampered[3] ^= 1;
    assert_eq!(read_err(&tampered, Allowed::SERVER, Some(&mut window)), NetcodeError::Decrypt);
    assert_eq!(window.newest(), Some(10));
    assert!(!window.already_received(1_000_000));

    // The genuine packets that follow are still taken, and so is the genuine 1_000_000.
    for sequence in [11, 12, 1_000_000] {
        let genuine = write(&Packet::Payload(&[2]), sequence);
        read_with(&genuine, Allowed::SERVER, Some(&mut window), |r| {
            assert_eq!(r.map(|(s, _)| s), Ok(sequence))
        });
    }
    assert_eq!(window.newest(), Some(1_000_000));
}

#[test]
fn step_8_the_window_advances_after_decryption_even_if_the_size_is_wrong() {
    // The standard checks the size after advancing: an authentic packet of the wrong size
    // still uses up its sequence number.
    let mut window = ReplayWindow::new();
    let bytes = seal_raw(prefix(PacketType::KeepAlive, 40), 40, &[0; 7], &packet_key());
    assert_eq!(
        read_err(&bytes, Allowed::SERVER, Some(&mut window)),
        NetcodeError::BodySize { packet_type: 4, len: 7 }
    );
    assert!(window.already_received(40));
}

#[test]
fn step_9_authentic_bodies_of_the_wrong_size_are_dropped() {
    let cases: [(PacketType, &[usize]); 6] = [
        (PacketType::Denied, &[1, 8]),
        (PacketType::Challenge, &[0, 307, 309]),
        (PacketType::Response, &[0, 307, 309]),
        (PacketType::KeepAlive, &[0, 7, 9]),
        (PacketType::Payload, &[0, 1201, 1250]),
        (PacketType::Disconnect, &[1, 300]),
    ];
    let all = Allowed::SERVER.with(PacketType::Denied).with(PacketType::Challenge);
    for (packet_type, sizes) in cases {
        for &len in sizes {
            let bytes = seal_raw(prefix(packet_type, 77), 77, &vec![3; len], &packet_key());
            assert_eq!(
                read_err(&bytes, all, Some(&mut ReplayWindow::new())),
                NetcodeError::BodySize { packet_type: packet_type.number(), len },
                "{packet_type:?} of {len} bytes"
            );
        }
    }
    // The right sizes, sealed the same way, are read.
    for (packet_type, len) in [
        (PacketType::Denied, 0),
        (PacketType::Challenge, 308),
        (PacketType::Response, 308),
        (PacketType::KeepAlive, 8),
        (PacketType::Payload, 1),
        (PacketType::Payload, 1200),
        (PacketType::Disconnect, 0),
    ] {
        let bytes = seal_raw(prefix(packet_type, 77), 77, &vec![3; len], &packet_key());
        read_with(&bytes, all, None, |r| {
            assert_eq!(r.map(|(_, p)| p.packet_type()), Ok(packet_type), "{len} bytes")
        });
    }
}

// --- Requests -------------------------------------------------------------------------------

fn read_request(bytes: &[u8], now: u64) -> Result<(), NetcodeError> {
    let mut copy = bytes.to_vec();
    packet::read(&mut copy, PROTOCOL_ID, None, Allowed::SERVER, None, now).map(|_| ())
}

#[test]
fn a_request_needs_no_key_and_is_exactly_1078_bytes() {
    assert_eq!(read_request(REQUEST, CREATE_TIMESTAMP), Ok(()));
    assert_eq!(
        read_request(&REQUEST[..1077], CREATE_TIMESTAMP),
        Err(NetcodeError::RequestSize(1077))
    );
    let mut longer = REQUEST.to_vec();
    longer.push(0);
    assert_eq!(read_request(&longer, CREATE_TIMESTAMP), Err(NetcodeError::RequestSize(1079)));
    // A type-0 prefix with sequence bytes is not a request.
    let mut prefixed = REQUEST.to_vec();
    prefixed[0] = 0x10;
    assert_eq!(read_request(&prefixed, CREATE_TIMESTAMP), Err(NetcodeError::RequestSize(1078)));
}

#[test]
fn a_request_of_another_version_or_protocol_is_dropped() {
    let mut version = REQUEST.to_vec();
    version[1 + 11] = b'1'; // "NETCODE 1.01"
    assert_eq!(read_request(&version, CREATE_TIMESTAMP), Err(NetcodeError::Version));
    let mut protocol = REQUEST.to_vec();
    protocol[14] ^= 1;
    assert_eq!(
        read_request(&protocol, CREATE_TIMESTAMP),
        Err(NetcodeError::ProtocolId(PROTOCOL_ID ^ 1))
    );
}

#[test]
fn an_expired_request_is_dropped() {
    assert_eq!(read_request(REQUEST, EXPIRE_TIMESTAMP - 1), Ok(()));
    assert_eq!(
        read_request(REQUEST, EXPIRE_TIMESTAMP),
        Err(NetcodeError::Expired(EXPIRE_TIMESTAMP))
    );
    assert_eq!(read_request(REQUEST, u64::MAX), Err(NetcodeError::Expired(EXPIRE_TIMESTAMP)));
}

// --- The replay window ----------------------------------------------------------------------

const SIZE: u64 = ReplayWindow::SIZE;

#[test]
fn the_window_holds_at_least_256() {
    const { assert!(SIZE >= 256) };
}

#[test]
fn an_empty_window_takes_anything() {
    let window = ReplayWindow::new();
    for sequence in [0, 1, 1 << 63, u64::MAX] {
        assert!(!window.already_received(sequence));
    }
}

#[test]
fn duplicates_are_caught_and_out_of_order_arrivals_inside_the_window_are_taken() {
    let mut window = ReplayWindow::new();
    // Arrive in a scrambled order: 0, 2, 4, … then 1, 3, 5, … (all within 256 of the newest).
    let evens = (0..200).step_by(2);
    let odds = (1..200).step_by(2);
    for sequence in evens.chain(odds) {
        assert!(!window.already_received(sequence), "{sequence} is new");
        window.advance(sequence);
        assert!(window.already_received(sequence), "{sequence} is a duplicate now");
    }
    for sequence in 0..200 {
        assert!(window.already_received(sequence));
    }
    assert!(!window.already_received(200));
    assert_eq!(window.newest(), Some(199));
}

#[test]
fn too_old_is_exactly_sequence_plus_size_at_most_newest() {
    let mut window = ReplayWindow::new();
    window.advance(1000);
    assert!(window.already_received(1000 - SIZE), "the edge: sequence + SIZE == newest");
    assert!(window.already_received(0));
    assert!(!window.already_received(1000 - SIZE + 1), "the oldest the window still holds");
    window.advance(1000 - SIZE + 1);
    assert!(window.already_received(1000 - SIZE + 1));
    // Advancing with something too old changes nothing.
    let before = window.clone();
    window.advance(3);
    assert_eq!(window, before);
}

#[test]
fn sequences_around_one_shl_63() {
    // A netcode server's sequences start at 1 << 63.
    let start = 1u64 << 63;
    let mut window = ReplayWindow::new();
    window.advance(start);
    assert!(window.already_received(start));
    assert!(!window.already_received(start - 1), "just below the first arrives late: new");
    assert!(window.already_received(start - SIZE), "a window below the first: too old");
    for sequence in start + 1..start + 600 {
        assert!(!window.already_received(sequence));
        window.advance(sequence);
    }
    assert!(window.already_received(start + 599 - SIZE));
    assert!(!window.already_received(start + 600));
}

#[test]
fn sequences_near_u64_max_do_not_overflow() {
    let mut window = ReplayWindow::new();
    window.advance(u64::MAX - 10);
    assert!(!window.already_received(u64::MAX));
    assert!(!window.already_received(u64::MAX - 9));
    window.advance(u64::MAX);
    assert!(window.already_received(u64::MAX), "the largest sequence is remembered");
    assert!(window.already_received(u64::MAX - 10));
    assert!(!window.already_received(u64::MAX - 9));
    assert!(!window.already_received(u64::MAX - (SIZE - 1)));
    assert!(window.already_received(u64::MAX - SIZE));
    assert!(window.already_received(0));
    // A low newest and a sequence near the top: new, not old (the naive `sequence + SIZE`
    // wraps here).
    let mut low = ReplayWindow::new();
    low.advance(5);
    for sequence in [u64::MAX, u64::MAX - SIZE + 1, u64::MAX - 1] {
        assert!(!low.already_received(sequence), "{sequence}");
    }
}

#[test]
fn a_big_jump_forgets_everything_behind() {
    let mut window = ReplayWindow::new();
    for sequence in 0..SIZE {
        window.advance(sequence);
    }
    window.advance(10 * SIZE);
    for sequence in 9 * SIZE + 1..10 * SIZE {
        assert!(!window.already_received(sequence), "{sequence} was never received");
    }
    window.reset();
    assert_eq!(window, ReplayWindow::new());
}

/// A tiny seeded generator: the tests are deterministic and need no OS randomness.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn the_window_agrees_with_a_naive_model() {
    // Random walks (small steps back and forth, jumps across words and past the window) near
    // 0, 1 << 63 and u64::MAX, against a set of everything received.
    for base in [0, 1u64 << 63, u64::MAX - 5000] {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ base);
        let mut window = ReplayWindow::new();
        let mut received = HashSet::new();
        let mut newest: Option<u64> = None;
        let mut at = base;
        for _ in 0..20_000 {
            let step = match rng.below(10) {
                0 => rng.below(300),
                1 => rng.below(70),
                _ => rng.below(4),
            };
            at = if rng.below(3) == 0 { at.saturating_sub(step) } else { at.saturating_add(step) };
            at = at.max(base);
            let expected = match newest {
                Some(n) => received.contains(&at) || n.checked_sub(at).is_some_and(|d| d >= SIZE),
                None => false,
            };
            assert_eq!(window.already_received(at), expected, "sequence {at}, newest {newest:?}");
            if !expected {
                window.advance(at);
                received.insert(at);
                newest = Some(newest.map_or(at, |n| n.max(at)));
            }
        }
    }
}

// --- Garbage --------------------------------------------------------------------------------

#[test]
fn random_garbage_never_panics_and_is_never_accepted() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut window = ReplayWindow::new();
    let key = packet_key();
    let all = Allowed::SERVER.with(PacketType::Denied).with(PacketType::Challenge);
    let mut buffer = vec![0u8; 1400];
    for round in 0..50_000u32 {
        let len = match rng.below(4) {
            0 => rng.below(30),
            1 => REQUEST_PACKET_BYTES as u64,
            _ => rng.below(1400),
        } as usize;
        let bytes = &mut buffer[..len];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
        }
        if let Some(first) = bytes.first_mut() {
            // Mostly well-formed prefixes, so the later steps are reached too.
            if rng.below(2) == 0 {
                *first = (rng.below(7) as u8) | ((1 + rng.below(8) as u8) << 4);
            }
            if len == REQUEST_PACKET_BYTES && rng.below(2) == 0 {
                *first = 0;
                bytes[1..14].copy_from_slice(VERSION_INFO);
                bytes[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
            }
        }
        let allowed = if round % 2 == 0 { all } else { Allowed::CLIENT };
        let result =
            packet::read(bytes, PROTOCOL_ID, Some(&key), allowed, Some(&mut window), rng.next());
        // A random tag never authenticates; only a request (in the clear) can be read.
        if let Ok((_, packet)) = result {
            assert_eq!(packet.packet_type(), PacketType::Request, "round {round}");
        }
    }
    assert_eq!(window.newest(), None, "no garbage moved the window");
}

#[test]
fn bit_flips_of_genuine_packets_are_never_accepted() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let data = payload();
    let genuine = [
        write(&Packet::Payload(&data[..rng.below(1200) as usize + 1]), 1 << 63),
        write(&Packet::KeepAlive { client_index: 1, max_clients: 4 }, 12345),
        write(&Packet::Disconnect, u64::MAX),
        RESPONSE.to_vec(),
    ];
    for original in &genuine {
        for _ in 0..2_000 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            if bytes == *original {
                continue;
            }
            let mut window = ReplayWindow::new();
            assert!(
                packet::read(
                    &mut bytes,
                    PROTOCOL_ID,
                    Some(&packet_key()),
                    Allowed::SERVER,
                    Some(&mut window),
                    0
                )
                .is_err()
            );
            assert_eq!(window.newest(), None);
        }
    }
}
