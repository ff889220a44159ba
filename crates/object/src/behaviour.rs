//! Behaviours: the networked parts of an object, and how RPCs reach them.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use sturnus_message::{ChannelId, PlayerId};
use sturnus_transport::Qos;

use crate::{ClientCtx, NetId, ObjectError, ReadError, RpcId, ServerCtx};

/// The networked part of an object (UNET's and Mirage's `NetworkBehaviour`): its `#[sync]`
/// fields are kept in sync from the server to the clients that observe the object, and its
/// RPCs (declared in a [`#[network_rpcs]`](macro@crate::network_rpcs) impl block) are
/// dispatched to it by id.
///
/// Derive it: every method is generated from the struct's `#[sync]` fields.
///
/// ```
/// use sturnus_object::{NetworkBehaviour, SyncList, SyncVar};
///
/// #[derive(Default, NetworkBehaviour)]
/// #[network(sync_interval_ms = 50)]
/// struct Tank {
///     #[sync(hook = Tank::on_health_changed)]
///     health: SyncVar<i32>,
///     #[sync]
///     inventory: SyncList<String>,
///     speed: f32, // not networked
///     hits_seen: u32,
/// }
///
/// impl Tank {
///     fn on_health_changed(&mut self, old: &i32, new: &i32) {
///         if new < old {
///             self.hits_seen += 1;
///         }
///     }
/// }
///
/// let mut tank = Tank::default();
/// tank.health.set(50);
/// assert!(tank.is_dirty());
/// // Only the dirty field travels: a one-byte mask and the value (a one-byte varint).
/// let mut delta = Vec::new();
/// tank.write_changes(&mut delta).unwrap();
/// assert_eq!(delta.len(), 2);
///
/// let mut copy = Tank::default();
/// copy.read_changes(&mut &delta[..]).unwrap();
/// assert_eq!(*copy.health, 50);
/// assert_eq!(copy.hits_seen, 0); // 0 -> 50 is no hit
/// ```
///
/// Derive attributes: `#[sync]` or `#[sync(hook = path)]` on fields (any [`SyncField`] type;
/// there is no limit on their number); `#[network(sync_interval_ms = N, qos = Kind)]` on the
/// struct to set how often its changes are sent and on which kind of channel (by default the
/// manager's `sync_interval` and a reliable sequenced channel: collections need every
/// operation, in order).
///
/// [`SyncField`]: crate::SyncField
pub trait NetworkBehaviour: Any + Send {
    /// Appends the state of every `#[sync]` field.
    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Appends the dirty mask and the delta of each dirty field: what an update carries.
    fn write_changes(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Replaces the state with what [`write_full`](Self::write_full) wrote (no hooks run).
    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError>;
    /// Replaces the state with what [`write_full`](Self::write_full) wrote, then runs the hooks
    /// of the fields whose state changed (see [`SyncField::read_full_changes`]): how a client
    /// applies the full states a behaviour synced on an unreliable channel receives. The
    /// derive implements it; by default it is [`read_full`](Self::read_full), running no hooks.
    ///
    /// [`SyncField::read_full_changes`]: crate::SyncField::read_full_changes
    fn read_full_changes(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        self.read_full(input)
    }
    /// Applies what [`write_changes`](Self::write_changes) wrote, then runs the hooks of the
    /// fields that changed.
    fn read_changes(&mut self, input: &mut &[u8]) -> Result<(), ReadError>;
    /// Marks every field clean and runs the hooks with the changes made here since the last
    /// sync (host mode, where the host player's objects are the server's). What a hook changes
    /// in a `#[sync]` field is left dirty, for the next sync.
    fn run_local_hooks(&mut self);
    /// Whether a `#[sync]` field changed since the last sync.
    fn is_dirty(&self) -> bool;
    /// Marks every field clean.
    fn clear_dirty(&mut self);
    /// How often and on which kind of channel its changes are sent.
    fn sync_settings(&self) -> SyncSettings;
    /// What the RPC `id` of this type is, if it has one.
    fn rpc_info(&self, id: RpcId) -> Option<RpcInfo>;
    /// Runs RPC `id` with its encoded arguments. Fails, running nothing, if the id is unknown
    /// or the arguments do not decode.
    fn invoke_rpc(
        &mut self,
        id: RpcId,
        args: &[u8],
        ctx: RpcContext<'_, '_>,
    ) -> Result<(), ReadError>;
    /// The behaviour as `Any`, to find it by type.
    fn as_any(&self) -> &dyn Any;
    /// The behaviour as `Any`, to find it by type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The type's name, for logs.
    fn type_name(&self) -> &'static str;
}

impl fmt::Debug for dyn NetworkBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.type_name())
    }
}

