//! Template contexts: every number and expression the templates print is computed here.

use super::{Binding, QuadAt, bindings, block_constants, quad_codes};
use crate::profile::Dialect;
use crate::spec::{BLOCK, KernelSpec, Op, Scheme};
use askama::Template;

/// One quad (four consecutive elements) of a block, for matvec's unrolled inner product.
pub(crate) struct Quad {
    /// A vec4 expression of the four (zero-point-adjusted) codes or f16 weights.
    pub value: String,
}

/// Everything the templates print.
pub(crate) struct Context {
    pub name: String,
    pub directives: Vec<&'static str>,
    pub description: String,
    pub bindings: Vec<Binding>,
    pub wg: u32,
    pub rows: u32,
    pub block_words: u32,
    pub blocks_per_group: u32,
    pub quant: bool,
    pub asym: bool,
    /// matvec, f32 tiers, sym: quads are the codes, the zero point is applied per block.
    pub fold_zero: bool,
    pub f16: bool,
    pub subgroups: bool,
    /// Scalar type of the inner arithmetic.
    pub st: &'static str,
    /// Zero point as an f32 literal (matmul dequantizes in f32 before storing the tile).
    pub zero32: String,
    pub quads: Vec<Quad>,
    /// dot4 tiers: matvec sums `dot4I8Packed` of int8 activations with these u32
    /// expressions, four codes each as signed bytes (8-bit codes offset by −128).
    pub dot4: bool,
    pub dot4_quads: Vec<String>,
    /// dot4: `d` corrected for the zero point and the 8-bit offset with the block's code sum
    /// (sym: `− (zero − 128)·xsum` for 8-bit, else `− zero·xsum`; asym: `+ 128·xsum` for 8-bit).
    pub dot4_sum: String,
    /// matvec: the lines that load a block of one row (`w0`, `w1`, … as u32), with
    /// `wb` the block's index in the weights' vector type.
    pub block_loads: Vec<String>,
    pub vectors_per_block: u32,
    /// matvec: its entry points (the kernel's own, then the tall shape's if any).
    pub entries: Vec<MatvecEntry>,
    /// Sizes of workgroup arrays, as literals (Safari mishandles override-sized ones).
    pub partials_len: u32,
    /// matmul's tiling (unused by matvec).
    pub mm: MatmulTile,
}

