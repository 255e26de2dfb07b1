//! The WGSL stage: `KernelSpec` → WGSL text → naga validation and cross-compilation.
//!
//! Arithmetic decisions (which words and shifts give which codes, which vector of x they
//! meet) are made here in Rust; the askama templates in `templates/` only lay the code out.
//! [`emit`] never returns text that naga has not parsed, validated with the profile's
//! capabilities and translated to MSL, HLSL and SPIR-V.

mod template;

use crate::codec::planes;
use crate::error::WgslError;
use crate::profile::{Dialect, Target, Tier};
use crate::spec::{BLOCK, KernelSpec, Op};
use askama::Template;
use serde::Serialize;

/// One resource binding of a kernel (all in group 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// `@binding(N)`.
    pub binding: u32,
    /// The WGSL variable name.
    pub name: &'static str,
    /// `uniform`, `read` or `read_write`.
    pub access: &'static str,
    /// The WGSL type of the variable.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Element type of the array (`u32`, `f32`, `vec4<f32>`), or the struct name.
    pub element: &'static str,
    /// What the host puts there.
    pub contents: &'static str,
}

/// The bindings of a kernel, in binding order. Numbers are fixed per name, so a host can
/// bind by number across every kernel.
pub fn bindings(spec: &KernelSpec) -> Vec<Binding> {
    if spec.op.is_kv() {
        return kv_bindings(spec.op);
    }
    let f = spec.format;
    let mut b = vec![
        Binding {
            binding: 0,
            name: "params",
            access: "uniform",
            ty: "Params",
            element: "Params",
            contents: "shape: m, n, k (u32), then one u32 of padding",
        },
        Binding {
            binding: 1,
            name: "weights",
            access: "read",
            ty: weight_vector(spec).0,
            element: weight_vector(spec).1,
            contents: if f.is_f16() {
                "f16 weights, two per word, row-major N x K (docs/FORMAT.md)"
            } else {
                "packed codes, row-major N x K in 32-code blocks (docs/FORMAT.md)"
            },
        },
    ];
    if !f.is_f16() {
        b.push(Binding {
            binding: 2,
            name: "scales",
            access: "read",
            ty: "array<u32>",
            element: "u32",
            contents: "f16 scales, two per word, index row * (K / group) + group",
        });
    }
    if f.has_min() {
        b.push(Binding {
            binding: 3,
            name: "mins",
            access: "read",
            ty: "array<u32>",
            element: "u32",
            contents: "f16 mins, laid out as scales",
        });
    }
    b.push(Binding {
        binding: 4,
        name: "x",
        access: "read",
        ty: "array<vec4<f32>>",
        element: "vec4<f32>",
        contents: "f32 activations, row-major M x K",
    });
    b.push(Binding {
        binding: 5,
        name: "y",
        access: "read_write",
        ty: "array<f32>",
        element: "f32",
        contents: "f32 outputs, row-major M x N",
    });
    b
}

/// The type the weights are read as: matvec loads a block's words as `vec4<u32>`s (4- and
/// 8-bit, f16) or a `vec2<u32>` (2-bit), so each is one wide load whatever the driver proves
/// about alignment; 3-bit blocks (3 words) and matmul read u32 words.
pub(crate) fn weight_vector(spec: &KernelSpec) -> (&'static str, &'static str, u32) {
    match (spec.op == Op::Matvec, spec.format.block_words()) {
        (true, w) if w % 4 == 0 => ("array<vec4<u32>>", "vec4<u32>", 4),
        (true, 2) => ("array<vec2<u32>>", "vec2<u32>", 2),
        _ => ("array<u32>", "u32", 1),
    }
}