/// The behaviours of one object, in order: an object's behaviour *i* is its behaviour *i* on
/// every peer.
pub type Behaviours = Vec<Box<dyn NetworkBehaviour>>;

/// Which channel something goes on: the first typed channel of a kind in the layout, or a
/// channel by id. `#[network(qos = Kind)]`, `#[command(qos = Kind)]` and the like give the
/// first; `channel = N` gives the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnChannel {
    /// The first typed channel of this kind.
    Kind(Qos),
    /// This channel.
    Id(ChannelId),
}

/// How a behaviour's changes are sent (UNET's `sendInterval` and `channel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncSettings {
    /// The least time between two updates of one object's behaviour; `None`: the manager's
    /// [`sync_interval`](crate::ObjectConfig::sync_interval).
    pub interval: Option<Duration>,
    /// The channel updates go on; `None`: the manager's
    /// [`channel`](crate::ObjectConfig::channel), which also carries spawns, despawns and RPCs,
    /// so everything about an object arrives in order, and updates are deltas (the fields that
    /// changed).
    ///
    /// On any other channel an update is the behaviour's full state with a version. A delta is
    /// only right arriving once, in order, after the spawn it builds on, which only the
    /// objects' channel promises: an unreliable channel loses deltas, an unordered one lets a
    /// late one undo a newer one, and even a reliable ordered one could deliver a delta resent
    /// after the object was spawned again (to a player made ready again). The state is sent
    /// again at each interval to the observers that have not acknowledged the newest; a client
    /// applies only a version newer than the one it holds (running the hooks of the fields it
    /// changes), drops older ones (an update that overtook its object's spawn is dropped too,
    /// and made good by the next resend) and acknowledges. So SyncVars and collections
    /// converge whatever is lost, duplicated or reordered, at the cost of sending the whole
    /// state: keep such behaviours small (the state must fit one message on the channel). A
    /// `StateUpdate` channel keeps only the newest message queued, so it suits one such
    /// behaviour, not several.
    pub channel: Option<OnChannel>,
}

impl SyncSettings {
    /// Settings with `interval` and `channel`.
    pub const fn new(interval: Option<Duration>, channel: Option<OnChannel>) -> Self {
        Self { interval, channel }
    }
}

/// Which way an RPC goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcKind {
    /// Client to server, run on the server's object.
    Command,
    /// Server to every observer of the object.
    ClientRpc,
    /// Server to one player.
    TargetRpc,
}

/// What the RPC of an id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcInfo {
    /// Which way it goes.
    pub kind: RpcKind,
    /// For commands: whether only the object's owner may call it.
    pub requires_authority: bool,
    /// The channel it is sent on (`None`: the manager's
    /// [`channel`](crate::ObjectConfig::channel)).
    pub channel: Option<OnChannel>,
    /// The method's name, for logs.
    pub name: &'static str,
}

impl RpcInfo {
    /// An RPC of `kind`, named `name`, on `channel`; commands need authority unless
    /// `requires_authority` is false.
    pub const fn new(
        kind: RpcKind,
        name: &'static str,
        channel: Option<OnChannel>,
        requires_authority: bool,
    ) -> Self {
        Self { kind, requires_authority, channel, name }
    }
}

