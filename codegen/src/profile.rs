//! Browser profiles: the one table of what each target may assume.
//!
//! A [`Profile`] is a target (browser or native wgpu) at a feature tier. Every fact about a
//! browser lives in [`TARGETS`]; emitters read a profile's fields and never test the target
//! by name. Facts come from `shared/browsers.toml` (BCD, engine sources, and what this
//! project observed on its own machines); the comment on each row says which line.

use crate::error::SpecError;
use serde::Serialize;
use std::fmt;

/// A browser (or native) target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Any WebGPU implementation: spec-default limits, no subgroups.
    Generic,
    /// Chrome (Dawn + Tint).
    Chrome,
    /// Edge (Chromium: Dawn + Tint, same versions as Chrome).
    Edge,
    /// Firefox (wgpu + naga).
    Firefox,
    /// Safari (WebKit's WGSL compiler to Metal).
    Safari,
    /// wgpu outside a browser (Vulkan, Metal, DX12) with the device's real features.
    Native,
}

impl Target {
    /// Every target, in table order.
    pub const ALL: [Target; 6] =
        [Target::Generic, Target::Chrome, Target::Edge, Target::Firefox, Target::Safari, Target::Native];

    /// The lowercase name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Target::Generic => "generic",
            Target::Chrome => "chrome",
            Target::Edge => "edge",
            Target::Firefox => "firefox",
            Target::Safari => "safari",
            Target::Native => "native",
        }
    }

    /// This target's row of [`TARGETS`].
    pub fn info(self) -> &'static TargetInfo {
        TARGETS.iter().find(|t| t.target == self).expect("every Target has a row in TARGETS")
    }
}

impl std::str::FromStr for Target {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Target::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| SpecError::UnknownTarget(s.to_string()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which optional WebGPU capabilities a variant may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Core WebGPU only: f32 arithmetic, workgroup-memory reductions.
    Base,
    /// `shader-f16`: inner products in f16, accumulated in f32.
    F16,
    /// `subgroups`: subgroup reductions.
    Subgroups,
    /// Both.
    F16Subgroups,
    /// WGSL's `packed_4x8_integer_dot_product` language feature: matvec quantizes the
    /// activations to int8 per 32-block (`docs/FORMAT.md` §12) and sums with `dot4I8Packed`.
    /// Other ops compute as in `base`. Never chosen automatically: int8 activations change
    /// the result (as llama.cpp's q8 activations do), so a caller asks for it by name.
    Dot4,
    /// `dot4` with subgroup reductions.
    Dot4Subgroups,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 6] =
        [Tier::Base, Tier::F16, Tier::Subgroups, Tier::F16Subgroups, Tier::Dot4, Tier::Dot4Subgroups];

    /// The name used on the command line, in manifests and in kernel names.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Base => "base",
            Tier::F16 => "f16",
            Tier::Subgroups => "subgroups",
            Tier::F16Subgroups => "f16-subgroups",
            Tier::Dot4 => "dot4",
            Tier::Dot4Subgroups => "dot4-subgroups",
        }
    }

    /// Whether this tier computes in f16 (needs the `shader-f16` feature).
    pub fn shader_f16(self) -> bool {
        matches!(self, Tier::F16 | Tier::F16Subgroups)
    }

    /// Whether this tier uses subgroup operations (needs the `subgroups` feature).
    pub fn subgroups(self) -> bool {
        matches!(self, Tier::Subgroups | Tier::F16Subgroups | Tier::Dot4Subgroups)
    }

    /// Whether matvec quantizes activations to int8 and uses `dot4I8Packed` (needs the WGSL
    /// language feature `packed_4x8_integer_dot_product`, which is not a `GPUFeatureName`).
    pub fn dot4(self) -> bool {
        matches!(self, Tier::Dot4 | Tier::Dot4Subgroups)
    }

    /// WebGPU feature names (as `GPUFeatureName`) a device needs for this tier.
    pub fn features(self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.shader_f16() {
            f.push("shader-f16");
        }
        if self.subgroups() {
            f.push("subgroups");
        }
        f
    }

    /// The tolerance this tier's kernels are held to against the scalar reference, relative
    /// to the magnitude of the sum (see [`crate::reference::Check`]). f32 tiers lose a few
    /// ulps per addition; f16 tiers round activations and 32-term block sums to 11 bits.
    pub fn tolerance(self) -> f64 {
        if self.shader_f16() { 1.0e-2 } else { 1.0e-5 }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which WGSL compiler reads a target's text. They disagree on directives
/// (`shared/DESIGN.md`, "Engine dialects differ").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Tint (Chrome, Edge): subgroup builtins need `enable subgroups;`.
    Tint,
    /// naga (Firefox, native wgpu): rejects `enable subgroups;`, takes subgroups from the device.
    Naga,
    /// WebKit (Safari): standard WGSL; no subgroups in Safari 26.
    Webkit,
    /// Unknown implementation: only text every compiler accepts.
    Portable,
}

