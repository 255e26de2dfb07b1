//! The WebAssembly twins of kv-append and kv-attend (`docs/FORMAT.md` §11), SIMD and scalar.
//!
//! As for matvec, the arithmetic decisions (which shifts, masks and shuffles pack or unpack
//! which codes) are made here and `templates/kv_append.wat` / `templates/kv_attend.wat` lay
//! the modules out; one template per op serves both variants (`c.simd`).
//!
//! ABI (the manifest's `wasm` object, [`abi`]): the module exports `memory` and one function
//! named like the kernel whose i32 arguments are the byte offsets of the kernel's WGSL
//! bindings, by binding name and in binding order (16-byte aligned, at or above
//! [`super::SCRATCH_BYTES`]): kv-append `(params, codes, scales, mins, window, kv_new)`,
//! kv-attend `(params, codes, scales, mins, window, q, out)`. `params` holds the same 32 bytes
//! as the WGSL uniform (eight u32, §11.5); the other buffers hold the bytes of the WGSL
//! buffers of the same name. kv-append rewrites `codes`, `scales`, `mins` and `window` in
//! place; kv-attend writes `out`. kv-attend needs no `partials`: it runs one online softmax
//! over all tokens (the split structure is a GPU matter).
//!
//! Exactness: kv-append evaluates the f32 operations of `codec::quantize_group` in the same
//! order (wasm's f32 arithmetic is IEEE, so the bytes are exactly `KvCache::append`'s); its
//! SIMD parts are lane-wise copies of those scalar operations (min, max, sub, div, add,
//! floor, clamp) and integer packing.

use super::{Abi, AbiLayout, GROWTH, SCRATCH_BYTES, Wasm, assemble, decode_simd, scalar_code};
use crate::codec::{inv_max_code, planes};
use crate::error::WasmError;
use crate::spec::{BLOCK, KernelSpec, Op};
use askama::Template;

/// Scratch layout (bytes below [`SCRATCH_BYTES`]): one token's head vector as f32 at 0.
const VALUES: u32 = 0;
/// kv-append (scalar): the 32 codes of one block, one byte each.
const CODES: u32 = 512;
/// kv-attend: per query head of the current KV head (at most 8): running max, running sum,
/// this token's weight and rescaling factor, f32 each.
const RUN_MAX: u32 = 512;
const RUN_SUM: u32 = 544;
const WEIGHT: u32 = 576;
const RESCALE: u32 = 608;

const IND: &str = "        ";

/// The manifest's `wasm` object of a KV kernel.
pub(super) fn abi(spec: &KernelSpec) -> Abi {
    let name = spec.name();
    let append = spec.op == Op::KvAppend;
    let mut args = vec!["params", "codes", "scales", "mins", "window"];
    let mut buffers = vec![
        "params: the 32-byte KvParams of docs/FORMAT.md section 11.5 (eight u32, the bytes of the WGSL uniform)",
        "codes: the store's packed codes (docs/FORMAT.md section 11.1)",
        "scales: the store's f16 scales, in pairs",
        "mins: the store's f16 mins, in pairs",
        "window: the f16 residual window, in pairs (one zero word when window = 0)",
    ];
    if append {
        args.push("kv_new");
        buffers[1] = "codes: the store's packed codes (docs/FORMAT.md section 11.1), rewritten in place";
        buffers[2] = "scales: the store's f16 scales, in pairs, rewritten in place";
        buffers[3] = "mins: the store's f16 mins, in pairs, rewritten in place";
        buffers[4] = "window: the f16 residual window, in pairs (one zero word when window = 0), rewritten in place";
        buffers.push("kv_new: f32, the new keys [n_new][kv_heads][head_dim] then the new values");
    } else {
        args.extend(["q", "out"]);
        buffers.push("q: f32, [n_heads][head_dim]");
        buffers.push("out: f32, [n_heads][head_dim], written by the kernel (no partials: one pass over all tokens)");
    }
    Abi {
        simd: format!("{name}.simd.wasm"),
        scalar: format!("{name}.scalar.wasm"),
        simd_features: vec!["simd128"],
        scalar_features: vec![],
        export: name,
        memory: "memory",
        args,
        layout: AbiLayout { scratch_bytes: SCRATCH_BYTES, align: 16, buffers, growth: GROWTH, xq_block_bytes: None },
        tolerance: crate::profile::Tier::Base.tolerance(),
    }
}

