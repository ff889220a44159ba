// A command takes its context, `&mut ServerCtx<'_>`, right after `&mut self`.
use sturnus_object::{NetworkBehaviour, SyncVar, network_rpcs};

#[derive(Default, NetworkBehaviour)]
pub struct Lamp {
    #[sync]
    pub lit: SyncVar<bool>,
}

#[network_rpcs]
impl Lamp {
    #[command]
    fn toggle(&mut self) {
        let lit = !*self.lit;
        self.lit.set(lit);
    }
}

#[derive(Default, NetworkBehaviour)]
pub struct Tank {
    #[sync]
    pub power: SyncVar<u32>,
}

#[network_rpcs]
impl Tank {
    #[command]
    fn fire(&mut self, power: u32) {
        self.power.set(power);
    }
}

fn main() {}