impl Context {
    pub fn new(spec: &KernelSpec, dialect: Dialect) -> Context {
        let f = spec.format;
        let tier = spec.profile.tier;
        let mut directives = Vec::new();
        if tier.shader_f16() {
            directives.push("enable f16;");
        }
        if spec.uses_subgroups() && dialect == Dialect::Tint {
            directives.push("enable subgroups;");
        }
        let (st, vt) = if tier.shader_f16() { ("f16", "vec4<f16>") } else { ("f32", "vec4<f32>") };
        let zero = format!("{}.0{}", f.zero_point(), if tier.shader_f16() { "h" } else { "" });
        // f32 tiers take a sym block's zero point out of the sum, Σ(c − z)·x = Σc·x − z·Σx:
        // one subtraction per block instead of one per code (f16 tiers keep the per-code
        // form: Σc·x in f16 would round where Σ(c − z)·x does not).
        let fold_zero = !f.is_f16() && f.scheme() == Scheme::Sym && !tier.shader_f16() && !spec.uses_dot4();
        let quads = (0..8)
            .map(|q| {
                let value = if f.is_f16() {
                    if tier.shader_f16() {
                        // naga 30 mistypes bitcast<vec2<f16>>(u32) as vec2<f32>; going through
                        // unpack2x16float is exact (the values are f16) and portable.
                        format!("vec4<f16>(vec4<f32>(unpack2x16float(w{}), unpack2x16float(w{})))", 2 * q, 2 * q + 1)
                    } else {
                        format!("vec4<f32>(unpack2x16float(w{}), unpack2x16float(w{}))", 2 * q, 2 * q + 1)
                    }
                } else {
                    let codes = format!("{vt}(bytes4({}))", quad_codes(f.bits(), QuadAt::Local(q)));
                    match f.scheme() {
                        Scheme::Sym if !fold_zero => format!("{codes} - {vt}({zero})"),
                        _ => codes,
                    }
                };
                Quad { value }
            })
            .collect();
        let dot4 = spec.uses_dot4();
        let dot4_quads = if dot4 {
            (0..8)
                .map(|q| {
                    let codes = quad_codes(f.bits(), QuadAt::Local(q));
                    // Codes above 127 do not fit a signed byte: 8-bit codes are offset by −128.
                    if f.bits() == 8 { format!("({codes} ^ 0x80808080u)") } else { codes }
                })
                .collect()
        } else {
            Vec::new()
        };
        let offset8 = if f.bits() == 8 { 128 } else { 0 };
        let (_, _, lanes) = super::weight_vector(spec);
        let vectors_per_block = f.block_words().div_ceil(lanes);
        let block_loads = (0..f.block_words())
            .map(|i| match lanes {
                1 => format!("let w{i} = weights[wb + {i}u];"),
                _ => format!("let w{i} = v{}.{};", i / lanes, ["x", "y", "z", "w"][(i % lanes) as usize]),
            })
            .collect::<Vec<_>>();
        let block_loads = if lanes == 1 {
            block_loads
        } else {
            (0..vectors_per_block).map(|j| format!("let v{j} = weights[wb + {j}u];")).chain(block_loads).collect()
        };
        let dot4_offset = match f.scheme() {
            Scheme::Sym => f.zero_point() as i32 - offset8,
            Scheme::Asym => -offset8,
        };
        let (block_words, blocks_per_group) = block_constants(spec);
        let t = spec.tuning;
        let scheme = f.describe();
        Context {
            name: spec.name(),
            directives,
            description: format!(
                "tier {}: weights {scheme}; {} arithmetic",
                tier,
                if spec.uses_dot4() {
                    "activations quantized to int8 per 32-block, dot4I8Packed, f32 accumulation"
                } else if tier.shader_f16() {
                    "f16 inner products, f32 accumulation"
                } else {
                    "f32"
                }
            ),
            bindings: bindings(spec),
            wg: t.workgroup_size,
            rows: t.rows_per_workgroup,
            block_words,
            blocks_per_group,
            quant: !f.is_f16(),
            asym: f.has_min(),
            fold_zero,
            f16: tier.shader_f16(),
            subgroups: spec.uses_subgroups(),
            st,

            zero32: format!("{}.0", f.zero_point()),
            quads,
            dot4,
            dot4_quads,
            dot4_sum: match dot4_offset {
                0 => "d".to_string(),
                o if o > 0 => format!("d - {o} * xsum"),
                o => format!("d + {} * xsum", -o),
            },
            block_loads,
            vectors_per_block,
            entries: std::iter::once(MatvecEntry {
                name: spec.name(),
                wg: t.workgroup_size,
                rows: t.rows_per_workgroup,
                wg_const: "WG",
                rows_const: "ROWS",
                partials: "partials",
                doc: String::new(),
            })
            .chain(t.tall.map(|tall| MatvecEntry {
                name: spec.matvec_entry(tall.min_n, 0).0,
                wg: tall.workgroup_size,
                rows: tall.rows_per_workgroup,
                wg_const: "WG_TALL",
                rows_const: "ROWS_TALL",
                partials: "partials",
                doc: format!(
                    "// The same for matrices of at least {} rows (the manifest's dispatch.tall): {} rows\n\
                     // per workgroup and {} invocations (bench/NOTES.md, session 7).",
                    tall.min_n, tall.rows_per_workgroup, tall.workgroup_size
                ),
            }))
            .chain(t.wide.map(|wide| MatvecEntry {
                name: spec.matvec_entry(wide.max_n, wide.min_k).0,
                wg: wide.workgroup_size,
                rows: t.rows_per_workgroup,
                wg_const: "WG_WIDE",
                rows_const: "ROWS_WIDE",
                partials: "partials_wide",
                doc: format!(
                    "// The same for rows of at least {} (K) in matrices of at most {} rows (the manifest's\n\
                     // dispatch.wide): {} invocations, fewer steps each (bench/NOTES.md, session 9).",
                    wide.min_k, wide.max_n, wide.workgroup_size
                ),
            }))
            .collect(),
            partials_len: matvec_partials(spec),
            mm: MatmulTile::new(spec),
        }
    }
}

