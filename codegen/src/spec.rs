//! `KernelSpec`: the hub model. The CLI and the macro produce it; the WGSL emitter, the
//! reference and the tests consume it. Plain data: building one validates it, so every
//! consumer may assume a spec is coherent.

use crate::error::SpecError;
use crate::profile::{Profile, Target, Tier};
use serde::Serialize;
use std::fmt;

/// Codes per block: the unit of the packed layout (`docs/FORMAT.md`). K is always a
/// multiple of it, since every group size is.
pub const BLOCK: u32 = 32;

/// The operation a kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Decode: `y[N] = W[N x K] · x[K]`.
    Matvec,
    /// Prefill: `Y[M x N] = X[M x K] · W[N x K]ᵀ`.
    Matmul,
    /// Quantize new tokens' K and V into the cache (`docs/FORMAT.md` §11).
    KvAppend,
    /// Decode attention of every query head over the quantized cache (flash-decoding).
    KvAttend,
}

impl Op {
    /// Every op.
    pub const ALL: [Op; 4] = [Op::Matvec, Op::Matmul, Op::KvAppend, Op::KvAttend];
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Op::Matvec => "matvec",
            Op::Matmul => "matmul",
            Op::KvAppend => "kv-append",
            Op::KvAttend => "kv-attend",
        }
    }
    /// Whether the op works on a KV cache (and its spec has a head dimension).
    pub fn is_kv(self) -> bool {
        matches!(self, Op::KvAppend | Op::KvAttend)
    }
}

impl std::str::FromStr for Op {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Op, SpecError> {
        Op::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| SpecError::UnknownOp(s.into()))
    }
}

/// How codes map back to values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `w = scale · (q − 2^(bits−1))`.
    Sym,
    /// `w = scale · q + min`.
    Asym,
}

impl Scheme {
    /// Both schemes.
    pub const ALL: [Scheme; 2] = [Scheme::Sym, Scheme::Asym];
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sym => "sym",
            Scheme::Asym => "asym",
        }
    }
}

impl std::str::FromStr for Scheme {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Scheme, SpecError> {
        Scheme::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| SpecError::Scheme(s.into()))
    }
}

/// The weight format: a quantized format or the unquantized f16 baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Format {
    bits: u32,
    group_size: u32,
    scheme: Scheme,
}

impl Format {
    /// Quantized bit widths.
    pub const QUANT_BITS: [u32; 4] = [2, 3, 4, 8];
    /// Group sizes along K.
    pub const GROUP_SIZES: [u32; 3] = [32, 64, 128];

    /// A quantized format: `bits` in 2, 3, 4, 8; `group_size` in 32, 64, 128.
    pub fn quant(bits: u32, group_size: u32, scheme: Scheme) -> Result<Format, SpecError> {
        if !Self::QUANT_BITS.contains(&bits) {
            return Err(SpecError::Bits(bits));
        }
        if !Self::GROUP_SIZES.contains(&group_size) {
            return Err(SpecError::GroupSize(group_size));
        }
        Ok(Format { bits, group_size, scheme })
    }

    /// The unquantized f16 baseline. K must be a multiple of one block (32).
    pub fn f16() -> Format {
        Format { bits: 16, group_size: BLOCK, scheme: Scheme::Sym }
    }

    /// From a `bits` value as users write it (16 means the f16 baseline).
    pub fn from_bits(bits: u32, group_size: u32, scheme: Scheme) -> Result<Format, SpecError> {
        if bits == 16 { Ok(Format::f16()) } else { Format::quant(bits, group_size, scheme) }
    }

