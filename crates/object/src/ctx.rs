//! What commands and RPCs get besides their arguments: a context on the side they run on.

use serde::Serialize;
use sturnus_message::{ClientContext, PlayerId, ServerContext};

use crate::client::ClientWorld;
use crate::server::ServerWorld;
use crate::{
    Behaviours, CommandSink, IntoBehaviours, NetId, NetworkBehaviour, Obj, ObjectError, PrefabId,
    RpcCall, RpcSink,
};

/// A command's context on the server: who sent it and on which object; it dereferences to
/// [`ServerObjects`], the server's objects and players, to spawn, despawn, change objects and
/// reach the message layer, and it is an [`RpcSink`].
///
/// While the command runs, its own object's behaviours are lent to it: reach them through
/// `self`, not through [`get`](ServerObjects::get). Despawning the command's own object returns
/// no behaviours (they are dropped when the command returns).
#[derive(Debug)]
pub struct ServerCtx<'a> {
    objects: ServerObjects<'a>,
    sender: PlayerId,
    net_id: NetId,
    behaviour: u8,
}

impl<'a> ServerCtx<'a> {
    pub(crate) fn new(
        world: &'a mut ServerWorld,
        server: &'a mut ServerContext,
        sender: PlayerId,
        net_id: NetId,
        behaviour: u8,
    ) -> Self {
        Self { objects: ServerObjects::new(world, server), sender, net_id, behaviour }
    }

    /// The player that sent the command.
    pub fn sender(&self) -> PlayerId {
        self.sender
    }

    /// The object the command runs on.
    pub fn net_id(&self) -> NetId {
        self.net_id
    }

    /// A handle on the behaviour the command runs on, to send its RPCs; `B` must be its type.
    pub fn this<B: NetworkBehaviour>(&self) -> Obj<B> {
        Obj::new(self.net_id, self.behaviour)
    }

    /// The object's owner.
    pub fn owner(&self) -> Option<PlayerId> {
        self.objects.owner_of(self.net_id)
    }

    /// Whether the command comes from the host's own player.
    pub fn is_host(&self) -> bool {
        self.objects.world.host_player() == Some(self.sender)
    }
}

impl<'a> std::ops::Deref for ServerCtx<'a> {
    type Target = ServerObjects<'a>;
    fn deref(&self) -> &ServerObjects<'a> {
        &self.objects
    }
}

impl<'a> std::ops::DerefMut for ServerCtx<'a> {
    fn deref_mut(&mut self) -> &mut ServerObjects<'a> {
        &mut self.objects
    }
}

impl RpcSink for ServerCtx<'_> {
    fn send_rpc<A: Serialize>(
        &mut self,
        call: RpcCall,
        to: Option<PlayerId>,
        args: &A,
    ) -> Result<(), ObjectError> {
        self.objects.send_rpc(call, to, args)
    }
}

#[derive(Debug)]
enum Side<'a> {
    Remote { world: &'a mut ClientWorld, client: &'a mut ClientContext },
    Host { world: &'a mut ServerWorld },
}

/// A client or target RPC's context on a client: the object it runs on, the client's objects,
/// and a way to send commands back (it is a [`CommandSink`]). In host mode the host player's
/// RPCs get one too, over the server's objects.
///
/// While the RPC runs, its own object's behaviours are lent to it: reach them through `self`.
#[derive(Debug)]
pub struct ClientCtx<'a> {
    side: Side<'a>,
    net_id: NetId,
    behaviour: u8,
}

impl<'a> ClientCtx<'a> {
    pub(crate) fn remote(
        world: &'a mut ClientWorld,
        client: &'a mut ClientContext,
        net_id: NetId,
        behaviour: u8,
    ) -> Self {
        Self { side: Side::Remote { world, client }, net_id, behaviour }
    }

    pub(crate) fn host(world: &'a mut ServerWorld, net_id: NetId, behaviour: u8) -> Self {
        Self { side: Side::Host { world }, net_id, behaviour }
    }

    /// The object the RPC runs on.
    pub fn net_id(&self) -> NetId {
        self.net_id
    }