/// One entry point of a matvec module and the names of its shape's constants.
pub(crate) struct MatvecEntry {
    pub name: String,
    pub wg: u32,
    pub rows: u32,
    pub wg_const: &'static str,
    pub rows_const: &'static str,
    /// Its reduction array (rows x invocations f32): the default and tall shapes share one.
    pub partials: &'static str,
    /// The comment above a second or third entry point.
    pub doc: String,
}

/// One multiply-add chain of a matmul micro-tile: output row `row`, columns `col .. col+3`
/// (offsets inside the tile), summing `x * w` over k.
pub(crate) struct MatmulAcc {
    pub name: String,
    /// The X value (a component of a staged vec4 of four rows) and the W vec4 (four columns).
    pub x: String,
    pub w: String,
    pub row: String,
    pub col: String,
}

/// matmul's tiling: a workgroup's `tm x tn` tile of Y as a `ty x tx` grid of `rm x rn`
/// micro-tiles, one per invocation, with X and W staged one 32-block of K at a time.
#[derive(Default)]
pub(crate) struct MatmulTile {
    pub tm: u32,
    pub tn: u32,
    pub rm: u32,
    pub rn: u32,
    pub tx: u32,
    pub ty: u32,
    pub xs_len: u32,
    pub ws_len: u32,
    pub bytes: u32,
    /// Index offsets (after `ty` / `tx`) of the vec4s of X and of W an invocation loads per k.
    pub x_loads: Vec<String>,
    pub w_loads: Vec<String>,
    pub loads_per_k: u32,
    pub fmas_per_k: u32,
    pub accs: Vec<MatmulAcc>,
    /// Offsets after `lid` of the staging tasks of one invocation, and whether the last
    /// round has invocations without a task.
    pub rounds: Vec<String>,
    pub task_guard: bool,
    /// The words (one per bit plane, as a `vec2<u32>`) holding the codes of quad `qq` of the
    /// block at word `wb` of `weights`, and the u32 whose bytes are those codes, from the
    /// words `lo`, `hi`.
    pub quad_words: String,
    pub quad_code: String,
}

