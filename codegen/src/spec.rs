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
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Decode: `y[N] = W[N x K] · x[K]`.
    Matvec,
    /// Prefill: `Y[M x N] = X[M x K] · W[N x K]ᵀ`.
    Matmul,
}

impl Op {
    /// Every op.
    pub const ALL: [Op; 2] = [Op::Matvec, Op::Matmul];
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Op::Matvec => "matvec",
            Op::Matmul => "matmul",
        }
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
}

impl Tuning {
    /// The default tuning of `op` on `profile`.
    pub fn default_for(op: Op, _profile: &Profile) -> Tuning {
        match op {
            // 64 invocations (two Metal SIMD-groups) x 4 rows: each invocation reuses every
            // x load for 4 rows; the reduction array is 4*64 f32 = 1 KiB.
            Op::Matvec => Tuning { workgroup_size: 64, rows_per_workgroup: 4, tile_m: 1, tile_n: 4 },
            // 8x8 invocations, each a 4x4 block of a 32x32 tile: 2 x 32x33 f32 tiles = 8.25 KiB
            // of workgroup memory, inside the 16 KiB every target may assume.
            Op::Matmul => Tuning { workgroup_size: 64, rows_per_workgroup: 0, tile_m: 32, tile_n: 32 },
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
}

impl KernelSpec {
    /// A spec with the default tuning for `op` on `target` at `tier`.
    pub fn new(op: Op, format: Format, target: Target, tier: Tier) -> Result<KernelSpec, SpecError> {
        let profile = Profile::new(target, tier)?;
        let tuning = Tuning::default_for(op, &profile);
        Ok(KernelSpec { op, format, profile, tuning })
    }

    /// The kernel's name, also its entry point: `matvec_q4g32s_f16_subgroups`. Stable across
    /// targets: the same name on two targets means the same computation.
    pub fn name(&self) -> String {
        format!("{}_{}_{}", self.op.name(), self.format.tag(), self.profile.tier.name().replace('-', "_"))
    }

    /// The whole default set for a target: every op, bit width (and the f16 baseline),
    /// group size, scheme and tier.
    pub fn default_set(target: Target) -> Vec<KernelSpec> {
        Self::select(target, &Op::ALL, &[2, 3, 4, 8, 16], &Format::GROUP_SIZES, &Scheme::ALL, target.info().tiers)
            .expect("the default set is valid")
    }

    /// The cross product of the given choices, in a stable order. The f16 baseline
    /// appears once per op and tier whatever groups and schemes are asked for.
    pub fn select(
        target: Target,
        ops: &[Op],
        bits: &[u32],
        groups: &[u32],
        schemes: &[Scheme],
        tiers: &[Tier],
    ) -> Result<Vec<KernelSpec>, SpecError> {
        let mut out = Vec::new();
        for &tier in tiers {
            for &op in ops {
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

    /// WebGPU features (`GPUFeatureName`) a device needs to run this kernel.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.profile.tier.shader_f16() {
            f.push("shader-f16");
        }
        if self.uses_subgroups() {
            f.push("subgroups");
        }
        f
    }

    /// Rows per workgroup along N (matvec) or the N tile (matmul).
    pub fn rows_per_workgroup(&self) -> u32 {
        match self.op {
            Op::Matvec => self.tuning.rows_per_workgroup,
            Op::Matmul => self.tuning.tile_n,
        }
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
        let target = self.profile.target.name().to_string();
        let over = |what, value: u64, limit: u64, why| {
            if value > limit {
                Err(SpecError::OverLimit { what, value, limit, target: target.clone(), why })
            } else {
                Ok(())
            }
        };
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
        }
        let weight_bytes = n * k * self.format.bits() as u64 / 8;
        over("weight bytes", weight_bytes, lim.storage_binding, "maxStorageBufferBindingSize")?;
        over("activation bytes", m * k * 4, lim.storage_binding, "maxStorageBufferBindingSize")?;
        over("output bytes", m * n * 4, lim.storage_binding, "maxStorageBufferBindingSize")?;
        Ok(())
    }
}
