//! # sturnus-derive
//!
//! Derive macros for Sturnus. Use them through the `sturnus` facade (`sturnus::prelude`) or
//! through the layer crates, which re-export them:
//!
//! - [`macro@Message`] makes a `serde` type a network message with a stable id (through
//!   `sturnus-message`).
//! - [`macro@NetworkBehaviour`] and [`macro@network_rpcs`] make a type a networked behaviour
//!   with synchronised fields and RPCs (through `sturnus-object`).
//!
//! The generated code names the layer's items by the path the user's crate reaches them by,
//! read from its `Cargo.toml`: `::sturnus::message` / `::sturnus::object` for a game that
//! depends only on `sturnus`, `::sturnus_message` / `::sturnus_object` for one that depends on
//! the layer crates (a direct dependency on the layer wins over the facade; a renamed dependency
//! is followed). Each macro's `crate = path` option overrides that.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behaviour;
mod rpcs;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote};
use syn::{DeriveInput, Ident, LitInt, Path, parse_macro_input};

/// Makes a type a network message: implements `sturnus_message::Message`.
///
/// The type must also implement `serde::Serialize` and `serde::Deserialize`. Its id is a hash of
/// its path (`module_path!()` and the type's name), computed at compile time, so it is the same
/// on every build, platform and compiler version as long as the crate, module and type keep
/// their names. Attributes:
///
/// - `#[message(id = 1234)]` pins the id (a `u16`): use it to keep an id when renaming or moving
///   a type, or to resolve a collision the registry reports.
/// - `#[message(qos = Unreliable)]` names the default quality of service (any
///   `sturnus_transport::Qos` variant); the default is `ReliableFragmentedSequenced`. A send can
///   override it.
/// - `#[message(channel = N)]` names the channel it is sent on by default (its number in the
///   channel layout: a `u8` literal or constant); without it, the first channel of its `qos`
///   kind.
/// - `#[message(crate = some::path)]` names the `sturnus_message` crate (or the facade's
///   `sturnus::message` module) when it cannot be found from the crate's `Cargo.toml`: by
///   default, the path is worked out from the crate's dependencies (see the crate
///   documentation).
///
/// Generic types are refused: every instantiation would share one id. Implement the trait by
/// hand for them, with a distinct id per instantiation.
///
/// # Example
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sturnus::message::MessageId;
/// use sturnus::prelude::*;
///
/// /// A chat line: reliable and ordered (the default), its id a hash of its path.
/// #[derive(Debug, Serialize, Deserialize, Message)]
/// struct Chat {
///     text: String,
/// }
///
/// /// Where a player is: only the newest matters. The id is pinned, so that moving or renaming
/// /// the type keeps it.
/// #[derive(Debug, Serialize, Deserialize, Message)]
/// #[message(id = 1200, qos = Unreliable)]
/// struct Position {
///     x: f32,
///     y: f32,
/// }
///
/// assert_eq!(Position::ID, MessageId(1200));
/// assert_eq!(Position::QOS, Qos::Unreliable);
/// assert_eq!(Chat::QOS, Qos::ReliableFragmentedSequenced);
/// assert_ne!(Chat::ID, Position::ID);
///
/// // A client takes the server's chat lines from a queue (`client.poll_message::<Chat>()`)
/// // and sends its position with `client.send(&Position { x: 1.0, y: 2.0 })`.
/// let mut client = NetworkClient::new(ClientConfig::default())?;
/// client.register_queue::<Chat>()?;
/// # Ok::<(), MessageError>(())
/// ```
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Makes a struct a networked behaviour: implements `sturnus_object::NetworkBehaviour`.
///
/// - `#[sync]` on a field whose type implements `sturnus_object::SyncField` (`SyncVar`,
///   `SyncList`, `SyncMap`, `SyncSet`) keeps it in sync from server to clients; other fields
///   stay local. There is no limit on the number of fields.
/// - `#[sync(hook = path)]` runs `path` on the client (and the host player) for each change:
///   `fn(&mut self, old: &T, new: &T)` for a `SyncVar<T>`, `fn(&mut self, change: &ListChange<T>)`
///   (or `MapChange`, `SetChange`) for a collection. Hooks run after the whole update is applied.
///   A hook of another signature is a compile error at its path that lists these.
/// - `#[network(sync_interval_ms = N, qos = Kind, crate = path)]` on the struct: the least time
///   between two updates, their channel kind, and the path of `sturnus_object`.
///
/// RPCs come from a `#[network_rpcs]` impl block of the same type, if there is one.
///
/// # Example
///
/// ```
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// #[network(sync_interval_ms = 50)]
/// struct Health {
///     #[sync(hook = Health::on_hp)]
///     hp: SyncVar<u32>,
///     #[sync]
///     effects: SyncList<String>,
///     flashes: u32, // local: not networked
/// }
///
/// impl Health {
///     fn on_hp(&mut self, old: &u32, new: &u32) {
///         if new < old {
///             self.flashes += 1;
///         }
///     }
/// }
///
/// // What the object managers do with it: the server's copy changes and is written out, the
/// // client's reads the changes and runs its hooks.
/// let mut server_side = Health::default();
/// server_side.hp.set(100);
/// server_side.clear_dirty();
/// server_side.hp.set(90);
/// server_side.effects.push("poisoned".to_string());
/// assert!(server_side.is_dirty());
/// let mut update = Vec::new();
/// server_side.write_changes(&mut update).unwrap();
///
/// let mut client_side = Health::default();
/// client_side.hp.set(100);
/// client_side.read_changes(&mut update.as_slice()).unwrap();
/// assert_eq!(*client_side.hp, 90);
/// assert_eq!(client_side.effects.len(), 1);
/// assert_eq!(client_side.flashes, 1);
/// ```
///
/// The `sturnus` crate's front page has a whole game: a server and a client, a behaviour with
/// a hooked SyncVar, a Command and a ClientRpc.
#[proc_macro_derive(NetworkBehaviour, attributes(sync, network))]
pub fn derive_network_behaviour(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match behaviour::expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Declares a behaviour's RPCs on an impl block:
///
/// - `#[command]` `fn name(&mut self, ctx: &mut ServerCtx, args…)`: sent by a client, run on
///   the server, only if the sender owns the object (`#[command(requires_authority = false)]`
///   lets any observer call it).
/// - `#[client_rpc]` `fn name(&mut self, ctx: &mut ClientCtx, args…)`: sent by the server, run
///   on every client observing the object.
/// - `#[target_rpc]` `fn name(&mut self, ctx: &mut ClientCtx, args…)`: sent by the server, run
///   on one player's client.
///
/// Each takes `qos = Kind` (its channel kind; default: the object manager's channel) and
/// `id = N` (pins its 16-bit id; by default a hash of the method's name). Arguments are owned
/// `serde` types. RPCs are one-way: a method that returns a value is a compile error (send
/// an answer back as an RPC of its own); the sending side refuses, with an error, a command
/// that requires authority on an object it does not own. The methods stay as written (the server calls them); sending is done through
/// a generated trait `<Type>Rpcs` implemented for `Obj<Type>` handles, with one method per RPC
/// taking where to send through (and, for target RPCs, the player) before the arguments:
/// `tank.fire(&mut client_objects, dir)`, `tank.explode(&mut server_objects, at)`,
/// `tank.hit_marker(&mut server_objects, player, 10)`. The trait is `pub` unless
/// `#[network_rpcs(vis = pub(crate))]` says otherwise; `crate = path` names `sturnus_object`.
/// A type has at most one `#[network_rpcs]` block (it implements one trait for the type).
///
/// Mistakes are compile errors on the user's code that say what to write instead: an RPC
/// without its context (the message gives the corrected signature), a borrowed argument
/// (`&str`: take `String`), an RPC attribute outside such a block (see [`macro@command`]).
///
/// # Example
///
/// ```
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// struct Tank {
///     #[sync]
///     ammo: SyncVar<u32>,
///     explosions: u32,
///     hits: u32,
/// }
///
/// #[network_rpcs]
/// impl Tank {
///     /// Client → server, from the tank's owner only.
///     #[command]
///     fn fire(&mut self, ctx: &mut ServerCtx<'_>, power: f32) {
///         if *self.ammo > 0 {
///             let ammo = *self.ammo - 1;
///             self.ammo.set(ammo);
///             let _ = ctx.this::<Tank>().explode(ctx, power * 4.0);
///         }
///     }
///
///     /// Server → every client that sees the tank; unreliable, it is only an effect.
///     #[client_rpc(qos = Unreliable)]
///     fn explode(&mut self, _ctx: &mut ClientCtx<'_>, _radius: f32) {
///         self.explosions += 1;
///     }
///
///     /// Server → one player's client.
///     #[target_rpc]
///     fn hit_marker(&mut self, _ctx: &mut ClientCtx<'_>, damage: u32) {
///         self.hits += damage;
///     }
/// }
///
/// // Sending goes through the generated `TankRpcs` trait, on `Obj<Tank>` handles: where to
/// // send through first, then (for a target RPC) the player, then the arguments.
/// fn fire(client: &mut ClientObjectManager, tank: NetId) -> Result<(), ObjectError> {
///     let tank = client.handle::<Tank>(tank).expect("a tank");
///     tank.fire(client, 0.5)
/// }
///
/// fn mark_hit(server: &mut ServerObjectManager, tank: Obj<Tank>, player: PlayerId) {
///     let _ = tank.hit_marker(server, player, 10);
/// }
/// # let _ = (fire, mark_hit);
/// ```
///
/// The `sturnus` crate's front page plays a Command and a ClientRpc through between a server
/// and a client.
#[proc_macro_attribute]
pub fn network_rpcs(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = parse_macro_input!(attr as rpcs::Options);
    let item = parse_macro_input!(item as syn::ItemImpl);
    match rpcs::expand(options, item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // The block stays (without its RPC attributes): its methods still exist, so the
            // error is the only one, not the first of many about what the block defined.
            let error = err.to_compile_error();
            let item = rpcs::strip(item);
            quote!(#error #item).into()
        }
    }
}

/// A layer crate whose items the generated code names.
#[derive(Clone, Copy)]
enum Layer {
    Message,
    Object,
}

impl Layer {
    /// The package's name, as written in a `Cargo.toml`.
    fn package(self) -> &'static str {
        match self {
            Layer::Message => "sturnus-message",
            Layer::Object => "sturnus-object",
        }
    }

    /// Its path when the package is compiled itself (`extern crate self as …` in the layer
    /// crate; its own name in its integration tests and doc tests).
    fn own_path(self) -> TokenStream2 {
        match self {
            Layer::Message => quote!(::sturnus_message),
            Layer::Object => quote!(::sturnus_object),
        }
    }

    /// Its module in the `sturnus` facade.
    fn module(self) -> Ident {
        let name = match self {
            Layer::Message => "message",
            Layer::Object => "object",
        };
        Ident::new(name, Span::call_site())
    }
}

