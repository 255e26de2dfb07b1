//! `shadergen caps` (this machine's report) and `shadergen select` (docs/CAPS.md's rule over
//! a package): output, the shared vectors through the binary, and errors.

use crate::common::{Scratch, assert_status, shadergen, stderr, stdout};
use codegen::caps::{Caps, Engine};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn vector(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/caps").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Writes `value` as JSON to `path`.
fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Emits a package for `target` into `dir` with `extra` selection options.
fn emit(target: &str, dir: &Path, extra: &[&str]) {
    let mut args = vec!["emit", "--target", target, "--out", dir.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    assert_status(&shadergen(&args), 0);
}

fn select(caps: &Path, package: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["select", "--caps", caps.to_str().unwrap(), "--package", package.to_str().unwrap()];
    args.extend_from_slice(extra);
    shadergen(&args)
}

/// The fields a vector pins, from `select --json` output.
fn pinned(json: &Value) -> Vec<Value> {
    json["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({ "family": c["family"], "kernel": c["kernel"], "backend": c["backend"], "tier": c["tier"] }))
        .collect()
}

#[test]
fn caps_reports_the_local_adapter() {
    let out = shadergen(&["caps"]);
    assert_status(&out, 0);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("caps prints JSON");
    let caps = Caps::from_json(&report).unwrap_or_else(|e| panic!("{e}\n{}", stdout(&out)));
    assert_eq!(
        (caps.source.as_str(), caps.engine, &caps.user_agent),
        ("shadergen caps (wgpu)", Engine::WgpuNative, &None)
    );
    assert_eq!(codegen::caps::suggest_target(&caps), codegen::Target::Native);
    // What wasmtime in this build validates.
    assert!(caps.wasm.simd128 && !caps.wasm.relaxed_simd && !caps.wasm.threads, "{:?}", caps.wasm);
    let Some(gpu) = &caps.webgpu else {
        assert!(!ci(), "CI requires a wgpu adapter (lavapipe); shadergen caps said: {}", stderr(&out));
        eprintln!("SKIPPED: no wgpu adapter ({}); run .ci/setup.sh to install Mesa lavapipe", stderr(&out).trim());
        return;
    };
    assert_eq!(stderr(&out), "", "nothing on stderr with an adapter");
    let mut sorted = gpu.features.clone();
    sorted.sort();
    assert_eq!(gpu.features, sorted, "features are sorted");
    assert!(gpu.features.iter().all(|f| !f.starts_with("wgpu-")), "WebGPU names only: {:?}", gpu.features);
    // Every adapter grants at least the spec's defaults.
    let defaults = codegen::caps::AdapterLimits::spec_defaults();
    assert!(gpu.limits.max_compute_workgroup_storage_size >= defaults.max_compute_workgroup_storage_size);
    assert!(gpu.limits.max_compute_invocations_per_workgroup >= defaults.max_compute_invocations_per_workgroup);
    assert!(gpu.limits.get("maxTextureDimension2D").is_some(), "limits beyond the required ones");
    let description = gpu.adapter.description.clone().unwrap_or_default();
    eprintln!("adapter: {description}; features: {}", gpu.features.join(", "));
    if description.contains("llvmpipe") {
        // Mesa lavapipe, as CI has it: a CPU adapter with shader-f16 and subgroups.
        assert!(gpu.is_fallback_adapter);
        assert!(gpu.has("shader-f16") && gpu.has("subgroups") && gpu.has("timestamp-query"), "{:?}", gpu.features);
        assert_eq!(gpu.adapter.vendor.as_deref(), Some("mesa"));
    }
}

#[test]
fn caps_without_an_adapter_reports_webgpu_null() {
    // A backend this build does not have on this OS: wgpu finds no adapter.
    let backend = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let out = Command::new(env!("CARGO_BIN_EXE_shadergen")).arg("caps").env("WGPU_BACKEND", backend).output().unwrap();
    assert_status(&out, 0);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["webgpu"], Value::Null);
    assert_eq!(report["wasm"], json!({ "simd128": true, "relaxed_simd": false, "threads": false }));
    let err = stderr(&out);
    assert!(err.starts_with("note: no WebGPU adapter") && err.contains("\"webgpu\": null"), "{err}");
    Caps::from_json(&report).unwrap();
}

#[test]
fn caps_output_feeds_select() {
    let scratch = Scratch::new("caps_output_feeds_select");
    let out = shadergen(&["caps"]);
    assert_status(&out, 0);
    let caps_file = scratch.path("caps.json");
    std::fs::write(&caps_file, stdout(&out)).unwrap();
    let package = scratch.path("native");
    emit("native", &package, &["--ops", "matvec,matmul", "--bits", "4", "--group", "32", "--scheme", "sym"]);
    let out = select(&caps_file, &package, &["--json"]);
    assert_status(&out, 0);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (&json["suggested_target"], &json["package_target"], &json["note"]),
        (&json!("native"), &json!("native"), &Value::Null)
    );
    let choices = json["choices"].as_array().unwrap();
    let families: Vec<&str> = choices.iter().map(|c| c["family"].as_str().unwrap()).collect();
    assert_eq!(families, ["matvec/4/32/sym", "matmul/4/32/sym"]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&caps_file).unwrap()).unwrap();
    let expected_backend = if report["webgpu"].is_null() { "wasm-simd" } else { "webgpu" };
    assert!(choices.iter().all(|c| c["backend"] == expected_backend), "{choices:?}");
}

