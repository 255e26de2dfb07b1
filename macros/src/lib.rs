//! `#[kernel(...)]`: shadergen kernels emitted and validated while your crate compiles.
//!
//! ```text
//! #[kernel(bits = 3, group = 64, op = matvec, scheme = sym, k = 4096)] pub struct Proj;
//!     │ attribute arguments, each checked on its own span (all errors reported together)
//!     ▼
//! codegen::Format::from_bits + codegen::KernelSpec::new        (one spec per target × tier)
//!     ├─► codegen::wgsl::emit  (render + naga parse/validate + MSL/HLSL/SPIR-V) ─► Proj::WGSL
//!     └─► codegen::wasm::emit  (WAT → binary + wasmparser validation)  ─► Proj::WASM_SIMD / WASM_SCALAR
//!     ▼
//! impl Proj { consts; fn format(); fn run(rt, w, x[, m]) ─► runtime::Runtime::run(Op, w, x, m) }
//! ```
//!
//! The macro is thin: every kernel is emitted and validated by `shadergen-codegen`, exactly
//! as the CLI does, so an invalid kernel is a compile error (with codegen's message) rather
//! than a run-time one. The user's struct is emitted unchanged; on an error it is still
//! emitted, next to the `compile_error!`s, so IDEs keep resolving it.
//!
//! # Arguments
//!
//! | argument | values | default |
//! | --- | --- | --- |
//! | `bits` | `2`, `3`, `4`, `8`, or `16` (the unquantized f16 baseline) | required |
//! | `group` | `32`, `64`, `128` | `32` |
//! | `op` | `matvec`, `matmul` | `matvec` |
//! | `scheme` | `sym`, `asym` | `sym` |
//! | `k` | a positive multiple of `group` (checked at compile time) | none |
//!
//! # What it generates
//!
//! On `pub struct Proj;`, an `impl Proj` with `BITS`, `GROUP`, `OP`, `NAME` (the kernel name
//! without tier, such as `matvec_q3g64s`), `WGSL` (`(target, tier, text)` for every target's
//! every tier), `WASM_SIMD`, `WASM_SCALAR`, `format()`, and a typed `run`:
//! `run(rt, w, x)` for matvec, `run(rt, w, x, m)` for matmul. `run` refuses weights of
//! another format with `RuntimeError::Shape`.
//!
//! The generated code names only `::runtime::...`: the crate using the attribute must
//! depend on `shadergen-runtime` under the name `runtime`:
//!
//! ```toml
//! [dependencies]
//! runtime = { package = "shadergen-runtime", version = "0.1" }
//! macros = { package = "shadergen-macros", version = "0.1" }
//! ```

#![deny(missing_docs)]

use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, Meta, Token};

/// Declares a shadergen kernel on a struct: emits and validates its WGSL (every target,
/// every tier) and WebAssembly at compile time, and gives the struct constants and a typed
/// `run`. See the [crate documentation](crate) for the arguments and what is generated.
#[proc_macro_attribute]
pub fn kernel(attr: proc_macro::TokenStream, item: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand(attr.into(), item.into()).into()
}

/// The arguments once checked.
struct Args {
    format: Format,
    op: Op,
}

const ARGUMENTS: &str = "bits, group, op, scheme, k";

fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let args = match parse_args(attr) {
        Ok(a) => Some(a),
        Err(e) => {
            push(e);
            None
        }
    };
    let target = match target_struct(&item) {
        Ok(t) => Some(t),
        Err(e) => {
            push(e);
            None
        }
    };
    let generated = match (args, target) {
        (Some(args), Some(input)) => match generate(&args, &input) {
            Ok(ts) => Some(ts),
            Err(e) => {
                push(e);
                None
            }
        },
        _ => None,
    };
    let errors = errors.map(|e| e.to_compile_error());
    quote! {
        #item
        #generated
        #errors
    }
}