/// Everything the KV WAT templates print.
struct KvWat {
    name: String,
    description: String,
    /// The simd128 variant (else no SIMD instruction at all).
    simd: bool,
    /// D, G, groups per row, blocks per row, blocks per group, bytes per block, bytes per row.
    d: u32,
    g: u32,
    gpr: u32,
    blocks: u32,
    bpg: u32,
    block_bytes: u32,
    row_bytes: u32,
    /// f32 literals (exact hex): 1 / the largest code, 1 / sqrt(D).
    inv_maxq: String,
    scale: String,
    /// kv-append: the codes of the block of values at `$va` (into `$c0`/`$c1` or scratch).
    codes: String,
    /// kv-append: those codes packed into the block at `$wb`.
    pack: String,
    /// kv-attend: the dequantized block at `$wb` (scale `$sc`, min `$mi`) into f32 at `$ra`.
    decode: String,
    /// Scratch offsets.
    values: u32,
    code_bytes: u32,
    run_max: u32,
    run_sum: u32,
    weight: u32,
    rescale: u32,
}

#[derive(Template)]
#[template(path = "kv_append.wat")]
struct Append<'a> {
    c: &'a KvWat,
}

#[derive(Template)]
#[template(path = "kv_attend.wat")]
struct Attend<'a> {
    c: &'a KvWat,
}

/// Emits and validates both modules of a KV kernel.
pub(super) fn emit(spec: &KernelSpec) -> Result<Wasm, WasmError> {
    let name = spec.name();
    let mut modules = Vec::with_capacity(2);
    for simd in [true, false] {
        let c = context(spec, simd);
        let text = match spec.op {
            Op::KvAppend => Append { c: &c }.render(),
            _ => Attend { c: &c }.render(),
        }
        .map_err(|source| WasmError::Template { kernel: name.clone(), source })?;
        modules.push(assemble(&name, if simd { "simd" } else { "scalar" }, &text, simd)?);
    }
    let scalar = modules.pop().expect("two modules");
    let simd = modules.pop().expect("two modules");
    Ok(Wasm { name, simd, scalar })
}

fn context(spec: &KernelSpec, simd: bool) -> KvWat {
    let f = spec.format;
    let (d, g, bits) = (spec.head_dim, f.group_size(), f.bits());
    let maxq = f32_hex(f.max_code() as f32);
    KvWat {
        name: spec.name(),
        description: format!(
            "KV cache: {bits}-bit codes, group {g} along head_dim {d}, f16 scale + min; f32 arithmetic"
        ),
        simd,
        d,
        g,
        gpr: d / g,
        blocks: d / BLOCK,
        bpg: g / BLOCK,
        block_bytes: 4 * f.block_words(),
        row_bytes: d * bits / 8,
        inv_maxq: f32_hex(inv_max_code(bits)),
        // The WGSL kernel's constant: 1 / sqrt(D) in f32.
        scale: f32_hex(1.0 / (d as f32).sqrt()),
        codes: if simd { codes_simd(&maxq) } else { codes_scalar(&maxq) },
        pack: if simd { pack_simd(bits) } else { pack_scalar(bits) },
        decode: if simd { decode_kv_simd(spec) } else { decode_kv_scalar(bits) },
        values: VALUES,
        code_bytes: CODES,
        run_max: RUN_MAX,
        run_sum: RUN_SUM,
        weight: WEIGHT,
        rescale: RESCALE,
    }
}

/// A normal f32 as an exact WAT hex literal (`0x1.555556p-2`).
fn f32_hex(x: f32) -> String {
    assert!(x.is_normal(), "constant {x} is not a normal f32");
    let b = x.to_bits();
    let sign = if b >> 31 == 1 { "-" } else { "" };
    let exp = ((b >> 23) & 0xff) as i32 - 127;
    format!("{sign}0x1.{:06x}p{exp}", (b & 0x7f_ffff) << 1)
}

