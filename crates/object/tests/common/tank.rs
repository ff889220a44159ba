//! The behaviours the scenarios play with.

use sturnus_object::{
    ClientCtx, ListChange, NetworkBehaviour, PlayerId, PrefabId, ServerCtx, SyncList, SyncVar,
    network_rpcs,
};

pub(crate) const TANK: PrefabId = PrefabId::of_name("tank");

/// A tank: synced fields with hooks, one local field, and every kind of RPC. Logs what ran on
/// it, so tests can see where.
#[derive(Debug, Default, NetworkBehaviour)]
pub(crate) struct Tank {
    #[sync(hook = Tank::on_health)]
    pub(crate) health: SyncVar<i32>,
    #[sync]
    pub(crate) name: SyncVar<String>,
    #[sync(hook = Tank::on_inventory)]
    pub(crate) inventory: SyncList<String>,
    /// Not networked.
    pub(crate) speed: f32,
    /// Hook calls: (old, new).
    pub(crate) health_changes: Vec<(i32, i32)>,
    pub(crate) inventory_changes: Vec<ListChange<String>>,
    /// Commands run here (on the server): (sender, direction).
    pub(crate) fired: Vec<(PlayerId, (i32, i32))>,
    pub(crate) pokes: Vec<PlayerId>,
    /// Client RPCs run here.
    pub(crate) explosions: Vec<(i32, i32)>,
    /// Target RPCs run here.
    pub(crate) hits: Vec<i32>,
}

impl Tank {
    pub(crate) fn new(health: i32, name: &str) -> Self {
        Tank { health: SyncVar::new(health), name: SyncVar::new(name.into()), ..Tank::default() }
    }

    fn on_health(&mut self, old: &i32, new: &i32) {
        self.health_changes.push((*old, *new));
    }

    fn on_inventory(&mut self, change: &ListChange<String>) {
        self.inventory_changes.push(change.clone());
    }
}

#[network_rpcs(vis = pub(crate))]
impl Tank {
    /// Owner only; answers with an explosion on every observer.
    #[command]
    pub(crate) fn fire(&mut self, ctx: &mut ServerCtx<'_>, dir: (i32, i32)) {
        self.fired.push((ctx.sender(), dir));
        let me = ctx.this::<Tank>();
        me.explode(ctx, dir).unwrap();
    }

    /// Anyone who sees the tank.
    #[command(requires_authority = false)]
    pub(crate) fn poke(&mut self, ctx: &mut ServerCtx<'_>) {
        self.pokes.push(ctx.sender());
    }

    #[client_rpc]
    pub(crate) fn explode(&mut self, _ctx: &mut ClientCtx<'_>, at: (i32, i32)) {
        self.explosions.push(at);
    }

    #[target_rpc]
    pub(crate) fn hit_marker(&mut self, _ctx: &mut ClientCtx<'_>, damage: i32) {
        self.hits.push(damage);
    }
}