/// The path the generated code names a layer by, as the crate being compiled reaches it (read
/// from its `Cargo.toml` by `proc-macro-crate`), in this order:
///
/// 1. the `sturnus` package being compiled itself (its integration tests and doc tests, where
///    `sturnus` is the library under test; the library itself would need
///    `extern crate self as sturnus` to use a derive): `::sturnus::object`, so that its tests
///    prove the facade's paths resolve;
/// 2. the layer crate itself, or a direct dependency on it (under its name or a rename):
///    `::sturnus_object`; the layer always exists there, whatever the facade's features;
/// 3. a dependency on the facade (under its name or a rename): `::sturnus::object`;
/// 4. otherwise (no manifest to read, say): `::sturnus_object`, as before the facade.
///
/// A `crate = path` option overrides all of this.
fn layer_path(layer: Layer) -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    let facade = crate_name("sturnus");
    // `proc-macro-crate` answers `Itself` for the library and its doc tests, but the package's
    // name for its integration tests (which also see the layer crates): the package name tells.
    let compiling_facade = std::env::var("CARGO_PKG_NAME").is_ok_and(|name| name == "sturnus");
    if compiling_facade || matches!(facade, Ok(FoundCrate::Itself)) {
        let module = layer.module();
        return quote!(::sturnus::#module);
    }
    match crate_name(layer.package()) {
        Ok(FoundCrate::Itself) => return layer.own_path(),
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name.replace('-', "_"), Span::call_site());
            return quote!(::#name);
        }
        Err(_) => {}
    }
    match facade {
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name.replace('-', "_"), Span::call_site());
            let module = layer.module();
            quote!(::#name::#module)
        }
        _ => layer.own_path(),
    }
}