/// `codec::quantize_group`'s code rule, lane-wise: for the 32 f32 values at `$va`,
/// `clamp(floor((v - lo) / s + 0.5), 0, maxq)` (`$lv`, `$sv` splats of lo and s; 0 when
/// s = 0) narrowed to bytes: elements 0..15 in `$c0`, 16..31 in `$c1`.
fn codes_simd(maxq: &str) -> String {
    let quad = |i: u32| {
        format!(
            "(i32x4.trunc_sat_f32x4_u (f32x4.min (f32x4.max (f32x4.floor (f32x4.add (f32x4.div \
             (f32x4.sub (v128.load offset={} (local.get $va)) (local.get $lv)) (local.get $sv)) \
             (v128.const f32x4 0.5 0.5 0.5 0.5))) (v128.const f32x4 0 0 0 0)) (v128.const f32x4 {maxq} {maxq} {maxq} {maxq})))",
            16 * i
        )
    };
    let half = |q: u32| {
        format!(
            "(i8x16.narrow_i16x8_u\n{IND}    (i16x8.narrow_i32x4_u\n{IND}      {}\n{IND}      {})\n{IND}    (i16x8.narrow_i32x4_u\n{IND}      {}\n{IND}      {}))",
            quad(q),
            quad(q + 1),
            quad(q + 2),
            quad(q + 3)
        )
    };
    format!(
        "{IND}(if (f32.eq (local.get $s) (f32.const 0))\n\
         {IND}  (then\n\
         {IND}    (local.set $c0 (v128.const i32x4 0 0 0 0))\n\
         {IND}    (local.set $c1 (v128.const i32x4 0 0 0 0)))\n\
         {IND}  (else\n\
         {IND}    (local.set $sv (f32x4.splat (local.get $s)))\n\
         {IND}    (local.set $lv (f32x4.splat (local.get $lo)))\n\
         {IND}    (local.set $c0 {})\n\
         {IND}    (local.set $c1 {})))\n",
        half(0),
        half(4)
    )
}

/// The scalar code rule for the 32 values at `$va`, one byte each into scratch.
fn codes_scalar(maxq: &str) -> String {
    format!(
        "{IND}(local.set $j (i32.const 0))\n\
         {IND}(loop $code\n\
         {IND}  (i32.store8 offset={CODES} (local.get $j)\n\
         {IND}    (if (result i32) (f32.eq (local.get $s) (f32.const 0))\n\
         {IND}      (then (i32.const 0))\n\
         {IND}      (else (i32.trunc_f32_u (f32.min (f32.max (f32.floor (f32.add (f32.div\n\
         {IND}        (f32.sub (f32.load (i32.add (local.get $va) (i32.shl (local.get $j) (i32.const 2)))) (local.get $lo))\n\
         {IND}        (local.get $s)) (f32.const 0.5))) (f32.const 0)) (f32.const {maxq}))))))\n\
         {IND}  (br_if $code (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (i32.const 32))))\n"
    )
}

/// Packs `$c0`/`$c1` (one code per byte, elements 0..15 and 16..31) into the block at `$wb`
/// (docs/FORMAT.md section 4). Per plane width:
/// - 8: the bytes are the block;
/// - 4: byte j = c[j] | c[16+j] << 4;
/// - 2: byte j (0..7) = c[j] | c[8+j] << 2 | c[16+j] << 4 | c[24+j] << 6: `a = c0 | c1 << 4`
///   gives c[j] | c[16+j] << 4 in lane j, and `a | (a's lanes 8..15) << 2` the rest;
/// - 1 (bit 2 of 3-bit codes): bit 8j + t of the word is bit 2 of element 4t + j; a shuffle
///   puts element 4t + j in lane 8j + t, a shift moves bit 2 to bit 7, `bitmask` collects.
fn pack_simd(bits: u32) -> String {
    let mut out = String::new();
    let (mut word0, mut low) = (0u32, 0u32);
    for &p in planes(bits) {
        let at = 4 * word0;
        // The plane's part of each code, still one per byte.
        let part = |c: &str| {
            let mut v = format!("(local.get {c})");
            if low != 0 {
                v = format!("(i8x16.shr_u {v} (i32.const {low}))");
            }
            if p + low < bits {
                let m = (1u32 << p) - 1;
                v = format!("(v128.and {v} (v128.const i8x16 {}))", vec![m.to_string(); 16].join(" "));
            }
            v
        };
        match p {
            8 => {
                out += &format!("{IND}(v128.store offset={at} (local.get $wb) {})\n", part("$c0"));
                out += &format!("{IND}(v128.store offset={} (local.get $wb) {})\n", at + 16, part("$c1"));
            }
            4 => {
                out += &format!(
                    "{IND}(v128.store offset={at} (local.get $wb) (v128.or {} (i8x16.shl {} (i32.const 4))))\n",
                    part("$c0"),
                    part("$c1")
                );
            }
            2 => {
                out += &format!(
                    "{IND}(local.set $a (v128.or {} (i8x16.shl {} (i32.const 4))))\n",
                    part("$c0"),
                    part("$c1")
                );
                out += &format!(
                    "{IND}(i64.store offset={at} (local.get $wb) (i64x2.extract_lane 0 (v128.or (local.get $a) \
                     (i8x16.shl (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $a) (local.get $a)) (i32.const 2)))))\n"
                );
            }
            1 => {
                let lanes =
                    |j0: u32| (0..16).map(|l| (4 * (l % 8) + j0 + l / 8).to_string()).collect::<Vec<_>>().join(" ");
                let mask = |j0: u32| {
                    format!(
                        "(i8x16.bitmask (i8x16.shl (i8x16.shuffle {} (local.get $c0) (local.get $c1)) (i32.const {})))",
                        lanes(j0),
                        7 - low
                    )
                };
                out += &format!(
                    "{IND}(i32.store offset={at} (local.get $wb) (i32.or {} (i32.shl {} (i32.const 16))))\n",
                    mask(0),
                    mask(2)
                );
            }
            _ => unreachable!("planes are 1, 2, 4 or 8 bits"),
        }
        word0 += p;
        low += p;
    }
    out
}