impl MatmulTile {
    fn new(spec: &KernelSpec) -> MatmulTile {
        let t = spec.tuning;
        let (tm, tn, wg) = (t.tile_m, t.tile_n, t.workgroup_size);
        if spec.op != Op::Matmul {
            return MatmulTile::default();
        }
        // Micro-tiles of 4x4, 4x8 or 8x8 outputs: vec4 loads of four rows (X) and four
        // columns (W) at one k, each reused 4 or 8 times from registers.
        let per = (tm * tn).checked_div(wg).unwrap_or(0);
        let (rm, rn) = match per {
            16 => (4, 4),
            32 => (4, 8),
            64 => (8, 8),
            _ => panic!("matmul micro-tile of {per} outputs: tile_m x tile_n / workgroup_size must be 16, 32 or 64"),
        };
        // Staging maps eight consecutive tasks to eight consecutive quads of rows.
        assert!(
            tm % 32 == 0 && tn % 32 == 0 && (tm * tn) % wg == 0 && tn % rn == 0 && tm % rm == 0,
            "matmul tile {tm}x{tn} with {wg} invocations"
        );
        let (tx, ty) = (tn / rn, tm / rm);
        // Quad a of a micro-tile's rows (or columns) is `step` quads after quad 0.
        let offset = |a: u32, step: u32| if a == 0 { String::new() } else { format!(" + {}u", a * step) };
        let quad =
            |t: &str, a: u32, step: u32| if a == 0 { t.to_string() } else { format!("({t}{})", offset(a, step)) };
        let mut accs = Vec::new();
        for a in 0..rm / 4 {
            for i in 0..4 {
                for b in 0..rn / 4 {
                    accs.push(MatmulAcc {
                        name: format!("{}_{b}", 4 * a + i),
                        x: format!("xa{a}.{}", ["x", "y", "z", "w"][i as usize]),
                        w: format!("wb{b}"),
                        row: format!("4u * {} + {i}u", quad("ty", a, ty)),
                        col: format!("4u * {}", quad("tx", b, tx)),
                    });
                }
            }
        }
        let scalar = if spec.profile.tier.shader_f16() { 2 } else { 4 };
        let f = spec.format;
        let tasks = 2 * (tm + tn);
        let (quad_words, quad_code) = if f.is_f16() { Default::default() } else { matmul_quad(f.bits()) };
        MatmulTile {
            tm,
            tn,
            rm,
            rn,
            tx,
            ty,
            xs_len: BLOCK * tm / 4,
            ws_len: BLOCK * tn / 4,
            bytes: BLOCK * (tm + tn) * scalar,
            x_loads: (0..rm / 4).map(|a| offset(a, ty)).collect(),
            w_loads: (0..rn / 4).map(|b| offset(b, tx)).collect(),
            loads_per_k: (rm + rn) / 4,
            fmas_per_k: rm * rn / 4,
            accs,
            rounds: (0..tasks.div_ceil(wg)).map(|r| offset(r, wg)).collect(),
            task_guard: !tasks.is_multiple_of(wg),
            quad_words,
            quad_code,
        }
    }
}

/// matmul's quads, loaded a block ahead and decoded later: the expression of the words of
/// quad `qq` of the block at `wb` (in a p-bit plane, word `qq mod p` at bit `p·(qq div p)` of
/// each byte; docs/FORMAT.md §4), and the four codes, one per byte, from those words bound
/// to `lo` and `hi`.
fn matmul_quad(bits: u32) -> (String, String) {
    let (mut words, mut code) = (Vec::new(), Vec::new());
    let (mut word0, mut low) = (0u32, 0u32);
    for (&p, name) in crate::codec::planes(bits).iter().zip(["lo", "hi"]) {
        let mask = ((1u32 << p) - 1) * 0x0101_0101;
        let mut e = if p == 8 {
            words.push(format!("weights[wb + {word0}u + qq]"));
            name.to_string()
        } else {
            words.push(format!("weights[wb + {word0}u + qq % {p}u]"));
            format!("(({name} >> ({p}u * (qq / {p}u))) & 0x{mask:08x}u)")
        };
        if low != 0 {
            e = format!("({e} << {low}u)");
        }
        code.push(e);
        word0 += p;
        low += p;
    }
    words.resize(2, "0u".into());
    (format!("vec2<u32>({})", words.join(", ")), code.join(" | "))
}

/// Length of the reduction array of matvec's default and tall entry points, which they share:
/// rows x invocations of the larger shape.
fn matvec_partials(spec: &KernelSpec) -> u32 {
    let t = spec.tuning;
    let tall = t.tall.map_or(0, |tall| tall.rows_per_workgroup * tall.workgroup_size);
    (t.rows_per_workgroup * t.workgroup_size).max(tall)
}

