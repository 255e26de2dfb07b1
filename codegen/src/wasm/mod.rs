//! The WASM stage: `KernelSpec` → two WebAssembly modules of the same function as the WGSL
//! kernel: a simd128 one and a scalar one (engines without SIMD, and the baseline).
//!
//! As for WGSL, arithmetic decisions (which loads, shifts, masks and shuffles give which
//! codes) are made here and the askama templates lay the module out in WAT; `wat`
//! assembles it in-process and [`emit`] validates both modules with wasmparser (the SIMD
//! one with simd128 allowed, the scalar one with SIMD forbidden) before returning them.
//!
//! ABI (written into the manifest by [`abi`]): the module exports `memory` and one function
//! named like the kernel, `(weights, scales, mins, x, y, M, N, K)`, all i32: the first five
//! are byte offsets into `memory` (16-byte aligned, at or above [`SCRATCH_BYTES`]), the
//! last three the shape. The host grows the memory to fit its buffers, writes them, calls,
//! and reads `y` (f32, M x N). Bytes below [`SCRATCH_BYTES`] are the kernel's scratch.
//! The KV ops take only byte offsets, one per WGSL binding by name, the uniform `params`
//! included (see `kv.rs`): kv-append `(params, codes, scales, mins, window, kv_new)`,
//! kv-attend `(params, codes, scales, mins, window, q, out)`.
//!
//! Int8 activations ([`KernelSpec::uses_dot4`]: the dot4 tiers' matvec over quantized
//! weights) take one more argument, last: `(weights, scales, mins, x, y, M, N, K, xq)`. `xq`
//! is the byte offset of a scratch buffer of `K/32 ·` [`XQ_BLOCK_BYTES`] bytes (16-byte
//! aligned, like the others; the manifest's `layout.xq_block_bytes`) that the kernel fills
//! with x quantized to int8 per 32-block (`codec::Activations8`, bit for bit: `f32.nearest`
//! is ties-to-even and 2^±e are built from bits) before the integer dot products; its
//! contents are the module's own business (the SIMD module keeps the codes widened to i16).
//! Each block's integer sum is exact; the float parts (`f32(sum) · (s·xs)`, asym
//! `+ Σq · (xs·m)`) are the same operations in the same order in both modules (see
//! [`emit_dot4`]), so the SIMD and scalar modules of a kernel return bit-identical results.
//! Every other kernel keeps the arguments above unchanged.

mod kv;

use crate::codec::planes;
use crate::error::WasmError;
use crate::spec::{BLOCK, KernelSpec, Scheme};
use askama::Template;
use serde::Serialize;

/// Bytes at the start of memory reserved for the kernel (the scalar decode's 32 floats).
pub const SCRATCH_BYTES: u32 = 1024;

/// Bytes of the `xq` scratch per 32-block of x (dot4 kernels): the block's codes (as i16,
/// 64 bytes, or as i8), then the sym zero-point correction `−z·Σq` (i32), the scale `2^e`
/// (f32) and `Σq` (f32), and a zero word.
pub const XQ_BLOCK_BYTES: u32 = 80;

/// Both modules of a kernel.
#[derive(Debug, Clone)]
pub struct Wasm {
    /// Kernel name, also the exported function.
    pub name: String,
    /// The simd128 module.
    pub simd: Vec<u8>,
    /// The module without SIMD.
    pub scalar: Vec<u8>,
}

impl Wasm {
    /// The SIMD module as WAT text (wasmprinter), for golden snapshots and reading.
    pub fn simd_wat(&self) -> String {
        wasmprinter::print_bytes(&self.simd).expect("a validated module prints")
    }
    /// The scalar module as WAT text.
    pub fn scalar_wat(&self) -> String {
        wasmprinter::print_bytes(&self.scalar).expect("a validated module prints")
    }
}

