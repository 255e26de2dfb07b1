//! Capabilities reports and variant selection: `docs/CAPS.md`, implemented in Rust.
//!
//! ```text
//! shadergen.mjs in a page ─┐
//! shadergen caps (wgpu) ───┼─► report JSON ──► Caps::from_json ──┬─► suggest_target ─► Target
//! tests/caps/*.json ───────┘   (§1, every field checked)         │
//! manifest.json ──► PackageView::from_json ──────────────────────┴─► select ─► Vec<Choice>
//!                   (the fields §3 reads)                              (one per family, §3)
//! ```
//!
//! The rule reads the manifest's JSON, never `KernelSpec`s, so this module and the JavaScript
//! implementation in `shadergen.mjs` decide from the same input; the shared vectors in
//! `tests/caps/` (format: `docs/CAPS.md` §4) hold both to the same answers. Parsing is strict
//! and says where: a malformed report or manifest is an error naming the field
//! (`webgpu.limits.maxBufferSize`, `kernels[3].tier`) and what it must be. Selection itself
//! cannot fail: every family gets a kernel, on WebGPU or as its WebAssembly twin.

use crate::profile::{Profile, Target, Tier};
use crate::spec::{Op, Scheme};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The report version this module reads and writes (`schema`).
pub const SCHEMA: u64 = 1;

/// A malformed capabilities report or manifest: which document, where in it, what was
/// expected there and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    /// The capabilities report does not follow `docs/CAPS.md` §1.
    #[error("capabilities report: `{path}`: expected {expected}, found {found}")]
    Report {
        /// Where, as a JSON path (`webgpu.limits.maxBufferSize`).
        path: String,
        /// What the field must be.
        expected: String,
        /// What it is (a short rendering of the JSON value, or `nothing` when missing).
        found: String,
    },
    /// The manifest lacks a field the rule reads, or holds a value it cannot take.
    #[error("manifest: `{path}`: expected {expected}, found {found}")]
    Manifest {
        /// Where, as a JSON path (`kernels[3].tier`).
        path: String,
        /// What the field must be.
        expected: String,
        /// What it is.
        found: String,
    },
}

/// The engine behind a report (§1 `engine`); it only suggests a target (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Chrome, Edge and other Chromium browsers (Dawn + Tint).
    Chromium,
    /// Firefox (wgpu + naga).
    Gecko,
    /// Safari and every iOS browser (WebKit).
    Webkit,
    /// Dawn in Node (`npm install webgpu`).
    DawnNode,
    /// wgpu outside a browser (`shadergen caps`).
    WgpuNative,
    /// Anything else.
    Unknown,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 6] =
        [Engine::Chromium, Engine::Gecko, Engine::Webkit, Engine::DawnNode, Engine::WgpuNative, Engine::Unknown];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Gecko => "gecko",
            Engine::Webkit => "webkit",
            Engine::DawnNode => "dawn-node",
            Engine::WgpuNative => "wgpu-native",
            Engine::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A capabilities report (`docs/CAPS.md` §1). Serializes to exactly the report's JSON;
/// deserializing checks every field (see [`Caps::from_json`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caps {
    /// The report version: [`SCHEMA`].
    pub schema: u64,
    /// Who measured it: `shadergen caps (wgpu)`, `shadergen.mjs`, `recorded: <what>`.
    pub source: String,
    /// `navigator.userAgent`; `None` outside browsers.
    pub user_agent: Option<String>,
    /// The engine, guessed from the user agent.
    pub engine: Engine,
    /// The adapter; `None` without WebGPU (no `navigator.gpu`, or no adapter).
    pub webgpu: Option<WebGpu>,
    /// What WebAssembly validates.
    pub wasm: WasmSupport,
}

/// What the WebGPU adapter offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebGpu {
    /// `GPUAdapterInfo`.
    pub adapter: AdapterInfo,
    /// The adapter's `GPUFeatureName`s, sorted.
    pub features: Vec<String>,
    /// The adapter's limits, by WebGPU name.
    pub limits: AdapterLimits,
    /// `navigator.gpu.wgslLanguageFeatures`, sorted (empty where absent).
    pub wgsl_language_features: Vec<String>,
    /// A software adapter (SwiftShader, lavapipe) when known.
    pub is_fallback_adapter: bool,
}

