//! `#[network_rpcs]`: Commands, ClientRpcs and TargetRpcs declared on an impl block.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote};
use syn::{
    Attribute, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitBool, LitInt, Pat, Path,
    ReturnType, Type, Visibility,
};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Command,
    ClientRpc,
    TargetRpc,
}

impl Kind {
    fn of(attr: &Attribute) -> Option<Kind> {
        let path = attr.path();
        if path.is_ident("command") {
            Some(Kind::Command)
        } else if path.is_ident("client_rpc") {
            Some(Kind::ClientRpc)
        } else if path.is_ident("target_rpc") {
            Some(Kind::TargetRpc)
        } else {
            None
        }
    }
}

struct Rpc {
    kind: Kind,
    name: Ident,
    id: u16,
    qos: Option<Ident>,
    channel: Option<syn::Expr>,
    requires_authority: bool,
    args: Vec<(Ident, Type)>,
}

/// The same hash as `sturnus_object::RpcId::of_name`.
fn rpc_id(name: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let folded = (hash >> 16) ^ hash;
    u16::try_from(folded & 0xffff).expect("masked to 16 bits")
}

/// Options of `#[network_rpcs(...)]`.
#[derive(Default)]
pub(crate) struct Options {
    krate: Option<Path>,
    vis: Option<Visibility>,
}

impl syn::parse::Parse for Options {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                options.krate = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("vis") {
                options.vis = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected `crate = path` or `vis = pub(crate)`"));
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, input.parse()?)?;
        Ok(options)
    }
}

/// Reads one method's RPC attribute (and removes it); `None` for a plain method.
fn take_rpc(method: &mut ImplItemFn) -> syn::Result<Option<Rpc>> {
    let Some(position) = method.attrs.iter().position(|a| Kind::of(a).is_some()) else {
        return Ok(None);
    };
    let attr = method.attrs.remove(position);
    if let Some(second) = method.attrs.iter().find(|a| Kind::of(a).is_some()) {
        return Err(syn::Error::new_spanned(second, "a method can be only one kind of RPC"));
    }
    let kind = Kind::of(&attr).expect("found by kind");
    let name = method.sig.ident.clone();
    let mut rpc = Rpc {
        kind,
        id: rpc_id(&name.to_string()),
        name,
        qos: None,
        channel: None,
        requires_authority: true,
        args: Vec::new(),
    };
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("qos") {
                rpc.qos = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("channel") {
                rpc.channel = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("id") {
                let lit: LitInt = meta.value()?.parse()?;
                rpc.id = lit.base10_parse()?;
            } else if meta.path.is_ident("requires_authority") && kind == Kind::Command {
                let lit: LitBool = meta.value()?.parse()?;
                rpc.requires_authority = lit.value;
            } else {
                return Err(meta.error(
                    "expected `qos = Kind`, `channel = N`, `id = N`, or (on commands) \
                     `requires_authority = false`",
                ));
            }
            Ok(())
        })?;
    }
    let sig = &method.sig;
    if !sig.generics.params.is_empty() || sig.asyncness.is_some() {
        return Err(syn::Error::new_spanned(sig, "an RPC cannot be generic or async"));
    }
    if returns_a_value(&sig.output) {
        return Err(syn::Error::new_spanned(
            &sig.output,
            "an RPC cannot return a value: it runs on the other side and nothing receives what \
             it returns; remove the return type, and send an answer back as an RPC of its own \
             (a `#[target_rpc]` to the command's sender, say)",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
        _ => {
            return Err(syn::Error::new_spanned(
                sig,
                "an RPC takes `&mut self`, then its context (`&mut ServerCtx` for a command, \
                 `&mut ClientCtx` for a client or target RPC), then its arguments",
            ));
        }
    }
    check_context(kind, sig, inputs.next())?;
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(typed) = input else { unreachable!("only the first can be self") };
        check_owned(&typed.ty)?;
        let ident = match &*typed.pat {
            Pat::Ident(pat) => pat.ident.clone(),
            _ => format_ident!("__arg{}", i),
        };
        rpc.args.push((ident, (*typed.ty).clone()));
    }
    Ok(Some(rpc))
}