/// The WASM part of a manifest entry.
#[derive(Debug, Clone, Serialize)]
pub struct Abi {
    /// SIMD module file, relative to the manifest.
    pub simd: String,
    /// Scalar module file.
    pub scalar: String,
    /// WebAssembly features each module needs.
    pub simd_features: Vec<&'static str>,
    /// Features of the scalar module (none beyond the MVP).
    pub scalar_features: Vec<&'static str>,
    /// The exported function.
    pub export: String,
    /// The exported memory.
    pub memory: &'static str,
    /// Arguments in order (all i32).
    pub args: Vec<&'static str>,
    /// Buffer placement rules.
    pub layout: AbiLayout,
    /// Relative tolerance against the reference: the modules compute in f32 on every tier.
    pub tolerance: f64,
}

/// Where the host puts buffers.
#[derive(Debug, Clone, Serialize)]
pub struct AbiLayout {
    /// Bytes at the start of memory the kernel owns.
    pub scratch_bytes: u32,
    /// Alignment of every buffer offset.
    pub align: u32,
    /// What each offset argument points to.
    pub buffers: Vec<&'static str>,
    /// How memory is sized.
    pub growth: &'static str,
    /// dot4 kernels only: bytes of the `xq` scratch per 32-block of x (`K/32 ·` this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xq_block_bytes: Option<u32>,
}

/// The manifest's `wasm` object for a kernel.
pub fn abi(spec: &KernelSpec) -> Abi {
    if spec.op.is_kv() {
        return kv::abi(spec);
    }
    let name = spec.name();
    let dot4 = spec.uses_dot4();
    let mut args = vec!["weights", "scales", "mins", "x", "y", "m", "n", "k"];
    let mut buffers = vec![
        "weights: as the WGSL binding (docs/FORMAT.md)",
        "scales: f16 pairs (bits 16: any offset, never read)",
        "mins: f16 pairs (asym only; otherwise any offset, never read)",
        "x: f32, M x K row-major",
        "y: f32, M x N row-major, written by the kernel",
    ];
    if dot4 {
        args.push("xq");
        buffers.push(
            "xq: scratch of K/32 x xq_block_bytes bytes, written and read by the kernel (x as int8 per \
             32-block, docs/FORMAT.md section 12; the layout is the module's own)",
        );
    }
    Abi {
        simd: format!("{name}.simd.wasm"),
        scalar: format!("{name}.scalar.wasm"),
        simd_features: vec!["simd128"],
        scalar_features: vec![],
        export: name,
        memory: "memory",
        args,
        layout: AbiLayout {
            scratch_bytes: SCRATCH_BYTES,
            align: 16,
            buffers,
            growth: GROWTH,
            xq_block_bytes: dot4.then_some(XQ_BLOCK_BYTES),
        },
        // dot4: against the reference over the int8 values (`KernelSpec::kernel_activations`).
        tolerance: crate::profile::Tier::Base.tolerance(),
    }
}

/// How a module's memory is sized (every kernel).
const GROWTH: &str =
    "the module starts with one 64 KiB page; the host grows `memory` to fit its buffers before the call";

/// Everything the WAT templates print.
struct Context {
    name: String,
    /// Matvec keeps a row's sum in registers; matmul reuses each decoded block for every
    /// row of X and accumulates in `y`.
    matvec: bool,
    description: String,
    quant: bool,
    asym: bool,
    decode: String,
    block_bytes: u32,
    blocks_per_group: u32,
}

#[derive(Template)]
#[template(path = "kernel_simd.wat")]
struct Simd<'a> {
    c: &'a Context,
}

#[derive(Template)]
#[template(path = "kernel_scalar.wat")]
struct Scalar<'a> {
    c: &'a Context,
}

