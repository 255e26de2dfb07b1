//! `shadergen emit`: packages on disk and their manifests.

use crate::common::{Scratch, assert_status, entries, shadergen, stderr, stdout, tier_count};
use serde_json::Value;
use std::path::Path;

/// Keys every manifest kernel entry must have (DESIGN's manifest contract).
const KERNEL_KEYS: [&str; 12] = [
    "name",
    "op",
    "bits",
    "group_size",
    "tier",
    "features",
    "wgsl",
    "entry_point",
    "workgroup_size",
    "bindings",
    "params",
    "dispatch",
];

/// Reads `dir/manifest.json` and checks it against the folder: the target, the keys of each
/// kernel, that every listed file exists and that no other .wgsl file is there. Returns
/// the kernels.
fn check_package(dir: &Path, target: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json is written");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    assert_eq!(manifest["target"], target);
    let kernels = manifest["kernels"].as_array().expect("`kernels` is an array").clone();
    assert!(!kernels.is_empty());
    for k in &kernels {
        for key in KERNEL_KEYS {
            assert!(k.get(key).is_some(), "kernel {} has no `{key}`", k["name"]);
        }
        let file = k["wgsl"].as_str().expect("`wgsl` is a string");
        let wgsl = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let entry = k["entry_point"].as_str().expect("`entry_point` is a string");
        assert!(wgsl.contains(&format!("fn {entry}(")), "{file} has no entry point {entry}");
    }
    let names = entries(dir);
    let wgsl_files = names.iter().filter(|n| n.ends_with(".wgsl")).count();
    assert_eq!(wgsl_files, kernels.len(), "files: {names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "staging files left: {names:?}");
    kernels
}

/// Emits `--ops matvec,matmul --bits 4,16 --group 32 --scheme sym` for `target` and checks
/// the package.
fn emit_small(target: &str) {
    let scratch = Scratch::new(&format!("emit_small_{target}"));
    let out_dir = scratch.path("out");
    let out = shadergen(&[
        "emit",
        "--target",
        target,
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "matvec,matmul",
        "--bits",
        "4,16",
        "--group",
        "32",
        "--scheme",
        "sym",
    ]);
    assert_status(&out, 0);
    let kernels = check_package(&out_dir, target);
    // Per tier and op: q4g32s and the f16 baseline.
    let expected = tier_count(target) * 2 * 2;
    assert_eq!(kernels.len(), expected);
    for k in &kernels {
        assert!(k["bits"] == 4 || k["bits"] == 16, "{k}");
        assert_eq!(k["group_size"], 32);
    }
    let summary = stdout(&out);
    assert!(
        summary.starts_with(&format!("wrote {expected} kernels for {target} to {}", out_dir.display())),
        "stdout: {summary}"
    );
    assert!(summary.contains("(manifest.json) in "), "stdout: {summary}");
    let last = kernels.last().unwrap()["name"].as_str().unwrap().to_string();
    assert!(stderr(&out).contains(&format!("[{expected}/{expected}] {last}")), "stderr: {}", stderr(&out));
}

macro_rules! emit_small_tests {
    ($($name:ident: $target:literal,)*) => {$(
        #[test]
        fn $name() {
            emit_small($target);
        }
    )*};
}

emit_small_tests! {
    emit_small_generic: "generic",
    emit_small_chrome: "chrome",
    emit_small_edge: "edge",
    emit_small_firefox: "firefox",
    emit_small_safari: "safari",
    emit_small_native: "native",
}

#[test]
fn emit_default_is_the_full_set() {
    let scratch = Scratch::new("emit_default_is_the_full_set");
    let out_dir = scratch.path("pkg");
    let out = shadergen(&["emit", "--target", "firefox", "--out", out_dir.to_str().unwrap()]);
    assert_status(&out, 0);
    let kernels = check_package(&out_dir, "firefox");
    // Per tier: matvec and matmul x (4 bits x 3 groups x 2 schemes + the f16 baseline), and
    // kv-append and kv-attend x 4 bits x (head_dim 64: groups 32, 64; head_dim 128: all 3).
    let per_op = |op: &str| kernels.iter().filter(|k| k["op"] == op).count();
    let tiers = tier_count("firefox");
    for op in ["matvec", "matmul"] {
        assert_eq!(per_op(op), tiers * (4 * 3 * 2 + 1), "{op}");
    }
    for op in ["kv-append", "kv-attend"] {
        assert_eq!(per_op(op), tiers * 4 * (2 + 3), "{op}");
    }
    assert_eq!(kernels.len(), tiers * (2 * 25 + 2 * 20));
    let mut names: Vec<&str> = kernels.iter().map(|k| k["name"].as_str().unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), kernels.len(), "kernel names are unique");
    // Progress: about every tenth, not every kernel.
    let lines = stderr(&out).lines().filter(|l| l.starts_with('[')).count();
    assert!((2..=15).contains(&lines), "{lines} progress lines:\n{}", stderr(&out));
}