/// Workgroup memory a kernel declares, in bytes.
pub(crate) fn workgroup_bytes(spec: &KernelSpec) -> u32 {
    let t = spec.tuning;
    match spec.op {
        // Every entry point's reduction array (the module declares them all).
        Op::Matvec => 4 * (matvec_partials(spec) + t.wide.map_or(0, |w| t.rows_per_workgroup * w.workgroup_size)),
        // One block of K of the X and the W tile, in the arithmetic's scalar type.
        Op::Matmul => BLOCK * (t.tile_m + t.tile_n) * if spec.profile.tier.shader_f16() { 2 } else { 4 },
        Op::KvAppend => 0,
        // The split pass's arrays, and the combine pass's vec4 per invocation (the module
        // declares both; the combine pass also reduces in `pp`).
        Op::KvAttend => {
            let [qs, sp, pp, cr] = kv_attend_arrays(spec);
            16 * qs + 4 * (sp + pp + cr) + 16 * COMBINE_WG
        }
    }
}

/// A WGSL literal that denotes exactly `x` (WGSL has no bitcast in constant expressions).
/// Rust prints the shortest decimal that reads back as `x`; reading it through f64, as some
/// compilers do, must give `x` too, which is checked here.
fn f32_literal(x: f32) -> String {
    let text = format!("{x:?}");
    assert_eq!(text.parse::<f64>().expect("a float") as f32, x, "literal {text} is not exact through f64");
    text
}

/// One bit plane of a block, for kv-append's packing loop.
pub(crate) struct Plane {
    pub p: u32,
    pub word0: u32,
    pub low: u32,
    pub mask: u32,
    pub bytes: u32,
}

/// Everything the KV templates print.
pub(crate) struct KvContext {
    pub name: String,
    pub directives: Vec<&'static str>,
    pub description: String,
    pub bindings: Vec<Binding>,
    pub head_dim: u32,
    pub group: u32,
    pub gpr: u32,
    pub bits: u32,
    pub wg: u32,
    pub maxq: u32,
    pub inv_maxq_bits: String,
    pub tokens_per_item: u32,
    pub planes: Vec<Plane>,
    pub chunk: u32,
    pub gmax: u32,
    pub scale_bits: String,
    /// kv-attend's workgroup arrays, in elements: staged queries (vec4), partial scores,
    /// probabilities (and the lanes' maxima and sums, and the combine pass's reductions),
    /// rescaling factors.
    pub qs_len: u32,
    pub sp_len: u32,
    pub pp_len: u32,
    pub cr_len: u32,
    /// The code quads of a block bound to `w0, w1, ...` (as matvec's).
    pub quads: Vec<String>,
    /// The four codes (one per byte) of quad `qq` (a runtime value) of the block at `wb`.
    pub quad_rt: String,
    /// kv-attend's unrolled loops: query heads `0..gmax`, a lane's tokens per step, the
    /// 32-dim blocks of a head vector; the max of the lane's scores `s0, s1, ...`.
    pub heads: Vec<u32>,
    pub lane_tokens: Vec<u32>,
    pub blocks: Vec<u32>,
    pub lane_max: String,
    /// kv-attend's combine pass: invocations.
    pub combine_wg: u32,
}

