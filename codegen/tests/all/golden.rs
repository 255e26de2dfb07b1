//! Golden snapshots of every emitted WGSL variant, in `golden/wgsl/`.
//!
//! The default sets of all targets are emitted; a kernel's text is a function of its name
//! and of the compiler dialect's directives, so each distinct text is stored once, as
//! `{dialect}__{kernel_name}.snap` with dialect `tint` when the text enables subgroups
//! (Chrome, Edge) and `std` otherwise. Two targets giving different texts under one
//! snapshot name fail the test: that is nondeterminism or an accidental per-target
//! divergence.
//!
//! KV kernels compute in f32 on every tier, so their texts at other tiers are the base
//! tier's under another name: only the base tier is stored, and the others are checked
//! against it.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test -p shadergen-codegen`,
//! then review the diff of `golden/` (CI runs with `CI=true`, where insta writes nothing).

use codegen::{KernelSpec, Target, wgsl};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The snapshot name of an emitted text.
fn snapshot_name(spec: &KernelSpec, text: &str) -> String {
    let dialect = if text.lines().any(|l| l.trim() == "enable subgroups;") { "tint" } else { "std" };
    format!("{dialect}__{}", spec.name())
}

/// One snapshot: its text and the targets that emitted it.
struct Golden {
    /// The spec of the first target (in `Target::ALL` order).
    spec: KernelSpec,
    text: String,
    targets: Vec<Target>,
}

type Texts = BTreeMap<String, Golden>;

/// Every kernel of every target's default set, grouped by snapshot name. Emitted once for
/// the tests of this file.
fn distinct_texts() -> &'static Texts {
    static TEXTS: OnceLock<Texts> = OnceLock::new();
    TEXTS.get_or_init(emit_all)
}

/// Emits the default sets of all targets and groups the texts by snapshot name; fails,
/// naming both targets, when two texts under one name differ.
fn emit_all() -> Texts {
    let mut out = Texts::new();
    let mut divergent = Vec::new();
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            let w = wgsl::emit(&spec).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(w.name, spec.name());
            // naga's text is the same kernel without Tint's directive.
            let tint_only = spec.profile.dialect == codegen::Dialect::Tint && spec.uses_subgroups();
            let want_naga = if tint_only { w.text.replacen("enable subgroups;\n", "", 1) } else { w.text.clone() };
            assert_eq!(
                w.naga_text, want_naga,
                "{t} {}: naga_text differs from the text beyond `enable subgroups;`",
                w.name
            );
            if spec.op.is_kv() && spec.profile.tier != codegen::Tier::Base {
                let base = KernelSpec::kv(spec.op, spec.format, spec.head_dim, t, codegen::Tier::Base).unwrap();
                let want = wgsl::emit(&base).unwrap().text.replace(&base.name(), &spec.name());
                assert_eq!(w.text, want, "{t} {}: a KV kernel's text depends on the tier", w.name);
                continue;
            }
            // Off matvec over quantized weights, the dot4 tiers emit the base (or subgroups)
            // tier's kernel: one snapshot covers both.
            let tier = spec.profile.tier;
            if tier.dot4() && !spec.uses_dot4() && !spec.op.is_kv() {
                let twin_tier = if tier.subgroups() { codegen::Tier::Subgroups } else { codegen::Tier::Base };
                let twin = KernelSpec::new(spec.op, spec.format, t, twin_tier).unwrap();
                let want = wgsl::emit(&twin).unwrap().text.replace(&twin.name(), &spec.name()).replacen(
                    &format!("// tier {}:", twin_tier.name()),
                    &format!("// tier {}:", tier.name()),
                    1,
                );
                assert_eq!(w.text, want, "{t} {}: differs from its {} twin", w.name, twin_tier.name());
                continue;
            }
            let name = snapshot_name(&spec, &w.text);
            match out.get_mut(&name) {
                None => {
                    out.insert(name, Golden { spec, text: w.text, targets: vec![t] });
                }
                Some(g) => {
                    if g.text != w.text {
                        divergent.push(format!(
                            "`{name}`: targets {} and {t} emit different text:\n{}",
                            g.targets[0],
                            first_difference(&g.text, &w.text)
                        ));
                    }
                    g.targets.push(t);
                }
            }
        }
    }
    assert!(
        divergent.is_empty(),
        "{} snapshot names with per-target texts:\n{}",
        divergent.len(),
        divergent.join("\n")
    );
    out
}

