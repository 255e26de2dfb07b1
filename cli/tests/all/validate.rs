//! `shadergen validate`.

use crate::common::{Scratch, assert_status, shadergen, stderr, stdout};

#[test]
fn emitted_kernels_validate() {
    let scratch = Scratch::new("emitted_kernels_validate");
    let out_dir = scratch.path("pkg");
    let out = shadergen(&[
        "emit",
        "--target",
        "native",
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "matvec,matmul",
        "--bits",
        "3",
        "--group",
        "64",
        "-q",
    ]);
    assert_status(&out, 0);
    let file = out_dir.join("matvec_q3g64a_subgroups.wgsl");
    let out = shadergen(&["validate", file.to_str().unwrap()]);
    assert_status(&out, 0);
    assert_eq!(stdout(&out), format!("{}: ok (naga native, MSL/HLSL/SPIR-V)\n", file.display()));
}

#[test]
fn chrome_subgroup_kernels_validate_as_chrome() {
    let scratch = Scratch::new("chrome_subgroup_kernels_validate_as_chrome");
    let out_dir = scratch.path("pkg");
    let args = [
        "emit",
        "--target",
        "chrome",
        "--out",
        out_dir.to_str().unwrap(),
        "--ops",
        "matvec,matmul",
        "--bits",
        "4",
        "--group",
        "32",
        "--scheme",
        "sym",
        "-q",
    ];
    assert_status(&shadergen(&args), 0);
    let file = out_dir.join("matvec_q4g32s_f16_subgroups.wgsl");
    let out = shadergen(&["validate", file.to_str().unwrap(), "--target", "chrome"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("ok (naga chrome"), "{}", stdout(&out));
    // naga itself rejects Tint's `enable subgroups;`: a validation failure, with a hint.
    let out = shadergen(&["validate", file.to_str().unwrap(), "--target", "firefox"]);
    assert_status(&out, 1);
    assert!(stderr(&out).contains("--target chrome"), "{}", stderr(&out));
}

#[test]
fn broken_wgsl_fails_with_the_offending_line() {
    let scratch = Scratch::new("broken_wgsl_fails_with_the_offending_line");
    let file = scratch.path("broken.wgsl");
    std::fs::write(&file, "@compute @workgroup_size(64)\nfn main() {\n    let total: u32 = missing_value + 1u;\n}\n")
        .unwrap();
    let out = shadergen(&["validate", file.to_str().unwrap()]);
    assert_status(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("let total: u32 = missing_value + 1u;"), "{err}");
    assert!(err.contains("missing_value"), "{err}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn invalid_but_parsable_wgsl_fails() {
    let scratch = Scratch::new("invalid_but_parsable_wgsl_fails");
    let file = scratch.path("bad_type.wgsl");
    std::fs::write(&file, "@compute @workgroup_size(1)\nfn main() {\n    let x: u32 = 1.5;\n}\n").unwrap();
    let out = shadergen(&["validate", file.to_str().unwrap(), "--target", "safari"]);
    assert_status(&out, 1);
    assert!(stderr(&out).contains("let x: u32 = 1.5;"), "{}", stderr(&out));
}

#[test]
fn missing_file_is_named() {
    let scratch = Scratch::new("missing_file_is_named");
    let file = scratch.path("nowhere.wgsl");
    let out = shadergen(&["validate", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert_ne!(out.status.code(), Some(1), "not a validation failure");
    assert!(stderr(&out).contains(file.to_str().unwrap()), "{}", stderr(&out));
}

#[test]
fn unknown_target_is_rejected() {
    let scratch = Scratch::new("validate_unknown_target_is_rejected");
    let file = scratch.path("k.wgsl");
    std::fs::write(&file, "@compute @workgroup_size(1)\nfn main() {}\n").unwrap();
    let out = shadergen(&["validate", file.to_str().unwrap(), "--target", "opera"]);
    assert_status(&out, 2);
    assert!(stderr(&out).contains("`opera`"), "{}", stderr(&out));
    let out = shadergen(&["validate", file.to_str().unwrap(), "--target", "generic"]);
    assert_status(&out, 0);
}