impl KvContext {
    pub fn new(spec: &KernelSpec) -> KvContext {
        let f = spec.format;
        let (d, g, t) = (spec.head_dim, f.group_size(), spec.tuning);
        let mut planes = Vec::new();
        let (mut word0, mut low) = (0, 0);
        for &p in crate::codec::planes(f.bits()) {
            planes.push(Plane { p, word0, low, mask: (1 << p) - 1, bytes: 4 * p });
            word0 += p;
            low += p;
        }
        let gmax = crate::kv::MAX_GQA;
        // Token lanes of the value step (one invocation per quad of a head vector) and the
        // tokens each lane takes per step.
        let blocks = d / BLOCK;
        let lanes = t.workgroup_size / (d / 4);
        let tpl = t.chunk / lanes;
        let [qs_len, sp_len, pp_len, cr_len] = if spec.op == Op::KvAttend { kv_attend_arrays(spec) } else { [0; 4] };
        KvContext {
            name: spec.name(),
            directives: vec![],
            description: format!(
                "KV cache: {}-bit codes, group {g} along head_dim {d}, f16 scale + min; f32 arithmetic on every tier",
                f.bits()
            ),
            bindings: bindings(spec),
            head_dim: d,
            group: g,
            gpr: d / g,
            bits: f.bits(),
            wg: t.workgroup_size,
            maxq: f.max_code(),
            inv_maxq_bits: f32_literal(crate::codec::inv_max_code(f.bits())),
            tokens_per_item: if d / g == 1 { 2 } else { 1 },
            planes,
            chunk: t.chunk,
            gmax,
            scale_bits: f32_literal(1.0 / (d as f32).sqrt()),
            qs_len,
            sp_len,
            pp_len,
            cr_len,
            quads: (0..8).map(|q| quad_codes(f.bits(), QuadAt::Local(q))).collect(),
            quad_rt: quad_codes(f.bits(), QuadAt::Codes),
            heads: (0..gmax).collect(),
            lane_tokens: (0..tpl).collect(),
            blocks: (0..blocks).collect(),
            lane_max: tree("max", &(0..tpl).map(|k| format!("s{k}")).collect::<Vec<_>>()),
            combine_wg: COMBINE_WG,
        }
    }
}

/// kv-attend's workgroup arrays, in elements: staged queries (vec4s, 8 quads per block padded
/// to 9), partial scores per (query head, token, block), probabilities per (query head, token),
/// rescaling factors per (query head, lane). The merge at the end reuses `sp` for every
/// invocation's output quad, and `pp` for the lanes' maxima and sums; the combine pass reduces
/// in `pp`.
fn kv_attend_arrays(spec: &KernelSpec) -> [u32; 4] {
    let (g, d, t) = (crate::kv::MAX_GQA, spec.head_dim, spec.tuning);
    let lanes = t.workgroup_size / (d / 4);
    // The split pass's mapping: whole token lanes of D/4 quads, whole lanes of tokens per step,
    // one invocation per (query head, lane) for the softmax.
    assert!(
        t.workgroup_size.is_multiple_of(d / 4)
            && lanes > 0
            && t.chunk.is_multiple_of(lanes)
            && g * lanes <= t.workgroup_size,
        "kv-attend tuning {}:{} does not fit head_dim {d}: the workgroup must be a multiple of {} invocations and the chunk a multiple of its lanes",
        t.workgroup_size,
        t.chunk,
        d / 4
    );
    [
        g * (d / BLOCK) * 9,
        (g * t.chunk * (d / BLOCK)).max(4 * t.workgroup_size),
        (g * t.chunk).max(2 * g * lanes).max(COMBINE_WG),
        g * lanes,
    ]
}

/// kv-attend's combine pass: one workgroup per query head, each invocation one output quad
/// over a subset of the splits (8 subsets at head_dim 128).
pub(crate) const COMBINE_WG: u32 = 256;

/// `op(a, op(b, ...))` as a balanced tree of calls, so the terms are independent.
fn tree(op: &str, terms: &[String]) -> String {
    match terms {
        [] => String::new(),
        [one] => one.clone(),
        _ => {
            let (a, b) = terms.split_at(terms.len() / 2);
            format!("{op}({}, {})", tree(op, a), tree(op, b))
        }
    }
}

#[derive(Template)]
#[template(path = "kv_append.wgsl")]
pub(crate) struct KvAppend<'a> {
    pub c: &'a KvContext,
}

#[derive(Template)]
#[template(path = "kv_attend.wgsl")]
pub(crate) struct KvAttend<'a> {
    pub c: &'a KvContext,
}

#[derive(Template)]
#[template(path = "matvec.wgsl")]
pub(crate) struct Matvec<'a> {
    pub c: &'a Context,
}

#[derive(Template)]
#[template(path = "matmul.wgsl")]
pub(crate) struct Matmul<'a> {
    pub c: &'a Context,
}
