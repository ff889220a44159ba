//! A player that cannot take what the object layer must deliver reliably (its transport send
//! queue is full) is sent away, never left silently without an object or a change the others
//! got.

mod common;

use common::tank::{TANK, Tank};
use common::{Game, Path};
use sturnus_message::{DisconnectReason, ServerEvent};

/// More spawns in one update than the transport queues for one connection (4,096 messages by
/// default): the player is disconnected as overloaded; what it had not been sent cannot be
/// missing from a player that stays.
#[test]
fn a_player_whose_queue_overflows_is_sent_away_not_left_behind() {
    let mut game = Game::tanks(Path::Sim { seed: 3, loss: 0.0 }, 1);
    let player = game.player(0);
    for _ in 0..5_000 {
        game.server.spawn(TANK, Tank::default(), None).unwrap();
    }
    let mut left = None;
    game.run_for_until(100, |g| {
        while let Some(event) = g.server.poll_event() {
            if let ServerEvent::Disconnected(id, reason) = event {
                left = Some((id, reason));
            }
        }
        left.is_some()
    });
    assert_eq!(left, Some((player, DisconnectReason::Overloaded)));
    assert_eq!(game.server.server().player_count(), 0);
    // The client sees its connection end; it is never left connected with part of the world.
    let ended = game.run_until(|g| !g.clients[0].client().is_authenticated());
    assert!(ended, "the client still believes it is playing");
}

/// Within the queue, everything arrives: the limit above is the transport's, not the layer's.
#[test]
fn spawns_within_the_queue_all_arrive() {
    let mut game = Game::tanks(Path::Sim { seed: 3, loss: 0.0 }, 1);
    for _ in 0..4_000 {
        game.server.spawn(TANK, Tank::default(), None).unwrap();
    }
    assert!(game.run_until(|g| g.clients[0].object_count() == 4_000));
    assert_eq!(game.server.server().player_count(), 1);
}

/// A broadcast too large for its channel (an unfragmented channel holds one packet) is one
/// error for the caller, not a reason to send every player away.
#[test]
fn a_message_too_large_for_its_channel_is_an_error_not_an_overload() {
    #[derive(serde::Serialize, serde::Deserialize, sturnus_message::Message)]
    struct Big(Vec<u8>);
    let mut game = Game::tanks(Path::Sim { seed: 3, loss: 0.0 }, 2);
    let server = game.server.server_mut();
    let reliable = server.channels().first_of(sturnus_message::Qos::Reliable).unwrap();
    let err = server.broadcast_on(&Big(vec![7; 3000]), reliable).unwrap_err();
    assert!(matches!(err, sturnus_message::MessageError::TooLarge { .. }), "{err}");
    game.run_for(20);
    assert_eq!(game.server.server().player_count(), 2);
    while let Some(event) = game.server.poll_event() {
        assert!(!matches!(event, ServerEvent::Disconnected(..)), "{event:?}");
    }
}