impl WebGpu {
    /// Whether the adapter has the feature `name` (a `GPUFeatureName`).
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }
}

/// `GPUAdapterInfo`; each field `None` when unknown (Safari 26.0 has no `adapter.info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdapterInfo {
    /// `vendor`.
    pub vendor: Option<String>,
    /// `architecture`.
    pub architecture: Option<String>,
    /// `device`.
    pub device: Option<String>,
    /// `description`.
    pub description: Option<String>,
}

/// The adapter's limits: the ones the rule and hosts read, then any others by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterLimits {
    /// `maxComputeWorkgroupStorageSize`, bytes.
    pub max_compute_workgroup_storage_size: u64,
    /// `maxComputeInvocationsPerWorkgroup`.
    pub max_compute_invocations_per_workgroup: u64,
    /// `maxComputeWorkgroupSizeX`.
    pub max_compute_workgroup_size_x: u64,
    /// `maxComputeWorkgroupsPerDimension`.
    pub max_compute_workgroups_per_dimension: u64,
    /// `maxStorageBufferBindingSize`, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// `maxBufferSize`, bytes.
    pub max_buffer_size: u64,
    /// `maxStorageBuffersPerShaderStage`.
    pub max_storage_buffers_per_shader_stage: u64,
    /// Every other limit the adapter reported, by WebGPU name.
    #[serde(flatten)]
    pub other: BTreeMap<String, u64>,
}

impl AdapterLimits {
    /// The names of the limits every report has (§1), in the order of the fields.
    pub const REQUIRED: [&'static str; 7] = [
        "maxComputeWorkgroupStorageSize",
        "maxComputeInvocationsPerWorkgroup",
        "maxComputeWorkgroupSizeX",
        "maxComputeWorkgroupsPerDimension",
        "maxStorageBufferBindingSize",
        "maxBufferSize",
        "maxStorageBuffersPerShaderStage",
    ];

    /// The WebGPU spec's defaults (`browsers.toml [spec_defaults].core`): what every adapter
    /// grants, and nothing else.
    pub fn spec_defaults() -> AdapterLimits {
        let d = crate::profile::SPEC_DEFAULT_LIMITS;
        AdapterLimits {
            max_compute_workgroup_storage_size: d.workgroup_storage.into(),
            max_compute_invocations_per_workgroup: d.invocations.into(),
            max_compute_workgroup_size_x: 256,
            max_compute_workgroups_per_dimension: d.workgroups_per_dim.into(),
            max_storage_buffer_binding_size: d.storage_binding,
            max_buffer_size: d.max_buffer,
            max_storage_buffers_per_shader_stage: d.storage_buffers_per_stage.into(),
            other: BTreeMap::new(),
        }
    }

    /// A limit by WebGPU name.
    pub fn get(&self, name: &str) -> Option<u64> {
        match name {
            "maxComputeWorkgroupStorageSize" => Some(self.max_compute_workgroup_storage_size),
            "maxComputeInvocationsPerWorkgroup" => Some(self.max_compute_invocations_per_workgroup),
            "maxComputeWorkgroupSizeX" => Some(self.max_compute_workgroup_size_x),
            "maxComputeWorkgroupsPerDimension" => Some(self.max_compute_workgroups_per_dimension),
            "maxStorageBufferBindingSize" => Some(self.max_storage_buffer_binding_size),
            "maxBufferSize" => Some(self.max_buffer_size),
            "maxStorageBuffersPerShaderStage" => Some(self.max_storage_buffers_per_shader_stage),
            _ => self.other.get(name).copied(),
        }
    }

    /// Sets a limit by WebGPU name (one of [`Self::REQUIRED`] or any other).
    pub fn set(&mut self, name: &str, value: u64) {
        match name {
            "maxComputeWorkgroupStorageSize" => self.max_compute_workgroup_storage_size = value,
            "maxComputeInvocationsPerWorkgroup" => self.max_compute_invocations_per_workgroup = value,
            "maxComputeWorkgroupSizeX" => self.max_compute_workgroup_size_x = value,
            "maxComputeWorkgroupsPerDimension" => self.max_compute_workgroups_per_dimension = value,
            "maxStorageBufferBindingSize" => self.max_storage_buffer_binding_size = value,
            "maxBufferSize" => self.max_buffer_size = value,
            "maxStorageBuffersPerShaderStage" => self.max_storage_buffers_per_shader_stage = value,
            _ => {
                self.other.insert(name.to_string(), value);
            }
        }
    }
}

