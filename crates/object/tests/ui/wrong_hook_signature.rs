// A `SyncVar<T>` hook is `fn(&mut self, old: &T, new: &T)`.
use sturnus_object::{NetworkBehaviour, SyncVar};

#[derive(Default, NetworkBehaviour)]
pub struct Player {
    #[sync(hook = Player::on_health)]
    pub health: SyncVar<i32>,
    pub shown: i32,
}

impl Player {
    fn on_health(&mut self, new: i32) {
        self.shown = new;
    }
}

fn main() {}
