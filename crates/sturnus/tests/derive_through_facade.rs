//! The derives used through the facade alone: the game in `game/mod.rs` names nothing but
//! `sturnus::prelude` and `serde`, and its generated code resolves (inside this package, the
//! derives find the crate being compiled is `sturnus` and name `::sturnus::message` /
//! `::sturnus::object`). The scratch-project test (`scratch.rs`) builds the same game from
//! outside the workspace, where the layer crates cannot be named at all.

mod game;

use sturnus::prelude::*;

#[test]
fn a_game_written_against_the_prelude_plays() {
    let seen = game::play().unwrap();
    assert_eq!(seen, game::expected());
}

#[test]
fn the_derive_options_reach_the_generated_code() {
    // `#[message(id = 4242, qos = Reliable, channel = 4)]`, through `::sturnus::message`.
    assert_eq!(<game::Hello as Message>::ID, sturnus::message::MessageId(4242));
    assert_eq!(<game::Hello as Message>::QOS, Qos::Reliable);
    assert_eq!(<game::Hello as Message>::CHANNEL, Some(ChannelId(4)));
    // The default id: a hash of the type's path, the same as the layer crate computes.
    let path = concat!(module_path!(), "::game::Welcome");
    assert_eq!(<game::Welcome as Message>::NAME, path);
    assert_eq!(<game::Welcome as Message>::ID, sturnus::message::MessageId::of_path(path));
}