/// What `WebAssembly.validate` accepts (or, natively, what the engine would run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WasmSupport {
    /// Fixed-width SIMD (`v128`).
    pub simd128: bool,
    /// Relaxed SIMD.
    pub relaxed_simd: bool,
    /// Threads (shared memory and atomics).
    pub threads: bool,
}

impl WasmSupport {
    /// The probe modules a host validates to fill the report (`WebAssembly.validate` in a
    /// page, the engine's own validator natively), in field order: simd128, relaxed_simd,
    /// threads. Each holds one feature and nothing else; the test beside this module checks
    /// the bytes against their WAT.
    pub const PROBES: [(&'static str, &'static [u8]); 3] =
        [("simd128", PROBE_SIMD128), ("relaxed_simd", PROBE_RELAXED_SIMD), ("threads", PROBE_THREADS)];

    /// The report's `wasm` from a validator: `validate(bytes)` says whether the engine takes
    /// the module.
    pub fn probe(mut validate: impl FnMut(&[u8]) -> bool) -> WasmSupport {
        WasmSupport {
            simd128: validate(PROBE_SIMD128),
            relaxed_simd: validate(PROBE_RELAXED_SIMD),
            threads: validate(PROBE_THREADS),
        }
    }
}

/// `(module (func (result v128) (v128.const i64x2 0 0)))`.
pub const PROBE_SIMD128: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section
    0x0a, 0x16, 0x01, 0x14, 0x00, 0xfd, 0x0c, // code: v128.const
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b,
];

/// `(module (func (result v128) (i32x4.relaxed_trunc_f32x4_s (v128.const i64x2 0 0))))`.
pub const PROBE_RELAXED_SIMD: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section
    0x0a, 0x19, 0x01, 0x17, 0x00, 0xfd, 0x0c, // code: v128.const
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
    0xfd, 0x81, 0x02, 0x0b, // i32x4.relaxed_trunc_f32x4_s, end
];

/// `(module (memory 1 1 shared))`.
pub const PROBE_THREADS: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x05, 0x04, 0x01, 0x03, 0x01, 0x01, // memory section: shared, min 1, max 1
];

impl Caps {
    /// Reads a report, checking every field of §1: all present (unknowns are `null`), of the
    /// right type, `schema` 1, `engine` a known name, the seven required limits whole
    /// numbers. Unknown extra fields are ignored; extra limits are kept.
    pub fn from_json(value: &Value) -> Result<Caps, CapsError> {
        let r = Reader(Doc::Report);
        let top = r.root(value)?;
        let schema = r.uint(&top.get("schema"))?;
        if schema != SCHEMA {
            return Err(r.error("schema", format!("{SCHEMA} (docs/CAPS.md version {SCHEMA})"), show(&schema.into())));
        }
        let source = r.string(&top.get("source"))?.to_string();
        let user_agent = r.nullable_string(&top.get("user_agent"))?;
        let engine = r.choice(&top.get("engine"), &Engine::ALL.map(|e| (e.name(), e)))?;
        let webgpu = match top.get("webgpu") {
            Field { value: Some(Value::Null), .. } => None,
            field => Some(r.webgpu(&field)?),
        };
        let wasm = r.object(&top.get("wasm"))?;
        Ok(Caps {
            schema,
            source,
            user_agent,
            engine,
            webgpu,
            wasm: WasmSupport {
                simd128: r.boolean(&wasm.get("simd128"))?,
                relaxed_simd: r.boolean(&wasm.get("relaxed_simd"))?,
                threads: r.boolean(&wasm.get("threads"))?,
            },
        })
    }
}

impl std::str::FromStr for Caps {
    type Err = CapsError;

    /// Parses a report from JSON text (see [`Caps::from_json`]); text that is not JSON is an
    /// error at the top level naming serde_json's line and column.
    fn from_str(text: &str) -> Result<Caps, CapsError> {
        let value: Value = serde_json::from_str(text).map_err(|e| CapsError::Report {
            path: "(top level)".into(),
            expected: "JSON".into(),
            found: format!("invalid JSON ({e})"),
        })?;
        Caps::from_json(&value)
    }
}