    /// 2, 3, 4, 8, or 16 for the f16 baseline.
    pub fn bits(self) -> u32 {
        self.bits
    }
    /// Whether this is the unquantized f16 baseline.
    pub fn is_f16(self) -> bool {
        self.bits == 16
    }
    /// Codes per scale (32 for the f16 baseline, where it is only K's granularity).
    pub fn group_size(self) -> u32 {
        self.group_size
    }
    /// Sym or asym (sym for f16, where it has no meaning).
    pub fn scheme(self) -> Scheme {
        self.scheme
    }
    /// Whether a min array is stored.
    pub fn has_min(self) -> bool {
        !self.is_f16() && self.scheme == Scheme::Asym
    }
    /// u32 words per 32-code block.
    pub fn block_words(self) -> u32 {
        self.bits // 32 codes * bits / 32 bits per word; 16 for f16 pairs
    }
    /// The zero point subtracted from symmetric codes.
    pub fn zero_point(self) -> u32 {
        match (self.is_f16(), self.scheme) {
            (false, Scheme::Sym) => 1 << (self.bits - 1),
            _ => 0,
        }
    }
    /// Largest code.
    pub fn max_code(self) -> u32 {
        (1u32 << self.bits) - 1
    }
    /// Real storage cost per weight, scales and mins included.
    pub fn bits_per_weight(self) -> f64 {
        if self.is_f16() {
            return 16.0;
        }
        let per_group = if self.has_min() { 32.0 } else { 16.0 };
        self.bits as f64 + per_group / self.group_size as f64
    }
    /// Checks that `k` is a positive multiple of the group size.
    pub fn check_k(self, k: u64) -> Result<(), SpecError> {
        if k == 0 || !k.is_multiple_of(self.group_size as u64) {
            return Err(SpecError::KNotMultiple { k, group: self.group_size });
        }
        Ok(())
    }
    /// The format in words, for the comment at the top of emitted kernels.
    pub fn describe(self) -> String {
        if self.is_f16() {
            "unquantized f16".into()
        } else {
            let scheme = if self.has_min() { "scale + min" } else { "symmetric scale" };
            format!("{}-bit codes, group {}, {scheme}", self.bits, self.group_size)
        }
    }

    /// A short stable name: `q4g32s`, `q3g128a`, `f16`.
    pub fn tag(self) -> String {
        if self.is_f16() {
            "f16".into()
        } else {
            let s = if self.scheme == Scheme::Sym { 's' } else { 'a' };
            format!("q{}g{}{}", self.bits, self.group_size, s)
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())
    }
}

/// Tuning knobs. Chosen per op and profile by [`Tuning::default_for`]; emitters read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tuning {
    /// Invocations per workgroup (a multiple of the profile's `workgroup_multiple`).
    pub workgroup_size: u32,
    /// matvec: output rows per workgroup; each invocation reads x once for all of them.
    pub rows_per_workgroup: u32,
    /// matmul: output tile (rows of X, rows of W) per workgroup.
    pub tile_m: u32,
    /// matmul: see `tile_m`.
    pub tile_n: u32,
    /// kv-attend: tokens scored per step of a split.
    pub chunk: u32,
    /// matvec: a second workgroup shape for tall matrices, or none.
    pub tall: Option<TallMatvec>,
    /// matvec: a third workgroup shape for long rows of matrices below `tall`, or none.
    pub wide: Option<WideMatvec>,
}

/// A matvec's second entry point, `<name>_tall`: the same computation with another workgroup
/// shape, which the runtimes dispatch instead when N is at least `min_n` (the manifest's
/// `dispatch.tall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TallMatvec {
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// Output rows per workgroup.
    pub rows_per_workgroup: u32,
    /// The least N that uses this shape.
    pub min_n: u32,
}

impl TallMatvec {
    /// The tall shape of `spec`, if it has one. Only the dot4-subgroups matvec, where it was
    /// measured: each invocation quantizes its x block once for 16 rows instead of 8 (and,
    /// presumably, 16384 rows of 64-invocation workgroups fit one wave). On an H100,
    /// 16384² went from 62 to 48 µs at 2 bits, 73 to 67 at 4 (14336 x 4096: 21 to 18 and 26
    /// to 24), but 4096-row matrices leave too few workgroups to keep memory busy (4096²:
    /// 10.8 -> 13.6 µs), hence a threshold between the two measured heights
    /// (bench/NOTES.md, session 7). Same 4 KiB of workgroup memory as the default shape.
    pub fn default_for(spec: &KernelSpec) -> Option<TallMatvec> {
        (spec.uses_dot4() && spec.uses_subgroups()).then_some(TallMatvec {
            workgroup_size: 64,
            rows_per_workgroup: 16,
            min_n: 8192,
        })
    }
}