/// Marks a Command inside a [`macro@network_rpcs`] impl block, which reads and removes it.
///
/// Anywhere else it is a compile error that says so: the attribute means nothing outside such a
/// block. (Inside one it needs no import.)
///
/// ```
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// struct Door {
///     #[sync]
///     open: SyncVar<bool>,
/// }
///
/// #[network_rpcs]
/// impl Door {
///     /// Any player who sees the door may knock, not only its owner.
///     #[command(requires_authority = false)]
///     fn knock(&mut self, _ctx: &mut ServerCtx<'_>, times: u8) {
///         if times >= 3 {
///             self.open.set(true);
///         }
///     }
/// }
///
/// fn knock_three_times(client: &mut ClientObjectManager, door: Obj<Door>) {
///     let _ = door.knock(client, 3);
/// }
/// # let _ = knock_three_times;
/// ```
///
/// Outside a `#[network_rpcs]` block:
///
/// ```compile_fail
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// struct Door {}
///
/// impl Door {
///     #[command] // error: `#[command]` belongs on a method inside a `#[network_rpcs]` impl block
///     fn knock(&mut self, _ctx: &mut ServerCtx<'_>) {}
/// }
/// ```
#[proc_macro_attribute]
pub fn command(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_network_rpcs("command", item)
}