/// The bindings of the KV kernels (`docs/FORMAT.md` §11); the store's three arrays keep the
/// weight bindings' numbers.
fn kv_bindings(op: Op) -> Vec<Binding> {
    let append = op == Op::KvAppend;
    let store = if append { "read_write" } else { "read" };
    let mut b = vec![
        Binding {
            binding: 0,
            name: "params",
            access: "uniform",
            ty: "KvParams",
            element: "KvParams",
            contents: "kv_heads, max_seq, window, len, n_new, n_heads, split_len, n_splits (u32 each)",
        },
        Binding {
            binding: 1,
            name: "codes",
            access: store,
            ty: "array<u32>",
            element: "u32",
            contents: "the store's packed codes: 2 x kv_heads x max_seq rows of head_dim (keys, then values)",
        },
        Binding {
            binding: 2,
            name: "scales",
            access: store,
            ty: "array<u32>",
            element: "u32",
            contents: "f16 scales, two per word, index row * (head_dim / group) + group",
        },
        Binding {
            binding: 3,
            name: "mins",
            access: store,
            ty: "array<u32>",
            element: "u32",
            contents: "f16 mins, laid out as scales",
        },
        Binding {
            binding: 4,
            name: "window",
            access: store,
            ty: "array<u32>",
            element: "u32",
            contents: "f16 residual window, two per word, [2][kv_heads][window][head_dim] (at least one word)",
        },
    ];
    if append {
        b.push(Binding {
            binding: 5,
            name: "kv_new",
            access: "read",
            ty: "array<f32>",
            element: "f32",
            contents: "f32 new keys [n_new][kv_heads][head_dim], then new values, same shape",
        });
    } else {
        b.extend([
            Binding {
                binding: 5,
                name: "q",
                access: "read",
                ty: "array<f32>",
                element: "f32",
                contents: "f32 queries [n_heads][head_dim]",
            },
            Binding {
                binding: 6,
                name: "out",
                access: "read_write",
                ty: "array<f32>",
                element: "f32",
                contents: "f32 attention outputs [n_heads][head_dim], written by the combine pass",
            },
            Binding {
                binding: 7,
                name: "partials",
                access: "read_write",
                ty: "array<f32>",
                element: "f32",
                contents: "scratch: [n_heads][n_splits][2 + head_dim] f32 (max, sum, output) from the split pass",
            },
        ]);
    }
    b
}

/// A member of the `Params` uniform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// Field name.
    pub name: &'static str,
    /// Byte offset.
    pub offset: u32,
    /// WGSL type.
    #[serde(rename = "type")]
    pub ty: &'static str,
}

/// The `Params` uniform layout shared by every kernel: 16 bytes.
pub const PARAMS: [Param; 4] = [
    Param { name: "m", offset: 0, ty: "u32" },
    Param { name: "n", offset: 4, ty: "u32" },
    Param { name: "k", offset: 8, ty: "u32" },
    Param { name: "pad", offset: 12, ty: "u32" },
];

/// The `KvParams` uniform of the KV kernels: 32 bytes. Fields an op does not use are 0.
pub const KV_PARAMS: [Param; 8] = [
    Param { name: "kv_heads", offset: 0, ty: "u32" },
    Param { name: "max_seq", offset: 4, ty: "u32" },
    Param { name: "window", offset: 8, ty: "u32" },
    Param { name: "len", offset: 12, ty: "u32" },
    Param { name: "n_new", offset: 16, ty: "u32" },
    Param { name: "n_heads", offset: 20, ty: "u32" },
    Param { name: "split_len", offset: 24, ty: "u32" },
    Param { name: "n_splits", offset: 28, ty: "u32" },
];

/// The uniform layout of a kernel.
pub fn params(spec: &KernelSpec) -> Vec<Param> {
    if spec.op.is_kv() { KV_PARAMS.to_vec() } else { PARAMS.to_vec() }
}

/// How many workgroups to dispatch, as expressions over the shape (M, N, K for matvec and
/// matmul; the `KvParams` names for KV ops; see `docs/FORMAT.md`, "Dispatch") and as a
/// function the Rust runtime calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    /// x, y, z expressions of the first (or only) pass.
    pub workgroups: [String; 3],
    /// Every pass in order, sharing one bind group: one for matvec, matmul and kv-append;
    /// kv-attend's split pass, then its combine pass.
    pub passes: Vec<Pass>,
    /// Host-chosen values the expressions use, with the rule the runtimes follow.
    pub host_values: Vec<HostValue>,
    /// matvec with a tall shape: the passes to use instead when N ≥ `min_n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tall: Option<TallDispatch>,
    /// matvec with a wide shape: the passes to use instead when K ≥ `min_k` and N ≤ `max_n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wide: Option<WideDispatch>,
}

/// The passes a matvec uses for tall matrices ([`crate::spec::TallMatvec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TallDispatch {
    /// The least N these passes are for.
    pub min_n: u32,
    /// Used instead of [`Dispatch::passes`].
    pub passes: Vec<Pass>,
}

/// The passes a matvec uses for long rows ([`crate::spec::WideMatvec`]): the same workgroup
/// counts as [`Dispatch::passes`], another entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WideDispatch {
    /// The least K these passes are for.
    pub min_k: u32,
    /// The largest N these passes are for.
    pub max_n: u32,
    /// Used instead of [`Dispatch::passes`].
    pub passes: Vec<Pass>,
}