/// Parses and checks every argument, collecting every error.
fn parse_args(attr: TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut seen: Vec<String> = Vec::new();
    let (mut bits, mut group, mut op, mut scheme, mut k) = (None, None, None, None, None);
    for meta in &metas {
        let nv = match meta {
            Meta::NameValue(nv) => nv,
            other => {
                let name = other.path().to_token_stream().to_string().replace(' ', "");
                if known(&name) {
                    push(syn::Error::new_spanned(other, format!("expected `{name} = ...`")));
                } else {
                    push(syn::Error::new_spanned(
                        other.path(),
                        format!("unknown argument `{name}`: expected {ARGUMENTS}"),
                    ));
                }
                continue;
            }
        };
        let name = nv.path.to_token_stream().to_string().replace(' ', "");
        if !known(&name) {
            push(syn::Error::new_spanned(&nv.path, format!("unknown argument `{name}`: expected {ARGUMENTS}")));
            continue;
        }
        if seen.contains(&name) {
            push(syn::Error::new_spanned(nv, format!("duplicate argument `{name}`")));
            continue;
        }
        seen.push(name.clone());
        let found = nv.value.to_token_stream().to_string();
        let bad = |expected: &str| {
            syn::Error::new_spanned(nv, format!("expected `{name} = {expected}`, found `{name} = {found}`"))
        };
        match name.as_str() {
            "bits" => match int(&nv.value) {
                Some(b) if [2, 3, 4, 8, 16].contains(&b) => bits = Some((b as u32, nv)),
                _ => push(bad("2 | 3 | 4 | 8 | 16")),
            },
            "group" => match int(&nv.value) {
                Some(g) if Format::GROUP_SIZES.iter().any(|&s| s as u64 == g) => group = Some(g as u32),
                _ => push(bad("32 | 64 | 128")),
            },
            // KV kernels need a cache, not weights: they come from `shadergen emit` and codegen.
            "op" => match ident(&nv.value).and_then(|s| s.parse::<Op>().ok()).filter(|o| !o.is_kv()) {
                Some(o) => op = Some(o),
                None => push(bad("matvec | matmul")),
            },
            "scheme" => match ident(&nv.value).and_then(|s| s.parse::<Scheme>().ok()) {
                Some(s) => scheme = Some(s),
                None => push(bad("sym | asym")),
            },
            _ => match int(&nv.value) {
                Some(v) if v > 0 => k = Some((v, nv)),
                _ => push(bad("<a positive multiple of the group size>")),
            },
        }
    }
    let format = match bits {
        Some((b, nv)) => match Format::from_bits(b, group.unwrap_or(32), scheme.unwrap_or(Scheme::Sym)) {
            Ok(f) => Some(f),
            Err(e) => {
                push(syn::Error::new_spanned(nv, e.to_string()));
                None
            }
        },
        None if !seen.iter().any(|s| s == "bits") => {
            push(syn::Error::new(Span::call_site(), "missing `bits = 2 | 3 | 4 | 8 | 16`"));
            None
        }
        None => None,
    };
    if let (Some(f), Some((k, nv))) = (format, k)
        && f.check_k(k).is_err()
    {
        push(syn::Error::new_spanned(nv, format!("k = {k} is not a multiple of group = {}", f.group_size())));
    }
    match (errors, format) {
        (Some(e), _) => Err(e),
        (None, Some(format)) => Ok(Args { format, op: op.unwrap_or(Op::Matvec) }),
        (None, None) => Err(syn::Error::new(Span::call_site(), "missing `bits = 2 | 3 | 4 | 8 | 16`")),
    }
}

fn known(name: &str) -> bool {
    ["bits", "group", "op", "scheme", "k"].contains(&name)
}

fn int(e: &Expr) -> Option<u64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn ident(e: &Expr) -> Option<String> {
    match e {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        _ => None,
    }
}

/// The struct the attribute is on, or an error on the item's keyword.
fn target_struct(item: &TokenStream) -> syn::Result<syn::DeriveInput> {
    match syn::parse2::<syn::DeriveInput>(item.clone()) {
        Ok(input) => match &input.data {
            syn::Data::Struct(_) => Ok(input),
            syn::Data::Enum(e) => Err(not_a_struct(e.enum_token.span, "an enum")),
            syn::Data::Union(u) => Err(not_a_struct(u.union_token.span, "a union")),
        },
        Err(_) => {
            // Not a struct, enum or union: point at the item's keyword (`fn`, `impl`, ...).
            let mut tokens = item.clone().into_iter().peekable();
            let mut keyword = None;
            while let Some(t) = tokens.next() {
                match &t {
                    TokenTree::Punct(p) if p.as_char() == '#' => {
                        tokens.next(); // the attribute's brackets
                    }
                    TokenTree::Ident(i) if i == "pub" => {
                        if let Some(TokenTree::Group(_)) = tokens.peek() {
                            tokens.next(); // pub(crate)
                        }
                    }
                    TokenTree::Ident(i) if ["unsafe", "async", "const", "extern"].contains(&i.to_string().as_str()) => {
                        keyword.get_or_insert((i.span(), format!("`{i}` item")));
                    }
                    TokenTree::Ident(i) => {
                        let what = format!("`{i}`");
                        keyword = Some(keyword.map_or((i.span(), what.clone()), |(s, _)| (s, what)));
                        break;
                    }
                    _ => {
                        keyword = Some((t.span(), format!("`{t}`")));
                        break;
                    }
                }
            }
            let (span, what) = keyword.unwrap_or((Span::call_site(), "nothing".into()));
            Err(not_a_struct(span, &what))
        }
    }
}

