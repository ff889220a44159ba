// RPCs are one-way: nothing receives what a command or an RPC returns.
use sturnus_object::{NetworkBehaviour, ServerCtx, SyncVar, network_rpcs};

#[derive(Default, NetworkBehaviour)]
pub struct Tank {
    #[sync]
    pub ammo: SyncVar<u32>,
}

#[network_rpcs]
impl Tank {
    #[command]
    fn fire(&mut self, _ctx: &mut ServerCtx<'_>, dir: i32) -> bool {
        let ammo = *self.ammo;
        self.ammo.set(ammo.saturating_sub(1));
        dir != 0 && ammo > 0
    }
}

fn main() {}
