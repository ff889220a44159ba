// Client and target RPCs take `&mut ClientCtx<'_>` right after `&mut self`, not the server's.
use sturnus_object::{NetworkBehaviour, ServerCtx, network_rpcs};

#[derive(Default, NetworkBehaviour)]
pub struct Lamp {
    pub flashes: u32,
}

#[network_rpcs]
impl Lamp {
    #[client_rpc]
    fn flash(&mut self, times: u32) {
        self.flashes += times;
    }
}

#[derive(Default, NetworkBehaviour)]
pub struct Tank {
    pub hits: u32,
}

#[network_rpcs]
impl Tank {
    #[target_rpc(qos = Unreliable)]
    fn hit_marker(&mut self, _ctx: &mut ServerCtx<'_>, damage: u32) {
        self.hits += damage;
    }
}

fn main() {}