impl Dialect {
    /// The name used in manifests and by `shadergen list`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Tint => "tint",
            Dialect::Naga => "naga",
            Dialect::Webkit => "webkit",
            Dialect::Portable => "portable",
        }
    }
}

/// Limits a target may assume without requesting more from the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// `maxComputeWorkgroupStorageSize`, bytes.
    pub workgroup_storage: u32,
    /// `maxComputeInvocationsPerWorkgroup`.
    pub invocations: u32,
    /// `maxComputeWorkgroupsPerDimension`.
    pub workgroups_per_dim: u32,
    /// `maxStorageBufferBindingSize`, bytes.
    pub storage_binding: u64,
    /// `maxBufferSize`, bytes.
    pub max_buffer: u64,
    /// `maxStorageBuffersPerShaderStage`.
    pub storage_buffers_per_stage: u32,
}

/// WebGPU spec defaults (`[spec_defaults].core` in browsers.toml): what every adapter grants.
pub const SPEC_DEFAULT_LIMITS: Limits = Limits {
    workgroup_storage: 16384,
    invocations: 256,
    workgroups_per_dim: 65535,
    storage_binding: 134_217_728,
    max_buffer: 268_435_456,
    storage_buffers_per_stage: 8,
};

/// One row of the profile table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TargetInfo {
    /// The target.
    pub target: Target,
    /// Its WGSL compiler.
    pub dialect: Dialect,
    /// Tiers it has, best last; `base` is always first.
    pub tiers: &'static [Tier],
    /// Limits it may assume.
    pub limits: Limits,
    /// Subgroup width the code may be tuned for (never relied on for correctness).
    pub simd_width: u32,
    /// Workgroup sizes must be a multiple of this (Metal's SIMD-group width on Safari).
    pub workgroup_multiple: u32,
    /// One line for people (`shadergen list`).
    pub description: &'static str,
    /// Where the facts come from.
    pub source: &'static str,
}

const ALL_TIERS: &[Tier] = &Tier::ALL;

/// Chrome and Edge share one row of facts: Edge mirrors Chromium (BCD "mirror").
const CHROMIUM: TargetInfo = TargetInfo {
    target: Target::Chrome,
    dialect: Dialect::Tint,
    tiers: ALL_TIERS,
    limits: SPEC_DEFAULT_LIMITS,
    simd_width: 32,
    workgroup_multiple: 1,
    description: "Chrome (Dawn + Tint); subgroup tiers need Chrome 144+",
    source: "browsers.toml [chrome]: shader_f16 desktop 120; subgroups 134; subgroup_id 144 \
             (the subgroup tiers use subgroup_id, so they need Chrome 144+); \
             packed_4x8_integer_dot_product 123 (dot4 tiers)",
};