#[test]
fn emit_repeated_values_once() {
    let scratch = Scratch::new("emit_repeated_values_once");
    let out_dir = scratch.path("pkg");
    let out = shadergen(&[
        "emit",
        "--target",
        "native",
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "matvec,matvec",
        "--bits",
        "4",
        "--bits",
        "4",
        "--group",
        "32,32",
        "--scheme",
        "sym",
        "--tier",
        "base,base",
        "--quiet",
    ]);
    assert_status(&out, 0);
    assert_eq!(check_package(&out_dir, "native").len(), 1);
    assert_eq!(stderr(&out), "", "--quiet prints no progress");
    assert!(stdout(&out).starts_with("wrote 1 kernel for native"), "{}", stdout(&out));
}

#[test]
fn emit_selected_tier_op_and_scheme() {
    let scratch = Scratch::new("emit_selected_tier_op_and_scheme");
    let out_dir = scratch.path("pkg");
    let out = shadergen(&[
        "emit",
        "--target",
        "chrome",
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "matmul",
        "--bits",
        "3,8",
        "--group",
        "64,128",
        "--scheme",
        "asym",
        "--tier",
        "f16-subgroups",
    ]);
    assert_status(&out, 0);
    let kernels = check_package(&out_dir, "chrome");
    assert_eq!(kernels.len(), 2 * 2);
    for k in &kernels {
        assert_eq!(k["op"], "matmul");
        assert_eq!(k["tier"], "f16-subgroups");
        // matmul uses no subgroup operations, so it does not ask for the feature.
        assert_eq!(k["features"], serde_json::json!(["shader-f16"]));
    }
}

#[test]
fn emit_into_an_existing_folder() {
    let scratch = Scratch::new("emit_into_an_existing_folder");
    let out_dir = scratch.path("pkg");
    let out = out_dir.to_str().unwrap();
    let args =
        ["emit", "--target", "safari", "--out", out, "--ops", "matvec,matmul", "--bits", "2", "--group", "128", "-q"];
    assert_status(&shadergen(&args), 0);
    assert_status(&shadergen(&args), 0);
    assert_eq!(check_package(&out_dir, "safari").len(), tier_count("safari") * 2 * 2);
}

/// Emits the KV ops for `target` at `head_dims` (`None`: the default, both) with 4-bit codes
/// in groups of 32 and checks the package; returns its kernels.
fn emit_kv(scratch: &Scratch, target: &str, head_dims: Option<&str>) -> Vec<Value> {
    let out_dir = scratch.path(target);
    let mut args = vec![
        "emit",
        "--target",
        target,
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "kv-append,kv-attend",
        "--bits",
        "4",
        "--group",
        "32",
        "-q",
    ];
    if let Some(d) = head_dims {
        args.extend(["--head-dim", d]);
    }
    let out = shadergen(&args);
    assert_status(&out, 0);
    check_package(&out_dir, target)
}

// Needs the WebAssembly twins of the KV ops (codegen/src/wasm/kv.rs): emit builds both.
#[test]
fn emit_kv_ops_for_every_target() {
    let scratch = Scratch::new("emit_kv_ops_for_every_target");
    for target in ["generic", "chrome", "edge", "firefox", "safari", "native"] {
        let kernels = emit_kv(&scratch, target, None);
        // Per tier: 2 ops x 2 head dims (group 32 fits both).
        assert_eq!(kernels.len(), tier_count(target) * 2 * 2, "{target}");
        for k in &kernels {
            let name = k["name"].as_str().unwrap();
            let op = k["op"].as_str().unwrap();
            assert!(op == "kv-append" || op == "kv-attend", "{k}");
            assert!(name.starts_with(&format!("{}_q4g32a_d", op.replace('-', "_"))), "{name}");
            assert_eq!(k["bits"], 4);
            assert_eq!(k["group_size"], 32);
            assert_eq!(k["scheme"], "asym", "KV ops are always asym");
        }
        for d in [64, 128] {
            assert!(kernels.iter().any(|k| k["name"].as_str().unwrap().contains(&format!("_d{d}_"))), "{target} d{d}");
        }
    }
}

// Needs the WebAssembly twins of the KV ops (codegen/src/wasm/kv.rs): emit builds both.
#[test]
fn emit_kv_ops_with_head_dim() {
    let scratch = Scratch::new("emit_kv_ops_with_head_dim");
    let kernels = emit_kv(&scratch, "native", Some("64,64"));
    assert_eq!(kernels.len(), tier_count("native") * 2);
    let ops: Vec<&str> = kernels.iter().map(|k| k["op"].as_str().unwrap()).collect();
    assert_eq!(ops.iter().filter(|&&o| o == "kv-append").count(), tier_count("native"));
    assert_eq!(ops.iter().filter(|&&o| o == "kv-attend").count(), tier_count("native"));
    for k in &kernels {
        assert!(k["name"].as_str().unwrap().contains("_d64_"), "{k}");
    }
    // The emitted kv-attend validates on its own too.
    let file = scratch.path("native").join("kv_attend_q4g32a_d64_base.wgsl");
    let out = shadergen(&["validate", file.to_str().unwrap()]);
    assert_status(&out, 0);
}
