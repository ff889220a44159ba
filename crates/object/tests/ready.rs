//! Readiness: a player the server makes not ready forgets every object and is sent nothing,
//! until it is made ready again and gets the world as it is then (UNET's
//! `SetClientNotReady`/`Ready`, around a scene change).

mod common;

use common::tank::Tank;
use common::{Game, paths};
use sturnus_object::ClientObjectEvent;

#[test]
fn a_player_made_not_ready_forgets_objects_until_ready_again() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        let first = game.spawn_tank(Tank::new(100, "a"), None);
        let (away, stays) = (game.player(0), game.player(1));
        while game.clients[0].poll_object_event().is_some() {}

        assert!(game.server.set_not_ready(away), "{path:?}");
        assert!(!game.server.set_not_ready(away), "{path:?}: not ready twice");
        assert!(!game.server.is_ready(away));
        let forgot = game.run_until(|g| g.clients[0].object_count() == 0);
        assert!(forgot, "{path:?}: the not-ready client kept its objects");
        let events: Vec<_> = std::iter::from_fn(|| game.clients[0].poll_object_event()).collect();
        assert_eq!(events, [ClientObjectEvent::Despawned(first)], "{path:?}");

        // While it is not ready, it is sent nothing: no spawn, no update.
        let second = game.server.spawn(common::tank::TANK, Tank::new(50, "b"), None).unwrap();
        game.server.get_mut::<Tank>(first).unwrap().health.set(75);
        let seen = game.run_until(|g| {
            g.clients[1].get::<Tank>(second).is_some()
                && g.clients[1].get::<Tank>(first).is_some_and(|t| *t.health == 75)
        });
        assert!(seen, "{path:?}: the ready client missed the changes");
        game.run_for(10);
        assert_eq!(game.clients[0].object_count(), 0, "{path:?}");
        for id in [first, second] {
            assert_eq!(game.server.observers(id).collect::<Vec<_>>(), [stays], "{path:?}");
        }
        let stats = game.clients[0].stats();
        assert_eq!(stats.dropped_unknown_object, 0, "{path:?}: it was sent updates: {stats:?}");

        // Ready again: it gets the world as it is now.
        game.server.set_ready(away);
        let back = game.run_until(|g| {
            g.clients[0].get::<Tank>(first).is_some_and(|t| *t.health == 75)
                && g.clients[0].get::<Tank>(second).is_some()
        });
        assert!(back, "{path:?}: the player made ready again did not get the world");
        assert_eq!(game.clients[0].object_count(), 2);
    }
}