impl<'de> Deserialize<'de> for Caps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Caps, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Caps::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// §2: the target whose package a page with this report should load.
pub fn suggest_target(caps: &Caps) -> Target {
    match caps.engine {
        Engine::Chromium if caps.user_agent.as_deref().is_some_and(|ua| ua.contains("Edg/")) => Target::Edge,
        Engine::Chromium => Target::Chrome,
        Engine::Gecko => Target::Firefox,
        Engine::Webkit => Target::Safari,
        Engine::WgpuNative => Target::Native,
        Engine::DawnNode | Engine::Unknown => Target::Generic,
    }
}

/// The fields of a manifest that selection reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageView {
    /// The manifest's `target`.
    pub target: Target,
    /// Its kernels, in manifest order.
    pub kernels: Vec<KernelView>,
}

/// One kernel of a manifest, as selection sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelView {
    /// `name`.
    pub name: String,
    /// `op`.
    pub op: Op,
    /// `bits`.
    pub bits: u32,
    /// `group_size`.
    pub group_size: u32,
    /// `scheme`.
    pub scheme: Scheme,
    /// `kv.head_dim` (KV ops only).
    pub head_dim: Option<u32>,
    /// `tier`.
    pub tier: Tier,
    /// `features`: WebGPU features the kernel needs.
    pub features: Vec<String>,
    /// `workgroup_size`.
    pub workgroup_size: [u32; 3],
    /// `workgroup_storage_bytes`.
    pub workgroup_storage_bytes: u64,
    /// `wgsl_language_features` (absent: none): WGSL language features the kernel uses.
    pub wgsl_language_features: Vec<String>,
    /// `activations` is `"int8"` (absent or `"f32"`: false): the kernel quantizes x to int8
    /// (`docs/FORMAT.md` §12).
    pub int8_activations: bool,
}

impl KernelView {
    /// The family key (§3, §4): `op/bits/group_size/scheme`, and `/head_dim` for KV ops,
    /// e.g. `matvec/4/32/sym`, `kv-attend/4/32/asym/128`.
    pub fn family(&self) -> String {
        let mut key = format!("{}/{}/{}/{}", self.op.name(), self.bits, self.group_size, self.scheme.name());
        if let Some(d) = self.head_dim {
            key.push_str(&format!("/{d}"));
        }
        key
    }

    /// Why this kernel cannot run on the adapter (§3 step 2), or `Ok` when it can.
    pub fn runnable(&self, gpu: &WebGpu) -> Result<(), String> {
        let mut why = Vec::new();
        for f in &self.features {
            if !gpu.has(f) {
                why.push(format!("no {f}"));
            }
        }
        for f in &self.wgsl_language_features {
            if !gpu.wgsl_language_features.contains(f) {
                why.push(format!("no WGSL language feature {f}"));
            }
        }
        let limits = &gpu.limits;
        if self.workgroup_storage_bytes > limits.max_compute_workgroup_storage_size {
            why.push(format!(
                "workgroup storage {} > {}",
                self.workgroup_storage_bytes, limits.max_compute_workgroup_storage_size
            ));
        }
        let invocations: u64 = self.workgroup_size.iter().map(|&s| u64::from(s)).product();
        if invocations > limits.max_compute_invocations_per_workgroup {
            why.push(format!("workgroup invocations {invocations} > {}", limits.max_compute_invocations_per_workgroup));
        }
        if u64::from(self.workgroup_size[0]) > limits.max_compute_workgroup_size_x {
            why.push(format!(
                "workgroup_size[0] {} > maxComputeWorkgroupSizeX {}",
                self.workgroup_size[0], limits.max_compute_workgroup_size_x
            ));
        }
        if why.is_empty() { Ok(()) } else { Err(why.join(", ")) }
    }
}

