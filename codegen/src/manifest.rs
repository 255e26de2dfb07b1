//! `manifest.json` and the package writer.
//!
//! A package is a folder: one `.wgsl` and two `.wasm` per kernel, the JavaScript runtime
//! `shadergen.mjs`, and a `manifest.json` describing each kernel
//! (DESIGN's manifest contract: `target`, and per kernel `name`, `op`, `bits`,
//! `group_size`, `tier`, `features`, `wgsl`, `entry_point`, `workgroup_size`, `bindings`,
//! `params`, `dispatch`, `wasm`). Runtimes use only the manifest. Writing is all or nothing: every
//! kernel is emitted and validated in memory first, files go to temporary names and are
//! renamed into place, and on any failure everything written is removed.

use crate::error::PackageError;
use crate::profile::Target;
use crate::spec::KernelSpec;
use crate::wgsl::{self, Binding, Dispatch, Param, Wgsl};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The manifest format version; bumped when a field changes meaning.
pub const MANIFEST_VERSION: u32 = 1;

/// The JavaScript runtime every package carries (browsers and Node): it reads this manifest,
/// picks WebGPU or a WebAssembly twin per kernel family (`docs/CAPS.md`) and runs them.
pub const RUNTIME_FILE: &str = "shadergen.mjs";

/// Its text, `templates/shadergen.mjs`, copied as is.
pub const RUNTIME_JS: &str = include_str!("../../templates/shadergen.mjs");

/// The whole manifest.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// The generator that wrote it.
    pub generator: String,
    /// The browser target.
    pub target: Target,
    /// The WGSL compiler the texts are written for.
    pub dialect: crate::profile::Dialect,
    /// Where the layout of every buffer is defined.
    pub format_doc: &'static str,
    /// The JavaScript runtime written beside the manifest ([`RUNTIME_FILE`]).
    pub runtime: &'static str,
    /// One entry per kernel, in emission order.
    pub kernels: Vec<KernelEntry>,
}

/// One kernel of the manifest.
#[derive(Debug, Serialize)]
pub struct KernelEntry {
    /// Kernel name.
    pub name: String,
    /// `matvec` or `matmul`.
    pub op: crate::spec::Op,
    /// 2, 3, 4, 8, or 16 for the f16 baseline.
    pub bits: u32,
    /// Codes per scale (for bits 16: K's granularity, 32).
    pub group_size: u32,
    /// `sym` or `asym` (`sym` for bits 16).
    pub scheme: crate::spec::Scheme,
    /// Real bits per weight with scales and mins.
    pub bits_per_weight: f64,
    /// Feature tier.
    pub tier: crate::profile::Tier,
    /// WebGPU features the device must have.
    pub features: Vec<&'static str>,
    /// WGSL language features (`navigator.gpu.wgslLanguageFeatures`) the text uses.
    pub wgsl_language_features: Vec<&'static str>,
    /// `"f32"`, or `"int8"` where the kernel quantizes x per 32-block first (`docs/FORMAT.md`
    /// §12; dot4 tiers' matvec): results then match the reference over those int8 values.
    pub activations: &'static str,
    /// WGSL file, relative to the manifest.
    pub wgsl: String,
    /// Entry point in that file.
    pub entry_point: String,
    /// `@workgroup_size`.
    pub workgroup_size: [u32; 3],
    /// Workgroup memory in bytes.
    pub workgroup_storage_bytes: u32,
    /// Bindings of group 0.
    pub bindings: Vec<Binding>,
    /// The uniform `Params` layout (binding 0).
    pub params: Vec<Param>,
    /// Workgroup counts as expressions of M, N, K.
    pub dispatch: Dispatch,
    /// Shape rule: K must be a multiple of this (matvec, matmul).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k_multiple_of: Option<u32>,
    /// Shape rule for M: `"1"` (matvec) or `"any"` (matmul).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m: Option<&'static str>,
    /// KV ops: the cache shape rules (`docs/FORMAT.md` §11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvRules>,
    /// Relative tolerance the kernel meets against the reference (see `reference.rs`).
    pub tolerance: f64,
    /// The WebAssembly twins of the kernel and their ABI.
    pub wasm: crate::wasm::Abi,
}

/// The shape rules of a KV kernel, for hosts that build caches.
#[derive(Debug, Serialize)]
pub struct KvRules {
    /// D, fixed in the kernel.
    pub head_dim: u32,
    /// `n_heads / kv_heads` may be 1 to this.
    pub max_gqa: u32,
    /// max_seq must be a multiple of this.
    pub max_seq_multiple_of: u32,
    /// kv-attend: split_len must be a multiple of this.
    pub chunk: u32,
}