#[test]
fn select_gives_the_safari_vectors() {
    let scratch = Scratch::new("select_gives_the_safari_vectors");
    let package = scratch.path("safari");
    emit("safari", &package, &[]);
    for name in ["safari-26-apple.json", "safari-26-apple-allow-f16.json"] {
        let v = vector(name);
        let caps_file = scratch.path("caps.json");
        write_json(&caps_file, &v["caps"]);
        let flags: &[&str] = if v["allow_f16"] == json!(true) { &["--allow-f16"] } else { &[] };

        let out = select(&caps_file, &package, &[flags, &["--json"]].concat());
        assert_status(&out, 0);
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(pinned(&json), *v["expect"].as_array().unwrap(), "{name}");
        assert_eq!((&json["suggested_target"], &json["note"]), (&json!("safari"), &Value::Null), "{name}");
        assert!(
            json["choices"].as_array().unwrap().iter().all(|c| c["reason"].as_str().is_some_and(|r| !r.is_empty()))
        );

        // The table: the same choices, one row each.
        let out = select(&caps_file, &package, flags);
        assert_status(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("suggested: safari") && !text.contains("note:"), "{text}");
        assert!(text.contains("FAMILY") && text.contains("REASON"), "{text}");
        for e in v["expect"].as_array().unwrap() {
            let tier = e["tier"].as_str().unwrap_or("-");
            let row = format!("{} ", e["family"].as_str().unwrap());
            let line =
                text.lines().find(|l| l.trim_start().starts_with(&row)).unwrap_or_else(|| panic!("no row {row}"));
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&cells[1..4], [e["backend"].as_str().unwrap(), tier, e["kernel"].as_str().unwrap()], "{line}");
        }
    }
}