/// Marks a ClientRpc inside a [`macro@network_rpcs`] impl block, which reads and removes it.
///
/// Anywhere else it is a compile error that says so: the attribute means nothing outside such a
/// block. (Inside one it needs no import.)
///
/// ```
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// struct Lamp {
///     flashes: u32,
/// }
///
/// #[network_rpcs]
/// impl Lamp {
///     /// Runs on every client that sees the lamp.
///     #[client_rpc]
///     fn flash(&mut self, _ctx: &mut ClientCtx<'_>, times: u32) {
///         self.flashes += times;
///     }
/// }
///
/// fn flash_for_everyone(server: &mut ServerObjectManager, lamp: Obj<Lamp>) {
///     let _ = lamp.flash(server, 3);
/// }
/// # let _ = flash_for_everyone;
/// ```
#[proc_macro_attribute]
pub fn client_rpc(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_network_rpcs("client_rpc", item)
}

/// Marks a TargetRpc inside a [`macro@network_rpcs`] impl block, which reads and removes it.
///
/// Anywhere else it is a compile error that says so: the attribute means nothing outside such a
/// block. (Inside one it needs no import.)
///
/// ```
/// use sturnus::prelude::*;
///
/// #[derive(Default, NetworkBehaviour)]
/// struct Chest {
///     seen_loot: Vec<String>,
/// }
///
/// #[network_rpcs]
/// impl Chest {
///     /// Runs on one player's client only: what the chest holds is for the one who opened it.
///     #[target_rpc]
///     fn show_loot(&mut self, _ctx: &mut ClientCtx<'_>, loot: Vec<String>) {
///         self.seen_loot = loot;
///     }
/// }
///
/// fn open_for(server: &mut ServerObjectManager, chest: Obj<Chest>, player: PlayerId) {
///     let _ = chest.show_loot(server, player, vec!["a rusty key".to_string()]);
/// }
/// # let _ = open_for;
/// ```
#[proc_macro_attribute]
pub fn target_rpc(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_network_rpcs("target_rpc", item)
}

/// An RPC attribute that `#[network_rpcs]` did not consume: the error (on the attribute), then
/// the item unchanged, so no other error follows from its absence.
fn outside_network_rpcs(attribute: &str, item: TokenStream) -> TokenStream {
    let text = format!(
        "`#[{attribute}]` belongs on a method inside a `#[network_rpcs]` impl block: \
         write `#[network_rpcs] impl YourBehaviour {{ #[{attribute}] fn … }}`"
    );
    let error = syn::Error::new(Span::call_site(), text).to_compile_error();
    let item = TokenStream2::from(item);
    quote!(#error #item).into()
}

#[derive(Default)]
struct Options {
    id: Option<u16>,
    qos: Option<Ident>,
    channel: Option<syn::Expr>,
    krate: Option<Path>,
}

fn parse_options(input: &DeriveInput) -> syn::Result<Options> {
    let mut options = Options::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("id") {
                let lit: LitInt = meta.value()?.parse()?;
                options.id = Some(lit.base10_parse()?);
            } else if meta.path.is_ident("qos") {
                options.qos = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("channel") {
                options.channel = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                options.krate = Some(meta.value()?.parse()?);
            } else {
                return Err(
                    meta.error("expected `id = N`, `qos = Kind`, `channel = N` or `crate = path`")
                );
            }
            Ok(())
        })?;
    }
    Ok(options)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "Message cannot be derived for a generic type: every instantiation would share one \
             id; implement `Message` by hand with an id per instantiation",
        ));
    }
    let options = parse_options(input)?;
    let krate = match &options.krate {
        Some(path) => path.to_token_stream(),
        None => layer_path(Layer::Message),
    };
    let name = &input.ident;
    let name_str = name.to_string();
    let path = quote!(::core::concat!(::core::module_path!(), "::", #name_str));
    let id = match options.id {
        Some(id) => {
            let lit = LitInt::new(&id.to_string(), Span::call_site());
            quote!(#krate::MessageId(#lit))
        }
        None => quote!(#krate::MessageId::of_path(#path)),
    };
    let qos = options.qos.map(|kind| quote!(const QOS: #krate::Qos = #krate::Qos::#kind;));
    let channel = options.channel.map(|channel| {
        quote!(const CHANNEL: ::core::option::Option<#krate::ChannelId> =
            ::core::option::Option::Some(#krate::ChannelId(#channel));)
    });
    Ok(quote! {
        impl #krate::Message for #name {
            const ID: #krate::MessageId = #id;
            const NAME: &'static str = #path;
            #qos
            #channel
        }
    })
}