impl KernelEntry {
    fn new(spec: &KernelSpec, w: &Wgsl) -> KernelEntry {
        KernelEntry {
            name: w.name.clone(),
            op: spec.op,
            bits: spec.format.bits(),
            group_size: spec.format.group_size(),
            scheme: spec.format.scheme(),
            bits_per_weight: spec.format.bits_per_weight(),
            tier: spec.profile.tier,
            features: spec.features(),
            wgsl_language_features: if spec.uses_dot4() { vec!["packed_4x8_integer_dot_product"] } else { vec![] },
            activations: if spec.uses_dot4() { "int8" } else { "f32" },
            wgsl: format!("{}.wgsl", w.name),
            entry_point: w.name.clone(),
            workgroup_size: w.workgroup_size,
            workgroup_storage_bytes: w.workgroup_bytes,
            bindings: wgsl::bindings(spec),
            params: wgsl::params(spec),
            dispatch: spec.dispatch(),
            k_multiple_of: (!spec.op.is_kv()).then_some(spec.format.group_size()),
            m: match spec.op {
                crate::spec::Op::Matvec => Some("1"),
                crate::spec::Op::Matmul => Some("any"),
                _ => None,
            },
            kv: spec.op.is_kv().then_some(KvRules {
                head_dim: spec.head_dim,
                max_gqa: crate::kv::MAX_GQA,
                max_seq_multiple_of: 2,
                chunk: spec.tuning.chunk.max(1),
            }),
            tolerance: spec.tolerance(),
            wasm: crate::wasm::abi(spec),
        }
    }
}

/// An emitted package, in memory.
#[derive(Debug)]
pub struct Package {
    /// The manifest.
    pub manifest: Manifest,
    /// (file name, contents): the kernels' files, `shadergen.mjs`, manifest last.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Emits and validates every kernel of `specs` (WGSL and both WebAssembly modules) (all for `target`). `progress` is called
/// after each kernel with (done, total, name).
pub fn build(
    target: Target,
    specs: &[KernelSpec],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Package, PackageError> {
    let mut kernels = Vec::with_capacity(specs.len());
    let mut files = Vec::with_capacity(3 * specs.len() + 2);
    for (i, spec) in specs.iter().enumerate() {
        debug_assert_eq!(spec.profile.target, target);
        let w = wgsl::emit(spec)?;
        let m = crate::wasm::emit(spec)?;
        let entry = KernelEntry::new(spec, &w);
        files.push((entry.wgsl.clone(), w.text.into_bytes()));
        files.push((entry.wasm.simd.clone(), m.simd));
        files.push((entry.wasm.scalar.clone(), m.scalar));
        kernels.push(entry);
        progress(i + 1, specs.len(), &kernels[i].name);
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        generator: concat!("shadergen ", env!("CARGO_PKG_VERSION")).into(),
        target,
        dialect: target.info().dialect,
        format_doc: "docs/FORMAT.md",
        runtime: RUNTIME_FILE,
        kernels,
    };
    files.push((RUNTIME_FILE.into(), RUNTIME_JS.as_bytes().to_vec()));
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes") + "\n";
    files.push(("manifest.json".into(), json.into_bytes()));
    Ok(Package { manifest, files })
}

impl Package {
    /// Writes the package into `dir` (created if missing). All or nothing: every file is
    /// first written under a temporary name; only when all are written are they renamed into
    /// place. On failure the temporary files, any file this call added, and every folder this
    /// call created are removed; files that were already there are left as they were (a
    /// rename replaces a file in one step, so no file is ever half-written).
    pub fn write(&self, dir: &Path) -> Result<(), PackageError> {
        if dir.exists() && !dir.is_dir() {
            return Err(PackageError::NotADir(dir.to_path_buf()));
        }
        let io = |path: &Path, source| PackageError::Io { path: path.to_path_buf(), source };
        // The outermost folder this call creates, to remove on failure.
        let first_created =
            dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last().map(Path::to_path_buf);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let staged = |name: &str| dir.join(format!(".{name}.partial"));
        let mut written: Vec<PathBuf> = Vec::new();
        let mut added: Vec<PathBuf> = Vec::new();
        let mut result = Ok(());
        for (name, contents) in &self.files {
            let tmp = staged(name);
            if let Err(e) = std::fs::write(&tmp, contents) {
                result = Err(io(&tmp, e));
                break;
            }
            written.push(tmp);
        }
        if result.is_ok() {
            for (name, _) in &self.files {
                let dst = dir.join(name);
                let existed = dst.exists();
                if let Err(e) = std::fs::rename(staged(name), &dst) {
                    result = Err(io(&dst, e));
                    break;
                }
                if !existed {
                    added.push(dst);
                }
            }
        }
        if result.is_err() {
            for p in written.iter().chain(&added) {
                let _ = std::fs::remove_file(p);
            }
            if let Some(d) = first_created {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        result
    }
}