/// Emits and validates the SIMD and scalar modules of `spec`. The tier does not change
/// the WASM (it is a WebGPU notion): every tier's kernel has the same modules, computing
/// in f32 throughout, except the dot4 tiers' matvec over quantized weights, which
/// quantizes x to int8 and sums in integers ([`emit_dot4`]).
pub fn emit(spec: &KernelSpec) -> Result<Wasm, WasmError> {
    let name = spec.name();
    if spec.op.is_kv() {
        return kv::emit(spec);
    }
    if spec.uses_dot4() {
        return emit_dot4(spec);
    }
    let f = spec.format;
    let scheme = f.describe();
    let mut ctx = Context {
        name: name.clone(),
        matvec: spec.op == crate::spec::Op::Matvec,
        description: format!("weights {scheme}; f32 arithmetic"),
        quant: !f.is_f16(),
        asym: f.has_min(),
        decode: decode_simd(spec),
        block_bytes: 4 * f.block_words(),
        blocks_per_group: f.group_size() / BLOCK,
    };
    let simd = Simd { c: &ctx }.render().map_err(|source| WasmError::Template { kernel: name.clone(), source })?;
    ctx.decode = decode_scalar(spec);
    let scalar = Scalar { c: &ctx }.render().map_err(|source| WasmError::Template { kernel: name.clone(), source })?;
    let simd = assemble(&name, "simd", &simd, true)?;
    let scalar = assemble(&name, "scalar", &scalar, false)?;
    Ok(Wasm { name, simd, scalar })
}

/// WAT → binary, then validation: the SIMD module with simd128, the scalar one without.
fn assemble(name: &str, variant: &'static str, wat: &str, simd: bool) -> Result<Vec<u8>, WasmError> {
    let bytes = wat::parse_str(wat).map_err(|e| WasmError::Assemble {
        kernel: name.into(),
        variant,
        message: e.to_string(),
    })?;
    let mut features = wasmparser::WasmFeatures::WASM1;
    if simd {
        features |= wasmparser::WasmFeatures::SIMD;
    }
    wasmparser::Validator::new_with_features(features).validate_all(&bytes).map_err(|e| WasmError::Validate {
        kernel: name.into(),
        variant,
        message: e.to_string(),
    })?;
    Ok(bytes)
}

const IND: &str = "        ";

