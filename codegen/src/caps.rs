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
use serde_json::{Map, Value};
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

impl Caps {
    /// Reads a report, checking every field of §1: all present (unknowns are `null`), of the
    /// right type, `schema` 1, `engine` a known name, the seven required limits whole
    /// numbers. Unknown extra fields are ignored; extra limits are kept.
    pub fn from_json(value: &Value) -> Result<Caps, CapsError> {
        let r = Reader(Doc::Report);
        let top = r.object(value, "")?;
        let schema = r.uint(r.field(top, "", "schema")?, "schema")?;
        if schema != SCHEMA {
            return Err(r.error("schema", format!("{SCHEMA} (docs/CAPS.md version {SCHEMA})"), &Value::from(schema)));
        }
        let engine_value = r.field(top, "", "engine")?;
        let engine_name = r.string(engine_value, "engine")?;
        let engine = Engine::ALL
            .into_iter()
            .find(|e| e.name() == engine_name)
            .ok_or_else(|| r.error("engine", one_of(Engine::ALL.iter().map(|e| e.name())), engine_value))?;
        let webgpu = match r.field(top, "", "webgpu")? {
            Value::Null => None,
            v => Some(r.webgpu(v)?),
        };
        let wasm_value = r.field(top, "", "wasm")?;
        let wasm = r.object(wasm_value, "wasm")?;
        Ok(Caps {
            schema,
            source: r.string(r.field(top, "", "source")?, "source")?.to_string(),
            user_agent: r.nullable_string(r.field(top, "", "user_agent")?, "user_agent")?,
            engine,
            webgpu,
            wasm: WasmSupport {
                simd128: r.boolean(r.field(wasm, "wasm", "simd128")?, "wasm.simd128")?,
                relaxed_simd: r.boolean(r.field(wasm, "wasm", "relaxed_simd")?, "wasm.relaxed_simd")?,
                threads: r.boolean(r.field(wasm, "wasm", "threads")?, "wasm.threads")?,
            },
        })
    }

    /// Parses a report from JSON text (see [`Caps::from_json`]); text that is not JSON is an
    /// error at the top level naming serde_json's line and column.
    pub fn from_str_json(text: &str) -> Result<Caps, CapsError> {
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
        let top = r.object(value, "")?;
        let target_value = r.field(top, "", "target")?;
        let target: Target = r
            .string(target_value, "target")?
            .parse()
            .map_err(|_| r.error("target", one_of(Target::ALL.iter().map(|t| t.name())), target_value))?;
        let kernels_value = r.field(top, "", "kernels")?;
        let list = kernels_value.as_array().ok_or_else(|| r.error("kernels", "an array", kernels_value))?;
        let mut kernels: Vec<KernelView> = Vec::with_capacity(list.len());
        for (i, k) in list.iter().enumerate() {
            let kernel = r.kernel(k, &format!("kernels[{i}]"), target)?;
            if let Some(j) = kernels.iter().position(|o| o.tier == kernel.tier && o.family() == kernel.family()) {
                return Err(r.error(
                    &format!("kernels[{i}]"),
                    format!(
                        "one kernel per family and tier, but `{}` is family {} at tier {} like kernels[{j}] (`{}`)",
                        kernel.name,
                        kernel.family(),
                        kernel.tier,
                        kernels[j].name
                    ),
                    &Value::String(kernel.name.clone()),
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

/// §3 over a manifest's JSON: one [`Choice`] per family, in the order families first appear
/// in the manifest. `allow_f16` lets f16 tiers be chosen (they trade accuracy for speed).
pub fn select(caps: &Caps, manifest: &Value, allow_f16: bool) -> Result<Vec<Choice>, CapsError> {
    Ok(select_package(caps, &PackageView::from_json(manifest)?, allow_f16))
}

/// §3 over a manifest already read (see [`select`]).
pub fn select_package(caps: &Caps, package: &PackageView, allow_f16: bool) -> Vec<Choice> {
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
            choose(caps, package.target, family, &members, allow_f16)
        })
        .collect()
}

/// One family's choice; `members` sorted by tier, lowest first.
fn choose(caps: &Caps, target: Target, family: String, members: &[&KernelView], allow_f16: bool) -> Choice {
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
    let wanted = Profile::select_tier(target, has_f16, has_subgroups, allow_f16);
    let why_wanted = wanted_reason(target, has_f16, has_subgroups, allow_f16);
    // A tier is eligible when `select_tier` could have given it: its needs met, f16 allowed.
    let eligible =
        |t: Tier| t <= wanted && (!t.shader_f16() || (has_f16 && allow_f16)) && (!t.subgroups() || has_subgroups);
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

/// Typed, path-aware access to a JSON document.
struct Reader(Doc);

impl Reader {
    fn error(&self, path: &str, expected: impl Into<String>, found: &Value) -> CapsError {
        self.error_found(path, expected, show(found))
    }

    fn error_found(&self, path: &str, expected: impl Into<String>, found: String) -> CapsError {
        let (path, expected) = (if path.is_empty() { "(top level)".into() } else { path.into() }, expected.into());
        match self.0 {
            Doc::Report => CapsError::Report { path, expected, found },
            Doc::Manifest => CapsError::Manifest { path, expected, found },
        }
    }

    fn object<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, CapsError> {
        v.as_object().ok_or_else(|| self.error(path, "an object", v))
    }

    /// A required member of an object (present; `null` counts as present).
    fn field<'v>(&self, obj: &'v Map<String, Value>, path: &str, key: &str) -> Result<&'v Value, CapsError> {
        let full = join_path(path, key);
        obj.get(key).ok_or_else(|| {
            self.error_found(&full, "a value (unknown values are null, never omitted)", "nothing".into())
        })
    }

    fn string<'v>(&self, v: &'v Value, path: &str) -> Result<&'v str, CapsError> {
        v.as_str().ok_or_else(|| self.error(path, "a string", v))
    }

    fn nullable_string(&self, v: &Value, path: &str) -> Result<Option<String>, CapsError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(self.error(path, "a string or null", v)),
        }
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<bool, CapsError> {
        v.as_bool().ok_or_else(|| self.error(path, "true or false", v))
    }

