//! Golden snapshots of emitted WebAssembly modules, as WAT (wasmprinter), in `golden/wat/`.
//! The modules depend only on the op and the format (and the head dimension of KV ops), not
//! on target or tier, so each is stored once: `{op}_{format}.{simd|scalar}.snap` for every
//! matvec and matmul, and `{op}_{format}_d{head_dim}.{simd|scalar}.snap` for representative
//! KV kernels ([`KV_GOLDEN`]); every KV module is still emitted and validated here. The dot4
//! tiers' matvec (int8 activations) has its own modules: `matvec-dot4_{format}` for the
//! formats of [`DOT4_GOLDEN`], every one emitted and validated.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test -p shadergen-codegen`,
//! then review the diff of `golden/`.

use codegen::{KernelSpec, Target, Tier, wasm};

/// The KV kernels with snapshots: (format tag, head_dim), for both ops.
const KV_GOLDEN: [(&str, u32); 2] = [("q4g32a", 128), ("q3g64a", 64)];

/// The dot4 matvec kernels with snapshots (format tags).
const DOT4_GOLDEN: [&str; 5] = ["q2g32s", "q3g32s", "q4g32s", "q8g32s", "q4g32a"];

/// Every module of the generic target's base tier: (snapshot name, WAT, has a snapshot).
fn all_modules() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for spec in KernelSpec::default_set(Target::Generic).into_iter().filter(|s| s.profile.tier == Tier::Base) {
        let m = wasm::emit(&spec).unwrap_or_else(|e| panic!("{e}"));
        let tag = spec.format.tag();
        let (base, golden) = if spec.op.is_kv() {
            let golden = KV_GOLDEN.contains(&(tag.as_str(), spec.head_dim));
            (format!("{}_{tag}_d{}", spec.op.name(), spec.head_dim), golden)
        } else {
            (format!("{}_{tag}", spec.op.name()), true)
        };
        out.push((format!("{base}.simd"), m.simd_wat(), golden));
        out.push((format!("{base}.scalar"), m.scalar_wat(), golden));
    }
    // The dot4 matvecs (Native has every tier; dot4-subgroups emits the same modules).
    for spec in
        KernelSpec::default_set(Target::Native).into_iter().filter(|s| s.uses_dot4() && s.profile.tier == Tier::Dot4)
    {
        let m = wasm::emit(&spec).unwrap_or_else(|e| panic!("{e}"));
        let tag = spec.format.tag();
        let golden = DOT4_GOLDEN.contains(&tag.as_str());
        out.push((format!("matvec-dot4_{tag}.simd"), m.simd_wat(), golden));
        out.push((format!("matvec-dot4_{tag}.scalar"), m.scalar_wat(), golden));
    }
    out
}

/// The modules with snapshots.
fn modules() -> Vec<(String, String)> {
    all_modules().into_iter().filter(|m| m.2).map(|(n, t, _)| (n, t)).collect()
}

#[test]
fn golden_wat() {
    let modules = modules();
    assert_eq!(modules.len(), 2 * 2 * 25 + 2 * 2 * KV_GOLDEN.len() + 2 * DOT4_GOLDEN.len());
    for (name, text) in modules {
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/wat"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, text);
        });
    }
}

/// Every target and tier emits the same modules for an op and format (only the exported
/// name differs), and emission is deterministic; the dot4 matvecs are the exception, the
/// same across targets and both dot4 tiers.
#[test]
fn wasm_does_not_depend_on_target_or_tier() {
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            let base = if spec.op.is_kv() {
                KernelSpec::kv(spec.op, spec.format, spec.head_dim, Target::Generic, Tier::Base).unwrap()
            } else if spec.uses_dot4() {
                KernelSpec::new(spec.op, spec.format, Target::Native, Tier::Dot4).unwrap()
            } else {
                KernelSpec::new(spec.op, spec.format, Target::Generic, Tier::Base).unwrap()
            };
            let (a, b) = (wasm::emit(&spec).unwrap(), wasm::emit(&base).unwrap());
            let rename = |s: String, from: &str| s.replace(from, "KERNEL");
            assert_eq!(rename(a.simd_wat(), &a.name), rename(b.simd_wat(), &b.name), "{t} {}", a.name);
            assert_eq!(rename(a.scalar_wat(), &a.name), rename(b.scalar_wat(), &b.name), "{t} {}", a.name);
        }
    }
}

/// The scalar modules use no SIMD instruction; the SIMD modules do (every kernel, KV included).
#[test]
fn scalar_modules_have_no_simd() {
    for (name, text, _) in all_modules() {
        let has_v128 = text.contains("v128") || text.contains("f32x4") || text.contains("i8x16");
        assert_eq!(has_v128, name.ends_with(".simd"), "{name}");
    }
}

#[test]
fn golden_wat_folder_has_no_stale_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/wat");
    let names: Vec<String> = modules().into_iter().map(|(n, _)| n + ".snap").collect();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(names.contains(&file), "stale file in {}: {file}", dir.display());
    }
}
