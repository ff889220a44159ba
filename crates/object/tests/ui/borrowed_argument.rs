// RPC arguments are decoded from the network into owned values.
use sturnus_object::{ClientCtx, NetworkBehaviour, ServerCtx, network_rpcs};

#[derive(Default, NetworkBehaviour)]
pub struct Chat {
    pub lines: Vec<String>,
}

#[network_rpcs]
impl Chat {
    #[command]
    fn say(&mut self, _ctx: &mut ServerCtx<'_>, line: &str) {
        self.lines.push(line.to_owned());
    }
}

#[derive(Default, NetworkBehaviour)]
pub struct Board {
    pub cells: Vec<u8>,
}

#[network_rpcs]
impl Board {
    #[client_rpc]
    fn paint(&mut self, _ctx: &mut ClientCtx<'_>, cells: Option<&[u8]>) {
        self.cells.extend(cells.unwrap_or_default());
    }
}

fn main() {}