/// Whether a method's return type is anything but `()`.
fn returns_a_value(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => !matches!(&**ty, Type::Tuple(unit) if unit.elems.is_empty()),
    }
}

/// The RPC's second parameter must be its context: `&mut ServerCtx<'_>` for a command,
/// `&mut ClientCtx<'_>` for a client or target RPC (named by its last path segment, so
/// `sturnus_object::ServerCtx` works too).
fn check_context(kind: Kind, sig: &syn::Signature, second: Option<&FnArg>) -> syn::Result<()> {
    let (attribute, context, runs) = match kind {
        Kind::Command => ("command", "ServerCtx", "runs on the server"),
        Kind::ClientRpc => ("client_rpc", "ClientCtx", "runs on the clients"),
        Kind::TargetRpc => ("target_rpc", "ClientCtx", "runs on a client"),
    };
    let is_context = |ty: &Type| match ty {
        Type::Reference(r) if r.mutability.is_some() => match &*r.elem {
            Type::Path(p) => {
                p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == context)
            }
            _ => false,
        },
        _ => false,
    };
    let name = &sig.ident;
    // What to write instead: the signature with the context put back in second place.
    let rest: Vec<String> = sig
        .inputs
        .iter()
        .skip(1)
        .filter(
            |input| !matches!(input, FnArg::Typed(t) if is_context(&t.ty) || wrong_context(&t.ty)),
        )
        .map(pretty)
        .collect();
    let mut suggested = format!("fn {name}(&mut self, ctx: &mut {context}<'_>");
    for arg in &rest {
        suggested.push_str(", ");
        suggested.push_str(arg);
    }
    suggested.push(')');
    match second {
        Some(FnArg::Typed(typed)) if is_context(&typed.ty) => Ok(()),
        Some(found) => Err(syn::Error::new_spanned(
            found,
            format!(
                "a `#[{attribute}]` {runs}: its second parameter is its context, \
                 `&mut {context}<'_>`; write `{suggested}`"
            ),
        )),
        None => Err(syn::Error::new_spanned(
            &sig.inputs,
            format!(
                "a `#[{attribute}]` {runs}: it takes its context, `&mut {context}<'_>`, after \
                 `&mut self`; write `{suggested}`"
            ),
        )),
    }
}

/// Whether `ty` is a context of either side (`&mut ServerCtx` / `&mut ClientCtx`): one given
/// where the other belongs is replaced, not kept, in the suggested signature.
fn wrong_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => match &*r.elem {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "ServerCtx" || s.ident == "ClientCtx"),
            _ => false,
        },
        _ => false,
    }
}

/// RPC arguments are decoded from the network into owned values: a reference (anywhere in the
/// type) is refused with the owned type to take instead.
fn check_owned(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::Reference(reference) => {
            let owned = match &*reference.elem {
                Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
                Type::Slice(slice) => format!("Vec<{}>", pretty(&slice.elem)),
                Type::Path(p) if p.path.is_ident("Path") => "PathBuf".to_owned(),
                elem => pretty(elem),
            };
            Err(syn::Error::new_spanned(
                reference,
                format!(
                    "an RPC's arguments are decoded from the network into owned values: take \
                     `{owned}` instead of `{}`",
                    pretty(reference),
                ),
            ))
        }
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_owned(&qself.ty)?;
            }
            for segment in &path.path.segments {
                if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        if let syn::GenericArgument::Type(ty) = arg {
                            check_owned(ty)?;
                        }
                    }
                }
            }
            Ok(())
        }
        Type::Tuple(tuple) => tuple.elems.iter().try_for_each(check_owned),
        Type::Array(array) => check_owned(&array.elem),
        Type::Slice(slice) => check_owned(&slice.elem),
        Type::Paren(paren) => check_owned(&paren.elem),
        Type::Group(group) => check_owned(&group.elem),
        _ => Ok(()),
    }
}

/// The impl block without its RPC attributes (after an error: the methods stay plain methods).
pub(crate) fn strip(mut item: ItemImpl) -> ItemImpl {
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            method.attrs.retain(|a| Kind::of(a).is_none());
        }
    }
    item
}

