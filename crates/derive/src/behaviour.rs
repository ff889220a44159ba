//! `#[derive(NetworkBehaviour)]`.

use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, format_ident, quote};
use syn::{Data, DeriveInput, Fields, Ident, LitInt, Path};

struct SyncField {
    ident: Ident,
    hook: Option<Path>,
}

#[derive(Default)]
struct Options {
    interval_ms: Option<u64>,
    qos: Option<Ident>,
    channel: Option<syn::Expr>,
    krate: Option<Path>,
}

fn parse_options(input: &DeriveInput) -> syn::Result<Options> {
    let mut options = Options::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("network")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("sync_interval_ms") {
                let lit: LitInt = meta.value()?.parse()?;
                options.interval_ms = Some(lit.base10_parse()?);
            } else if meta.path.is_ident("qos") {
                options.qos = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("channel") {
                options.channel = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                options.krate = Some(meta.value()?.parse()?);
            } else {
                return Err(
                    meta.error("expected `sync_interval_ms = N`, `qos = Kind`, `channel = N` or `crate = path`")
                );
            }
            Ok(())
        })?;
    }
    Ok(options)
}

fn sync_fields(input: &DeriveInput) -> syn::Result<Vec<SyncField>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "NetworkBehaviour can only be derived for a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        if data.fields.is_empty() {
            return Ok(Vec::new());
        }
        return Err(syn::Error::new_spanned(
            &data.fields,
            "NetworkBehaviour needs named fields to mark with #[sync]",
        ));
    };
    let mut out = Vec::new();
    for field in &fields.named {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("sync")) {
            let mut hook = None;
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("hook") {
                        hook = Some(meta.value()?.parse()?);
                        Ok(())
                    } else {
                        Err(meta.error("expected `hook = path::to::function`"))
                    }
                })?;
            }
            let ident = field.ident.clone().expect("named fields have names");
            out.push(SyncField { ident, hook });
        }
    }
    Ok(out)
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "NetworkBehaviour cannot be derived for a generic type",
        ));
    }
    let options = parse_options(input)?;
    let fields = sync_fields(input)?;
    let krate = match &options.krate {
        Some(path) => path.to_token_stream(),
        None => crate::layer_path(crate::Layer::Object),
    };
    let name = &input.ident;
    let name_str = name.to_string();
    let count = fields.len();
    let idents: Vec<&Ident> = fields.iter().map(|f| &f.ident).collect();
    let index: Vec<usize> = (0..count).collect();
    let field = quote!(#krate::SyncField);
    let private = quote!(#krate::__private);

    // Reading changes: each field's changes are gathered (for hooked fields), and the hooks run
    // once every field is applied, so a hook sees the whole new state.
    let mut read_changes = Vec::new();
    let mut read_full_changes = Vec::new();
    let mut after_read = Vec::new();
    let mut local_hooks = Vec::new();
    let mut local_calls = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let ident = &f.ident;
        match &f.hook {
            Some(hook) => {
                let changes = format_ident!("__changes_{}", i);
                read_changes.push(quote! {
                    let mut #changes = #private::changes_for(&self.#ident);
                    if __dirty[#i] {
                        #field::read_delta(&mut self.#ident, __input, ::core::option::Option::Some(&mut #changes))?;
                    }
                });
                read_full_changes.push(quote! {
                    let mut #changes = #private::changes_for(&self.#ident);
                    #field::read_full_changes(&mut self.#ident, __input, ::core::option::Option::Some(&mut #changes))?;
                });
                after_read.push(quote!(#private::call_hooks(self, &#changes, #hook);));
                let local = format_ident!("__local_{}", i);
                local_hooks.push(quote! {
                    let mut #local = #private::changes_for(&self.#ident);
                    #field::local_changes(&mut self.#ident, &mut #local);
                });
                local_calls.push(quote!(#private::call_hooks(self, &#local, #hook);));
            }
            None => {
                read_changes.push(quote! {
                    if __dirty[#i] {
                        #field::read_delta(&mut self.#ident, __input, ::core::option::Option::None)?;
                    }
                });
                read_full_changes.push(quote! {
                    #field::read_full_changes(&mut self.#ident, __input, ::core::option::Option::None)?;
                });
            }
        }
    }
    let interval = match options.interval_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let qos = crate::rpcs::on_channel(&krate, options.qos.as_ref(), options.channel.as_ref());
    let result = quote!(::core::result::Result);
    Ok(quote! {
        #[automatically_derived]
        impl #krate::NetworkBehaviour for #name {
            fn write_full(&self, __out: &mut ::std::vec::Vec<u8>) -> #result<(), #private::postcard::Error> {
                #( #field::write_full(&self.#idents, __out)?; )*
                #result::Ok(())
            }

            fn write_changes(&self, __out: &mut ::std::vec::Vec<u8>) -> #result<(), #private::postcard::Error> {
                let __dirty: [bool; #count] = [ #( #field::is_dirty(&self.#idents), )* ];
                #private::write_mask(&__dirty, __out);
                #( if __dirty[#index] { #field::write_delta(&self.#idents, __out)?; } )*
                #result::Ok(())
            }

            fn read_full(&mut self, __input: &mut &[u8]) -> #result<(), #krate::ReadError> {
                #( #field::read_full(&mut self.#idents, __input)?; )*
                #result::Ok(())
            }

            fn read_full_changes(&mut self, __input: &mut &[u8]) -> #result<(), #krate::ReadError> {
                #( #read_full_changes )*
                #( #after_read )*
                #result::Ok(())
            }

            fn read_changes(&mut self, __input: &mut &[u8]) -> #result<(), #krate::ReadError> {
                let mut __dirty = [false; #count];
                #private::read_mask(__input, &mut __dirty)?;
                #( #read_changes )*
                #( #after_read )*
                #result::Ok(())
            }

            fn run_local_hooks(&mut self) {
                // Every change is gathered, the fields marked clean, then the hooks run: what a
                // hook changes is a new change, left dirty for the next sync.
                #( #local_hooks )*
                #( #field::clear_dirty(&mut self.#idents); )*
                #( #local_calls )*
            }

            fn is_dirty(&self) -> bool {
                false #( || #field::is_dirty(&self.#idents) )*
            }

            fn clear_dirty(&mut self) {
                #( #field::clear_dirty(&mut self.#idents); )*
            }

            fn sync_settings(&self) -> #krate::SyncSettings {
                #krate::SyncSettings::new(#interval, #qos)
            }

            fn rpc_info(&self, __id: #krate::RpcId) -> ::core::option::Option<#krate::RpcInfo> {
                #[allow(unused_imports, reason = "method resolution uses one of the two")]
                use #private::{WithRpcs as _, WithoutRpcs as _};
                (&#private::Probe::<Self>::new()).info(__id)
            }

            fn invoke_rpc(
                &mut self,
                __id: #krate::RpcId,
                __args: &[u8],
                __ctx: #krate::RpcContext<'_, '_>,
            ) -> #result<(), #krate::ReadError> {
                #[allow(unused_imports, reason = "method resolution uses one of the two")]
                use #private::{WithRpcs as _, WithoutRpcs as _};
                (&#private::Probe::<Self>::new()).invoke(self, __id, __args, __ctx)
            }

            fn as_any(&self) -> &dyn ::core::any::Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn ::core::any::Any {
                self
            }

            fn type_name(&self) -> &'static str {
                ::core::concat!(::core::module_path!(), "::", #name_str)
            }
        }
    })
}
