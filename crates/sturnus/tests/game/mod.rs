//! A small game written against the facade alone: `sturnus::prelude` and `serde`, nothing
//! else. The in-workspace test (`derive_through_facade.rs`) includes it as a module; the
//! scratch-project test (`scratch.rs`) copies it into a cargo project outside the workspace
//! that depends only on `sturnus` and `serde`. It uses every derive and their options.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use sturnus::prelude::*;

/// Server → client, on the default channel of its kind.
#[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
pub(crate) struct Welcome {
    pub(crate) text: String,
}

/// Client → server, with every option of the derive.
#[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
#[message(id = 4242, qos = Reliable, channel = 4)]
pub(crate) struct Hello(pub(crate) u32);

pub(crate) const LAMP: PrefabId = PrefabId::of_name("lamp");

#[derive(Default, NetworkBehaviour)]
#[network(sync_interval_ms = 0, qos = Reliable)]
pub(crate) struct Lamp {
    #[sync(hook = Lamp::on_switch)]
    pub(crate) lit: SyncVar<bool>,
    #[sync(hook = Lamp::on_colour)]
    pub(crate) colours: SyncList<u8>,
    pub(crate) switches_seen: Vec<(bool, bool)>, // local, not networked
    pub(crate) colours_seen: usize,
    pub(crate) flashes: u32,
    pub(crate) notes: Vec<String>,
}

impl Lamp {
    fn on_switch(&mut self, old: &bool, new: &bool) {
        self.switches_seen.push((*old, *new));
    }

    fn on_colour(&mut self, _change: &ListChange<u8>) {
        self.colours_seen += 1;
    }
}

#[network_rpcs(vis = pub(crate))]
impl Lamp {
    /// Client → server: only the lamp's owner may switch it.
    #[command]
    fn toggle(&mut self, ctx: &mut ServerCtx<'_>, colour: u8) {
        let lit = !*self.lit;
        self.lit.set(lit);
        self.colours.push(colour);
        let _ = ctx.this::<Lamp>().flash(ctx, 3);
        let owner = ctx.sender();
        let _ = ctx.this::<Lamp>().note(ctx, owner, "switched".to_string());
    }

    /// Server → every client that sees the lamp.
    #[client_rpc(qos = Unreliable)]
    fn flash(&mut self, _ctx: &mut ClientCtx<'_>, times: u32) {
        self.flashes += times;
    }

    /// Server → one player's client.
    #[target_rpc]
    fn note(&mut self, _ctx: &mut ClientCtx<'_>, text: String) {
        self.notes.push(text);
    }
}

/// What the client saw by the end of [`play`].
#[derive(Debug, PartialEq)]
pub(crate) struct Seen {
    pub(crate) welcome: Option<Welcome>,
    pub(crate) hello_on_server: Option<u32>,
    pub(crate) lit: bool,
    pub(crate) switches_seen: Vec<(bool, bool)>,
    pub(crate) colours: Vec<u8>,
    pub(crate) colours_seen: usize,
    pub(crate) flashes: u32,
    pub(crate) notes: Vec<String>,
}

/// A server and a client over an in-process network, on virtual frames, until the client's
/// lamp is lit and its RPCs have arrived (or 200 frames).
pub(crate) fn play() -> Result<Seen, Box<dyn std::error::Error>> {
    let network = MemoryNetwork::new();
    let (server_config, client_config) = (ServerConfig::default(), ClientConfig::default());
    let kinds = server_config.channels.kinds().to_vec();
    let addr = "10.0.0.1:7777".parse()?;
    let mut now = driver::now();

    let mut network_server = NetworkServer::new(server_config)?;
    network_server.register_queue::<Hello>()?;
    let mut server = ServerObjectManager::new(network_server)?;
    server.start(now, network.bind(addr, kinds.clone())?)?;

    let mut network_client = NetworkClient::new(client_config)?;
    network_client.register_queue::<Welcome>()?;
    let mut client = ClientObjectManager::new(network_client)?;
    client.register_prefab(LAMP, Lamp::default);
    client.connect(now, network.endpoint(kinds), addr)?;

    let mut seen = Seen {
        welcome: None,
        hello_on_server: None,
        lit: false,
        switches_seen: Vec::new(),
        colours: Vec::new(),
        colours_seen: 0,
        flashes: 0,
        notes: Vec::new(),
    };
    let mut toggled = false;
    for _frame in 0..200 {
        server.update(now)?;
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Authenticated(player) = event {
                let text = "welcome".to_string();
                server.server_mut().send(player, &Welcome { text })?;
                server.spawn(LAMP, Lamp::default(), Some(player))?;
            }
        }
        while let Some((_player, Hello(n))) = server.server_mut().poll_message::<Hello>() {
            seen.hello_on_server = Some(n);
        }
        client.update(now)?;
        while let Some(event) = client.poll_event() {
            if event == ClientEvent::Authenticated {
                client.client_mut().send(&Hello(7))?;
            }
        }
        while let Some(welcome) = client.client_mut().poll_message::<Welcome>() {
            seen.welcome = Some(welcome);
        }
        let lamp = client.objects().next();
        if let Some(id) = lamp {
            if !toggled {
                // The generated `LampRpcs` trait sends the Command through the client.
                client.handle::<Lamp>(id).ok_or("no handle")?.toggle(&mut client, 9)?;
                toggled = true;
            }
            let lamp = client.get::<Lamp>(id).ok_or("no lamp")?;
            seen.lit = *lamp.lit;
            seen.switches_seen = lamp.switches_seen.clone();
            seen.colours = lamp.colours.to_vec();
            seen.colours_seen = lamp.colours_seen;
            seen.flashes = lamp.flashes;
            seen.notes = lamp.notes.clone();
            if seen.lit && seen.flashes == 3 && !seen.notes.is_empty() {
                break;
            }
        }
        now += Duration::from_millis(16); // the next frame
    }
    Ok(seen)
}

/// What [`play`] must see.
pub(crate) fn expected() -> Seen {
    Seen {
        welcome: Some(Welcome { text: "welcome".to_string() }),
        hello_on_server: Some(7),
        lit: true,
        switches_seen: vec![(false, true)],
        colours: vec![9],
        colours_seen: 1,
        flashes: 3,
        notes: vec!["switched".to_string()],
    }
}