/// The first differing line of two texts, for failure messages.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<_>, Vec<_>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i).copied().unwrap_or("<end>"), lb.get(i).copied().unwrap_or("<end>"));
        if x != y {
            return format!("  line {}:\n  - {x}\n  + {y}", i + 1);
        }
    }
    "  (identical lines, different line endings)".into()
}

#[test]
fn golden_wgsl() {
    let texts = distinct_texts();
    assert!(!texts.is_empty());
    for (name, g) in texts {
        let targets: Vec<&str> = g.targets.iter().map(|t| t.name()).collect();
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/wgsl"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("targets: {}", targets.join(", ")),
        }, {
            insta::assert_snapshot!(name.as_str(), &g.text);
        });
    }
}

#[test]
fn golden_names_cover_every_dialect() {
    let texts = distinct_texts();
    let tint = texts.keys().filter(|n| n.starts_with("tint__")).count();
    let std = texts.keys().filter(|n| n.starts_with("std__")).count();
    assert!(tint > 0 && std > 0, "tint {tint}, std {std}");
    // The Tint texts are exactly the subgroup tiers of Chrome and Edge.
    for (name, Golden { spec, text, targets }) in texts {
        let subgroups = spec.uses_subgroups();
        assert_eq!(
            name.starts_with("tint__"),
            subgroups && targets.iter().any(|t| matches!(t, Target::Chrome | Target::Edge)),
            "{name}: {targets:?}"
        );
        // Only matvec reduces across invocations; matmul's subgroup tiers compute as base.
        assert_eq!(text.contains("subgroupAdd"), subgroups && name.contains("__matvec_"), "{name}");
        assert_eq!(text.lines().any(|l| l.trim() == "enable f16;"), spec.uses_f16(), "{name}");
    }
}

#[test]
fn emit_is_deterministic() {
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            let a = wgsl::emit(&spec).unwrap();
            let b = wgsl::emit(&spec).unwrap();
            assert_eq!(a.text, b.text, "{t} {}", spec.name());
            assert_eq!(a.naga_text, b.naga_text, "{t} {}", spec.name());
            assert_eq!((a.workgroup_size, a.workgroup_bytes), (b.workgroup_size, b.workgroup_bytes));
            // A copy of the spec (no shared state) emits the same text too.
            let (target, tier) = (spec.profile.target, spec.profile.tier);
            let copy = if spec.op.is_kv() {
                KernelSpec::kv(spec.op, spec.format, spec.head_dim, target, tier).unwrap()
            } else {
                KernelSpec::new(spec.op, spec.format, target, tier).unwrap()
            };
            assert_eq!(copy, spec);
            assert_eq!(wgsl::emit(&copy).unwrap().text, a.text, "{t} {}", spec.name());
        }
    }
}

/// `golden/wgsl/` holds only the snapshots of current kernels: no `.snap.new` or pending
/// files left by a failed run, no snapshot of a kernel that is no longer emitted.
#[test]
fn golden_folder_has_no_stale_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/wgsl");
    let texts = distinct_texts();
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        match file.strip_suffix(".snap") {
            Some(name) if texts.contains_key(name) => {}
            _ => stale.push(file),
        }
    }
    assert!(
        stale.is_empty(),
        "stale files in {}: {stale:?} (remove them; review `.snap.new` files first)",
        dir.display()
    );
}
