//! # sturnus-derive
//!
//! Derive macros for Sturnus. Use them through `sturnus-message` (or the `sturnus` facade),
//! which re-exports them; the generated code names `::sturnus_message`.
//!
//! - [`macro@Message`] makes a `serde` type a network message with a stable id.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
/// - `#[message(crate = some::path)]` names the `sturnus_message` crate when it is reached
///   through another path (a facade crate).
///
/// Generic types are refused: every instantiation would share one id. Implement the trait by
/// hand for them, with a distinct id per instantiation.
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    id: Option<u16>,
    qos: Option<Ident>,
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
            } else if meta.path.is_ident("crate") {
                options.krate = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected `id = N`, `qos = Kind` or `crate = path`"));
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
        None => quote!(::sturnus_message),
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
    Ok(quote! {
        impl #krate::Message for #name {
            const ID: #krate::MessageId = #id;
            const NAME: &'static str = #path;
            #qos
        }
    })
}