/// Packs the 32 code bytes in scratch into the block at `$wb`: each word is the OR of its
/// elements' plane bits, as `codec::pack_block`.
fn pack_scalar(bits: u32) -> String {
    let mut words: Vec<Vec<String>> = vec![Vec::new(); bits as usize];
    let (mut word0, mut low) = (0u32, 0u32);
    for &p in planes(bits) {
        let bytes = 4 * p;
        for e in 0..BLOCK {
            let byte = e % bytes;
            let shift = 8 * (byte % 4) + p * (e / bytes);
            let mut v = format!("(i32.load8_u offset={} (i32.const 0))", CODES + e);
            if low != 0 {
                v = format!("(i32.shr_u {v} (i32.const {low}))");
            }
            if p + low < bits {
                v = format!("(i32.and {v} (i32.const {}))", (1u32 << p) - 1);
            }
            if shift != 0 {
                v = format!("(i32.shl {v} (i32.const {shift}))");
            }
            words[(word0 + byte / 4) as usize].push(v);
        }
        word0 += p;
        low += p;
    }
    let mut out = String::new();
    for (w, terms) in words.into_iter().enumerate() {
        let mut it = terms.into_iter();
        let mut expr = it.next().expect("every word holds codes");
        for t in it {
            expr = format!("(i32.or {expr}\n{IND}  {t})");
        }
        out += &format!("{IND}(i32.store offset={} (local.get $wb)\n{IND}  {expr})\n", 4 * w);
    }
    out
}

/// The store block at `$wb` dequantized into f32 at `$ra`, four lanes at a time: matvec's
/// decode (codes as f32 in `$q0..$q7`), then `q * s + m` (`$sv`, `$mv`: splats).
fn decode_kv_simd(spec: &KernelSpec) -> String {
    let mut out = decode_simd(spec);
    for i in 0..8 {
        out += &format!(
            "{IND}(v128.store offset={} (local.get $ra) (f32x4.add (f32x4.mul (local.get $q{i}) (local.get $sv)) (local.get $mv)))\n",
            16 * i
        );
    }
    out
}

/// The store block at `$wb` dequantized into f32 at `$ra`, element by element.
fn decode_kv_scalar(bits: u32) -> String {
    (0..BLOCK)
        .map(|e| {
            format!(
                "{IND}(f32.store offset={} (local.get $ra) (f32.add (f32.mul (f32.convert_i32_u {}) (local.get $sc)) (local.get $mi)))\n",
                4 * e,
                scalar_code(bits, e)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::f32_hex;

    #[test]
    fn hex_literals_are_exact() {
        for x in [1.0f32, 0.5, 1.0 / 3.0, 1.0 / 255.0, 0.125, 1.0 / 128f32.sqrt(), -2.75, 255.0, 3.0] {
            let text = f32_hex(x);
            let (m, e) = text.trim_start_matches('-').trim_start_matches("0x1.").split_once('p').unwrap();
            let v = (1.0 + u32::from_str_radix(m, 16).unwrap() as f64 / (1u64 << 24) as f64)
                * 2f64.powi(e.parse().unwrap());
            assert_eq!(if text.starts_with('-') { -v } else { v } as f32, x, "{text}");
        }
    }
}