impl PackageView {
    /// Reads the manifest fields the rule needs: `target`, and per kernel `name`, `op`,
    /// `bits`, `group_size`, `scheme`, `kv.head_dim` (KV ops), `tier` (one of the target's),
    /// `features`, `workgroup_size`, `workgroup_storage_bytes`. Two kernels of one family at
    /// one tier are an error: the rule would have no single answer.
    pub fn from_json(value: &Value) -> Result<PackageView, CapsError> {
        let r = Reader(Doc::Manifest);
        let top = r.root(value)?;
        let target = r.choice(&top.get("target"), &Target::ALL.map(|t| (t.name(), t)))?;
        let list = r.array(&top.get("kernels"), "an array of kernel objects")?;
        let mut kernels: Vec<KernelView> = Vec::with_capacity(list.len());
        for item in &list {
            let kernel = r.kernel(item, target)?;
            if let Some(j) = kernels.iter().position(|o| o.tier == kernel.tier && o.family() == kernel.family()) {
                return Err(r.error(
                    &item.path,
                    format!(
                        "one kernel per family and tier, but `{}` is family {} at tier {} like kernels[{j}] (`{}`)",
                        kernel.name,
                        kernel.family(),
                        kernel.tier,
                        kernels[j].name
                    ),
                    show(&Value::String(kernel.name.clone())),
                ));
            }
            kernels.push(kernel);
        }
        Ok(PackageView { target, kernels })
    }
}

/// Where a family's kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Backend {
    /// The WGSL kernel on WebGPU.
    #[serde(rename = "webgpu")]
    WebGpu,
    /// The SIMD WebAssembly twin.
    #[serde(rename = "wasm-simd")]
    WasmSimd,
    /// The scalar WebAssembly twin.
    #[serde(rename = "wasm-scalar")]
    WasmScalar,
}

impl Backend {
    /// The name used in results and vectors.
    pub fn name(self) -> &'static str {
        match self {
            Backend::WebGpu => "webgpu",
            Backend::WasmSimd => "wasm-simd",
            Backend::WasmScalar => "wasm-scalar",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rule's answer for one family (§3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// The family key ([`KernelView::family`]).
    pub family: String,
    /// The manifest `name` of the kernel chosen; for WebAssembly, the kernel whose twin runs
    /// (the family's lowest tier: every tier's twin is the same f32 module).
    pub kernel: String,
    /// Where it runs.
    pub backend: Backend,
    /// The kernel's tier on WebGPU; `None` for WebAssembly.
    pub tier: Option<Tier>,
    /// The deciding fact, for people.
    pub reason: String,
}

/// What a host allows beyond the exact f32 tiers (`docs/CAPS.md` §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// f16 tiers (1e-2 instead of 1e-5).
    pub f16: bool,
    /// int8 activations: the dot4 tiers' matvec (`docs/FORMAT.md` §12), `allowInt8` in
    /// shadergen.mjs.
    pub int8: bool,
}

/// §3 over a manifest's JSON: one [`Choice`] per family, in the order families first appear
/// in the manifest. `allow_f16` lets f16 tiers be chosen (they trade accuracy for speed).
pub fn select(caps: &Caps, manifest: &Value, allow_f16: bool) -> Result<Vec<Choice>, CapsError> {
    select_with(caps, manifest, Allow { f16: allow_f16, int8: false })
}

/// [`select`] with int8 activations allowed or not as well.
pub fn select_with(caps: &Caps, manifest: &Value, allow: Allow) -> Result<Vec<Choice>, CapsError> {
    Ok(select_package_with(caps, &PackageView::from_json(manifest)?, allow))
}

/// §3 over a manifest already read (see [`select`]).
pub fn select_package(caps: &Caps, package: &PackageView, allow_f16: bool) -> Vec<Choice> {
    select_package_with(caps, package, Allow { f16: allow_f16, int8: false })
}

/// [`select_package`] with int8 activations allowed or not as well.
pub fn select_package_with(caps: &Caps, package: &PackageView, allow: Allow) -> Vec<Choice> {
    let mut families: Vec<(String, Vec<&KernelView>)> = Vec::new();
    for k in &package.kernels {
        let key = k.family();
        match families.iter_mut().find(|(f, _)| *f == key) {
            Some((_, members)) => members.push(k),
            None => families.push((key, vec![k])),
        }
    }
    families
        .into_iter()
        .map(|(family, mut members)| {
            members.sort_by_key(|k| k.tier);
            choose(caps, package.target, family, &members, allow)
        })
        .collect()
}

/// The language feature the dot4 tiers' kernels use.
const DOT4_LANGUAGE_FEATURE: &str = "packed_4x8_integer_dot_product";

