// `#[command]`, `#[client_rpc]` and `#[target_rpc]` only mean something inside a
// `#[network_rpcs]` impl block.
use sturnus_object::{ClientCtx, NetworkBehaviour, ServerCtx, command};

#[derive(Default, NetworkBehaviour)]
pub struct Lamp {
    pub flashes: u32,
}

impl Lamp {
    #[command]
    fn toggle(&mut self, _ctx: &mut ServerCtx<'_>) {}

    #[sturnus_object::client_rpc]
    fn flash(&mut self, _ctx: &mut ClientCtx<'_>, times: u32) {
        self.flashes += times;
    }
}

#[sturnus_object::target_rpc]
fn hit_marker() {}

fn main() {
    let mut lamp = Lamp::default();
    let _ = (&mut lamp, Lamp::toggle, Lamp::flash, hit_marker);
}
