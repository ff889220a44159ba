//! Message ids: stable values, pinning, and collisions reported with both names.

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ClientConfig, Message, MessageError, MessageId, NetworkClient, NetworkServer, PlayerId, Qos,
    ServerConfig,
};

#[derive(Serialize, Deserialize, Message)]
struct Chat;

#[derive(Serialize, Deserialize, Message)]
#[message(id = 42, qos = Unreliable)]
struct First(u8);

#[derive(Serialize, Deserialize, Message)]
#[message(id = 42)]
struct Second(u8);

/// A type that claims the id of the layer's own authentication request.
#[derive(Serialize, Deserialize, Message)]
#[message(id = 0x869c)]
struct Impostor;

#[test]
fn derived_ids_are_the_hash_of_the_type_path() {
    // The integration test's crate is `ids`, so the path is `ids::Chat`.
    assert_eq!(Chat::NAME, "ids::Chat");
    assert_eq!(Chat::ID, MessageId::of_path("ids::Chat"));
    // Pinned: this value must never change, or old and new builds stop understanding each other.
    assert_eq!(Chat::ID, MessageId(0x23d1));
    assert_eq!(MessageId::of_path(""), MessageId(0x1cd9));
    assert_eq!(Chat::QOS, Qos::ReliableFragmentedSequenced);
}

#[test]
fn pinned_ids_and_qos_are_kept() {
    assert_eq!(First::ID, MessageId(42));
    assert_eq!(First::QOS, Qos::Unreliable);
    assert_eq!(Second::ID, MessageId(42));
}

fn assert_collision(err: MessageError, first: &str, second: &str) {
    match &err {
        MessageError::IdCollision { first: a, second: b, .. } => {
            assert_eq!((*a, *b), (first, second));
        }
        other => panic!("expected a collision, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(first) && text.contains(second), "{text}");
}

#[test]
fn collisions_are_errors_naming_both_types() {
    let mut server = NetworkServer::new(ServerConfig::default()).unwrap();
    server.register_handler(|_, _: First| {}).unwrap();
    // The same type again just replaces its handler.
    server.register_handler(|_, _: First| {}).unwrap();
    let err = server.register_handler(|_, _: Second| {}).unwrap_err();
    assert_collision(err, "ids::First", "ids::Second");
    // Sending the colliding type is refused too (before any player is looked up).
    let err = server.send(PlayerId(1), &Second(1)).unwrap_err();
    assert_collision(err, "ids::First", "ids::Second");

    let mut client = NetworkClient::new(ClientConfig::default()).unwrap();
    client.register_handler(|_, _: Second| {}).unwrap();
    let err = client.register_handler(|_, _: First| {}).unwrap_err();
    assert_collision(err, "ids::Second", "ids::First");
}

#[test]
fn the_layers_own_ids_are_reserved() {
    let mut server = NetworkServer::new(ServerConfig::default()).unwrap();
    let err = server.register_handler(|_, _: Impostor| {}).unwrap_err();
    assert_collision(err, "sturnus_message::auth::AuthRequest", "ids::Impostor");
}