/// One family's choice; `members` sorted by tier, lowest first.
fn choose(caps: &Caps, target: Target, family: String, members: &[&KernelView], allow: Allow) -> Choice {
    let wasm = |why: String| {
        let (backend, reason) = if caps.wasm.simd128 {
            (Backend::WasmSimd, why)
        } else {
            (Backend::WasmScalar, format!("{why}; no wasm simd128"))
        };
        Choice { family: family.clone(), kernel: members[0].name.clone(), backend, tier: None, reason }
    };
    let Some(gpu) = &caps.webgpu else {
        return wasm("no WebGPU".into());
    };
    let (has_f16, has_subgroups) = (gpu.has("shader-f16"), gpu.has("subgroups"));
    let allow_f16 = allow.f16;
    // The int8 part of the reason, where the host allows int8 for a family that has such
    // kernels: (whether it enables the dot4 tiers, words).
    let int8_why = (allow.int8 && members.iter().any(|k| k.int8_activations)).then(|| {
        if !gpu.wgsl_language_features.iter().any(|f| f == DOT4_LANGUAGE_FEATURE) {
            (false, format!("no {DOT4_LANGUAGE_FEATURE}"))
        } else if !target.info().tiers.iter().any(|t| t.dot4()) {
            (false, format!("target {target} has no dot4 tier"))
        } else {
            (true, format!("adapter has {DOT4_LANGUAGE_FEATURE}, int8 allowed"))
        }
    });
    let int8 = int8_why.as_ref().is_some_and(|(enables, _)| *enables);
    let wanted = Profile::select_tier_int8(target, has_f16, has_subgroups, allow_f16, int8);
    let mut why_wanted = wanted_reason(target, has_f16, has_subgroups, allow_f16);
    match int8_why {
        Some((true, words)) => why_wanted = format!("{words}; {why_wanted}"),
        Some((false, words)) => why_wanted = format!("{why_wanted}; {words}"),
        None => {}
    }
    // A tier is eligible when `select_tier` could have given it: its needs met, f16 (int8)
    // allowed.
    let eligible = |t: Tier| {
        t <= wanted
            && (!t.shader_f16() || (has_f16 && allow_f16))
            && (!t.subgroups() || has_subgroups)
            && (!t.dot4() || int8)
    };
    let mut passed_over = Vec::new();
    for tier in Tier::ALL.into_iter().rev().filter(|&t| eligible(t)) {
        let Some(k) = members.iter().find(|k| k.tier == tier) else {
            passed_over.push(format!("no {tier} kernel in the package"));
            continue;
        };
        match k.runnable(gpu) {
            Ok(()) => {
                let reason = if passed_over.is_empty() {
                    why_wanted
                } else {
                    format!("{why_wanted}; but {}", passed_over.join("; "))
                };
                return Choice { family, kernel: k.name.clone(), backend: Backend::WebGpu, tier: Some(tier), reason };
            }
            Err(why) => passed_over.push(format!("{}: {why}", k.name)),
        }
    }
    wasm(format!("no runnable WebGPU kernel ({why_wanted}; {})", passed_over.join("; ")))
}

/// Why `select_tier` gives the tier it gives: what enables a richer tier first, then what
/// holds it back.
fn wanted_reason(target: Target, has_f16: bool, has_subgroups: bool, allow_f16: bool) -> String {
    let tiers = target.info().tiers;
    let f16 = if !has_f16 {
        (false, "no shader-f16".to_string())
    } else if !allow_f16 {
        (false, "f16 not allowed".to_string())
    } else if tiers.iter().any(|t| t.shader_f16()) {
        (true, "adapter has shader-f16, f16 allowed".to_string())
    } else {
        (false, format!("target {target} has no f16 tier"))
    };
    let subgroups = if !has_subgroups {
        (false, "no subgroups".to_string())
    } else if tiers.iter().any(|t| t.subgroups()) {
        (true, "adapter has subgroups".to_string())
    } else {
        (false, format!("target {target} has no subgroup tier"))
    };
    let mut parts = [subgroups, f16];
    parts.sort_by_key(|(enables, _)| !enables);
    parts.map(|(_, text)| text).join("; ")
}

/// Which document a [`Reader`] reads, for its errors.
#[derive(Clone, Copy)]
enum Doc {
    Report,
    Manifest,
}

