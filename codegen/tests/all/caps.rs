//! docs/CAPS.md: the shared vectors of `tests/caps/` (format: §4) and the rule's edge cases.
//!
//! Each vector's package is emitted in memory (`manifest::build` over the target's default
//! set, as `shadergen emit --target T` writes it) and `caps::select` must give exactly its
//! `expect`. `SHADERGEN_BLESS=1 cargo test -p shadergen-codegen --test all caps::` rewrites
//! the `expect` arrays (and canonical layout) from the current rule: review the diff by hand.

use codegen::caps::{self, Backend, Caps, CapsError, Choice, Engine, PackageView};
use codegen::{KernelSpec, Target, Tier, manifest};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/caps")
}

/// The manifest of `shadergen emit --target T` (every default kernel), as JSON; built once
/// per target for all tests of this binary.
fn package(target: Target) -> Value {
    static CACHE: OnceLock<Mutex<BTreeMap<Target, Value>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&target) {
        return v.clone();
    }
    let built = manifest::build(target, &KernelSpec::default_set(target), |_, _, _| {})
        .unwrap_or_else(|e| panic!("emit the {target} package: {e}"));
    let value = serde_json::to_value(&built.manifest).expect("the manifest serializes");
    cache.lock().unwrap().insert(target, value.clone());
    value
}

/// The fields of a choice a vector pins (the reason is for people and may be reworded).
fn pinned(c: &Choice) -> Value {
    json!({ "family": c.family, "kernel": c.kernel, "backend": c.backend, "tier": c.tier })
}

/// The canonical text of a vector: the report as `Caps` serializes it, one `expect` entry a line.
fn vector_text(note: &str, caps: &Caps, target: Target, allow_f16: bool, expect: &[Value]) -> String {
    let caps_text = serde_json::to_string_pretty(caps).unwrap().replace('\n', "\n  ");
    let lines: Vec<String> = expect.iter().map(|e| format!("    {e}")).collect();
    format!(
        "{{\n  \"note\": {},\n  \"caps\": {caps_text},\n  \"package_target\": \"{target}\",\n  \"allow_f16\": {allow_f16},\n  \
         \"expect\": [\n{}\n  ]\n}}\n",
        Value::from(note),
        lines.join(",\n")
    )
}

