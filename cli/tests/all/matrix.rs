//! `shadergen matrix`: the browser compatibility matrix from a synthetic results folder (a
//! kernel Tint rejected, a browser run with a failure), determinism, missing and malformed
//! inputs, and an output folder that cannot be written.

use crate::common::{Scratch, assert_status, entries, shadergen, stderr, stdout};
use codegen::{KernelSpec, Target};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn vector(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/caps").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn matrix(results: &Path, out: &Path) -> std::process::Output {
    shadergen(&["matrix", "--results", results.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

/// The kernel Tint rejects in the synthetic tint.json: what Chromium selects for matvec/4/32/sym.
const REJECTED: &str = "matvec_q4g32s_subgroups";
/// The kernel whose run fails in the synthetic chromium.json.
const FAILED: &str = "matvec_q3g64a_subgroups";
/// A date in the browser result: it must not reach the output.
const DATE: &str = "2031-02-03T04:05:06.789Z";

/// tint.json for chrome and firefox (not safari: "not run"): every kernel compiled, except
/// REJECTED, and chrome's f16 tiers "not compiled: needs shader-f16".
fn tint_json() -> Value {
    let mut results = serde_json::Map::new();
    for target in [Target::Chrome, Target::Firefox] {
        let mut kernels = serde_json::Map::new();
        for spec in KernelSpec::default_set(target) {
            let name = spec.name();
            let verdict = if target == Target::Chrome && name == REJECTED {
                "rejected"
            } else if target == Target::Chrome && spec.profile.tier.shader_f16() {
                "not compiled: needs shader-f16"
            } else {
                "compiled"
            };
            kernels.insert(name, json!(verdict));
        }
        results.insert(target.name().into(), Value::Object(kernels));
    }
    json!({ "engine": "Dawn for Node (Tint)", "adapter": "synthetic adapter", "results": results })
}

fn op(case: u64, op: &str, kernel: &str, backend: &str, tier: Option<&str>, ok: bool) -> Value {
    json!({
        "case": case, "op": op, "bits": 4, "group_size": 32, "scheme": "sym", "shape": { "m": 1, "n": 8, "k": 64 },
        "kernel": kernel, "backend": backend, "tier": tier, "reason": "synthetic", "ms": 1.5,
        "check": "tolerance", "tolerance": 1e-5, "worst_relative_error": if ok { 1e-8 } else { 0.5 },
        "ok": ok, "error": null,
    })
}

fn run(name: &str, hide_gpu: bool, caps: &Value, ops: Vec<Value>) -> Value {
    json!({
        "name": name, "options": { "prefer": "auto" }, "hide_gpu": hide_gpu, "cases": [0, 1],
        "expected_backend": "webgpu", "expected_tier": null, "load_ms": 10.0, "caps": caps,
        "selection": null, "device_features": null, "error": null, "ok": true, "ops": ops,
    })
}

/// chromium.json as tests/browser writes it: the recorded Chromium report with 12288 bytes of
/// workgroup storage (matvec's 12 KiB fit, the wide entry point's array included; kv-attend's
/// 13.6 KiB does not and falls back to WebAssembly: the real report is used), a
/// WebGPU run where REJECTED passes and FAILED fails, a wasm-simd run and a run with
/// navigator.gpu hidden; no caps_without_webgpu (the no-WebGPU column uses the vector).
fn chromium_json() -> Value {
    let mut caps = vector("chromium-156-headless-swiftshader.json")["caps"].clone();
    caps["source"] = json!("shadergen.mjs");
    caps["webgpu"]["limits"]["maxComputeWorkgroupStorageSize"] = json!(12288);
    let no_gpu = json!(null);
    json!({
        "schema": 1, "browser": "chromium", "version": "Chromium 999.0 synthetic",
        "user_agent": caps["user_agent"], "target": "chrome",
        "package": { "generator": format!("shadergen {}", env!("CARGO_PKG_VERSION")), "target": "chrome", "kernels": 360 },
        "launch": { "flags": ["--headless"] }, "date": DATE, "ms": { "prepare": 1234, "browser": 5678, "page": 91 },
        "caps": caps, "caps_without_webgpu": null,
        "runs": [
            run("webgpu", false, &caps, vec![
                op(0, "matvec", REJECTED, "webgpu", Some("subgroups"), true),
                op(1, "matvec", FAILED, "webgpu", Some("subgroups"), false),
            ]),
            run("wasm-simd", false, &caps, vec![op(9, "kv-attend", "kv_attend_q4g128a_d128_base", "wasm-simd", None, true)]),
            run("no-webgpu", true, &no_gpu, vec![op(0, "matvec", "matvec_q4g32s_base", "wasm-simd", None, true)]),
        ],
        "page_log": [], "ok": false,
        "failures": [format!("webgpu: case 1 (matvec) on webgpu/subgroups ({FAILED}, tolerance 1e-5): 1/8 outputs off")],
    })
}

/// A results folder with tint.json and chromium.json (no firefox.json).
fn synthetic_results(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_json(&dir.join("tint.json"), &tint_json());
    write_json(&dir.join("chromium.json"), &chromium_json());
}

/// The section of `text` from the line `start` on, up to the next line starting with `##`.
fn section<'t>(text: &'t str, start: &str) -> &'t str {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}` in:\n{text}"));
    let rest = &text[from + start.len()..];
    let end = rest.find("\n## ").or_else(|| rest.find("<h2>")).unwrap_or(rest.len());
    &rest[..end]
}

/// The cells of the Markdown table row for `family` in `table` (split at unescaped `|`).
fn md_row(table: &str, family: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {family} |")))
        .unwrap_or_else(|| panic!("no row {family} in:\n{table}"));
    let mut cells = vec![String::new()];
    let mut chars = line.trim().trim_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cells.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    cells.last_mut().unwrap().push(n);
                }
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The cells of the HTML table row for `family` in `table`.
fn html_row(table: &str, family: &str) -> Vec<String> {
    let start = table.find(&format!("<tr><td>{family}</td>")).unwrap_or_else(|| panic!("no row {family}"));
    let row = &table[start..start + table[start..].find("</tr>").unwrap()];
    row.split("<td>").skip(1).map(|c| c.trim_end_matches("</td>").to_string()).collect()
}

#[test]
fn matrix_shows_rejections_failures_and_what_was_not_run() {
    let s = Scratch::new("matrix-cells");
    let results = s.path("results");
    synthetic_results(&results);
    let out = matrix(&results, &s.path("out"));
    assert_status(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("firefox.json") && err.contains("not run"), "no note on the missing firefox.json:\n{err}");
    assert!(stdout(&out).contains("matrix.md"), "{}", stdout(&out));
    assert_eq!(entries(&s.path("out")), ["matrix.html", "matrix.md"]);
    let md = std::fs::read_to_string(s.path("out/matrix.md")).unwrap();
    let html = std::fs::read_to_string(s.path("out/matrix.html")).unwrap();

    // Inputs: the files and what they name; no date, no timings, no paths.
    let inputs = section(&md, "## Inputs");
    for expected in [
        "`tint.json`",
        "Dawn for Node (Tint), adapter synthetic adapter",
        "`chromium.json`",
        "Chromium 999.0 synthetic",
        "`firefox.json`",
        "`tests/caps/safari-26-apple.json`",
    ] {
        assert!(inputs.contains(expected), "inputs lack {expected}:\n{inputs}");
    }
    for text in [&md, &html] {
        assert!(!text.contains("2031") && !text.contains("5678"), "a date or timing reached the output");
        assert!(!text.contains(results.to_str().unwrap()), "the results path reached the output");
    }

    // Families by browser, in Markdown and in HTML.
    let md_table = section(&md, "## Kernel families by browser");
    let html_table = section(&html, "<h2>Kernel families by browser</h2>");
    let header = md_table.lines().find(|l| l.starts_with("| family |")).unwrap();
    assert!(header.contains("caps: `chromium.json`"), "{header}");
    assert!(header.contains("caps: `tests/caps/firefox-esr-153-headless-lavapipe.json`"), "{header}");
    assert!(header.contains("caps: `tests/caps/no-webgpu.json`"), "{header}");
    for (row, bold) in [(md_row(md_table, "matvec/4/32/sym"), "**"), (html_row(html_table, "matvec/4/32/sym"), "")] {
        let [_, chrome, firefox, safari, no_gpu] = &row[..] else { panic!("{row:?}") };
        assert!(chrome.contains(REJECTED) && chrome.contains("tier subgroups"), "{chrome}");
        assert!(chrome.contains(&format!("{bold}Tint: rejected{bold}")), "{chrome}");
        assert!(chrome.contains("executed: ok (1 op)"), "{chrome}");
        assert!(firefox.contains("matvec_q4g32s_base") && firefox.contains("Tint: compiled"), "{firefox}");
        assert!(firefox.contains("executed: not run"), "{firefox}");
        assert!(safari.contains("Tint: not run") && safari.contains("executed: not run"), "{safari}");
        assert!(no_gpu.contains("wasm-simd") && no_gpu.contains("Tint: n/a"), "{no_gpu}");
        // Chromium ran the chrome package's twin; it is the same module as the firefox one.
        assert!(no_gpu.contains("executed: ok (1 op in chromium)"), "{no_gpu}");
    }
    let md_failed = md_row(md_table, "matvec/3/64/asym");
    assert!(md_failed[1].contains("**executed: failed (1 of 1 op)**"), "{md_failed:?}");
    let html_failed = html_row(html_table, "matvec/3/64/asym");
    assert!(html_failed[1].contains("<strong class=\"bad\">executed: failed (1 of 1 op)</strong>"), "{html_failed:?}");
    // The report's 12288 bytes of workgroup storage send kv-attend (more) to WebAssembly.
    for cell in [&md_row(md_table, "kv-attend/4/128/asym/128")[1], &html_row(html_table, "kv-attend/4/128/asym/128")[1]]
    {
        assert!(cell.contains("wasm-simd (WebAssembly twin)") && cell.contains("executed: ok (1 op)"), "{cell}");
    }

    // The summary: chrome's subgroups tier.
    let summary = section(&md, "## Summary by target and tier");
    let chrome = summary.lines().find(|l| l.starts_with("| chrome | subgroups |")).unwrap();
    assert_eq!(chrome, "| chrome | subgroups | 90 | 90 | 89 | **1** | 0 | 0 | 1 | **1** | 88 |");
    let chrome_f16 = summary.lines().find(|l| l.starts_with("| chrome | f16 |")).unwrap();
    assert_eq!(chrome_f16, "| chrome | f16 | 90 | 90 | 0 | 0 | 90 | 0 | 0 | 0 | 90 |");
    let safari = summary.lines().find(|l| l.starts_with("| safari | base |")).unwrap();
    assert_eq!(safari, "| safari | base | 90 | 90 | 0 | 0 | 0 | 90 | 0 | 0 | 90 |");

    // The tier table marks the selected kernel; the failures list says what failed.
    let tiers = section(&md, "## Tiers: Chrome/Edge (package chrome)");
    let row = md_row(tiers, "matvec/4/32/sym");
    assert!(row[3].starts_with("**selected**") && row[3].contains("Tint: rejected"), "{row:?}");
    let notes = section(&md, "## Failures and notes");
    assert!(notes.contains(&format!("Tint rejected 1 kernel of chrome: {}", REJECTED.replace('_', "\\_"))), "{notes}");
    assert!(notes.contains("worst relative error 5.00e-1 \\> tolerance 1e-5"), "{notes}");

    // The HTML page stands alone.
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for banned in ["<script", "src=", "<link", "http://", "https://", "@import"] {
        assert!(!html.contains(banned), "matrix.html has {banned}");
    }
}

#[test]
fn matrix_is_deterministic() {
    let s = Scratch::new("matrix-determinism");
    // The same results in two folders of different names give the same bytes.
    synthetic_results(&s.path("one"));
    synthetic_results(&s.path("another/results"));
    assert_status(&matrix(&s.path("one"), &s.path("out1")), 0);
    assert_status(&matrix(&s.path("another/results"), &s.path("out2")), 0);
    for name in ["matrix.md", "matrix.html"] {
        let a = std::fs::read(s.path("out1").join(name)).unwrap();
        let b = std::fs::read(s.path("out2").join(name)).unwrap();
        assert!(a == b, "{name} differs between two runs over the same results");
    }
}

#[test]
fn matrix_without_results_says_not_run() {
    let s = Scratch::new("matrix-missing");
    let out = matrix(&s.path("no-such-folder"), &s.path("out"));
    assert_status(&out, 0);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let md = std::fs::read_to_string(s.path("out/matrix.md")).unwrap();
    let table = section(&md, "## Kernel families by browser");
    assert!(table.contains("Tint: not run") && table.contains("executed: not run"));
    assert!(!table.contains("executed: ok") && !table.contains("Tint: compiled"));
    // Without browser results every column uses its recorded vector.
    let header = table.lines().find(|l| l.starts_with("| family |")).unwrap();
    assert!(header.contains("caps: `tests/caps/chromium-156-headless-swiftshader.json`"), "{header}");
    assert!(section(&md, "## Inputs").contains("`tint.json` not found"), "{md}");
    assert!(std::fs::read_to_string(s.path("out/matrix.html")).unwrap().contains("Tint: not run"));
}

/// Runs matrix over `results` and expects exit 2 with an error naming `file` and `field`.
#[track_caller]
fn assert_malformed(results: &Path, out: &Path, file: &str, field: &str) {
    let o = matrix(results, out);
    assert_status(&o, 2);
    let err = stderr(&o);
    assert!(err.contains(file) && err.contains(&format!("`{field}`")), "want {file} and `{field}` in:\n{err}");
    assert!(!out.exists(), "an output folder was made for malformed input");
}

#[test]
fn malformed_results_are_errors_naming_file_and_field() {
    let s = Scratch::new("matrix-malformed");
    let results = s.path("results");
    let out = s.path("out");
    std::fs::create_dir_all(&results).unwrap();
    let tint = results.join("tint.json");

    let mut t = tint_json();
    t["results"]["chrome"][REJECTED] = json!(42);
    write_json(&tint, &t);
    assert_malformed(&results, &out, "tint.json", &format!("results.chrome.{REJECTED}"));
    t["results"]["chrome"][REJECTED] = json!("compiled, mostly");
    write_json(&tint, &t);
    assert_malformed(&results, &out, "tint.json", &format!("results.chrome.{REJECTED}"));
    write_json(&tint, &json!({ "engine": "x", "adapter": null, "results": { "opera": {} } }));
    assert_malformed(&results, &out, "tint.json", "results.opera");
    write_json(&tint, &json!({ "adapter": null, "results": {} }));
    assert_malformed(&results, &out, "tint.json", "engine");
    std::fs::write(&tint, "{ not json").unwrap();
    assert_malformed(&results, &out, "tint.json", "(top level)");
    assert!(stderr(&matrix(&results, &out)).contains("invalid JSON"));
    std::fs::remove_file(&tint).unwrap();

    let chromium = results.join("chromium.json");
    let mut c = chromium_json();
    c["caps"]["webgpu"]["limits"]["maxBufferSize"] = json!("big");
    write_json(&chromium, &c);
    assert_malformed(&results, &out, "chromium.json", "caps.webgpu.limits.maxBufferSize");
    let mut c = chromium_json();
    c["runs"][0]["ops"][1].as_object_mut().unwrap().remove("ok");
    write_json(&chromium, &c);
    assert_malformed(&results, &out, "chromium.json", "runs[0].ops[1].ok");
    let mut c = chromium_json();
    c["runs"][0]["ops"][0]["backend"] = json!("webgl");
    write_json(&chromium, &c);
    assert_malformed(&results, &out, "chromium.json", "runs[0].ops[0].backend");
    let mut c = chromium_json();
    c["browser"] = json!("firefox");
    write_json(&chromium, &c);
    assert_malformed(&results, &out, "chromium.json", "browser");
}

#[test]
fn an_unwritable_output_is_exit_3_and_nothing_is_written() {
    let s = Scratch::new("matrix-unwritable");
    let results = s.path("results");
    std::fs::create_dir_all(&results).unwrap();

    // The output is a file, or lies under one.
    let file = s.path("a-file");
    std::fs::write(&file, "keep").unwrap();
    for out in [file.clone(), file.join("out")] {
        let o = matrix(&results, &out);
        assert_status(&o, 3);
        assert!(stderr(&o).contains("a-file"), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    // A folder where matrix.html goes: nothing changes, matrix.md included.
    let out = s.path("out");
    std::fs::create_dir_all(out.join("matrix.html")).unwrap();
    std::fs::write(out.join("matrix.md"), "old").unwrap();
    let o = matrix(&results, &out);
    assert_status(&o, 3);
    assert!(stderr(&o).contains("matrix.html"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("matrix.md")).unwrap(), "old");
    assert_eq!(entries(&out), ["matrix.html", "matrix.md"]);
    assert_eq!(s.entries(), ["a-file", "out", "results"]);
}