/// SIMD decode of the block at `$wb` into `$q0..$q7` (f32x4; `$qi` holds elements
/// 4i .. 4i+3, zero point already subtracted for sym).
fn decode_simd(spec: &KernelSpec) -> String {
    let f = spec.format;
    let mut out = String::new();
    if f.is_f16() {
        for i in 0..8 {
            out += &format!(
                "{IND}(local.set $q{i} (call $f16x4 (i32x4.extend_low_i16x8_u (v128.load64_zero offset={} (local.get $wb)))))\n",
                8 * i
            );
        }
        return out;
    }
    // Sixteen codes of elements 0..15 into $c0 and 16..31 into $c1, one byte each.
    let (mut word0, mut low) = (0u32, 0u32);
    for (plane, &p) in planes(f.bits()).iter().enumerate() {
        let at = 4 * word0;
        let (c0, c1) = match p {
            8 => (
                format!("(v128.load offset={at} (local.get $wb))"),
                format!("(v128.load offset={} (local.get $wb))", at + 16),
            ),
            4 => {
                out += &format!("{IND}(local.set $v (v128.load offset={at} (local.get $wb)))\n");
                (
                    "(v128.and (local.get $v) (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))"
                        .into(),
                    "(i8x16.shr_u (local.get $v) (i32.const 4))".into(),
                )
            }
            2 => {
                // Byte j holds elements j, 8+j, 16+j, 24+j: four masked shifts, then
                // shuffles put slots 0,1 (elements 0..15) and 2,3 (16..31) side by side.
                out += &format!("{IND}(local.set $v (v128.load64_zero offset={at} (local.get $wb)))\n");
                let slot = |s: u32| {
                    let shifted = if s == 0 {
                        "(local.get $v)".to_string()
                    } else {
                        format!("(i8x16.shr_u (local.get $v) (i32.const {}))", 2 * s)
                    };
                    if s == 3 {
                        shifted
                    } else {
                        format!("(v128.and {shifted} (v128.const i8x16 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3))")
                    }
                };
                let pair = |a: u32, b: u32| {
                    format!("(i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 {} {})", slot(a), slot(b))
                };
                (pair(0, 1), pair(2, 3))
            }
            1 => {
                // Byte j (0..3) bit t holds element 4t + j: splat the word, test bit t in
                // lanes 4t..4t+3, and turn "set" into the bit's value.
                out += &format!("{IND}(local.set $v (v128.load32_splat offset={at} (local.get $wb)))\n");
                let bit = 1u32 << low;
                let test = |masks: &str| {
                    format!(
                        "(v128.and (i8x16.ne (v128.and (local.get $v) (v128.const i8x16 {masks})) (v128.const i32x4 0 0 0 0)) (v128.const i8x16 {}))",
                        vec![bit.to_string(); 16].join(" ")
                    )
                };
                (test("1 1 1 1 2 2 2 2 4 4 4 4 8 8 8 8"), test("16 16 16 16 32 32 32 32 64 64 64 64 128 128 128 128"))
            }
            _ => unreachable!("planes are 1, 2, 4 or 8 bits"),
        };
        // The 1-bit plane's test already yields the bit at its place; others shift up.
        let place = |c: String| if low == 0 || p == 1 { c } else { format!("(i8x16.shl {c} (i32.const {low}))") };
        if plane == 0 {
            out += &format!("{IND}(local.set $c0 {})\n{IND}(local.set $c1 {})\n", place(c0), place(c1));
        } else {
            out += &format!(
                "{IND}(local.set $c0 (v128.or (local.get $c0) {}))\n{IND}(local.set $c1 (v128.or (local.get $c1) {}))\n",
                place(c0),
                place(c1)
            );
        }
        word0 += p;
        low += p;
    }
    // Sym: subtract the zero point in bytes (wrapping; the result is the signed code).
    let sym = f.scheme() == Scheme::Sym;
    let su = if sym { "s" } else { "u" };
    for (c, q) in [("$c0", 0), ("$c1", 4)] {
        if sym {
            out += &format!(
                "{IND}(local.set {c} (i8x16.sub (local.get {c}) (v128.const i8x16 {})))\n",
                vec![(f.zero_point() as u8 as i8).to_string(); 16].join(" ")
            );
        }
        for (half, hname) in [(0, "low"), (2, "high")] {
            out += &format!("{IND}(local.set $h (i16x8.extend_{hname}_i8x16_{su} (local.get {c})))\n");
            out += &format!(
                "{IND}(local.set $q{} (f32x4.convert_i32x4_{su} (i32x4.extend_low_i16x8_{su} (local.get $h))))\n",
                q + half
            );
            out += &format!(
                "{IND}(local.set $q{} (f32x4.convert_i32x4_{su} (i32x4.extend_high_i16x8_{su} (local.get $h))))\n",
                q + half + 1
            );
        }
    }
    out
}

/// Scalar decode of the block at `$wb` into scratch f32[0..32] (zero point subtracted for
/// sym), one straight-line load/shift/mask per plane and element.
fn decode_scalar(spec: &KernelSpec) -> String {
    let f = spec.format;
    let mut out = String::new();
    for e in 0..BLOCK {
        let value = if f.is_f16() {
            format!("(call $f16 (i32.load16_u offset={} (local.get $wb)))", 2 * e)
        } else {
            let code = scalar_code(f.bits(), e);
            match f.scheme() {
                Scheme::Sym => format!("(f32.convert_i32_s (i32.sub {code} (i32.const {})))", f.zero_point()),
                Scheme::Asym => format!("(f32.convert_i32_u {code})"),
            }
        };
        out += &format!("{IND}(f32.store offset={} (i32.const 0) {value})\n", 4 * e);
    }
    out
}