#[test]
fn shared_vectors_give_their_expected_choices() {
    let bless = std::env::var("SHADERGEN_BLESS").is_ok_and(|v| v == "1");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(vector_dir())
        .expect("tests/caps exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 8, "expected the shared vectors in {}", vector_dir().display());
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["allow_f16", "caps", "expect", "note", "package_target"], "{name}: the §4 fields");
        let caps = Caps::from_json(&v["caps"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The report is complete and canonical: it serializes back to itself.
        assert_eq!(serde_json::to_value(&caps).unwrap(), v["caps"], "{name}: report round trip");
        let target: Target = v["package_target"].as_str().unwrap().parse().unwrap();
        assert_eq!(caps::suggest_target(&caps), target, "{name}: package_target is the suggested target (§2)");
        let allow_f16 = v["allow_f16"].as_bool().unwrap();
        let choices = caps::select(&caps, &package(target), allow_f16).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<Value> = choices.iter().map(pinned).collect();
        if bless {
            let note = v["note"].as_str().unwrap();
            std::fs::write(path, vector_text(note, &caps, target, allow_f16, &got)).unwrap();
            continue;
        }
        let expect = v["expect"].as_array().unwrap();
        let canonical = vector_text(v["note"].as_str().unwrap(), &caps, target, allow_f16, expect);
        assert_eq!(text, canonical, "{name}: the file is in canonical layout (SHADERGEN_BLESS=1 rewrites it)");
        if &got != expect {
            let diff: Vec<String> = got
                .iter()
                .zip(expect)
                .filter(|(g, e)| g != e)
                .take(5)
                .map(|(g, e)| format!("  got    {g}\n  expect {e}"))
                .collect();
            failures.push(format!("{name}: {} choices, {} expected\n{}", got.len(), expect.len(), diff.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- reports ----

fn report(features: &[&str]) -> Caps {
    let mut features: Vec<String> = features.iter().map(|s| s.to_string()).collect();
    features.sort();
    Caps {
        schema: caps::SCHEMA,
        source: "test".into(),
        user_agent: None,
        engine: Engine::Unknown,
        webgpu: Some(caps::WebGpu {
            adapter: caps::AdapterInfo::default(),
            features,
            limits: caps::AdapterLimits::spec_defaults(),
            wgsl_language_features: vec![],
            is_fallback_adapter: false,
        }),
        wasm: caps::WasmSupport { simd128: true, relaxed_simd: false, threads: false },
    }
}

fn report_json() -> Value {
    serde_json::to_value(report(&["shader-f16"])).unwrap()
}

#[track_caller]
fn report_error(v: &Value) -> String {
    match Caps::from_json(v) {
        Err(e @ CapsError::Report { .. }) => e.to_string(),
        other => panic!("expected a report error, got {other:?}"),
    }
}

#[test]
fn report_round_trips_through_serde() {
    let caps = report(&["subgroups", "shader-f16"]);
    let text = serde_json::to_string(&caps).unwrap();
    let back: Caps = serde_json::from_str(&text).unwrap();
    assert_eq!(back, caps);
    // Extra limits are kept, under their WebGPU names, beside the required ones.
    let mut v = report_json();
    v["webgpu"]["limits"]["maxBindGroups"] = json!(4);
    v["webgpu"]["limits"]["maxComputeWorkgroupStorageSize"] = json!(32768.0);
    let caps = Caps::from_json(&v).unwrap();
    let limits = &caps.webgpu.as_ref().unwrap().limits;
    assert_eq!(limits.get("maxBindGroups"), Some(4));
    assert_eq!(limits.max_compute_workgroup_storage_size, 32768);
    assert_eq!(serde_json::to_value(limits).unwrap()["maxBindGroups"], json!(4));
}

#[test]
fn malformed_reports_name_the_field_and_what_it_must_be() {
    let mut v = report_json();
    v.as_object_mut().unwrap().remove("user_agent");
    let e = report_error(&v);
    assert!(e.contains("`user_agent`: expected a string or null, found nothing (every field"), "{e}");

    let mut v = report_json();
    v["schema"] = json!(2);
    let e = report_error(&v);
    assert!(e.contains("`schema`: expected 1") && e.contains("found 2"), "{e}");

    let mut v = report_json();
    v["engine"] = json!("blink");
    let e = report_error(&v);
    assert!(e.contains("`engine`: expected one of chromium, gecko, webkit") && e.contains("\"blink\""), "{e}");

    let mut v = report_json();
    v["webgpu"]["limits"].as_object_mut().unwrap().remove("maxComputeWorkgroupSizeX");
    let e = report_error(&v);
    assert!(e.contains("`webgpu.limits.maxComputeWorkgroupSizeX`"), "{e}");

    let mut v = report_json();
    v["webgpu"]["limits"]["maxBufferSize"] = json!("big");
    let e = report_error(&v);
    assert!(e.contains("`webgpu.limits.maxBufferSize`: expected a whole number >= 0, found \"big\""), "{e}");

    let mut v = report_json();
    v["webgpu"]["limits"]["maxBindGroups"] = json!(-1);
    assert!(report_error(&v).contains("`webgpu.limits.maxBindGroups`"));

    let mut v = report_json();
    v["webgpu"]["features"] = json!(["shader-f16", 3]);
    let e = report_error(&v);
    assert!(e.contains("`webgpu.features[1]`: expected a string, found 3"), "{e}");

    let mut v = report_json();
    v["webgpu"]["adapter"]["vendor"] = json!(7);
    assert!(report_error(&v).contains("`webgpu.adapter.vendor`: expected a string or null"));

    let mut v = report_json();
    v["wasm"]["simd128"] = json!("yes");
    assert!(report_error(&v).contains("`wasm.simd128`: expected true or false"));

    let e = report_error(&json!([1, 2]));
    assert!(e.contains("`(top level)`: expected an object, found an array [1,2]"), "{e}");

    // Through serde too (the path is in serde_json's message), and for text that is not JSON.
    let mut v = report_json();
    v["webgpu"]["is_fallback_adapter"] = json!(null);
    let e = serde_json::from_value::<Caps>(v).unwrap_err().to_string();
    assert!(e.contains("`webgpu.is_fallback_adapter`: expected true or false, found null"), "{e}");
    let e = "{\"schema\": 1,".parse::<Caps>().unwrap_err().to_string();
    assert!(e.contains("invalid JSON"), "{e}");
}

#[test]
fn suggested_targets_follow_the_engine() {
    let mut caps = report(&[]);
    for (engine, ua, target) in [
        (Engine::Chromium, Some("Mozilla/5.0 ... Chrome/156.0.0.0 Safari/537.36"), Target::Chrome),
        (Engine::Chromium, Some("Mozilla/5.0 ... Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0"), Target::Edge),
        (Engine::Chromium, None, Target::Chrome),
        (Engine::Gecko, None, Target::Firefox),
        (Engine::Webkit, None, Target::Safari),
        (Engine::WgpuNative, None, Target::Native),
        (Engine::DawnNode, None, Target::Generic),
        (Engine::Unknown, Some("Edg/1"), Target::Generic),
    ] {
        caps.engine = engine;
        caps.user_agent = ua.map(str::to_string);
        assert_eq!(caps::suggest_target(&caps), target, "{engine} {ua:?}");
    }
}

// ---- the rule over hand-made manifests ----

/// One family of four matvec kernels (chrome: every tier), each changeable.
fn matvec_family() -> Value {
    let kernel = |tier: Tier| {
        json!({
            "name": format!("mv_{}", tier.name()),
            "op": "matvec", "bits": 4, "group_size": 32, "scheme": "sym",
            "tier": tier.name(), "features": tier.features(),
            "workgroup_size": [64, 1, 1], "workgroup_storage_bytes": 1024,
        })
    };
    json!({ "target": "chrome", "kernels": Tier::ALL.iter().map(|&t| kernel(t)).collect::<Vec<_>>() })
}

fn only(choices: Vec<Choice>) -> Choice {
    assert_eq!(choices.len(), 1, "{choices:?}");
    choices.into_iter().next().unwrap()
}

fn set(manifest: &mut Value, kernel: &str, field: &str, value: Value) {
    let k = manifest["kernels"].as_array_mut().unwrap().iter_mut().find(|k| k["name"] == kernel).unwrap();
    k[field] = value;
}

#[test]
fn wanted_tier_follows_features_and_allow_f16() {
    let m = matvec_family();
    for (features, allow, tier, reason) in [
        (&[][..], false, Tier::Base, "no subgroups; no shader-f16"),
        (&["subgroups"][..], false, Tier::Subgroups, "adapter has subgroups; no shader-f16"),
        (&["subgroups", "shader-f16"][..], false, Tier::Subgroups, "adapter has subgroups; f16 not allowed"),
        (
            &["subgroups", "shader-f16"][..],
            true,
            Tier::F16Subgroups,
            "adapter has subgroups; adapter has shader-f16, f16 allowed",
        ),
        (&["shader-f16"][..], true, Tier::F16, "adapter has shader-f16, f16 allowed; no subgroups"),
        (&["shader-f16"][..], false, Tier::Base, "no subgroups; f16 not allowed"),
    ] {
        let c = only(caps::select(&report(features), &m, allow).unwrap());
        assert_eq!((c.backend, c.tier, c.reason.as_str()), (Backend::WebGpu, Some(tier), reason), "{features:?}");
        assert_eq!(c.kernel, format!("mv_{}", tier.name()));
        assert_eq!(c.family, "matvec/4/32/sym");
    }
}

#[test]
fn over_workgroup_storage_falls_back_to_a_lower_tier_then_to_wasm() {
    let mut m = matvec_family();
    set(&mut m, "mv_subgroups", "workgroup_storage_bytes", json!(20480));
    let caps = report(&["subgroups"]);
    let c = only(caps::select(&caps, &m, false).unwrap());
    assert_eq!((c.backend, c.tier), (Backend::WebGpu, Some(Tier::Base)));
    assert!(c.reason.contains("mv_subgroups: workgroup storage 20480 > 16384"), "{}", c.reason);

    set(&mut m, "mv_base", "workgroup_storage_bytes", json!(16385));
    let c = only(caps::select(&caps, &m, false).unwrap());
    assert_eq!((c.backend, c.tier, c.kernel.as_str()), (Backend::WasmSimd, None, "mv_base"));
    assert!(c.reason.starts_with("no runnable WebGPU kernel"), "{}", c.reason);
    assert!(c.reason.contains("mv_base: workgroup storage 16385 > 16384"), "{}", c.reason);

    // A larger limit in the report makes them runnable again.
    let mut big = caps.clone();
    big.webgpu.as_mut().unwrap().limits.max_compute_workgroup_storage_size = 32768;
    assert_eq!(only(caps::select(&big, &m, false).unwrap()).tier, Some(Tier::Subgroups));

    // Without SIMD the scalar twin, and the reason says so.
    let mut no_simd = caps;
    no_simd.wasm.simd128 = false;
    let c = only(caps::select(&no_simd, &m, false).unwrap());
    assert_eq!(c.backend, Backend::WasmScalar);
    assert!(c.reason.ends_with("; no wasm simd128"), "{}", c.reason);
}

#[test]
fn workgroup_size_limits_decide_runnable() {
    let mut m = matvec_family();
    set(&mut m, "mv_subgroups", "workgroup_size", json!([128, 4, 1]));
    let c = only(caps::select(&report(&["subgroups"]), &m, false).unwrap());
    assert_eq!(c.tier, Some(Tier::Base));
    assert!(c.reason.contains("workgroup invocations 512 > 256"), "{}", c.reason);

    set(&mut m, "mv_subgroups", "workgroup_size", json!([512, 1, 1]));
    let c = only(caps::select(&report(&["subgroups"]), &m, false).unwrap());
    assert!(c.reason.contains("workgroup_size[0] 512 > maxComputeWorkgroupSizeX 256"), "{}", c.reason);
}

#[test]
fn a_feature_the_adapter_lacks_makes_a_kernel_unrunnable() {
    let mut m = matvec_family();
    // A base kernel that (unusually) declares a feature.
    set(&mut m, "mv_base", "features", json!(["timestamp-query"]));
    let c = only(caps::select(&report(&[]), &m, false).unwrap());
    assert_eq!(c.backend, Backend::WasmSimd);
    assert!(c.reason.contains("mv_base: no timestamp-query"), "{}", c.reason);
    let c = only(caps::select(&report(&["timestamp-query"]), &m, false).unwrap());
    assert_eq!((c.backend, c.tier), (Backend::WebGpu, Some(Tier::Base)));
}

/// The fallback never lands on an f16 tier the host did not allow, nor on one whose needs
/// the adapter does not meet, even when the kernel itself declares no feature (KV kernels).
#[test]
fn fallback_skips_tiers_select_tier_could_not_give() {
    let mut m = matvec_family();
    set(&mut m, "mv_subgroups", "workgroup_storage_bytes", json!(20480));
    let c = only(caps::select(&report(&["subgroups", "shader-f16"]), &m, false).unwrap());
    assert_eq!(c.tier, Some(Tier::Base), "f16 not allowed: {}", c.reason);

    for k in m["kernels"].as_array_mut().unwrap() {
        k["features"] = json!([]);
    }
    let c = only(caps::select(&report(&["subgroups"]), &m, true).unwrap());
    assert_eq!(c.tier, Some(Tier::Base), "no shader-f16: {}", c.reason);
}

#[test]
fn a_missing_tier_is_passed_over_and_said() {
    let mut m = matvec_family();
    m["kernels"].as_array_mut().unwrap().retain(|k| k["tier"] != "subgroups");
    let c = only(caps::select(&report(&["subgroups"]), &m, false).unwrap());
    assert_eq!(c.tier, Some(Tier::Base));
    assert!(c.reason.contains("no subgroups kernel in the package"), "{}", c.reason);

    // Only a subgroups kernel, on an adapter without subgroups: WebAssembly.
    let mut m = matvec_family();
    m["kernels"].as_array_mut().unwrap().retain(|k| k["tier"] == "subgroups");
    let c = only(caps::select(&report(&[]), &m, false).unwrap());
    assert_eq!((c.backend, c.kernel.as_str()), (Backend::WasmSimd, "mv_subgroups"));
    assert!(c.reason.contains("no base kernel in the package"), "{}", c.reason);
}

#[test]
fn without_webgpu_every_family_gets_its_lowest_tier_twin() {
    let mut caps = report(&[]);
    caps.webgpu = None;
    let c = only(caps::select(&caps, &matvec_family(), false).unwrap());
    assert_eq!(
        (c.backend, c.tier, c.kernel.as_str(), c.reason.as_str()),
        (Backend::WasmSimd, None, "mv_base", "no WebGPU")
    );
    caps.wasm.simd128 = false;
    let c = only(caps::select(&caps, &matvec_family(), false).unwrap());
    assert_eq!((c.backend, c.reason.as_str()), (Backend::WasmScalar, "no WebGPU; no wasm simd128"));
}

#[test]
fn families_split_on_every_key_field_and_keep_manifest_order() {
    let m = package(Target::Firefox);
    let view = PackageView::from_json(&m).unwrap();
    let choices = caps::select(&report(&[]), &m, false).unwrap();
    let mut families: Vec<String> = view.kernels.iter().map(|k| k.family()).collect();
    let mut seen = std::collections::HashSet::new();
    families.retain(|f| seen.insert(f.clone()));
    assert_eq!(choices.iter().map(|c| c.family.clone()).collect::<Vec<_>>(), families);
    // Every family has one kernel per tier of the target.
    assert_eq!(view.kernels.len(), families.len() * Target::Firefox.info().tiers.len());
    assert!(
        families.contains(&"kv-attend/4/32/asym/128".to_string()) && families.contains(&"matvec/16/32/sym".to_string())
    );
}

#[track_caller]
fn manifest_error(m: &Value) -> String {
    match PackageView::from_json(m) {
        Err(e @ CapsError::Manifest { .. }) => e.to_string(),
        other => panic!("expected a manifest error, got {other:?}"),
    }
}

#[test]
fn malformed_manifests_name_the_field_and_what_it_must_be() {
    let e = manifest_error(&json!({ "target": "chrome" }));
    assert!(e.contains("`kernels`") && e.contains("found nothing"), "{e}");
    let e = manifest_error(&json!({ "target": "opera", "kernels": [] }));
    assert!(
        e.contains("`target`: expected one of generic, chrome, edge, firefox, safari, native, found \"opera\""),
        "{e}"
    );

    let mut m = matvec_family();
    m["target"] = json!("firefox");
    let e = manifest_error(&m);
    assert!(e.contains("`kernels[2].tier`: expected a tier of target firefox: one of base, f16"), "{e}");

    let mut m = matvec_family();
    set(&mut m, "mv_f16", "tier", json!("base"));
    let e = manifest_error(&m);
    assert!(e.contains("`kernels[1]`") && e.contains("like kernels[0] (`mv_base`)"), "{e}");

    let mut m = matvec_family();
    set(&mut m, "mv_base", "workgroup_size", json!([64, 1]));
    assert!(manifest_error(&m).contains("`kernels[0].workgroup_size`: expected an array of 3 whole numbers"));

    let mut m = matvec_family();
    set(&mut m, "mv_base", "op", json!("kv-attend"));
    let e = manifest_error(&m);
    assert!(e.contains("`kernels[0].kv`") && e.contains("found nothing"), "{e}");

    let mut m = matvec_family();
    set(&mut m, "mv_base", "op", json!("conv2d"));
    assert!(manifest_error(&m).contains("`kernels[0].op`: expected one of matvec, matmul, kv-append, kv-attend"));

    let mut m = matvec_family();
    set(&mut m, "mv_base", "bits", json!(4.5));
    assert!(manifest_error(&m).contains("`kernels[0].bits`: expected a whole number from 0 to 4294967295, found 4.5"));

    let e = caps::select(&report(&[]), &json!({ "target": "chrome", "kernels": [1] }), false).unwrap_err().to_string();
    assert!(e.contains("manifest: `kernels[0]`: expected an object, found 1"), "{e}");
}

#[test]
fn wasm_probes_are_the_modules_their_docs_show() {
    for (name, wat) in [
        ("simd128", "(module (func (result v128) (v128.const i64x2 0 0)))"),
        ("relaxed_simd", "(module (func (result v128) (i32x4.relaxed_trunc_f32x4_s (v128.const i64x2 0 0))))"),
        ("threads", "(module (memory 1 1 shared))"),
    ] {
        let bytes = caps::WasmSupport::PROBES.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(bytes, wat::parse_str(wat).unwrap(), "{name}");
    }
    let probed = caps::WasmSupport::probe(|bytes| bytes == caps::PROBE_SIMD128);
    assert_eq!(probed, caps::WasmSupport { simd128: true, relaxed_simd: false, threads: false });
}

/// `allow_int8` (CAPS.md §3, `allowInt8` in shadergen.mjs): dot4 tiers only for families with
/// int8-activation kernels, only where the report's WGSL has the language feature; they fall
/// back to dot4, then to the f32 tiers, as the others do.
#[test]
fn allow_int8_chooses_dot4_tiers_where_the_language_feature_is() {
    let mut m = matvec_family();
    for tier in [Tier::Dot4, Tier::Dot4Subgroups] {
        let name = format!("mv_{}", tier.name());
        set(&mut m, &name, "activations", json!("int8"));
        set(&mut m, &name, "wgsl_language_features", json!(["packed_4x8_integer_dot_product"]));
    }
    let int8 = caps::Allow { f16: false, int8: true };
    let mut caps = report(&["subgroups"]);
    // Without the language feature: as without allow_int8, and the reason says why.
    let c = only(caps::select_with(&caps, &m, int8).unwrap());
    assert_eq!(c.tier, Some(Tier::Subgroups));
    assert_eq!(c.reason, "adapter has subgroups; no shader-f16; no packed_4x8_integer_dot_product");
    caps.webgpu.as_mut().unwrap().wgsl_language_features = vec!["packed_4x8_integer_dot_product".into()];
    let c = only(caps::select_with(&caps, &m, int8).unwrap());
    assert_eq!(
        (c.backend, c.tier, c.kernel.as_str()),
        (Backend::WebGpu, Some(Tier::Dot4Subgroups), "mv_dot4-subgroups")
    );
    assert!(c.reason.starts_with("adapter has packed_4x8_integer_dot_product, int8 allowed; "), "{}", c.reason);
    // Not allowed: never a dot4 tier, the same answer as select.
    let plain = only(caps::select(&caps, &m, false).unwrap());
    assert_eq!(plain.tier, Some(Tier::Subgroups));
    assert_eq!(only(caps::select_with(&caps, &m, caps::Allow::default()).unwrap()), plain);
    // dot4-subgroups not runnable: dot4 (the reason names what was passed over).
    set(&mut m, "mv_dot4-subgroups", "workgroup_storage_bytes", json!(20480));
    let c = only(caps::select_with(&caps, &m, int8).unwrap());
    assert_eq!(c.tier, Some(Tier::Dot4));
    assert!(c.reason.contains("mv_dot4-subgroups: workgroup storage 20480 > 16384"), "{}", c.reason);
    // A dot4 kernel needing a language feature the report lacks is not runnable.
    set(
        &mut m,
        "mv_dot4",
        "wgsl_language_features",
        json!(["packed_4x8_integer_dot_product", "pointer_composite_access"]),
    );
    let c = only(caps::select_with(&caps, &m, int8).unwrap());
    assert_eq!(c.tier, Some(Tier::Subgroups));
    assert!(c.reason.contains("mv_dot4: no WGSL language feature pointer_composite_access"), "{}", c.reason);
    // A family without int8 kernels (the real chrome package's matmul) never takes a dot4 tier.
    let chrome = package(Target::Chrome);
    let choices = caps::select_with(&caps, &chrome, int8).unwrap();
    for c in &choices {
        let dot4 = c.tier.is_some_and(|t| t.dot4());
        let quantized_matvec = c.family.starts_with("matvec/") && !c.family.starts_with("matvec/16/");
        assert_eq!(dot4, quantized_matvec, "{c:?}");
    }
    // A bad `activations` value names the allowed ones.
    set(&mut m, "mv_dot4", "activations", json!("int4"));
    let e = caps::select_with(&caps, &m, int8).unwrap_err().to_string();
    assert!(e.contains("activations") && e.contains("f32, int8") && e.contains("int4"), "{e}");
}