    /// A whole number ≥ 0; JavaScript may write one as `16384.0`.
    fn uint(&self, v: &Value, path: &str) -> Result<u64, CapsError> {
        const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=MAX_SAFE).contains(f)).map(|f| f as u64))
            .ok_or_else(|| self.error(path, "a whole number >= 0", v))
    }

    fn u32(&self, v: &Value, path: &str) -> Result<u32, CapsError> {
        let n = self.uint(v, path)?;
        u32::try_from(n).map_err(|_| self.error(path, format!("a whole number from 0 to {}", u32::MAX), v))
    }

    fn strings(&self, v: &Value, path: &str) -> Result<Vec<String>, CapsError> {
        let list = v.as_array().ok_or_else(|| self.error(path, "an array of strings", v))?;
        list.iter().enumerate().map(|(i, s)| self.string(s, &format!("{path}[{i}]")).map(str::to_string)).collect()
    }

    fn webgpu(&self, v: &Value) -> Result<WebGpu, CapsError> {
        let obj = self.object(v, "webgpu")?;
        let adapter_value = self.field(obj, "webgpu", "adapter")?;
        let adapter = self.object(adapter_value, "webgpu.adapter")?;
        let info = |key: &str| {
            let path = format!("webgpu.adapter.{key}");
            self.nullable_string(self.field(adapter, "webgpu.adapter", key)?, &path)
        };
        let limits_value = self.field(obj, "webgpu", "limits")?;
        let limits_obj = self.object(limits_value, "webgpu.limits")?;
        let mut limits = AdapterLimits::spec_defaults();
        for name in AdapterLimits::REQUIRED {
            let path = format!("webgpu.limits.{name}");
            limits.set(name, self.uint(self.field(limits_obj, "webgpu.limits", name)?, &path)?);
        }
        for (name, value) in limits_obj.iter().filter(|(n, _)| !AdapterLimits::REQUIRED.contains(&n.as_str())) {
            limits.set(name, self.uint(value, &format!("webgpu.limits.{name}"))?);
        }
        Ok(WebGpu {
            adapter: AdapterInfo {
                vendor: info("vendor")?,
                architecture: info("architecture")?,
                device: info("device")?,
                description: info("description")?,
            },
            features: self.strings(self.field(obj, "webgpu", "features")?, "webgpu.features")?,
            limits,
            wgsl_language_features: self
                .strings(self.field(obj, "webgpu", "wgsl_language_features")?, "webgpu.wgsl_language_features")?,
            is_fallback_adapter: self
                .boolean(self.field(obj, "webgpu", "is_fallback_adapter")?, "webgpu.is_fallback_adapter")?,
        })
    }

    fn kernel(&self, v: &Value, path: &str, target: Target) -> Result<KernelView, CapsError> {
        let obj = self.object(v, path)?;
        let get = |key: &str| self.field(obj, path, key);
        let at = |key: &str| join_path(path, key);
        let name = self.string(get("name")?, &at("name"))?.to_string();
        let op_value = get("op")?;
        let op: Op = self
            .string(op_value, &at("op"))?
            .parse()
            .map_err(|_| self.error(&at("op"), one_of(Op::ALL.iter().map(|o| o.name())), op_value))?;
        let scheme_value = get("scheme")?;
        let scheme: Scheme = self
            .string(scheme_value, &at("scheme"))?
            .parse()
            .map_err(|_| self.error(&at("scheme"), one_of(Scheme::ALL.iter().map(|s| s.name())), scheme_value))?;
        let tier_value = get("tier")?;
        let tiers = target.info().tiers;
        let tier_name = self.string(tier_value, &at("tier"))?;
        let tier = tiers.iter().copied().find(|t| t.name() == tier_name).ok_or_else(|| {
            self.error(
                &at("tier"),
                format!("a tier of target {target}: {}", one_of(tiers.iter().map(|t| t.name()))),
                tier_value,
            )
        })?;
        let head_dim = if op.is_kv() {
            let kv_value = get("kv")?;
            let kv = self.object(kv_value, &at("kv"))?;
            Some(self.u32(self.field(kv, &at("kv"), "head_dim")?, &at("kv.head_dim"))?)
        } else {
            None
        };
        let size_value = get("workgroup_size")?;
        let sizes = size_value
            .as_array()
            .filter(|a| a.len() == 3)
            .ok_or_else(|| self.error(&at("workgroup_size"), "an array of 3 whole numbers", size_value))?;
        let mut workgroup_size = [0u32; 3];
        for (i, s) in sizes.iter().enumerate() {
            workgroup_size[i] = self.u32(s, &format!("{}[{i}]", at("workgroup_size")))?;
        }
        Ok(KernelView {
            name,
            op,
            bits: self.u32(get("bits")?, &at("bits"))?,
            group_size: self.u32(get("group_size")?, &at("group_size"))?,
            scheme,
            head_dim,
            tier,
            features: self.strings(get("features")?, &at("features"))?,
            workgroup_size,
            workgroup_storage_bytes: self.uint(get("workgroup_storage_bytes")?, &at("workgroup_storage_bytes"))?,
        })
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
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
