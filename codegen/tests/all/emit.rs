use codegen::{KernelSpec, Target, wgsl};

#[test]
fn every_default_kernel_of_every_target_validates() {
    let mut n = 0;
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            if let Err(e) = wgsl::emit(&spec) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n > 0);
}

/// Safari's Metal rules (DESIGN, issue 2): workgroup sizes a multiple of 32, workgroup
/// arrays sized by literals (Safari mishandles override-sized ones), at most 16 KiB of
/// workgroup memory.
#[test]
fn safari_kernels_are_metal_friendly() {
    let mut checked = 0;
    for spec in KernelSpec::default_set(Target::Safari) {
        let w = wgsl::emit(&spec).unwrap();
        assert_eq!(w.workgroup_size[0] % 32, 0, "{}", w.name);
        assert!(w.workgroup_bytes <= 16384, "{}: {} bytes", w.name, w.workgroup_bytes);
        assert!(!w.text.contains("override"), "{}: no overrides", w.name);
        let mut declared = 0u32;
        for line in w.text.lines().filter(|l| l.starts_with("var<workgroup>")) {
            // `var<workgroup> name: array<T, 1056>;` — the length must be a literal.
            let inner = line.rsplit_once(", ").map(|(_, n)| n.trim_end_matches(">;")).unwrap_or("");
            let len: u32 = inner
                .parse()
                .unwrap_or_else(|_| panic!("{}: workgroup array length `{inner}` is not a literal", w.name));
            let elem = if line.contains("<f16,") {
                2
            } else if line.contains("<vec4<f16>,") {
                8
            } else if line.contains("<vec4<f32>,") {
                16
            } else {
                4
            };
            declared += len * elem;
        }
        assert_eq!(declared, w.workgroup_bytes, "{}: declared workgroup memory", w.name);
        let wg_line = w.text.lines().find(|l| l.starts_with("@compute @workgroup_size(")).unwrap();
        assert_eq!(wg_line, format!("@compute @workgroup_size({})", w.workgroup_size[0]), "{}", w.name);
        checked += 1;
    }
    // 3 tiers (base, f16, dot4) x (50 weight kernels + 40 KV kernels).
    assert_eq!(checked, 270);
}

/// Tiers without shader-f16 never carry `enable f16;`, and only kernels that use subgroup
/// operations on Tint targets carry `enable subgroups;` (naga rejects it).
#[test]
fn directives_follow_the_tier_and_dialect() {
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            let w = wgsl::emit(&spec).unwrap();
            assert_eq!(w.text.contains("enable f16;"), spec.uses_f16(), "{t} {}", w.name);
            assert_eq!(
                w.text.contains("f16"),
                spec.uses_f16() || spec.format.is_f16() || w.text.contains("unpack2x16float") || spec.op.is_kv(),
                "{t} {}",
                w.name
            );
            let tint = spec.profile.dialect == codegen::Dialect::Tint && spec.uses_subgroups();
            assert_eq!(w.text.contains("enable subgroups;"), tint, "{t} {}", w.name);
            assert!(!w.naga_text.contains("enable subgroups;"), "{t} {}", w.name);
            assert_eq!(w.text.contains("subgroupAdd"), spec.uses_subgroups(), "{t} {}", w.name);
        }
    }
}