/// The code of element `e` of the `bits`-wide block at `$wb`, as an i32 expression: one
/// byte load, shift and mask per plane (docs/FORMAT.md section 4).
fn scalar_code(bits: u32, e: u32) -> String {
    let (mut word0, mut low) = (0u32, 0u32);
    let mut parts = Vec::new();
    for &p in planes(bits) {
        let bytes = 4 * p;
        let byte = 4 * word0 + e % bytes;
        let shift = p * (e / bytes);
        let mut part = format!("(i32.load8_u offset={byte} (local.get $wb))");
        if shift != 0 {
            part = format!("(i32.shr_u {part} (i32.const {shift}))");
        }
        if p != 8 {
            part = format!("(i32.and {part} (i32.const {}))", (1u32 << p) - 1);
        }
        if low != 0 {
            part = format!("(i32.shl {part} (i32.const {low}))");
        }
        parts.push(part);
        word0 += p;
        low += p;
    }
    let mut code = parts.pop().expect("a format has planes");
    while let Some(p) = parts.pop() {
        code = format!("(i32.or {p} {code})");
    }
    code
}

/// What the dot4 templates print.
struct Dot4 {
    name: String,
    description: String,
    asym: bool,
    /// Bytes per weight block, log2 of blocks per group, the sym zero point (0 for asym).
    block_bytes: u32,
    log2_bpg: u32,
    zero_point: u32,
    /// SIMD: the pass-2 body for four rows, pass 1's x scale per vector (an i16x8 constant,
    /// or empty for none), log2 of their common factor F and 2^-log2 F.
    rows4: String,
    x_stores: String,
    log2_f: u32,
    /// z · F: the SIMD module's zero-point correction per unit of Σq.
    corr_simd: u32,
    inv_f: String,
    /// SIMD: the stores that write the constant pool (scratch bytes 0 ..), and the pooled
    /// loads of the f16 conversion's constants.
    pool: String,
    row_offsets: u32,
    row_sums: u32,
    c7fff: String,
    c8000: String,
    c2p112: String,
    /// Scalar: the integer partial sums `$d0..$d3` of the block at `$wb`.
    lanes: String,
}

#[derive(Template)]
#[template(path = "matvec_dot4_simd.wat")]
struct Dot4Simd<'a> {
    c: &'a Dot4,
}

#[derive(Template)]
#[template(path = "matvec_dot4_scalar.wat")]
struct Dot4Scalar<'a> {
    c: &'a Dot4,
}

