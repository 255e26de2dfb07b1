//! `shadergen list` and `--help`.

use crate::common::{assert_status, shadergen, stdout};

#[test]
fn list_mentions_every_target_tier_and_op() {
    let out = shadergen(&["list"]);
    assert_status(&out, 0);
    let text = stdout(&out);
    for target in ["generic", "chrome", "edge", "firefox", "safari", "native"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(&format!("{target} "))),
            "no line for {target}:\n{text}"
        );
    }
    for tier in [
        "base",
        "f16",
        "subgroups",
        "f16-subgroups",
        "dot4",
        "dot4-subgroups",
        "shader-f16",
        "packed_4x8_integer_dot_product",
    ] {
        assert!(text.contains(tier), "{tier} missing:\n{text}");
    }
    for op in ["matvec", "matmul", "kv-append", "kv-attend"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{op} "))), "no line for op {op}:\n{text}");
    }
    // The KV section: head dims and the KV format rule.
    let head_dim = text.lines().find(|l| l.trim_start().starts_with("--head-dim ")).expect("a --head-dim line");
    assert!(head_dim.ends_with("64, 128"), "{head_dim}");
    assert!(text.contains("always asym") && text.contains("group <= head_dim"), "{text}");
    assert!(text.contains("kv-plan"), "{text}");
    // The firefox row's tier column names its tiers, and only those.
    let firefox = text.lines().find(|l| l.trim_start().starts_with("firefox ")).unwrap();
    let columns: Vec<&str> = firefox.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(columns[..3], ["firefox", "naga", "base, f16, dot4"], "{firefox}");
    // dot4 tiers need a WGSL language feature, not a GPUFeatureName, and are opt-in.
    let dot4 = text.lines().find(|l| l.trim_start().starts_with("dot4 ")).expect("a dot4 tier line");
    assert!(dot4.contains("WGSL packed_4x8_integer_dot_product"), "{dot4}");
    assert!(text.contains("Never selected automatically"), "{text}");
}

#[test]
fn emit_help_mentions_its_options() {
    let out = shadergen(&["emit", "--help"]);
    assert_status(&out, 0);
    let text = stdout(&out);
    for opt in ["--target", "--out", "--ops", "--bits", "--group", "--scheme", "--tier", "--head-dim"] {
        assert!(text.contains(opt), "{opt} missing:\n{text}");
    }
}

#[test]
fn help_lists_the_commands() {
    let out = shadergen(&["--help"]);
    assert_status(&out, 0);
    let text = stdout(&out);
    for cmd in ["emit", "list", "validate", "kv-plan"] {
        assert!(text.contains(cmd), "{cmd} missing:\n{text}");
    }
    assert!(text.contains("kv-append") && text.contains("kv-attend"), "the about names the KV ops:\n{text}");
}
