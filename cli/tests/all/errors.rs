//! Bad input and unwritable output: a clear message, a non-zero status, nothing written.

use crate::common::{Scratch, assert_status, shadergen, stderr};

/// Runs `emit` for `target` into a fresh folder with `extra` arguments; expects status 2, a
/// message containing each of `expected`, and no output folder.
fn rejects(test: &str, target: &str, extra: &[&str], expected: &[&str]) {
    let scratch = Scratch::new(test);
    let out_dir = scratch.path("out");
    let mut args = vec!["emit", "--target", target, "--out", out_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = shadergen(&args);
    assert_status(&out, 2);
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "stderr: {err}");
    for e in expected {
        assert!(err.contains(e), "stderr does not mention {e:?}: {err}");
    }
    assert_eq!(err.matches("error:").count(), 1, "one error, once: {err}");
    assert!(!out_dir.exists(), "{} was created", out_dir.display());
    assert!(scratch.entries().is_empty(), "left {:?}", scratch.entries());
}

#[test]
fn bits_5_is_rejected() {
    rejects("bits_5_is_rejected", "native", &["--bits", "4,5"], &["`5`", "2, 3, 4, 8", "16"]);
}

#[test]
fn group_48_is_rejected() {
    rejects("group_48_is_rejected", "native", &["--group", "48"], &["`48`", "32, 64 or 128"]);
}

#[test]
fn group_48_is_rejected_even_for_the_f16_baseline() {
    rejects("group_48_is_rejected_even_for_the_f16_baseline", "native", &["--bits", "16", "--group", "48"], &["`48`"]);
}

#[test]
fn unknown_target_is_rejected() {
    rejects(
        "unknown_target_is_rejected",
        "opera",
        &[],
        &["`opera`", "generic", "chrome", "edge", "firefox", "safari", "native"],
    );
}

#[test]
fn tier_the_target_lacks_is_rejected() {
    rejects(
        "tier_the_target_lacks_is_rejected",
        "firefox",
        &["--tier", "subgroups"],
        &["`subgroups`", "firefox", "base, f16"],
    );
}

#[test]
fn unknown_op_and_scheme_are_rejected() {
    rejects(
        "unknown_op_is_rejected",
        "native",
        &["--ops", "matvec,conv"],
        &["`conv`", "matvec, matmul, kv-append, kv-attend"],
    );
    rejects("kv_op_spelled_with_underscore", "native", &["--ops", "kv_attend"], &["`kv_attend`", "kv-attend"]);
    rejects("unknown_scheme_is_rejected", "native", &["--scheme", "affine"], &["`affine`", "sym or asym"]);
}

#[test]
fn bad_head_dim_is_rejected() {
    rejects(
        "head_dim_96_is_rejected",
        "native",
        &["--ops", "kv-attend", "--head-dim", "64,96"],
        &["`96`", "64 or 128"],
    );
    // Checked whatever the ops, as groups are for the f16 baseline.
    rejects("head_dim_96_without_kv_ops", "native", &["--ops", "matvec", "--head-dim", "96"], &["`96`", "64 or 128"]);
    rejects("head_dim_not_a_number", "native", &["--head-dim", "wide"], &["'wide'", "--head-dim", "whole number"]);
}

#[test]
fn kv_op_without_a_kernel_is_rejected() {
    // KV ops have no f16 baseline, and no group larger than the head dim.
    rejects("kv_op_bits_16", "native", &["--ops", "matvec,kv-append", "--bits", "16"], &["kv-append", "bits 16"]);
    rejects(
        "kv_op_group_over_head_dim",
        "native",
        &["--ops", "kv-attend", "--group", "128", "--head-dim", "64"],
        &["kv-attend", "groups 128", "head dims 64"],
    );
}

#[test]
fn bad_value_after_a_good_one_still_writes_nothing() {
    rejects(
        "bad_value_after_a_good_one",
        "chrome",
        &["--bits", "4", "--tier", "base,f32"],
        &["`f32`", "f16-subgroups"],
    );
}

#[test]
fn out_under_a_regular_file_fails_cleanly() {
    let scratch = Scratch::new("out_under_a_regular_file_fails_cleanly");
    let file = scratch.path("file");
    std::fs::write(&file, "not a folder").unwrap();
    let out_dir = file.join("sub");
    let out = shadergen(&["emit", "--target", "generic", "--out", out_dir.to_str().unwrap(), "--bits", "4"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.status.code().is_some(), "exited, not killed: {:?}", out.status);
    let err = stderr(&out);
    assert!(err.contains(out_dir.to_str().unwrap()), "stderr does not name the path: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(scratch.entries(), ["file"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
}

#[test]
fn out_that_is_a_regular_file_fails_cleanly() {
    let scratch = Scratch::new("out_that_is_a_regular_file_fails_cleanly");
    let file = scratch.path("file");
    std::fs::write(&file, "not a folder").unwrap();
    let out = shadergen(&["emit", "--target", "edge", "--out", file.to_str().unwrap(), "--bits", "8"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains(file.to_str().unwrap()), "{}", stderr(&out));
    assert_eq!(scratch.entries(), ["file"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
}

#[test]
fn out_in_proc_fails_cleanly() {
    // /proc refuses new entries, even to root.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let out_dir = format!("/proc/shadergen-{}", std::process::id());
    let out = shadergen(&[
        "emit",
        "--target",
        "native",
        "--out",
        &out_dir,
        "--ops",
        "matvec,matmul",
        "--bits",
        "4",
        "--group",
        "32",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.status.code().is_some());
    assert!(stderr(&out).contains(&out_dir), "{}", stderr(&out));
    assert!(!std::path::Path::new(&out_dir).exists());
}

#[test]
fn no_command_is_a_usage_error() {
    assert_status(&shadergen::<&str>(&[]), 2);
    assert_status(&shadergen(&["emit", "--out", "x"]), 2);
    assert_status(&shadergen(&["emit", "--target", "native", "--out", "x", "--bits", "four"]), 2);
}
