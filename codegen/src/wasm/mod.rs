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

mod kv;

use crate::codec::planes;
use crate::error::WasmError;
use crate::spec::{BLOCK, KernelSpec, Scheme};
use askama::Template;
use serde::Serialize;

/// Bytes at the start of memory reserved for the kernel (the scalar decode's 32 floats).
pub const SCRATCH_BYTES: u32 = 1024;

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
}

/// The manifest's `wasm` object for a kernel.
pub fn abi(spec: &KernelSpec) -> Abi {
    if spec.op.is_kv() {
        return kv::abi(spec);
    }
    let name = spec.name();
    Abi {
        simd: format!("{name}.simd.wasm"),
        scalar: format!("{name}.scalar.wasm"),
        simd_features: vec!["simd128"],
        scalar_features: vec![],
        export: name,
        memory: "memory",
        args: vec!["weights", "scales", "mins", "x", "y", "m", "n", "k"],
        layout: AbiLayout {
            scratch_bytes: SCRATCH_BYTES,
            align: 16,
            buffers: vec![
                "weights: as the WGSL binding (docs/FORMAT.md)",
                "scales: f16 pairs (bits 16: any offset, never read)",
                "mins: f16 pairs (asym only; otherwise any offset, never read)",
                "x: f32, M x K row-major",
                "y: f32, M x N row-major, written by the kernel",
            ],
            growth: GROWTH,
        },
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
/// in f32 throughout.
pub fn emit(spec: &KernelSpec) -> Result<Wasm, WasmError> {
    let name = spec.name();
    if spec.op.is_kv() {
        return kv::emit(spec);
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