/// A matvec's third entry point, `<name>_wide`: the same computation and rows per workgroup
/// (so the same grid) with more invocations per workgroup, which the runtimes dispatch
/// instead when K is at least `min_k` and N at most `max_n` (the manifest's `dispatch.wide`;
/// never where the tall shape applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WideMatvec {
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// The least K that uses this shape.
    pub min_k: u32,
    /// The largest N that uses this shape.
    pub max_n: u32,
}

impl WideMatvec {
    /// The wide shape of `spec`, if it has one: 256 invocations x 8 rows for quantized
    /// weights on the subgroups and dot4-subgroups tiers, where it was measured. With 128 invocations a 14336-wide row
    /// (448 blocks) takes each invocation 3.5 steps; 256 halve them while 4096 rows still
    /// give 512 workgroups. On an H100, 4096 x 14336 took 15% less time on the f32 subgroups
    /// tier at 2, 4 and 8 bits (32.8 -> 27.8 us at 2 bits; bench/NOTES.md, session 9) and 9%
    /// less on dot4-subgroups at 4 bits (session 4); 4096² (128 blocks) was 2-6% slower,
    /// hence `min_k` between the two, and 16384² (f32 tier) 6-8% slower, hence `max_n` below
    /// the tall threshold. The reduction array grows to 8*256 f32 = 8 KiB.
    pub fn default_for(spec: &KernelSpec) -> Option<WideMatvec> {
        let tier = spec.profile.tier;
        let measured = spec.op == Op::Matvec && !spec.format.is_f16() && tier.subgroups() && !tier.shader_f16();
        measured.then_some(WideMatvec { workgroup_size: 256, min_k: 8192, max_n: 8191 })
    }
}

impl Tuning {
    /// The default tuning of `op` on `profile`.
    pub fn default_for(op: Op, _profile: &Profile) -> Tuning {
        match op {
            // 128 invocations x 8 rows, every tier: each invocation reads (dot4: quantizes) its
            // x block once for 8 rows, and 128 invocations still cover 4096-wide rows (K/32 =
            // 128 blocks). On an H100 this was the best, or within 25% of the best, of the
            // (wg, rows) pairs swept at every bench shape and bit width, for the f32 and the
            // dot4 tiers (bench/NOTES.md, session 4); 64 x 4 was up to 1.5x slower. The
            // reduction array is 8*128 f32 = 4 KiB. The dot4-subgroups matvec adds a tall shape
            // for N >= 8192 (`TallMatvec`, set by `KernelSpec::new`).
            Op::Matvec => Tuning {
                workgroup_size: 128,
                rows_per_workgroup: 8,
                tile_m: 1,
                tile_n: 8,
                chunk: 0,
                tall: None,
                wide: None,
            },
            // 16x8 invocations, each a 4x8 block of a 64x64 tile: one 32-block of K of the X
            // and the W tile, 2 x 32x64 f32 = 16 KiB of workgroup memory (the spec default).
            Op::Matmul => Tuning {
                workgroup_size: 128,
                rows_per_workgroup: 0,
                tile_m: 64,
                tile_n: 64,
                chunk: 0,
                tall: None,
                wide: None,
            },
            // One workgroup per (KV head, tensor); invocations take (token, group) items.
            Op::KvAppend => Tuning {
                workgroup_size: 64,
                rows_per_workgroup: 0,
                tile_m: 0,
                tile_n: 0,
                chunk: 0,
                tall: None,
                wide: None,
            },
            // One workgroup per (KV head, split), 32 tokens a step: 128 invocations score
            // (token, 32-dim block) pairs for every query head of the group, then each
            // accumulates one quad of the output over its lane's tokens. On an H100 128 x 32
            // beat 256 x 64, 128 x 64 and 64 x 32 at 1k-32k tokens (bench/NOTES.md, session 5):
            // the kernel is bound by waits on memory, and smaller workgroups keep more of them
            // in flight. 13.6 KiB of workgroup memory at head_dim 128, the combine pass's included.
            Op::KvAttend => Tuning {
                workgroup_size: 128,
                rows_per_workgroup: 0,
                tile_m: 0,
                tile_n: 0,
                chunk: 32,
                tall: None,
                wide: None,
            },
        }
    }
}

/// Everything needed to emit one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KernelSpec {
    /// What it computes.
    pub op: Op,
    /// The weight format.
    pub format: Format,
    /// The profile it is generated for.
    pub profile: Profile,
    /// Workgroup shape and tiling.
    pub tuning: Tuning,
    /// KV ops: the head dimension D (64 or 128), fixed at generation; 0 for matvec/matmul.
    pub head_dim: u32,
}