/// The dot4 matvec's modules (`docs/FORMAT.md` §12). Pass 1 quantizes x per 32-block into
/// `xq` exactly as `codec::Activations8::quantize`; pass 2 computes, per row and block, the
/// integer dot products of the weight codes (unsigned) with the int8 codes, plus the sym
/// correction `−z·Σq`, and accumulates `f32(int) · (s·xs)` (asym: `+ (m·xs) · Σq`).
///
/// Both modules compute each block's integer sum `d` exactly (sym: minus `z·Σq`) and then, per
/// row, `acc = acc + f32(d) · (s·xs)` (asym: then `acc = acc + Σq · (xs·m)`), `y = acc`: the
/// same f32 operations in the same order, so their results are bit-identical.
///
/// SIMD layout ([`dot4_simd_codes`]): every width's codes come out of i16 masks (and a shift
/// or two) as four i16x8 vectors holding elements `A = 0,2,…,14`, `B = 16,18,…,30`,
/// `C = 1,3,…,15`, `D = 17,19,…,31`, each code times a per-lane power of two; pass 1 stores
/// x's codes widened to i16 in that order, scaled to match, so each row's block is four
/// `i32x4.dot_i16x8_s` (F times the products) against x vectors shared by four rows. A
/// transposition puts the four rows' block sums in one vector, whose correction, conversion,
/// `· 2^-log2 F` (exact) and scaling are one operation per four rows.
fn emit_dot4(spec: &KernelSpec) -> Result<Wasm, WasmError> {
    let name = spec.name();
    let f = spec.format;
    let bpg = f.group_size() / BLOCK;
    let (_, _, scales, log2_f) = dot4_simd_codes(f.bits(), "");
    let mut pool = Vec::new();
    let rows4 = pooled(&dot4_simd_rows(spec), &mut pool);
    let k = |v: &str, pool: &mut Vec<String>| pooled(&format!("(v128.const {v})"), pool);
    let c7fff = k("i32x4 0x7fff 0x7fff 0x7fff 0x7fff", &mut pool);
    let c8000 = k("i32x4 0x8000 0x8000 0x8000 0x8000", &mut pool);
    let c2p112 = k("f32x4 0x1p112 0x1p112 0x1p112 0x1p112", &mut pool);
    let inv_f = k(&format!("f32x4 0x1p-{log2_f} 0x1p-{log2_f} 0x1p-{log2_f} 0x1p-{log2_f}"), &mut pool);
    assert!(pool.len() <= POOL_VECTORS as usize, "the constant pool fits the scratch");
    let c = Dot4 {
        name: name.clone(),
        description: format!("weights {}; x quantized to int8 per 32-block, integer dot products", f.describe()),
        asym: f.has_min(),
        block_bytes: 4 * f.block_words(),
        log2_bpg: bpg.trailing_zeros(),
        zero_point: f.zero_point(),
        rows4,
        pool: pool
            .iter()
            .enumerate()
            .map(|(i, v)| format!("    (v128.store offset={} (i32.const 0) {v})\n", 16 * i))
            .collect(),
        row_offsets: ROW_OFFSETS,
        row_sums: ROW_SUMS,
        c7fff,
        c8000,
        c2p112,
        x_stores: dot4_x_stores(scales),
        log2_f,
        corr_simd: f.zero_point() << log2_f,
        inv_f,
        lanes: dot4_scalar_lanes(spec),
    };
    let simd = Dot4Simd { c: &c }.render().map_err(|source| WasmError::Template { kernel: name.clone(), source })?;
    let scalar =
        Dot4Scalar { c: &c }.render().map_err(|source| WasmError::Template { kernel: name.clone(), source })?;
    let simd = assemble(&name, "simd", &simd, true)?;
    let scalar = assemble(&name, "scalar", &scalar, false)?;
    Ok(Wasm { name, simd, scalar })
}

/// Vectors of the constant pool (scratch bytes `0 .. 16 ·` this): the SIMD dot4 module
/// writes its constants there first and loads them where used, which engines turn into a
/// memory operand or one load, instead of rebuilding a 128-bit constant in the loop
/// (V8 builds one with three instructions, inside the loop when registers run short).
const POOL_VECTORS: u32 = 32;

/// Where the SIMD dot4 module keeps each quad of rows' offsets of rows 1..3 (weights at
/// +0, +4, +8; scales at +12, +16, +20): loads in the block loop, which V8 does not sink
/// as it does loop-invariant arithmetic.
const ROW_OFFSETS: u32 = 16 * POOL_VECTORS;

/// Where the SIMD dot4 module stores each row's four lane sums of the current block
/// (16 bytes per row): the stores order the rows' work in V8, whose scheduler would
/// otherwise interleave all four rows and spill.
const ROW_SUMS: u32 = ROW_OFFSETS + 32;

/// `text` with every `(v128.const …)` replaced by a load from the constant pool `pool`.
fn pooled(text: &str, pool: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("(v128.const ") {
        let end = at + rest[at..].find(')').expect("a constant ends") + 1;
        let value = &rest[at..end];
        let i = pool.iter().position(|v| v == value).unwrap_or_else(|| {
            pool.push(value.to_string());
            pool.len() - 1
        });
        out += &rest[..at];
        out += &format!("(v128.load offset={} (i32.const 0))", 16 * i);
        rest = &rest[end..];
    }
    out + rest
}

/// An i16x8 constant.
fn i16x8(v: [u32; 8]) -> String {
    format!("(v128.const i16x8 {})", v.map(|x| x.to_string()).join(" "))
}