/// The side an RPC runs on, with its context.
#[derive(Debug)]
#[non_exhaustive]
pub enum RpcContext<'c, 'a> {
    /// A command, on the server.
    Server(&'c mut ServerCtx<'a>),
    /// A client or target RPC, on a client.
    Client(&'c mut ClientCtx<'a>),
}

/// A typed handle on behaviour `B` of a networked object: what RPC calls are made on.
/// `#[network_rpcs]` gives it one method per RPC of `B` (through a generated trait named
/// after the type, `TankRpcs` for `Tank`). Get one from
/// [`ServerObjectManager::handle`](crate::ServerObjectManager::handle),
/// [`ClientObjectManager::handle`](crate::ClientObjectManager::handle) or a context.
pub struct Obj<B> {
    net_id: NetId,
    behaviour: u8,
    _type: PhantomData<fn() -> B>,
}

impl<B> Obj<B> {
    /// A handle on behaviour number `behaviour` of object `net_id`, which should be a `B`
    /// (an RPC sent through a wrong handle is refused by the receiver).
    pub const fn new(net_id: NetId, behaviour: u8) -> Self {
        Self { net_id, behaviour, _type: PhantomData }
    }

    /// The object.
    pub fn net_id(&self) -> NetId {
        self.net_id
    }

    /// The behaviour's index in its object.
    pub fn behaviour_index(&self) -> u8 {
        self.behaviour
    }
}

impl<B> Clone for Obj<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Obj<B> {}
impl<B> PartialEq for Obj<B> {
    fn eq(&self, other: &Self) -> bool {
        (self.net_id, self.behaviour) == (other.net_id, other.behaviour)
    }
}
impl<B> Eq for Obj<B> {}
impl<B> Hash for Obj<B> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.net_id, self.behaviour).hash(state);
    }
}
impl<B> fmt::Debug for Obj<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Obj<{}>({}, {})", std::any::type_name::<B>(), self.net_id.0, self.behaviour)
    }
}

/// Something commands can be sent through: a [`ClientObjectManager`](crate::ClientObjectManager),
/// a [`ClientCtx`] (inside a client RPC or hook), or in host mode the
/// [`ServerObjectManager`](crate::ServerObjectManager), which sends as its host player.
pub trait CommandSink {
    /// Sends `call`, a command, with `args`.
    fn send_command<A: Serialize>(&mut self, call: RpcCall, args: &A) -> Result<(), ObjectError>;
}

/// An RPC call on its way out: which RPC, of which behaviour of which object, on which channel
/// (`None`: the object manager's channel). The generated `<Type>Rpcs` methods build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcCall {
    /// The object.
    pub net_id: NetId,
    /// The behaviour's index in it.
    pub behaviour: u8,
    /// The RPC.
    pub rpc: RpcId,
    /// The channel.
    pub channel: Option<OnChannel>,
    /// The RPC's method name, for errors.
    pub name: &'static str,
    /// For commands: whether only the object's owner may call it (a client that knows it does
    /// not own the object refuses to send it).
    pub requires_authority: bool,
}

impl RpcCall {
    /// A call of RPC `rpc`, described by `info` (its channel, name and authority), on
    /// `target`.
    pub fn new<B>(target: Obj<B>, rpc: RpcId, info: RpcInfo) -> Self {
        Self {
            net_id: target.net_id,
            behaviour: target.behaviour,
            rpc,
            channel: info.channel,
            name: info.name,
            requires_authority: info.requires_authority,
        }
    }
}

/// Something client and target RPCs can be sent through: the
/// [`ServerObjectManager`](crate::ServerObjectManager) or a [`ServerCtx`] (inside a command).
pub trait RpcSink {
    /// Sends `call`, a client or target RPC, with `args` to every observer of its object
    /// (`to: None`) or to one player.
    fn send_rpc<A: Serialize>(
        &mut self,
        call: RpcCall,
        to: Option<PlayerId>,
        args: &A,
    ) -> Result<(), ObjectError>;
}