/// One compute pass of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pass {
    /// Entry point in the kernel's WGSL file.
    pub entry_point: String,
    /// x, y, z workgroup-count expressions.
    pub workgroups: [String; 3],
}

/// A parameter the host chooses, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostValue {
    /// The `KvParams` field.
    pub name: &'static str,
    /// Rule (any value meeting `requires` is correct; this one is what the runtimes use).
    pub rule: String,
    /// What any chosen value must satisfy.
    pub requires: String,
}

impl KernelSpec {
    /// The dispatch expressions written into the manifest.
    pub fn dispatch(&self) -> Dispatch {
        let max = self.profile.limits.workgroups_per_dim;
        let name = self.name();
        let one = |workgroups: [String; 3]| Dispatch {
            passes: vec![Pass { entry_point: name.clone(), workgroups: workgroups.clone() }],
            workgroups,
            host_values: vec![],
            tall: None,
            wide: None,
        };
        let chunk = self.tuning.chunk;
        match self.op {
            Op::KvAppend => one(["kv_heads".into(), "2".into(), "1".into()]),
            Op::KvAttend => {
                let split = ["kv_heads".to_string(), "n_splits".into(), "1".into()];
                Dispatch {
                    workgroups: split.clone(),
                    passes: vec![
                        Pass { entry_point: name.clone(), workgroups: split },
                        Pass {
                            entry_point: format!("{name}_combine"),
                            workgroups: ["n_heads".into(), "1".into(), "1".into()],
                        },
                    ],
                    host_values: vec![
                        HostValue {
                            name: "split_len",
                            rule: format!(
                                "{chunk} * max(1, ceil(ceil(len / ceil({} / kv_heads)) / {chunk}))",
                                crate::kv::SPLIT_WORKGROUPS
                            ),
                            requires: format!("a positive multiple of {chunk}; ceil(len / split_len) <= {max}"),
                        },
                        HostValue {
                            name: "n_splits",
                            rule: "ceil(len / split_len)".into(),
                            requires: "exactly ceil(len / split_len)".into(),
                        },
                    ],
                    tall: None,
                    wide: None,
                }
            }
            Op::Matvec => {
                // The workgroup index folds over x and y (see `workgroups`).
                let grid = |r: u32| -> [String; 3] {
                    [format!("min(ceil(N / {r}), {max})"), format!("ceil(ceil(N / {r}) / {max})"), "1".into()]
                };
                let mut d = one(grid(self.tuning.rows_per_workgroup));
                d.tall = self.tuning.tall.map(|t| TallDispatch {
                    min_n: t.min_n,
                    passes: vec![Pass {
                        entry_point: self.matvec_entry(t.min_n, 0).0,
                        workgroups: grid(t.rows_per_workgroup),
                    }],
                });
                d.wide = self.tuning.wide.map(|w| WideDispatch {
                    min_k: w.min_k,
                    max_n: w.max_n,
                    passes: vec![Pass {
                        entry_point: self.matvec_entry(w.max_n, w.min_k).0,
                        workgroups: grid(self.tuning.rows_per_workgroup),
                    }],
                });
                d
            }
            Op::Matmul => one([
                format!("ceil(N / {})", self.tuning.tile_n),
                format!("ceil(M / {})", self.tuning.tile_m),
                "1".into(),
            ]),
        }
    }

    /// The workgroup counts for a shape, as [`KernelSpec::dispatch`] describes them.
    pub fn workgroups(&self, m: u32, n: u32) -> [u32; 3] {
        let max = self.profile.limits.workgroups_per_dim;
        match self.op {
            Op::Matvec => {
                // The wide shape has the default rows: K does not change the grid.
                let total = n.div_ceil(self.matvec_entry(n, 0).2);
                [total.min(max), total.div_ceil(max), 1]
            }
            Op::Matmul => [n.div_ceil(self.tuning.tile_n), m.div_ceil(self.tuning.tile_m), 1],
            Op::KvAppend | Op::KvAttend => panic!("KV ops dispatch per pass: KvCall::passes"),
        }
    }
}

/// An emitted, validated kernel.
#[derive(Debug, Clone)]
pub struct Wgsl {
    /// The kernel name (also the entry point).
    pub name: String,
    /// The text for the spec's target compiler.
    pub text: String,
    /// The same kernel in naga's dialect (what wgpu and Firefox accept). Equal to `text`
    /// except on Tint targets with subgroups, where only the `enable subgroups;` line differs.
    pub naga_text: String,
    /// Invocations per workgroup (x, y, z).
    pub workgroup_size: [u32; 3],
    /// Workgroup memory the kernel declares, in bytes.
    pub workgroup_bytes: u32,
}