/// Four lanes of `a` then four of `b`.
fn halves(a: u32, b: u32) -> [u32; 8] {
    [a, a, a, a, b, b, b, b]
}

/// How the SIMD module reads a block of `bits`-wide codes: statements that load the block
/// of the row at `ptr` (an i32 expression), the four i16x8 code vectors A, B, C, D of
/// [`emit_dot4`] as expressions, each lane holding its code times a per-lane power of two
/// `f` (so that a mask alone, without a shift, isolates it), and the factor `F` with which
/// pass 1 scales x: lane `i` of vector `v` of x holds `q · F / f[v][i]`, so every product is
/// `F · code · q`. Returns (statements, codes, x scales, log2 F).
fn dot4_simd_codes(bits: u32, ptr: &str) -> (String, [String; 4], [[u32; 8]; 4], u32) {
    let and = |v: &str, m: [u32; 8]| format!("(v128.and (local.get {v}) {})", i16x8(m));
    let or = |a: String, b: String| format!("(v128.or {a} {b})");
    let mut pre = String::new();
    let (codes, scales, log2_f) = match bits {
        8 => {
            // Byte 2j of a 16-byte half is element 2j (the low byte of i16 lane j), byte
            // 2j + 1 element 2j + 1 (the high byte).
            pre += &format!(
                "{IND}  (local.set $v (v128.load {ptr}))\n{IND}  (local.set $u (v128.load offset=16 {ptr}))\n"
            );
            let lo = |v: &str| and(v, [0xff; 8]);
            let hi = |v: &str| format!("(i16x8.shr_u (local.get {v}) (i32.const 8))");
            ([lo("$v"), lo("$u"), hi("$v"), hi("$u")], [[1; 8]; 4], 0)
        }
        4 => {
            // i16 lane j: element 2j in bits 0-3, 16 + 2j in 4-7, 2j + 1 in 8-11, 17 + 2j in
            // 12-15 (the last shifted down: a mask would leave it negative).
            pre += &format!("{IND}  (local.set $v (v128.load {ptr}))\n");
            (
                [
                    and("$v", [0x000f; 8]),
                    and("$v", [0x00f0; 8]),
                    and("$v", [0x0f00; 8]),
                    "(i16x8.shr_u (local.get $v) (i32.const 12))".into(),
                ],
                [[256; 8], [16; 8], [1; 8], [256; 8]],
                8,
            )
        }
        2 | 3 => {
            // The 2-bit plane's 8 bytes in both halves: i16 lane j (and j + 4) holds bytes 2j,
            // 2j + 1 = elements 2j, 8+2j, 16+2j, 24+2j at bits 0, 2, 4, 6 and 2j+1, … at 8, …, 14.
            // Lanes 0-3 take the lower of two elements of a mask, lanes 4-7 the upper: one
            // mask per vector, and the high byte shifted down once.
            pre += &format!("{IND}  (local.set $v (v128.load64_splat {ptr}))\n");
            pre += &format!("{IND}  (local.set $u (i16x8.shr_u (local.get $v) (i32.const 8)))\n");
            let (m0, m1) = (halves(0x3, 0xc), halves(0x30, 0xc0));
            let mut codes = [and("$v", m0), and("$v", m1), and("$u", m0), and("$u", m1)];
            if bits == 3 {
                // The 1-bit plane (word 2) splat: i16 lanes alternate its low and high halves;
                // lane j of A needs bit j/2 (B: 4 + j/2, C: 8 + j/2, D: 12 + j/2), worth 4 f.
                // A multiply by 4, 4, 2, 2, … moves bits j/2 to 2 (lanes 0-3) or 4 (lanes 4-7),
                // which are 4 f; C and D read the high byte.
                let m = i16x8([4, 4, 2, 2, 4, 4, 2, 2]);
                pre += &format!("{IND}  (local.set $h (v128.load32_splat offset=8 {ptr}))\n");
                pre += &format!(
                    "{IND}  (local.set $t (i16x8.mul (i16x8.shr_u (local.get $h) (i32.const 8)) {m}))\n{IND}  (local.set $h (i16x8.mul (local.get $h) {m}))\n"
                );
                let (h0, h1) = (halves(4, 16), halves(64, 256));
                let [a, b, c, d] = codes;
                codes = [or(a, and("$h", h0)), or(b, and("$h", h1)), or(c, and("$t", h0)), or(d, and("$t", h1))];
            }
            (codes, [halves(64, 16), halves(4, 1), halves(64, 16), halves(4, 1)], 6)
        }
        _ => unreachable!("dot4 formats are 2, 3, 4 or 8 bits"),
    };
    (pre, codes, scales, log2_f)
}