/// What can be spawned as an object: one behaviour, a tuple of up to four, or a
/// [`Behaviours`] list.
pub trait IntoBehaviours {
    /// The behaviours, in order.
    fn into_behaviours(self) -> Behaviours;
}

impl<B: NetworkBehaviour> IntoBehaviours for B {
    fn into_behaviours(self) -> Behaviours {
        vec![Box::new(self)]
    }
}

impl IntoBehaviours for Behaviours {
    fn into_behaviours(self) -> Behaviours {
        self
    }
}

macro_rules! tuple_behaviours {
    ($($name:ident),+) => {
        impl<$($name: NetworkBehaviour),+> IntoBehaviours for ($($name,)+) {
            #[expect(non_snake_case, reason = "the type parameters name the values")]
            fn into_behaviours(self) -> Behaviours {
                let ($($name,)+) = self;
                vec![$(Box::new($name)),+]
            }
        }
    };
}
tuple_behaviours!(A);
tuple_behaviours!(A, B);
tuple_behaviours!(A, B, C);
tuple_behaviours!(A, B, C, D);

/// Finds the first behaviour of type `B`, with its index.
pub(crate) fn find<B: NetworkBehaviour>(
    behaviours: &[Box<dyn NetworkBehaviour>],
) -> Option<(u8, &B)> {
    behaviours.iter().enumerate().find_map(|(i, b)| {
        let b = b.as_any().downcast_ref::<B>()?;
        Some((u8::try_from(i).ok()?, b))
    })
}

/// Finds the first behaviour of type `B`, mutably.
pub(crate) fn find_mut<B: NetworkBehaviour>(
    behaviours: &mut [Box<dyn NetworkBehaviour>],
) -> Option<&mut B> {
    behaviours.iter_mut().find_map(|b| b.as_any_mut().downcast_mut::<B>())
}