/// Renders, validates and cross-compiles the kernel `spec` describes.
pub fn emit(spec: &KernelSpec) -> Result<Wgsl, WgslError> {
    let name = spec.name();
    let text = render(spec, spec.profile.dialect)?;
    let naga_text = if spec.profile.dialect == Dialect::Tint { render(spec, Dialect::Naga)? } else { text.clone() };
    let module = validate(&name, &naga_text, spec.profile.tier)?;
    cross_compile(&name, &module, spec.profile.tier)?;
    let t = &spec.tuning;
    let multiple = spec.profile.workgroup_multiple;
    // Every entry point's workgroup (a matvec's tall and wide ones too).
    let sizes = [Some(t.workgroup_size), t.tall.map(|s| s.workgroup_size), t.wide.map(|s| s.workgroup_size)];
    for size in sizes.into_iter().flatten() {
        if !size.is_multiple_of(multiple) || size > spec.profile.limits.invocations {
            return Err(WgslError::Spec(crate::error::SpecError::OverLimit {
                what: "workgroup size",
                value: size as u64,
                limit: spec.profile.limits.invocations as u64,
                target: spec.profile.target.name().into(),
                why: if !size.is_multiple_of(multiple) {
                    "must be a multiple of the SIMD-group width"
                } else {
                    "maxComputeInvocationsPerWorkgroup"
                },
            }));
        }
    }
    let workgroup_bytes = template::workgroup_bytes(spec);
    if workgroup_bytes > spec.profile.limits.workgroup_storage {
        return Err(WgslError::Spec(crate::error::SpecError::OverLimit {
            what: "workgroup memory",
            value: workgroup_bytes as u64,
            limit: spec.profile.limits.workgroup_storage as u64,
            target: spec.profile.target.name().into(),
            why: "maxComputeWorkgroupStorageSize",
        }));
    }
    Ok(Wgsl { name, text, naga_text, workgroup_size: [t.workgroup_size, 1, 1], workgroup_bytes })
}

/// Renders the kernel text for a compiler dialect, without validating it.
pub fn render(spec: &KernelSpec, dialect: Dialect) -> Result<String, WgslError> {
    let rendered = match spec.op {
        Op::Matvec => template::Matvec { c: &template::Context::new(spec, dialect) }.render(),
        Op::Matmul => template::Matmul { c: &template::Context::new(spec, dialect) }.render(),
        Op::KvAppend => template::KvAppend { c: &template::KvContext::new(spec) }.render(),
        Op::KvAttend => template::KvAttend { c: &template::KvContext::new(spec) }.render(),
    };
    rendered.map_err(|source| WgslError::Template { kernel: spec.name(), source })
}

/// naga capabilities a tier may use.
fn capabilities(tier: Tier) -> naga::valid::Capabilities {
    use naga::valid::Capabilities as C;
    // pack/unpack2x16float are core WGSL; naga asks for this capability, which every
    // WebGPU implementation has (wgpu grants it on every backend that is WebGPU compliant).
    let mut caps = C::SHADER_FLOAT16_IN_FLOAT32;
    if tier.shader_f16() {
        caps |= C::SHADER_FLOAT16;
    }
    if tier.subgroups() {
        caps |= C::SUBGROUP;
    }
    caps
}

/// Parses and validates naga-dialect WGSL with a tier's capabilities. Errors carry naga's
/// report, which quotes the offending source line under `name` (a kernel or file name).
pub fn validate(name: &str, text: &str, tier: Tier) -> Result<naga::Module, WgslError> {
    let module = naga::front::wgsl::parse_str(text).map_err(|e| WgslError::Naga {
        kernel: name.into(),
        stage: "parse",
        report: e.emit_to_string_with_path(text, name),
    })?;
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(tier));
    if tier.subgroups() {
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
        validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    validator.validate(&module).map_err(|e| WgslError::Naga {
        kernel: name.into(),
        stage: "validation",
        report: e.emit_to_string_with_path(text, name),
    })?;
    Ok(module)
}

/// Validates a user's WGSL file as the `target`'s compiler would see it through naga:
/// the directives naga does not implement (Tint's `enable subgroups;`) are accepted on
/// Tint targets and removed before parsing, and the target's richest tier's capabilities
/// are allowed.
pub fn validate_for_target(name: &str, text: &str, target: Target) -> Result<(), WgslError> {
    let info = target.info();
    // The richest tier's capabilities (dot4 tiers add a language feature, not a capability).
    let tier = *info.tiers.iter().rev().find(|t| !t.dot4()).expect("every target has a non-dot4 tier");
    let naga_text = if info.dialect == Dialect::Tint { strip_tint_directives(text) } else { text.to_string() };
    let module = validate(name, &naga_text, tier)?;
    cross_compile(name, &module, tier)
}