#[test]
fn select_notes_a_package_for_another_target() {
    let scratch = Scratch::new("select_notes_a_package_for_another_target");
    let package = scratch.path("chrome");
    emit("chrome", &package, &["--ops", "matvec", "--bits", "4", "--group", "32"]);
    let caps_file = scratch.path("caps.json");
    write_json(&caps_file, &vector("safari-26-apple.json")["caps"]);
    // --package also takes the manifest itself.
    let out = select(&caps_file, &package.join("manifest.json"), &[]);
    assert_status(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("note:      the package is for chrome but the report suggests safari"), "{text}");
    let out = select(&caps_file, &package, &["--json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(json["note"].as_str().is_some_and(|n| n.contains("--target safari")), "{json}");
    // Safari's adapter has no subgroups: the chrome package's base kernels, reason given.
    for c in json["choices"].as_array().unwrap() {
        assert_eq!((&c["tier"], &c["reason"]), (&json!("base"), &json!("no subgroups; f16 not allowed")), "{c}");
    }
}

/// Runs `select` expecting failure with `status` and a message containing each of `expected`.
#[track_caller]
fn fails(caps: &Path, package: &Path, status: i32, expected: &[&str]) {
    let out = select(caps, package, &[]);
    assert_status(&out, status);
    assert_eq!(stdout(&out), "", "nothing on stdout");
    let err = stderr(&out);
    assert!(err.starts_with("error: ") && err.matches("error:").count() == 1, "{err}");
    for e in expected {
        assert!(err.contains(e), "stderr does not mention {e:?}: {err}");
    }
}

#[test]
fn select_errors_name_the_file_and_the_field() {
    let scratch = Scratch::new("select_errors_name_the_file_and_the_field");
    let package = scratch.path("pkg");
    emit("firefox", &package, &["--ops", "matvec", "--bits", "4", "--group", "32", "--scheme", "sym"]);
    let good = vector("firefox-esr-153-headless-lavapipe.json")["caps"].clone();
    let caps_file = scratch.path("caps.json");
    write_json(&caps_file, &good);

    // Missing files: status 3.
    fails(&scratch.path("missing.json"), &package, 3, &["cannot read", "missing.json"]);
    fails(&caps_file, &scratch.path("no-package"), 3, &["cannot read", "no-package"]);

    // Not JSON: status 2, with the file and serde_json's position.
    let bad = scratch.path("bad.json");
    std::fs::write(&bad, "{\"schema\": 1,").unwrap();
    fails(&bad, &package, 2, &["bad.json", "capabilities report", "invalid JSON", "line 1"]);

    // A field missing or mistyped: status 2, naming the file and the field.
    let mut caps = good.clone();
    caps["webgpu"]["limits"].as_object_mut().unwrap().remove("maxComputeWorkgroupStorageSize");
    write_json(&bad, &caps);
    fails(&bad, &package, 2, &["bad.json", "`webgpu.limits.maxComputeWorkgroupStorageSize`", "a whole number"]);
    let mut caps = good.clone();
    caps["engine"] = json!("trident");
    write_json(&bad, &caps);
    fails(
        &bad,
        &package,
        2,
        &["`engine`: expected one of chromium, gecko, webkit, dawn-node, wgpu-native, unknown", "\"trident\""],
    );

    // A malformed manifest: status 2, naming the manifest and the field.
    let manifest = package.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["kernels"][1]["workgroup_storage_bytes"] = json!("1 KiB");
    let bad_manifest = scratch.path("manifest.json");
    write_json(&bad_manifest, &m);
    fails(
        &caps_file,
        &bad_manifest,
        2,
        &["manifest.json", "manifest: `kernels[1].workgroup_storage_bytes`: expected a whole number"],
    );
    std::fs::write(&bad_manifest, "[").unwrap();
    fails(&caps_file, &bad_manifest, 2, &["manifest.json", "invalid JSON"]);
}

/// `select --allow-int8` (CAPS.md §3): Dawn's report has packed_4x8_integer_dot_product, so a
/// chrome package's quantized matvec gets dot4-subgroups; matmul and the f16 baseline do not
/// change, and without the flag nothing takes a dot4 tier.
#[test]
fn select_allow_int8_takes_dot4_tiers() {
    let scratch = Scratch::new("select_allow_int8_takes_dot4_tiers");
    let package = scratch.path("chrome");
    emit("chrome", &package, &["--ops", "matvec,matmul", "--bits", "4,16", "--group", "32", "--scheme", "sym"]);
    let caps_file = scratch.path("caps.json");
    write_json(&caps_file, &vector("dawn-node-lavapipe.json")["caps"]);
    let tiers = |flags: &[&str]| -> Vec<(String, String)> {
        let out = select(&caps_file, &package, &[flags, &["--json"]].concat());
        assert_status(&out, 0);
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["allow_int8"], json!(flags.contains(&"--allow-int8")));
        json["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["family"].as_str().unwrap().to_string(), c["tier"].as_str().unwrap().to_string()))
            .collect()
    };
    let want = |matvec4: &str| {
        vec![
            ("matvec/4/32/sym".to_string(), matvec4.to_string()),
            ("matvec/16/32/sym".into(), "subgroups".into()),
            ("matmul/4/32/sym".into(), "subgroups".into()),
            ("matmul/16/32/sym".into(), "subgroups".into()),
        ]
    };
    let mut got = tiers(&["--allow-int8"]);
    got.sort();
    let mut expect = want("dot4-subgroups");
    expect.sort();
    assert_eq!(got, expect);
    let mut got = tiers(&[]);
    got.sort();
    let mut expect = want("subgroups");
    expect.sort();
    assert_eq!(got, expect);
    // The table says so too.
    let out = select(&caps_file, &package, &["--allow-int8"]);
    let text = stdout(&out);
    assert!(text.contains("allow_int8: true"), "{text}");
    assert!(text.contains("adapter has packed_4x8_integer_dot_product, int8 allowed"), "{text}");
}