/// Tokens as a person writes them (`Vec<u8>`, not `Vec < u8 >`), for messages.
fn pretty(tokens: &impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let prev = out.chars().last();
        let glue_after = matches!(c, '&' | '<' | '\'') || (c == ':' && next == Some(':'));
        out.push(c);
        if glue_after && next == Some(' ') {
            chars.next();
        }
        if c == ' ' && matches!(next, Some('<' | '>' | ',' | ')' | ':')) && prev != Some(',') {
            // `a : b` keeps no space before the colon; `a :: b` none on either side.
            out.pop();
        }
    }
    out.replace(":: ", "::")
}

pub(crate) fn expand(options: Options, mut item: ItemImpl) -> syn::Result<TokenStream2> {
    if !item.generics.params.is_empty() || item.trait_.is_some() {
        return Err(syn::Error::new_spanned(
            &item.self_ty,
            "#[network_rpcs] goes on an inherent impl block of a non-generic type",
        ));
    }
    let krate = match &options.krate {
        Some(path) => path.to_token_stream(),
        None => crate::layer_path(crate::Layer::Object),
    };
    let mut rpcs = Vec::new();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            if let Some(rpc) = take_rpc(method)? {
                rpcs.push(rpc);
            }
        }
    }
    for (i, a) in rpcs.iter().enumerate() {
        if let Some(b) = rpcs[..i].iter().find(|b| b.id == a.id) {
            let text = format!(
                "RPCs `{}` and `{}` have the same id {:#06x}; pin one with `id = N`",
                b.name, a.name, a.id
            );
            return Err(syn::Error::new_spanned(&a.name, text));
        }
    }
    let self_ty = &item.self_ty;
    let type_name = match &**self_ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    }
    .ok_or_else(|| syn::Error::new_spanned(self_ty, "expected a type name"))?;
    let trait_name = format_ident!("{}Rpcs", type_name);
    let vis = options.vis.unwrap_or_else(|| syn::parse_quote!(pub));

    let mut infos = Vec::new();
    let mut arms = Vec::new();
    let mut decls = Vec::new();
    let mut defs = Vec::new();
    for rpc in &rpcs {
        let Rpc { name, id, requires_authority, .. } = rpc;
        let id = LitInt::new(&id.to_string(), Span::call_site());
        let name_str = name.to_string();
        let (kind, side) = match rpc.kind {
            Kind::Command => (quote!(Command), quote!(Server)),
            Kind::ClientRpc => (quote!(ClientRpc), quote!(Client)),
            Kind::TargetRpc => (quote!(TargetRpc), quote!(Client)),
        };
        let qos = on_channel(&krate, rpc.qos.as_ref(), rpc.channel.as_ref());
        let info = quote! {
            #krate::RpcInfo::new(#krate::RpcKind::#kind, #name_str, #qos, #requires_authority)
        };
        infos.push(quote!(#id => ::core::option::Option::Some(#info),));
        let names: Vec<&Ident> = rpc.args.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = rpc.args.iter().map(|(_, t)| t).collect();
        arms.push(quote! {
            (#id, #krate::RpcContext::#side(__ctx)) => {
                let ( #( #names, )* ): ( #( #types, )* ) = #krate::__private::decode_args(__args)?;
                self.#name(__ctx, #( #names ),*);
                ::core::result::Result::Ok(())
            }
        });
        let (sink, to, to_arg, doc) = match rpc.kind {
            Kind::Command => (
                quote!(#krate::CommandSink),
                quote!(),
                quote!(),
                format!("Sends the command [`{type_name}::{name}`] to the server."),
            ),
            Kind::ClientRpc => (
                quote!(#krate::RpcSink),
                quote!(),
                quote!(::core::option::Option::None,),
                format!("Runs [`{type_name}::{name}`] on every client observing the object."),
            ),
            Kind::TargetRpc => (
                quote!(#krate::RpcSink),
                quote!(__to: #krate::PlayerId,),
                quote!(::core::option::Option::Some(__to),),
                format!("Runs [`{type_name}::{name}`] on player `__to`'s client."),
            ),
        };
        let sig = quote! {
            fn #name(&self, __via: &mut impl #sink, #to #( #names: #types ),*)
                -> ::core::result::Result<(), #krate::ObjectError>
        };
        decls.push(quote!(#[doc = #doc] #sig;));
        let call = quote!(#krate::RpcCall::new(*self, #krate::RpcId(#id), #info));
        let send = match rpc.kind {
            Kind::Command => quote!(__via.send_command(#call, &( #( &#names, )* ))),
            _ => quote!(__via.send_rpc(#call, #to_arg &( #( &#names, )* ))),
        };
        defs.push(quote!(#sig { #send }));
    }
    let trait_doc = format!(
        "The RPCs of [`{type_name}`], called on a handle (`Obj<{type_name}>`): commands go \
         through a `CommandSink` (a client's object manager), client and target RPCs through an \
         `RpcSink` (the server's object manager, or a command's context)."
    );
    Ok(quote! {
        #item

        #[automatically_derived]
        impl #krate::__private::Rpcs for #self_ty {
            fn rpc_info(__id: #krate::RpcId) -> ::core::option::Option<#krate::RpcInfo> {
                match __id.0 {
                    #( #infos )*
                    _ => ::core::option::Option::None,
                }
            }

            fn invoke_rpc(
                &mut self,
                __id: #krate::RpcId,
                __args: &[u8],
                __ctx: #krate::RpcContext<'_, '_>,
            ) -> ::core::result::Result<(), #krate::ReadError> {
                match (__id.0, __ctx) {
                    #( #arms )*
                    _ => ::core::result::Result::Err(#krate::ReadError::UnknownOperation),
                }
            }
        }

        #[doc = #trait_doc]
        #vis trait #trait_name {
            #( #decls )*
        }

        #[automatically_derived]
        impl #trait_name for #krate::Obj<#self_ty> {
            #( #defs )*
        }
    })
}

/// `Option<OnChannel>` for a `qos = Kind` or `channel = N` option (the channel wins).
pub(crate) fn on_channel(
    krate: &TokenStream2,
    qos: Option<&Ident>,
    channel: Option<&syn::Expr>,
) -> TokenStream2 {
    match (channel, qos) {
        (Some(channel), _) => quote!(::core::option::Option::Some(
            #krate::OnChannel::Id(#krate::ChannelId(#channel))
        )),
        (None, Some(kind)) => {
            quote!(::core::option::Option::Some(#krate::OnChannel::Kind(#krate::Qos::#kind)))
        }
        (None, None) => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc_of(method: ImplItemFn) -> syn::Result<Option<Rpc>> {
        let mut method = method;
        take_rpc(&mut method)
    }

    #[test]
    fn an_rpc_that_returns_a_value_is_refused_with_what_to_do() {
        let command: ImplItemFn = syn::parse_quote! {
            #[command]
            fn fire(&mut self, ctx: &mut ServerCtx<'_>, dir: i32) -> bool { true }
        };
        let err = rpc_of(command).err().expect("a command returning a value is an error");
        let text = err.to_string();
        assert!(text.contains("cannot return a value"), "{text}");
        assert!(text.contains("remove the return type"), "{text}");
        let client_rpc: ImplItemFn = syn::parse_quote! {
            #[client_rpc]
            fn explode(&mut self, ctx: &mut ClientCtx<'_>) -> u32 { 0 }
        };
        assert!(rpc_of(client_rpc).is_err());
    }

    #[test]
    fn an_rpc_returning_nothing_or_unit_is_accepted() {
        let plain: ImplItemFn = syn::parse_quote! {
            #[command]
            fn fire(&mut self, ctx: &mut ServerCtx<'_>, dir: i32) {}
        };
        let unit: ImplItemFn = syn::parse_quote! {
            #[command]
            fn poke(&mut self, ctx: &mut ServerCtx<'_>) -> () {}
        };
        assert!(rpc_of(plain).is_ok_and(|rpc| rpc.is_some()));
        assert!(rpc_of(unit).is_ok_and(|rpc| rpc.is_some()));
    }
}