/// The profile table. The only place browser facts live.
pub const TARGETS: [TargetInfo; 6] = [
    TargetInfo {
        target: Target::Generic,
        dialect: Dialect::Portable,
        // shader-f16 is detected at run time; subgroup text differs between compilers.
        tiers: &[Tier::Base, Tier::F16],
        limits: SPEC_DEFAULT_LIMITS,
        simd_width: 32,
        workgroup_multiple: 32,
        description: "any WebGPU implementation: spec-default limits, no subgroups",
        source: "browsers.toml [spec_defaults].core",
    },
    CHROMIUM,
    TargetInfo { target: Target::Edge, description: "Edge (Chromium: Dawn + Tint, as Chrome)", ..CHROMIUM },
    TargetInfo {
        target: Target::Firefox,
        dialect: Dialect::Naga,
        // No subgroups in Firefox. shader-f16 is not in BCD (bug 1891593) but headless
        // Firefox ESR 153 exposes it on lavapipe ([observed.firefox_esr_153_headless]).
        // naga accepts packed_4x8_integer_dot_product (browsers.toml naga_accepts).
        tiers: &[Tier::Base, Tier::F16, Tier::Dot4],
        limits: SPEC_DEFAULT_LIMITS,
        simd_width: 32,
        workgroup_multiple: 1,
        description: "Firefox (wgpu + naga); no subgroups",
        source: "browsers.toml [firefox], [observed.firefox_esr_153_headless]",
    },
    TargetInfo {
        target: Target::Safari,
        dialect: Dialect::Webkit,
        // shader-f16 since Safari 26; subgroups not in 26.x stable. WebKit's compiler
        // lists packed_4x8_integer_dot_product (browsers.toml: detect at run time).
        tiers: &[Tier::Base, Tier::F16, Tier::Dot4],
        // Apple6+ grants 32 KiB workgroup storage, Apple4/5 only the spec default:
        // assume the default so every Apple GPU runs the kernels.
        limits: SPEC_DEFAULT_LIMITS,
        simd_width: 32,
        workgroup_multiple: 32,
        description: "Safari 26+ (WebKit's WGSL compiler to Metal); no subgroups",
        source: "browsers.toml [safari]: shader_f16 26, simd_width 32, limits_apple4_5; \
                 known bug: override-sized var<workgroup> arrays (all sizes are literals)",
    },
    TargetInfo {
        target: Target::Native,
        dialect: Dialect::Naga,
        tiers: ALL_TIERS,
        limits: SPEC_DEFAULT_LIMITS,
        simd_width: 32,
        workgroup_multiple: 1,
        description: "wgpu outside a browser (Vulkan, Metal, DX12)",
        source: "wgpu 30 + naga 30: SHADER_F16 and SUBGROUP features, spec-default limits",
    },
];

/// A target at a tier: what one emitted variant may assume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// The target.
    pub target: Target,
    /// The tier.
    pub tier: Tier,
    /// The target's compiler.
    pub dialect: Dialect,
    /// Limits it may assume.
    pub limits: Limits,
    /// Workgroup sizes must be a multiple of this.
    pub workgroup_multiple: u32,
}

impl Profile {
    /// The profile for `target` at `tier`, if the target has that tier.
    pub fn new(target: Target, tier: Tier) -> Result<Profile, SpecError> {
        let info = target.info();
        if !info.tiers.contains(&tier) {
            return Err(SpecError::UnknownTier {
                target: target.name().into(),
                tier: tier.name().into(),
                allowed: info.tiers.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(Profile {
            target,
            tier,
            dialect: info.dialect,
            limits: info.limits,
            workgroup_multiple: info.workgroup_multiple,
        })
    }

    /// Parses a tier name for this target.
    pub fn parse_tier(target: Target, name: &str) -> Result<Tier, SpecError> {
        let info = target.info();
        info.tiers.iter().copied().find(|t| t.name() == name).ok_or_else(|| SpecError::UnknownTier {
            target: target.name().into(),
            tier: name.into(),
            allowed: info.tiers.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The tier a device gets for `target`: the richest of the target's tiers whose features
    /// the device has. f16 tiers trade accuracy (tolerance 1e-2 instead of 1e-5) for speed,
    /// so they are chosen only when `allow_f16` is set; dot4 tiers change the result more
    /// (int8 activations) and are never chosen here (see [`Profile::select_tier_int8`]). This
    /// is the one selection rule; the runtimes implement it from the manifest.
    pub fn select_tier(target: Target, has_shader_f16: bool, has_subgroups: bool, allow_f16: bool) -> Tier {
        Profile::select_tier_int8(target, has_shader_f16, has_subgroups, allow_f16, false)
    }

    /// [`Profile::select_tier`] where dot4 tiers count when `int8` is set: the host allows
    /// int8 activations for a family that has such kernels, and the device's WGSL has
    /// `packed_4x8_integer_dot_product` (`docs/CAPS.md` §3).
    pub fn select_tier_int8(
        target: Target,
        has_shader_f16: bool,
        has_subgroups: bool,
        allow_f16: bool,
        int8: bool,
    ) -> Tier {
        target
            .info()
            .tiers
            .iter()
            .copied()
            .rfind(|t| {
                (!t.dot4() || int8)
                    && (!t.shader_f16() || (has_shader_f16 && allow_f16))
                    && (!t.subgroups() || has_subgroups)
            })
            .unwrap_or(Tier::Base)
    }

    /// Every profile of every target, in table order.
    pub fn all() -> Vec<Profile> {
        TARGETS
            .iter()
            .flat_map(|info| info.tiers.iter().map(move |&tier| Profile::new(info.target, tier)))
            .collect::<Result<_, _>>()
            .expect("table tiers are valid")
    }
}
