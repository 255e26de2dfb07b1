//! Golden snapshots of every emitted WebAssembly module, as WAT (wasmprinter), in
//! `golden/wat/`. The modules depend only on the op and the format (not on target or
//! tier), so each is stored once: `{op}_{format}.{simd|scalar}.snap`.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test -p shadergen-codegen`,
//! then review the diff of `golden/`.

use codegen::{KernelSpec, Target, Tier, wasm};

fn modules() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for spec in KernelSpec::default_set(Target::Generic).into_iter().filter(|s| s.profile.tier == Tier::Base) {
        let m = wasm::emit(&spec).unwrap_or_else(|e| panic!("{e}"));
        let base = format!("{}_{}", spec.op.name(), spec.format.tag());
        out.push((format!("{base}.simd"), m.simd_wat()));
        out.push((format!("{base}.scalar"), m.scalar_wat()));
    }
    out
}

#[test]
fn golden_wat() {
    let modules = modules();
    assert_eq!(modules.len(), 2 * 2 * 25);
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
/// name differs), and emission is deterministic.
#[test]
fn wasm_does_not_depend_on_target_or_tier() {
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            let base = KernelSpec::new(spec.op, spec.format, Target::Generic, Tier::Base).unwrap();
            let (a, b) = (wasm::emit(&spec).unwrap(), wasm::emit(&base).unwrap());
            let rename = |s: String, from: &str| s.replace(from, "KERNEL");
            assert_eq!(rename(a.simd_wat(), &a.name), rename(b.simd_wat(), &b.name), "{t} {}", a.name);
            assert_eq!(rename(a.scalar_wat(), &a.name), rename(b.scalar_wat(), &b.name), "{t} {}", a.name);
        }
    }
}

/// The scalar modules use no SIMD instruction; the SIMD modules do.
#[test]
fn scalar_modules_have_no_simd() {
    for (name, text) in modules() {
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