impl KernelSpec {
    /// A matvec or matmul spec with the default tuning for `op` on `target` at `tier`.
    pub fn new(op: Op, format: Format, target: Target, tier: Tier) -> Result<KernelSpec, SpecError> {
        if op.is_kv() {
            return Err(SpecError::KvFormat(format!("{} needs a head_dim (KernelSpec::kv)", op.name())));
        }
        let profile = Profile::new(target, tier)?;
        let tuning = Tuning::default_for(op, &profile);
        let mut spec = KernelSpec { op, format, profile, tuning, head_dim: 0 };
        spec.tuning.tall = TallMatvec::default_for(&spec);
        spec.tuning.wide = WideMatvec::default_for(&spec);
        Ok(spec)
    }

    /// A kv-append or kv-attend spec: `format` must be a KV format (quantized, asym, group ≤
    /// `head_dim`; see [`crate::kv::check_format`]).
    pub fn kv(op: Op, format: Format, head_dim: u32, target: Target, tier: Tier) -> Result<KernelSpec, SpecError> {
        if !op.is_kv() {
            return Err(SpecError::KvFormat(format!("{} has no head_dim (KernelSpec::new)", op.name())));
        }
        crate::kv::check_format(format, head_dim)?;
        let profile = Profile::new(target, tier)?;
        let tuning = Tuning::default_for(op, &profile);
        Ok(KernelSpec { op, format, profile, tuning, head_dim })
    }

    /// The kernel's name, also its entry point: `matvec_q4g32s_f16_subgroups`,
    /// `kv_attend_q4g32a_d128_base`. Stable across targets: the same name on two targets means
    /// the same computation.
    pub fn name(&self) -> String {
        let tier = self.profile.tier.name().replace('-', "_");
        let op = self.op.name().replace('-', "_");
        if self.op.is_kv() {
            format!("{op}_{}_d{}_{tier}", self.format.tag(), self.head_dim)
        } else {
            format!("{op}_{}_{tier}", self.format.tag())
        }
    }

    /// The whole default set for a target: every op, bit width (and the f16 baseline),
    /// group size, scheme, head dimension and tier.
    pub fn default_set(target: Target) -> Vec<KernelSpec> {
        Self::select(
            target,
            &Op::ALL,
            &[2, 3, 4, 8, 16],
            &Format::GROUP_SIZES,
            &Scheme::ALL,
            &crate::kv::HEAD_DIMS,
            target.info().tiers,
        )
        .expect("the default set is valid")
    }