/// The SIMD pass-2 work of one block for four rows (`$p`, `$p1`, `$p2`, `$p3`): each row's
/// four `i32x4.dot_i16x8_s` summed into `$s{r}`.
fn dot4_simd_rows(spec: &KernelSpec) -> String {
    let mut out = String::new();
    for r in 0..4 {
        let ptr = match r {
            0 => "(local.get $p)".to_string(),
            _ => format!("(i32.add (local.get $p) (i32.load offset={} (i32.const 0)))", ROW_OFFSETS + 4 * (r - 1)),
        };
        let (pre, [a, b, c, d], _, _) = dot4_simd_codes(spec.format.bits(), &ptr);
        let dot = |code: &str, x: &str| format!("(i32x4.dot_i16x8_s {code} (local.get {x}))");
        out += &format!(
            "{IND};; row {r}\n{pre}{IND}  (v128.store offset={} (i32.const 0) (i32x4.add\n{IND}    (i32x4.add {}\n{IND}               {})\n{IND}    (i32x4.add {}\n{IND}               {})))\n",
            ROW_SUMS + 16 * r,
            dot(&a, "$xa"),
            dot(&b, "$xb"),
            dot(&c, "$xc"),
            dot(&d, "$xd")
        );
    }
    out
}

/// SIMD pass 1: store x's i16 codes (elements 0..7, 8..15, 16..23, 24..31 in `$v0..$v3`)
/// at `$qa` as the vectors A, B, C, D, each times its per-lane scale.
fn dot4_x_stores(scales: [[u32; 8]; 4]) -> String {
    let even = "0 1 4 5 8 9 12 13 16 17 20 21 24 25 28 29";
    let odd = "2 3 6 7 10 11 14 15 18 19 22 23 26 27 30 31";
    let mut out = String::new();
    for (v, (lanes, src)) in [
        (even, "$v0) (local.get $v1"),
        (even, "$v2) (local.get $v3"),
        (odd, "$v0) (local.get $v1"),
        (odd, "$v2) (local.get $v3"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut value = format!("(i8x16.shuffle {lanes} (local.get {src}))");
        if scales[v] != [1; 8] {
            value = format!("(i16x8.mul {value} {})", i16x8(scales[v]));
        }
        out += &format!("      (v128.store offset={} (local.get $qa) {value})\n", 16 * v);
    }
    out
}

/// Scalar: four partial sums `$d0..$d3` of the block at `$wb` against the int8 codes at
/// `$qa` (lane `l`: elements `e` with `(e mod 16) div 4 = l`), in plain i32 arithmetic.
fn dot4_scalar_lanes(spec: &KernelSpec) -> String {
    let mut out = String::new();
    for l in 0..4u32 {
        let mut sum = String::new();
        for (i, e) in (4 * l..4 * l + 4).chain(16 + 4 * l..16 + 4 * l + 4).enumerate() {
            let term =
                format!("(i32.mul {} (i32.load8_s offset={e} (local.get $qa)))", scalar_code(spec.format.bits(), e));
            sum = if i == 0 { term } else { format!("(i32.add {sum}\n{IND}    {term})") };
        }
        out += &format!("{IND}(local.set $d{l} {sum})\n");
    }
    out
}