/// A member of a JSON document: where it is, and its value when present.
struct Field<'v> {
    path: String,
    value: Option<&'v Value>,
}

impl<'v> Field<'v> {
    /// The member `key` of this field's object (`value` `None` when missing). Only call on
    /// an object, as [`Reader::object`] returns it.
    fn get(&self, key: &str) -> Field<'v> {
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        Field { path, value: self.value.and_then(|v| v.get(key)) }
    }

    /// The elements of this field's array, each with its path.
    fn items(&self) -> Vec<Field<'v>> {
        let list = self.value.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        list.iter().enumerate().map(|(i, v)| Field { path: format!("{}[{i}]", self.path), value: Some(v) }).collect()
    }
}

/// Typed, path-aware access to a JSON document: each reader says what it expects, and a
/// missing or mistyped member is an error naming its path and that expectation.
struct Reader(Doc);

impl Reader {
    fn error(&self, path: &str, expected: impl Into<String>, found: String) -> CapsError {
        let (path, expected) = (if path.is_empty() { "(top level)".into() } else { path.into() }, expected.into());
        match self.0 {
            Doc::Report => CapsError::Report { path, expected, found },
            Doc::Manifest => CapsError::Manifest { path, expected, found },
        }
    }

    /// The field's value, or an error saying what it should have been.
    fn value<'v>(&self, field: &Field<'v>, expected: &str) -> Result<&'v Value, CapsError> {
        field.value.ok_or_else(|| {
            let why = match self.0 {
                Doc::Report => "nothing (every field of a report is required; unknown values are null)",
                Doc::Manifest => "nothing (the selection rule reads this field)",
            };
            self.error(&field.path, expected, why.into())
        })
    }

    /// A typed value, or an error with `expected`.
    fn typed<'v, T>(
        &self,
        field: &Field<'v>,
        expected: &str,
        convert: impl FnOnce(&'v Value) -> Option<T>,
    ) -> Result<T, CapsError> {
        let v = self.value(field, expected)?;
        convert(v).ok_or_else(|| self.error(&field.path, expected, show(v)))
    }

    fn root<'v>(&self, value: &'v Value) -> Result<Field<'v>, CapsError> {
        let root = Field { path: String::new(), value: Some(value) };
        self.object(&root)
    }

    /// The field itself, checked to be an object.
    fn object<'v>(&self, field: &Field<'v>) -> Result<Field<'v>, CapsError> {
        self.typed(field, "an object", Value::as_object)?;
        Ok(Field { path: field.path.clone(), value: field.value })
    }

    /// The elements of an array field.
    fn array<'v>(&self, field: &Field<'v>, expected: &str) -> Result<Vec<Field<'v>>, CapsError> {
        self.typed(field, expected, Value::as_array)?;
        Ok(field.items())
    }

    fn string<'v>(&self, field: &Field<'v>) -> Result<&'v str, CapsError> {
        self.typed(field, "a string", Value::as_str)
    }

    fn nullable_string(&self, field: &Field<'_>) -> Result<Option<String>, CapsError> {
        self.typed(field, "a string or null", |v| match v {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => None,
        })
    }

    fn boolean(&self, field: &Field<'_>) -> Result<bool, CapsError> {
        self.typed(field, "true or false", Value::as_bool)
    }

    /// A whole number >= 0; JavaScript may write one as `16384.0`.
    fn uint(&self, field: &Field<'_>) -> Result<u64, CapsError> {
        self.typed(field, "a whole number >= 0", whole)
    }

    fn u32(&self, field: &Field<'_>) -> Result<u32, CapsError> {
        let expected = format!("a whole number from 0 to {}", u32::MAX);
        self.typed(field, &expected, |v| whole(v).and_then(|n| u32::try_from(n).ok()))
    }

    /// One of the named values.
    fn choice<T: Copy>(&self, field: &Field<'_>, named: &[(&str, T)]) -> Result<T, CapsError> {
        let expected = one_of(named.iter().map(|(n, _)| *n));
        self.typed(field, &expected, |v| v.as_str().and_then(|s| named.iter().find(|(n, _)| *n == s)).map(|(_, t)| *t))
    }

    fn strings(&self, field: &Field<'_>) -> Result<Vec<String>, CapsError> {
        self.array(field, "an array of strings")?.iter().map(|f| self.string(f).map(str::to_string)).collect()
    }

    fn webgpu(&self, field: &Field<'_>) -> Result<WebGpu, CapsError> {
        let gpu = self.object(field)?;
        let adapter = self.object(&gpu.get("adapter"))?;
        let info = |key: &str| self.nullable_string(&adapter.get(key));
        let limits_field = self.object(&gpu.get("limits"))?;
        let mut limits = AdapterLimits::spec_defaults();
        for name in AdapterLimits::REQUIRED {
            limits.set(name, self.uint(&limits_field.get(name))?);
        }
        let others = limits_field.value.and_then(Value::as_object).into_iter().flatten();
        for (name, _) in others.filter(|(n, _)| !AdapterLimits::REQUIRED.contains(&n.as_str())) {
            limits.set(name, self.uint(&limits_field.get(name))?);
        }
        Ok(WebGpu {
            adapter: AdapterInfo {
                vendor: info("vendor")?,
                architecture: info("architecture")?,
                device: info("device")?,
                description: info("description")?,
            },
            features: self.strings(&gpu.get("features"))?,
            limits,
            wgsl_language_features: self.strings(&gpu.get("wgsl_language_features"))?,
            is_fallback_adapter: self.boolean(&gpu.get("is_fallback_adapter"))?,
        })
    }

    fn kernel(&self, field: &Field<'_>, target: Target) -> Result<KernelView, CapsError> {
        let k = self.object(field)?;
        let name = self.string(&k.get("name"))?.to_string();
        let op = self.choice(&k.get("op"), &Op::ALL.map(|o| (o.name(), o)))?;
        let bits = self.u32(&k.get("bits"))?;
        let group_size = self.u32(&k.get("group_size"))?;
        let scheme = self.choice(&k.get("scheme"), &Scheme::ALL.map(|s| (s.name(), s)))?;
        let tiers: Vec<(&str, Tier)> = target.info().tiers.iter().map(|&t| (t.name(), t)).collect();
        let tier = self.choice(&k.get("tier"), &tiers).map_err(|e| match e {
            CapsError::Manifest { path, expected, found } => {
                CapsError::Manifest { path, expected: format!("a tier of target {target}: {expected}"), found }
            }
            e => e,
        })?;
        let head_dim = if op.is_kv() { Some(self.u32(&self.object(&k.get("kv"))?.get("head_dim"))?) } else { None };
        let features = self.strings(&k.get("features"))?;
        let sizes = self.array(&k.get("workgroup_size"), "an array of 3 whole numbers")?;
        if sizes.len() != 3 {
            let size_field = k.get("workgroup_size");
            return Err(self.error(
                &size_field.path,
                "an array of 3 whole numbers",
                show(self.value(&size_field, "")?),
            ));
        }
        let mut workgroup_size = [0u32; 3];
        for (slot, f) in workgroup_size.iter_mut().zip(&sizes) {
            *slot = self.u32(f)?;
        }
        Ok(KernelView {
            name,
            op,
            bits,
            group_size,
            scheme,
            head_dim,
            tier,
            features,
            workgroup_size,
            workgroup_storage_bytes: self.uint(&k.get("workgroup_storage_bytes"))?,
            wgsl_language_features: match k.get("wgsl_language_features") {
                f if f.value.is_none() => Vec::new(),
                f => self.strings(&f)?,
            },
            int8_activations: match k.get("activations") {
                f if f.value.is_none() => false,
                f => self.choice(&f, &[("f32", false), ("int8", true)])?,
            },
        })
    }
}

/// A JSON number that is a whole number >= 0 (up to 2^53 when written as a float).
fn whole(v: &Value) -> Option<u64> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=MAX_SAFE).contains(f)).map(|f| f as u64))
}

/// `one of a, b, c`.
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    format!("one of {}", names.collect::<Vec<_>>().join(", "))
}

/// A JSON value, shortened for a message.
fn show(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) | Value::Number(_) => "",
        Value::String(_) => "",
        Value::Array(_) => "an array ",
        Value::Object(_) => "an object ",
    };
    let text = v.to_string();
    let short: String = text.chars().take(60).collect();
    let ellipsis = if short.len() < text.len() { "..." } else { "" };
    format!("{kind}{short}{ellipsis}")
}