/// Replaces Tint-only directives with blank lines, so naga's line numbers still match.
fn strip_tint_directives(text: &str) -> String {
    text.lines().map(|l| if l.trim() == "enable subgroups;" { "" } else { l }).collect::<Vec<_>>().join("\n")
}

/// Translates a validated module to MSL (Safari's Metal), HLSL (Chrome and Edge on Windows)
/// and SPIR-V (Vulkan), so a kernel that one backend cannot express is caught here.
fn cross_compile(name: &str, module: &naga::Module, tier: Tier) -> Result<(), WgslError> {
    use naga::back::{hlsl, msl, spv};
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(tier))
        .subgroup_stages(if tier.subgroups() {
            naga::valid::ShaderStages::COMPUTE
        } else {
            naga::valid::ShaderStages::empty()
        })
        .subgroup_operations(if tier.subgroups() {
            naga::valid::SubgroupOperationSet::all()
        } else {
            naga::valid::SubgroupOperationSet::empty()
        })
        .validate(module)
        .map_err(|e| WgslError::Backend { kernel: name.into(), lang: "validator", message: e.to_string() })?;
    let backend =
        |lang, e: &dyn std::fmt::Display| WgslError::Backend { kernel: name.into(), lang, message: e.to_string() };

    let msl_options = msl::Options { lang_version: (2, 4), ..Default::default() };
    msl::write_string(module, &info, &msl_options, &msl::PipelineOptions::default()).map_err(|e| backend("MSL", &e))?;

    // FXC (shader model 5.1) is Chrome's default on Windows; f16 and wave ops need DXC (6.2).
    let shader_model = if tier == Tier::Base { hlsl::ShaderModel::V5_1 } else { hlsl::ShaderModel::V6_2 };
    let hlsl_options = hlsl::Options { shader_model, ..Default::default() };
    let mut hlsl_out = String::new();
    hlsl::Writer::new(&mut hlsl_out, &hlsl_options, &hlsl::PipelineOptions::default())
        .write(module, &info, None)
        .map_err(|e| backend("HLSL", &e))?;

    let spv_options = spv::Options { lang_version: (1, 3), ..Default::default() };
    spv::write_vec(module, &info, &spv_options, None).map_err(|e| backend("SPIR-V", &e))?;
    Ok(())
}

/// The code layout facts templates need, derived from the format (`docs/FORMAT.md`).
pub(crate) fn block_constants(spec: &KernelSpec) -> (u32, u32) {
    let f = spec.format;
    (f.block_words(), f.group_size() / BLOCK)
}

/// Where a quad's words come from, for [`quad_codes`].
#[derive(Clone, Copy)]
pub(crate) enum QuadAt {
    /// Quad `q` (known at generation) of a block whose words are bound to `w0, w1, ...`.
    Local(u32),
    /// Quad `qq` (a run-time u32, 0..7) of the block starting at word `wb` of `codes`.
    Codes,
}

/// For plane-packed formats: the u32 expression whose four bytes are the codes of
/// elements `4·quad .. 4·quad+3` of a block. In a p-bit plane those four codes sit in word
/// `quad mod p`, slot `quad div p`.
pub(crate) fn quad_codes(bits: u32, quad: QuadAt) -> String {
    let mut parts = Vec::new();
    let (mut word0, mut low) = (0u32, 0u32);
    for &p in planes(bits) {
        let mask = ((1u32 << p) - 1) * 0x0101_0101;
        let mut e = match quad {
            QuadAt::Local(q) => {
                let (word, shift) = (word0 + q % p, p * (q / p));
                let e = if shift == 0 { format!("w{word}") } else { format!("(w{word} >> {shift}u)") };
                if p == 8 { e } else { format!("({e} & 0x{mask:08x}u)") }
            }
            QuadAt::Codes if p == 8 => format!("codes[wb + {word0}u + qq]"),
            QuadAt::Codes => {
                format!("((codes[wb + {word0}u + qq % {p}u] >> ({p}u * (qq / {p}u))) & 0x{mask:08x}u)")
            }
        };
        if low != 0 {
            e = format!("({e} << {low}u)");
        }
        parts.push(e);
        word0 += p;
        low += p;
    }
    parts.join(" | ")
}
