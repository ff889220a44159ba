//! The NetworkManager over the netcode 1.02 transport mode, on real UDP: a client with a token
//! minted by "the backend" joins, is admitted by its token (the token is the login), gets its
//! player object and plays; a client without a valid token never gets in.

use std::net::SocketAddr;
use std::time::Duration;

use sturnus::manager::NetcodeSettings;
use sturnus::message::{PeerIdentity, TokenAuthenticator};
use sturnus::netcode::token::TokenSpec;
use sturnus::netcode::{ConnectToken, random_key};
use sturnus::prelude::*;

const PLAYER: PrefabId = PrefabId::of_name("secure-test-player");
const PROTOCOL_ID: u64 = 0x5354_5552_0000_0017;

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    x: SyncVar<f32>,
}

fn manager(transport: TransportChoice) -> NetworkManager {
    let mut manager = NetworkManager::new(ManagerConfig { transport, ..ManagerConfig::default() });
    manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| {
        let mut avatar = Avatar::default();
        avatar.x.set(7.0);
        avatar
    });
    manager.set_authenticator(|| TokenAuthenticator);
    manager
}

#[expect(clippy::disallowed_methods, reason = "the backend mints tokens on the wall clock")]
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What a game's backend does when a player logs in.
fn mint(server: SocketAddr, key: &sturnus::netcode::Key, client_id: u64) -> ConnectToken {
    let mut user_data = [0; 256];
    user_data[..5].copy_from_slice(b"team7");
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id,
        server_addresses: vec![server],
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data,
    };
    ConnectToken::generate(&spec, key, unix_now()).unwrap()
}

fn free_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[test]
fn a_client_with_a_token_joins_a_netcode_server_and_its_token_is_its_login() {
    let key = random_key().unwrap();
    let addr = free_port();
    let mut server = manager(NetcodeSettings::server(PROTOCOL_ID, key));
    server.start_server(addr).unwrap();

    let mut client = manager(NetcodeSettings::client(mint(addr, &key, 4242)));
    client.start_client(addr).unwrap();
    // A token sealed under another key: the server ignores its requests.
    let forged = mint(addr, &random_key().unwrap(), 666);
    let mut intruder = manager(NetcodeSettings::client(forged));
    intruder.start_client(addr).unwrap();

    let start = driver::now();
    while client
        .local_player_id()
        .and_then(|id| client.get::<Avatar>(id))
        .is_none_or(|a| *a.x.get() != 7.0)
    {
        let now = driver::now();
        assert!(now - start < Duration::from_secs(20), "the client never got its player");
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        intruder.tick(now).unwrap();
        driver::sleep(Duration::from_millis(2));
    }
    let objects = server.server().unwrap();
    let players: Vec<PlayerId> = objects.server().players().collect();
    assert_eq!(players.len(), 1, "only the client with a valid token is in");
    let player = objects.server_mut().player(players[0]).unwrap();
    let identity = player.auth_data::<PeerIdentity>().expect("the token's identity").clone();
    assert_eq!(identity.client_id, 4242);
    assert_eq!(&identity.user_data[..5], b"team7");
    assert!(intruder.local_player_id().is_none());

    // The client leaves; the server sees its player go.
    client.stop();
    let start = driver::now();
    while server.server().unwrap().server().players().next().is_some() {
        let now = driver::now();
        assert!(now - start < Duration::from_secs(10), "the server never saw the client leave");
        server.tick(now).unwrap();
        driver::sleep(Duration::from_millis(2));
    }
}

#[test]
fn netcode_settings_without_a_key_or_a_token_are_errors() {
    let addr = free_port();
    let settings = NetcodeSettings {
        protocol_id: PROTOCOL_ID,
        private_key: None,
        native: None,
        public_address: None,
        ticket: None,
    };
    let mut server = manager(TransportChoice::Netcode(Box::new(settings.clone())));
    assert!(server.start_server(addr).is_err());
    let mut client = manager(TransportChoice::Netcode(Box::new(settings)));
    assert!(client.start_client(addr).is_err());
    assert_eq!(client.mode(), NetworkMode::Offline);
}

/// Play without a backend: a host with a static key, a client that pinned it joins and plays,
/// one that pinned another key never gets in.
#[test]
fn a_native_host_admits_the_client_that_pinned_its_key_and_not_an_impostors_victim() {
    use sturnus::netcode::native::NativeConfig;
    // A short timeout: the server cannot know that a client refused its key, so the slot that
    // client's response took is freed when it goes silent.
    let native = NativeConfig::generate(Duration::from_secs(1)).unwrap();
    let key = native.public_key();
    let addr = free_port();
    let mut host = manager(NetcodeSettings::native_server(PROTOCOL_ID, native));
    host.set_authenticator(|| sturnus::message::NoopAuthenticator);
    host.start_host(addr).unwrap();
    let mut friend = manager(NetcodeSettings::native_client(PROTOCOL_ID, Some(key)));
    friend.set_authenticator(|| sturnus::message::NoopAuthenticator);
    friend.start_client(addr).unwrap();
    let other = NativeConfig::generate(Duration::from_secs(5)).unwrap().public_key();
    let mut misled = manager(NetcodeSettings::native_client(PROTOCOL_ID, Some(other)));
    misled.start_client(addr).unwrap();

    let start = driver::now();
    let mut misled_events = Vec::new();
    while friend.local_player_id().and_then(|id| friend.get::<Avatar>(id)).is_none()
        || misled.mode() != NetworkMode::Offline
    {
        let now = driver::now();
        assert!(now - start < Duration::from_secs(20), "{misled_events:?}");
        host.tick(now).unwrap();
        friend.tick(now).unwrap();
        let _ = misled.tick(now);
        misled_events.extend(std::iter::from_fn(|| misled.poll_event()));
        driver::sleep(Duration::from_millis(2));
    }
    // The misled client refused the host's key: it never sent a sealed packet, and the slot
    // its response took times out. Then the host's own player and the friend remain.
    while host.server().unwrap().server().players().count() != 2 {
        let now = driver::now();
        assert!(now - start < Duration::from_secs(20), "the orphan slot never timed out");
        host.tick(now).unwrap();
        friend.tick(now).unwrap();
        driver::sleep(Duration::from_millis(2));
    }
    assert!(friend.local_player_id().is_some(), "the friend stayed");
    assert!(misled.local_player_id().is_none());
    assert!(
        misled_events.iter().any(|e| matches!(e, ManagerEvent::ClientDisconnect(_))),
        "{misled_events:?}"
    );
}

/// A token server bound to 0.0.0.0 without a public address would refuse every token (none
/// lists 0.0.0.0): starting it is an error that says what to set.
#[test]
fn a_token_server_on_an_unspecified_address_needs_its_public_address() {
    let key = random_key().unwrap();
    let mut server = manager(NetcodeSettings::server(PROTOCOL_ID, key));
    let error = server.start_server("0.0.0.0:0".parse().unwrap()).unwrap_err();
    assert!(error.to_string().contains("public"), "{error}");
    let public = free_port();
    let mut server = manager(NetcodeSettings::public_server(PROTOCOL_ID, key, public));
    server.start_server(public).unwrap();
}