fn not_a_struct(span: Span, what: &str) -> syn::Error {
    syn::Error::new(span, format!("#[kernel] goes on a struct (such as `pub struct Proj;`), found {what}"))
}

/// Emits every kernel through codegen and builds the `impl`.
fn generate(args: &Args, input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let Args { format, op } = *args;
    let fail = |what: String| syn::Error::new(Span::call_site(), what);
    let mut wgsl = Vec::new();
    for target in Target::ALL {
        for &tier in target.info().tiers {
            let spec = KernelSpec::new(op, format, target, tier)
                .map_err(|e| fail(format!("shadergen: no {target}/{tier} kernel: {e}")))?;
            let emitted = codegen::wgsl::emit(&spec)
                .map_err(|e| fail(format!("shadergen: emitting {} for {target} failed: {e}", spec.name())))?;
            let (t, tier, text) = (target.name(), tier.name(), emitted.text);
            wgsl.push(quote! { (#t, #tier, #text) });
        }
    }
    let spec = KernelSpec::new(op, format, Target::Native, Tier::Base)
        .map_err(|e| fail(format!("shadergen: no native/base kernel: {e}")))?;
    let wasm = codegen::wasm::emit(&spec)
        .map_err(|e| fail(format!("shadergen: emitting the WebAssembly of {} failed: {e}", spec.name())))?;
    let simd = proc_macro2::Literal::byte_string(&wasm.simd);
    let scalar = proc_macro2::Literal::byte_string(&wasm.scalar);

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let bits = format.bits();
    let group = format.group_size();
    let op_name = op.name();
    let name = format!("{}_{}", op.name(), format.tag());
    let scheme = match format.scheme() {
        Scheme::Sym => quote!(::runtime::codegen::Scheme::Sym),
        Scheme::Asym => quote!(::runtime::codegen::Scheme::Asym),
    };
    let check = quote! {
        if w.format() != Self::format() {
            return ::core::result::Result::Err(::runtime::RuntimeError::Shape {
                kernel: ::std::string::String::from(Self::NAME),
                message: ::std::format!(
                    "weights are {} but `{}` is declared for {}",
                    w.format(),
                    ::core::stringify!(#ident),
                    Self::format()
                ),
            });
        }
    };
    let run = match op {
        Op::Matvec => quote! {
            /// `y[N] = W · x` on `rt`'s backend. Weights of another format are an error.
            pub fn run(
                rt: &::runtime::Runtime,
                w: &::runtime::Uploaded,
                x: &[f32],
            ) -> ::core::result::Result<::std::vec::Vec<f32>, ::runtime::RuntimeError> {
                #check
                rt.run(::runtime::codegen::Op::Matvec, w, x, 1)
            }
        },
        Op::Matmul => quote! {
            /// `Y[M x N] = X[M x K] · Wᵀ` on `rt`'s backend. Weights of another format are an error.
            pub fn run(
                rt: &::runtime::Runtime,
                w: &::runtime::Uploaded,
                x: &[f32],
                m: usize,
            ) -> ::core::result::Result<::std::vec::Vec<f32>, ::runtime::RuntimeError> {
                #check
                rt.run(::runtime::codegen::Op::Matmul, w, x, m)
            }
        },
        Op::KvAppend | Op::KvAttend => unreachable!("parse_args refuses KV ops"),
    };
    Ok(quote! {
        #[allow(dead_code)]
        impl #impl_generics #ident #ty_generics #where_clause {
            /// Bits per weight code (16: the unquantized f16 baseline).
            pub const BITS: u32 = #bits;
            /// Codes per scale along K.
            pub const GROUP: u32 = #group;
            /// `matvec` or `matmul`.
            pub const OP: &'static str = #op_name;
            /// The kernel name without its tier, such as `matvec_q3g64s`.
            pub const NAME: &'static str = #name;
            /// `(target, tier, text)` for every target's every tier, validated with naga at
            /// compile time.
            pub const WGSL: &'static [(&'static str, &'static str, &'static str)] = &[#(#wgsl),*];
            /// The WebAssembly twin with simd128, validated at compile time.
            pub const WASM_SIMD: &'static [u8] = #simd;
            /// The WebAssembly twin without SIMD, validated at compile time.
            pub const WASM_SCALAR: &'static [u8] = #scalar;

            /// The weight format this kernel reads.
            pub fn format() -> ::runtime::codegen::Format {
                ::runtime::codegen::Format::from_bits(Self::BITS, Self::GROUP, #scheme)
                    .expect("checked by #[kernel] at compile time")
            }

            #run
        }
    })
}