    /// A handle on the behaviour the RPC runs on, to send its commands; `B` must be its type.
    pub fn this<B: NetworkBehaviour>(&self) -> Obj<B> {
        Obj::new(self.net_id, self.behaviour)
    }

    /// Whether this client owns the object.
    pub fn is_owner(&self) -> bool {
        match &self.side {
            Side::Remote { world, .. } => world.is_owned(self.net_id),
            Side::Host { world, .. } => {
                world.host_player().is_some() && world.owner(self.net_id) == world.host_player()
            }
        }
    }

    /// Whether this is the host's own player, sharing the server's objects.
    pub fn is_host(&self) -> bool {
        matches!(self.side, Side::Host { .. })
    }

    /// The first behaviour of type `B` of another object.
    pub fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        match &self.side {
            Side::Remote { world, .. } => world.get(id),
            Side::Host { world, .. } => world.get(id),
        }
    }

    /// A handle on the first behaviour of type `B` of another object.
    pub fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        match &self.side {
            Side::Remote { world, .. } => world.handle(id),
            Side::Host { world, .. } => world.handle(id),
        }
    }
}

impl CommandSink for ClientCtx<'_> {
    fn send_command<A: Serialize>(&mut self, call: RpcCall, args: &A) -> Result<(), ObjectError> {
        match &mut self.side {
            Side::Remote { world, client } => world.send_command(client, call, args),
            Side::Host { world, .. } => world.queue_host_command(call, args),
        }
    }
}

/// The server's objects and players, lent to a message handler registered on the
/// [`ServerObjectManager`](crate::ServerObjectManager): it may spawn, despawn and change
/// objects, send RPCs (it is an [`RpcSink`]) and reach the message layer, with no shared state
/// of its own.
#[derive(Debug)]
pub struct ServerObjects<'a> {
    world: &'a mut ServerWorld,
    server: &'a mut ServerContext,
}

impl<'a> ServerObjects<'a> {
    pub(crate) fn new(world: &'a mut ServerWorld, server: &'a mut ServerContext) -> Self {
        Self { world, server }
    }

    /// Spawns an object, as [`ServerObjectManager::spawn`](crate::ServerObjectManager::spawn).
    pub fn spawn(
        &mut self,
        prefab: PrefabId,
        behaviours: impl IntoBehaviours,
        owner: Option<PlayerId>,
    ) -> Result<NetId, ObjectError> {
        self.world.spawn(self.server, prefab, None, behaviours.into_behaviours(), owner)
    }

    /// Despawns an object, as
    /// [`ServerObjectManager::despawn`](crate::ServerObjectManager::despawn).
    pub fn despawn(&mut self, id: NetId) -> Option<Behaviours> {
        self.world.despawn(self.server, id)
    }

    /// Changes an object's owner, as
    /// [`ServerObjectManager::set_owner`](crate::ServerObjectManager::set_owner).
    pub fn set_owner(&mut self, id: NetId, owner: Option<PlayerId>) -> Result<(), ObjectError> {
        self.world.set_owner(self.server, id, owner)
    }

    /// An object's owner.
    pub fn owner_of(&self, id: NetId) -> Option<PlayerId> {
        self.world.owner(id)
    }

    /// The first behaviour of type `B` of an object.
    pub fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        self.world.get(id)
    }

    /// The first behaviour of type `B` of an object, to change it.
    pub fn get_mut<B: NetworkBehaviour>(&mut self, id: NetId) -> Option<&mut B> {
        self.world.get_mut(id)
    }

    /// A handle on the first behaviour of type `B` of an object, to call its RPCs.
    pub fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        self.world.handle(id)
    }

    /// The message-layer server: players, messages, kicks.
    pub fn server(&mut self) -> &mut ServerContext {
        self.server
    }
}

impl RpcSink for ServerObjects<'_> {
    fn send_rpc<A: Serialize>(
        &mut self,
        call: RpcCall,
        to: Option<PlayerId>,
        args: &A,
    ) -> Result<(), ObjectError> {
        self.world.send_rpc(self.server, call, to, args)
    }
}