/// What the macros' generated code uses. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    use serde::de::DeserializeOwned;

    use super::{RpcContext, RpcInfo};
    use crate::{
        Changes, ListChange, MapChange, ReadError, RpcId, SetChange, SyncField, VarChange,
    };

    pub use crate::field::{read_mask, write_mask};
    pub use postcard;

    /// Implemented by `#[network_rpcs]`.
    pub trait Rpcs {
        /// What RPC `id` is.
        fn rpc_info(id: RpcId) -> Option<RpcInfo>;
        /// Runs RPC `id`.
        fn invoke_rpc(
            &mut self,
            id: RpcId,
            args: &[u8],
            ctx: RpcContext<'_, '_>,
        ) -> Result<(), ReadError>;
    }

    /// Picks `Rpcs` when the type implements it and "no RPCs" otherwise: the derive cannot
    /// know whether a `#[network_rpcs]` block exists, so it asks method resolution, which
    /// prefers the impl on `Probe<T>` (needing `T: Rpcs`) over the one on `&Probe<T>`.
    #[derive(Debug)]
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Probe<T> {
        /// The probe.
        pub const fn new() -> Self {
            Probe(PhantomData)
        }
    }

    impl<T> Default for Probe<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// The type has RPCs.
    pub trait WithRpcs<T> {
        /// See [`Rpcs::rpc_info`].
        fn info(&self, id: RpcId) -> Option<RpcInfo>;
        /// See [`Rpcs::invoke_rpc`].
        fn invoke(
            &self,
            target: &mut T,
            id: RpcId,
            args: &[u8],
            ctx: RpcContext<'_, '_>,
        ) -> Result<(), ReadError>;
    }

    impl<T: Rpcs> WithRpcs<T> for Probe<T> {
        fn info(&self, id: RpcId) -> Option<RpcInfo> {
            T::rpc_info(id)
        }
        fn invoke(
            &self,
            target: &mut T,
            id: RpcId,
            args: &[u8],
            ctx: RpcContext<'_, '_>,
        ) -> Result<(), ReadError> {
            target.invoke_rpc(id, args, ctx)
        }
    }

    /// The type has no RPCs.
    pub trait WithoutRpcs<T> {
        /// Nothing.
        fn info(&self, id: RpcId) -> Option<RpcInfo>;
        /// Refuses.
        fn invoke(
            &self,
            target: &mut T,
            id: RpcId,
            args: &[u8],
            ctx: RpcContext<'_, '_>,
        ) -> Result<(), ReadError>;
    }

    impl<T> WithoutRpcs<T> for &Probe<T> {
        fn info(&self, _: RpcId) -> Option<RpcInfo> {
            None
        }
        fn invoke(
            &self,
            _: &mut T,
            _: RpcId,
            _: &[u8],
            _: RpcContext<'_, '_>,
        ) -> Result<(), ReadError> {
            Err(ReadError::UnknownOperation)
        }
    }

    /// A hook function for changes of type `C` on a behaviour `B`.
    ///
    /// `M` tells the impls apart. Besides the one impl per change type there is one that never
    /// applies ([`NotAHook`]): with two candidates the compiler weighs them both and, when the
    /// user's function fits neither, reports this trait's message below instead of the bare
    /// "expected a function that takes 3 arguments" of the `Fn` bound.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the hook of this field: its signature does not fit",
        label = "this hook has the wrong signature for the field's changes",
        note = "a `SyncVar<T>` hook is `fn(&mut self, old: &T, new: &T)`",
        note = "a `SyncList<T>` hook is `fn(&mut self, change: &ListChange<T>)`; a `SyncMap<K, V>` \
                one takes `&MapChange<K, V>`, a `SyncSet<T>` one `&SetChange<T>`"
    )]
    pub trait Hook<B, C, M> {
        /// Calls it.
        fn call(&self, behaviour: &mut B, change: &C);
    }

    /// The marker of the real hook impls.
    #[derive(Debug)]
    pub enum Signature {}

    /// The marker of the impl that never applies.
    #[derive(Debug)]
    pub enum Never {}

    /// Implemented by no type: the bound of the impl that never applies.
    pub trait NotAHook {}

    impl<B, C, F: NotAHook> Hook<B, C, Never> for F {
        fn call(&self, _: &mut B, _: &C) {}
    }

    impl<B, T, F: Fn(&mut B, &T, &T)> Hook<B, VarChange<T>, Signature> for F {
        fn call(&self, behaviour: &mut B, change: &VarChange<T>) {
            self(behaviour, &change.old, &change.new);
        }
    }

    impl<B, T, F: Fn(&mut B, &ListChange<T>)> Hook<B, ListChange<T>, Signature> for F {
        fn call(&self, behaviour: &mut B, change: &ListChange<T>) {
            self(behaviour, change);
        }
    }

    impl<B, K, V, F: Fn(&mut B, &MapChange<K, V>)> Hook<B, MapChange<K, V>, Signature> for F {
        fn call(&self, behaviour: &mut B, change: &MapChange<K, V>) {
            self(behaviour, change);
        }
    }

    impl<B, T, F: Fn(&mut B, &SetChange<T>)> Hook<B, SetChange<T>, Signature> for F {
        fn call(&self, behaviour: &mut B, change: &SetChange<T>) {
            self(behaviour, change);
        }
    }

    /// Runs `hook` on each change.
    pub fn call_hooks<B, C, M, H: Hook<B, C, M>>(behaviour: &mut B, changes: &Changes<C>, hook: H) {
        for change in changes.iter() {
            hook.call(behaviour, change);
        }
    }

    /// An empty list of `field`'s changes.
    pub fn changes_for<F: SyncField>(_field: &F) -> Changes<F::Change> {
        Changes::new()
    }

    /// Decodes RPC arguments, refusing trailing bytes.
    pub fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, ReadError> {
        let (value, rest) = postcard::take_from_bytes(args)?;
        if rest.is_empty() { Ok(value) } else { Err(ReadError::Trailing(rest.len())) }
    }
}