    /// The cross product of the given choices, in a stable order. The f16 baseline
    /// appears once per op and tier whatever groups and schemes are asked for. KV ops take
    /// the quantized bit widths, the groups that fit each head dimension, and always `asym`
    /// (their format stores a scale and a min per group); they ignore `schemes`.
    pub fn select(
        target: Target,
        ops: &[Op],
        bits: &[u32],
        groups: &[u32],
        schemes: &[Scheme],
        head_dims: &[u32],
        tiers: &[Tier],
    ) -> Result<Vec<KernelSpec>, SpecError> {
        for &d in head_dims {
            if !crate::kv::HEAD_DIMS.contains(&d) {
                return Err(SpecError::HeadDim(d));
            }
        }
        let mut out = Vec::new();
        for &tier in tiers {
            for &op in ops {
                if op.is_kv() {
                    for &d in head_dims {
                        for &b in bits.iter().filter(|&&b| b != 16) {
                            for &g in groups.iter().filter(|&&g| g <= d) {
                                out.push(KernelSpec::kv(op, Format::quant(b, g, Scheme::Asym)?, d, target, tier)?);
                            }
                        }
                    }
                    continue;
                }
                for &b in bits {
                    if b == 16 {
                        out.push(KernelSpec::new(op, Format::f16(), target, tier)?);
                        continue;
                    }
                    for &g in groups {
                        for &s in schemes {
                            out.push(KernelSpec::new(op, Format::quant(b, g, s)?, target, tier)?);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether the kernel uses subgroup operations: matvec's reduction does on subgroup
    /// tiers; matmul's tiles need none, so its subgroup-tier variants equal the others.
    pub fn uses_subgroups(&self) -> bool {
        self.profile.tier.subgroups() && self.op == Op::Matvec
    }

    /// Whether the kernel quantizes its activations to int8 and sums with `dot4I8Packed`: the
    /// `dot4` tiers' matvec over quantized weights (`docs/FORMAT.md` §12). Other ops, and the
    /// f16 baseline, compute in f32 on those tiers.
    pub fn uses_dot4(&self) -> bool {
        self.profile.tier.dot4() && self.op == Op::Matvec && !self.format.is_f16()
    }

    /// The activations as the kernel computes with them, which is what the reference must be
    /// given: `x` itself, or for [`KernelSpec::uses_dot4`] kernels the exact values of its
    /// int8 codes (`codec::Activations8`).
    pub fn kernel_activations(&self, x: &[f32]) -> Vec<f32> {
        if self.uses_dot4() { crate::codec::Activations8::quantize(x).dequantize() } else { x.to_vec() }
    }

    /// Whether the kernel computes in f16 (`enable f16;`). The KV kernels compute in f32 on
    /// every tier: scores and the softmax need f32's range, and their loads are codes.
    pub fn uses_f16(&self) -> bool {
        self.profile.tier.shader_f16() && !self.op.is_kv()
    }

    /// Relative tolerance against the reference: the tier's, except that KV kernels compute
    /// in f32 on every tier.
    pub fn tolerance(&self) -> f64 {
        if self.uses_f16() { self.profile.tier.tolerance() } else { Tier::Base.tolerance() }
    }

    /// WebGPU features (`GPUFeatureName`) a device needs to run this kernel.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.uses_f16() {
            f.push("shader-f16");
        }
        if self.uses_subgroups() {
            f.push("subgroups");
        }
        f
    }

    /// Rows per workgroup along N (matvec) or the N tile (matmul); 0 for KV ops.
    pub fn rows_per_workgroup(&self) -> u32 {
        match self.op {
            Op::Matvec => self.tuning.rows_per_workgroup,
            Op::Matmul => self.tuning.tile_n,
            Op::KvAppend | Op::KvAttend => 0,
        }
    }

    /// The entry point and (workgroup size, rows per workgroup) that run a matvec of N rows
    /// and K columns: the tall shape's or the wide shape's where one applies, else the
    /// kernel's own (other ops: always their own).
    pub fn matvec_entry(&self, n: u32, k: u32) -> (String, u32, u32) {
        if self.op != Op::Matvec {
            return (self.name(), self.tuning.workgroup_size, self.tuning.rows_per_workgroup);
        }
        match (self.tuning.tall, self.tuning.wide) {
            (Some(t), _) if n >= t.min_n => (format!("{}_tall", self.name()), t.workgroup_size, t.rows_per_workgroup),
            (_, Some(w)) if k >= w.min_k && n <= w.max_n => {
                (format!("{}_wide", self.name()), w.workgroup_size, self.tuning.rows_per_workgroup)
            }
            _ => (self.name(), self.tuning.workgroup_size, self.tuning.rows_per_workgroup),
        }
    }

    /// `value` against a limit of the profile's target, as the shape checks report it.
    fn over_limit(&self, what: &'static str, value: u64, limit: u64, why: &'static str) -> Result<(), SpecError> {
        if value > limit {
            let target = self.profile.target.name().to_string();
            return Err(SpecError::OverLimit { what, value, limit, target, why });
        }
        Ok(())
    }

    /// Checks a kv-append of `new` tokens into a cache holding `len`, or (with `new = 0`) a
    /// kv-attend of `n_heads` query heads over `len` tokens in splits of `split_len`, against
    /// the kernel and the profile's limits.
    pub fn check_kv(
        &self,
        layout: &crate::kv::KvLayout,
        len: u64,
        new: u64,
        n_heads: u64,
        split_len: u64,
    ) -> Result<(), SpecError> {
        if !self.op.is_kv() {
            return Err(SpecError::KvFormat(format!("{} is not a KV op", self.op.name())));
        }
        if layout.format != self.format || layout.head_dim != self.head_dim {
            return Err(SpecError::KvFormat(format!(
                "the cache is {} with head_dim {} but kernel `{}` reads {} with head_dim {}",
                layout.format,
                layout.head_dim,
                self.name(),
                self.format,
                self.head_dim
            )));
        }
        let lim = &self.profile.limits;
        let over = |what, value, limit, why| self.over_limit(what, value, limit, why);
        let (h, d, s) = (layout.kv_heads as u64, layout.head_dim as u64, layout.max_seq as u64);
        let wpd = lim.workgroups_per_dim as u64;
        over("kv_heads", h, wpd, "maxComputeWorkgroupsPerDimension")?;
        over(
            "store bytes",
            2 * h * s * d * self.format.bits() as u64 / 8,
            lim.storage_binding,
            "maxStorageBufferBindingSize",
        )?;
        over("window bytes", 4 * layout.window_words() as u64, lim.storage_binding, "maxStorageBufferBindingSize")?;
        match self.op {
            Op::KvAppend => {
                if new == 0 {
                    return Err(SpecError::Zero("new tokens"));
                }
                if len + new > s {
                    return Err(SpecError::KvFormat(format!(
                        "appending {new} tokens at position {len} overflows max_seq = {s}"
                    )));
                }
                over("new K/V bytes", 2 * new * h * d * 4, lim.storage_binding, "maxStorageBufferBindingSize")?;
            }
            _ => {
                if len == 0 {
                    return Err(SpecError::Zero("cache length"));
                }
                if len > s {
                    return Err(SpecError::KvFormat(format!("cache length {len} is over max_seq = {s}")));
                }
                if n_heads == 0 || !n_heads.is_multiple_of(h) || n_heads / h > crate::kv::MAX_GQA as u64 {
                    return Err(SpecError::KvFormat(format!(
                        "n_heads = {n_heads} must be kv_heads ({h}) times 1 to {}",
                        crate::kv::MAX_GQA
                    )));
                }
                let chunk = self.tuning.chunk as u64;
                if split_len == 0 || !split_len.is_multiple_of(chunk) {
                    return Err(SpecError::KvFormat(format!(
                        "split_len = {split_len} must be a positive multiple of {chunk}"
                    )));
                }
                over("splits", len.div_ceil(split_len), wpd, "maxComputeWorkgroupsPerDimension")?;
                over("n_heads", n_heads, wpd, "maxComputeWorkgroupsPerDimension")?;
                over(
                    "partials bytes",
                    n_heads * len.div_ceil(split_len) * (d + 2) * 4,
                    lim.storage_binding,
                    "maxStorageBufferBindingSize",
                )?;
            }
        }
        Ok(())
    }

    /// Checks a problem shape against the format and the profile's limits.
    /// `m` is 1 for matvec.
    pub fn check_shape(&self, m: u64, n: u64, k: u64) -> Result<(), SpecError> {
        if m == 0 {
            return Err(SpecError::Zero("M"));
        }
        if n == 0 {
            return Err(SpecError::Zero("N"));
        }
        self.format.check_k(k)?;
        let lim = &self.profile.limits;
        let over = |what, value, limit, why| self.over_limit(what, value, limit, why);
        let wpd = lim.workgroups_per_dim as u64;
        match self.op {
            // Matvec folds its workgroup index over x and y, so N may reach wpd² rows.
            Op::Matvec => over(
                "N",
                n,
                wpd * wpd * self.tuning.rows_per_workgroup as u64,
                "maxComputeWorkgroupsPerDimension squared x rows per workgroup",
            )?,
            Op::Matmul => {
                over("N", n, wpd * self.tuning.tile_n as u64, "maxComputeWorkgroupsPerDimension x tile")?;
                over("M", m, wpd * self.tuning.tile_m as u64, "maxComputeWorkgroupsPerDimension x tile")?;
            }
            Op::KvAppend | Op::KvAttend => {
                return Err(SpecError::KvFormat(format!("{} shapes are checked by check_kv", self.op.name())));
            }
        }
        let weight_bytes = n * k * self.format.bits() as u64 / 8;
        over("weight bytes", weight_bytes, lim.storage_binding, "maxStorageBufferBindingSize")?;
        over("activation bytes", m * k * 4, lim.storage_binding, "maxStorageBufferBindingSize")?;
        over("output bytes", m * n * 4, lim.storage_binding, "maxStorageBufferBindingSize")?;
        Ok(())
    }
}
