//! The profile table and `KernelSpec` validation: tiers per target, dialects, spec errors
//! with the allowed values named, shape limits, names and dispatch sizes.

use codegen::profile::{SPEC_DEFAULT_LIMITS, TARGETS};
use codegen::{Dialect, Format, KernelSpec, Op, Profile, Scheme, SpecError, Target, Tier};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn spec(op: Op, bits: u32, group: u32, scheme: Scheme, target: Target, tier: Tier) -> KernelSpec {
    KernelSpec::new(op, Format::from_bits(bits, group, scheme).unwrap(), target, tier).unwrap()
}

#[test]
fn table_has_one_row_per_target_in_order() {
    assert_eq!(TARGETS.len(), Target::ALL.len());
    for (row, t) in TARGETS.iter().zip(Target::ALL) {
        assert_eq!(row.target, t);
        assert_eq!(t.info().target, t);
        assert_eq!(t.name().parse::<Target>().unwrap(), t);
    }
    let e = "opera".parse::<Target>().unwrap_err();
    assert!(
        e.to_string().contains("opera") && e.to_string().contains("generic, chrome, edge, firefox, safari, native"),
        "{e}"
    );
}

#[test]
fn every_target_has_base_first() {
    for t in Target::ALL {
        let tiers = t.info().tiers;
        assert_eq!(tiers.first(), Some(&Tier::Base), "{t}: {tiers:?}");
        let unique: BTreeSet<_> = tiers.iter().collect();
        assert_eq!(unique.len(), tiers.len(), "{t}: repeated tier");
        // Every listed tier builds a profile with the row's facts.
        for &tier in tiers {
            let p = Profile::new(t, tier).unwrap();
            assert_eq!((p.target, p.tier, p.dialect), (t, tier, t.info().dialect));
            assert_eq!(p.limits, t.info().limits);
            assert_eq!(Profile::parse_tier(t, tier.name()).unwrap(), tier);
        }
    }
    assert_eq!(Profile::all().len(), Target::ALL.iter().map(|t| t.info().tiers.len()).sum::<usize>());
}

#[test]
fn firefox_safari_generic_have_no_subgroups() {
    for t in [Target::Firefox, Target::Safari, Target::Generic] {
        let tiers = t.info().tiers;
        assert!(tiers.iter().all(|tier| !tier.subgroups()), "{t} has a subgroup tier: {tiers:?}");
    }
    // Firefox (naga) and Safari (WebKit) accept packed_4x8_integer_dot_product; the portable
    // profile assumes nothing beyond the core language and shader-f16.
    assert_eq!(Target::Firefox.info().tiers, &[Tier::Base, Tier::F16, Tier::Dot4]);
    assert_eq!(Target::Safari.info().tiers, &[Tier::Base, Tier::F16, Tier::Dot4]);
    assert_eq!(Target::Generic.info().tiers, &[Tier::Base, Tier::F16]);
    for t in [Target::Chrome, Target::Edge, Target::Native] {
        assert_eq!(t.info().tiers, &Tier::ALL, "{t}");
    }
}

#[test]
fn chrome_and_edge_share_tint() {
    let (c, e) = (Target::Chrome.info(), Target::Edge.info());
    assert_eq!(c.dialect, Dialect::Tint);
    assert_eq!(e.dialect, Dialect::Tint);
    assert_eq!(c.tiers, e.tiers);
    assert_eq!(c.limits, e.limits);
    assert_eq!((c.simd_width, c.workgroup_multiple), (e.simd_width, e.workgroup_multiple));
    // Nobody else is Tint; naga reads Firefox and native text.
    for t in Target::ALL {
        assert_eq!(t.info().dialect == Dialect::Tint, matches!(t, Target::Chrome | Target::Edge), "{t}");
    }
    assert_eq!(Target::Firefox.info().dialect, Dialect::Naga);
    assert_eq!(Target::Native.info().dialect, Dialect::Naga);
    assert_eq!(Target::Safari.info().dialect, Dialect::Webkit);
    assert_eq!(Target::Generic.info().dialect, Dialect::Portable);
}

#[test]
fn limits_are_the_spec_defaults() {
    for t in Target::ALL {
        assert_eq!(t.info().limits, SPEC_DEFAULT_LIMITS, "{t}");
    }
    assert_eq!(SPEC_DEFAULT_LIMITS.storage_binding, 128 << 20);
    assert_eq!(SPEC_DEFAULT_LIMITS.workgroups_per_dim, 65535);
}

#[test]
fn unknown_tier_names_the_allowed_tiers() {
    for (t, tier, allowed) in [
        (Target::Firefox, Tier::Subgroups, "base, f16, dot4"),
        (Target::Safari, Tier::F16Subgroups, "base, f16, dot4"),
        (Target::Safari, Tier::Dot4Subgroups, "base, f16, dot4"),
        (Target::Generic, Tier::Subgroups, "base, f16"),
        (Target::Generic, Tier::Dot4, "base, f16"),
    ] {
        let e = Profile::new(t, tier).unwrap_err();
        assert_eq!(
            e,
            SpecError::UnknownTier { target: t.name().into(), tier: tier.name().into(), allowed: allowed.into() }
        );
        let msg = e.to_string();
        assert!(msg.contains(t.name()) && msg.contains(tier.name()) && msg.contains(allowed), "{msg}");
        assert_eq!(KernelSpec::new(Op::Matvec, Format::f16(), t, tier).unwrap_err(), e);
    }
    let e = Profile::parse_tier(Target::Chrome, "turbo").unwrap_err();
    assert!(
        e.to_string().contains("turbo")
            && e.to_string().contains("base, f16, subgroups, f16-subgroups, dot4, dot4-subgroups"),
        "{e}"
    );
}

#[test]
fn bad_bits_and_groups_name_the_allowed_values() {
    for bits in [0, 1, 5, 6, 7, 9, 16, 32] {
        let e = Format::quant(bits, 32, Scheme::Sym).unwrap_err();
        assert_eq!(e, SpecError::Bits(bits));
        let msg = e.to_string();
        assert!(msg.contains(&format!("`{bits}`")) && msg.contains("2, 3, 4, 8"), "{msg}");
    }
    let msg = Format::quant(5, 32, Scheme::Asym).unwrap_err().to_string();
    assert!(msg.contains('5') && msg.contains("2, 3, 4, 8") && msg.contains("16"), "{msg}");
    for g in [0, 16, 48, 96, 256] {
        let e = Format::quant(4, g, Scheme::Sym).unwrap_err();
        assert_eq!(e, SpecError::GroupSize(g));
        assert!(e.to_string().contains(&format!("`{g}`")) && e.to_string().contains("32, 64 or 128"), "{e}");
    }
    // from_bits: 16 is the f16 baseline whatever the group; other widths are checked.
    assert_eq!(Format::from_bits(16, 48, Scheme::Asym).unwrap(), Format::f16());
    assert_eq!(Format::from_bits(5, 32, Scheme::Sym).unwrap_err(), SpecError::Bits(5));
    assert_eq!(Format::from_bits(4, 48, Scheme::Sym).unwrap_err(), SpecError::GroupSize(48));
    assert!("int".parse::<Scheme>().unwrap_err().to_string().contains("sym or asym"));
    assert!("conv".parse::<Op>().unwrap_err().to_string().contains("matvec, matmul"));
}

#[test]
fn format_facts() {
    let f = Format::quant(3, 128, Scheme::Asym).unwrap();
    assert_eq!((f.bits(), f.group_size(), f.scheme(), f.block_words()), (3, 128, Scheme::Asym, 3));
    assert_eq!((f.zero_point(), f.max_code(), f.has_min(), f.tag()), (0, 7, true, "q3g128a".to_string()));
    let f = Format::quant(4, 32, Scheme::Sym).unwrap();
    assert_eq!((f.zero_point(), f.max_code(), f.has_min(), f.tag()), (8, 15, false, "q4g32s".to_string()));
    assert_eq!(f.to_string(), "q4g32s");
    let f = Format::f16();
    assert!(f.is_f16() && !f.has_min());
    assert_eq!(
        (f.bits(), f.group_size(), f.block_words(), f.zero_point(), f.tag()),
        (16, 32, 16, 0, "f16".to_string())
    );
}

#[test]
fn check_shape_rejects_bad_shapes() {
    let q4 = spec(Op::Matvec, 4, 64, Scheme::Sym, Target::Chrome, Tier::Base);
    assert_eq!(q4.check_shape(1, 4096, 4096), Ok(()));
    // K not a multiple of the group (nor zero).
    let e = q4.check_shape(1, 4096, 4096 + 32).unwrap_err();
    assert_eq!(e, SpecError::KNotMultiple { k: 4128, group: 64 });
    assert!(e.to_string().contains("4128") && e.to_string().contains("64"), "{e}");
    assert_eq!(q4.check_shape(1, 16, 0).unwrap_err(), SpecError::KNotMultiple { k: 0, group: 64 });
    // Zero dimensions.
    assert_eq!(q4.check_shape(1, 0, 64).unwrap_err(), SpecError::Zero("N"));
    assert_eq!(q4.check_shape(0, 16, 64).unwrap_err(), SpecError::Zero("M"));
    assert!(SpecError::Zero("N").to_string().contains("N must be at least 1"));

    // Weights over the 128 MiB storage binding: 8-bit 16384 x 16384 is 256 MiB.
    for target in Target::ALL {
        let q8 = spec(Op::Matvec, 8, 32, Scheme::Asym, target, Tier::Base);
        let e = q8.check_shape(1, 16384, 16384).unwrap_err();
        assert_eq!(
            e,
            SpecError::OverLimit {
                what: "weight bytes",
                value: 256 << 20,
                limit: 128 << 20,
                target: target.name().into(),
                why: "maxStorageBufferBindingSize"
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("weight bytes = 268435456") && msg.contains(target.name()) && msg.contains("134217728"),
            "{msg}"
        );
    }
    // 4-bit 16384 x 16384 is exactly 128 MiB: allowed. f16 8192 x 8192 also; one more row is not.
    let q4 = spec(Op::Matvec, 4, 128, Scheme::Sym, Target::Safari, Tier::F16);
    assert_eq!(q4.check_shape(1, 16384, 16384), Ok(()));
    assert!(matches!(q4.check_shape(1, 16385, 16384), Err(SpecError::OverLimit { what: "weight bytes", .. })));
    let f16 = spec(Op::Matmul, 16, 32, Scheme::Sym, Target::Firefox, Tier::Base);
    assert_eq!(f16.check_shape(64, 8192, 8192), Ok(()));
    assert!(matches!(f16.check_shape(64, 8193, 8192), Err(SpecError::OverLimit { what: "weight bytes", .. })));

    // Matmul: M and N are limited to one dimension of workgroups x the tile; activations
    // and outputs to the storage binding.
    let mm = spec(Op::Matmul, 4, 32, Scheme::Sym, Target::Native, Tier::Base);
    // 2^20 x 32 activations and 2^20 x 32 outputs are exactly 128 MiB each.
    assert_eq!(mm.check_shape(1 << 20, 32, 32), Ok(()));
    assert!(matches!(
        mm.check_shape((1 << 20) + 1, 32, 32),
        Err(SpecError::OverLimit { what: "activation bytes", .. })
    ));
    let (tm, tn) = (mm.tuning.tile_m as u64, mm.tuning.tile_n as u64);
    assert!(matches!(mm.check_shape(65535 * tm + 1, 32, 32), Err(SpecError::OverLimit { what: "M", .. })));
    assert!(matches!(mm.check_shape(1, 65535 * tn + 1, 32), Err(SpecError::OverLimit { what: "N", .. })));
    assert!(matches!(mm.check_shape(8192, 64, 8192), Err(SpecError::OverLimit { what: "activation bytes", .. })));
    assert!(matches!(mm.check_shape(8192, 8192, 32), Err(SpecError::OverLimit { what: "output bytes", .. })));
}

#[test]
fn names_are_unique_within_each_default_set() {
    let mut total = 0;
    for t in Target::ALL {
        let set = KernelSpec::default_set(t);
        let names: BTreeSet<String> = set.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), set.len(), "{t}: duplicate kernel names");
        // Per tier: 2 weight ops x (4 widths x 3 groups x 2 schemes + the f16 baseline), and
        // 2 KV ops x 4 widths x (2 groups for head_dim 64 + 3 for 128), always asym.
        assert_eq!(set.len(), t.info().tiers.len() * (2 * (4 * 3 * 2 + 1) + 2 * 4 * (2 + 3)), "{t}");
        for s in &set {
            assert_eq!(s.profile.target, t);
            let name = s.name();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name} is not an identifier"
            );
            assert!(name.starts_with(&s.op.name().replace('-', "_")) && name.contains(&s.format.tag()), "{name}");
            assert!(name.ends_with(&s.profile.tier.name().replace('-', "_")), "{name}");
        }
        total += set.len();
    }
    assert!(total > 0);
    assert_eq!(
        spec(Op::Matvec, 4, 32, Scheme::Sym, Target::Chrome, Tier::F16Subgroups).name(),
        "matvec_q4g32s_f16_subgroups"
    );
    assert_eq!(spec(Op::Matmul, 16, 32, Scheme::Sym, Target::Safari, Tier::Base).name(), "matmul_f16_base");
    let kv = KernelSpec::kv(Op::KvAttend, Format::quant(4, 32, Scheme::Asym).unwrap(), 128, Target::Chrome, Tier::F16);
    assert_eq!(kv.unwrap().name(), "kv_attend_q4g32a_d128_f16");
}

/// KV specs refuse what the cache format cannot hold, naming the value.
#[test]
fn kv_specs_check_their_format() {
    let kv = |bits, group, scheme, d| {
        KernelSpec::kv(Op::KvAppend, Format::from_bits(bits, group, scheme)?, d, Target::Generic, Tier::Base)
    };
    assert!(kv(2, 32, Scheme::Asym, 64).is_ok());
    assert_eq!(kv(4, 32, Scheme::Asym, 96).unwrap_err(), SpecError::HeadDim(96));
    assert!(kv(4, 32, Scheme::Sym, 64).unwrap_err().to_string().contains("asym"));
    assert!(kv(4, 128, Scheme::Asym, 64).unwrap_err().to_string().contains("group 128 is larger than head_dim 64"));
    assert!(kv(16, 32, Scheme::Asym, 64).unwrap_err().to_string().contains("f16 baseline"));
    assert!(
        KernelSpec::new(Op::KvAttend, Format::quant(4, 32, Scheme::Asym).unwrap(), Target::Generic, Tier::Base)
            .is_err()
    );
    let s = kv(4, 32, Scheme::Asym, 64).unwrap();
    let layout = codegen::KvLayout::new(s.format, 64, 2, 8, 2).unwrap();
    assert!(s.check_kv(&layout, 6, 2, 0, 0).is_ok());
    assert!(s.check_kv(&layout, 6, 3, 0, 0).unwrap_err().to_string().contains("overflows max_seq = 8"));
    assert_eq!(s.check_kv(&layout, 6, 0, 0, 0).unwrap_err(), SpecError::Zero("new tokens"));
    assert!(codegen::KvLayout::new(s.format, 64, 2, 7, 0).unwrap_err().to_string().contains("even"));
    assert!(codegen::KvLayout::new(s.format, 64, 2, 8, 9).unwrap_err().to_string().contains("window 9"));
    let a = KernelSpec::kv(Op::KvAttend, s.format, 64, Target::Generic, Tier::Base).unwrap();
    assert!(a.check_kv(&layout, 8, 0, 16, 64).is_ok());
    assert!(a.check_kv(&layout, 8, 0, 6, 64).is_ok());
    assert!(a.check_kv(&layout, 8, 0, 5, 64).unwrap_err().to_string().contains("n_heads = 5"));
    assert!(a.check_kv(&layout, 8, 0, 18, 64).unwrap_err().to_string().contains("n_heads = 18"));
    assert!(a.check_kv(&layout, 8, 0, 4, 48).unwrap_err().to_string().contains("split_len = 48"));
    assert_eq!(a.check_kv(&layout, 0, 0, 4, 64).unwrap_err(), SpecError::Zero("cache length"));
}

#[test]
fn default_sets_are_stable() {
    for t in Target::ALL {
        assert_eq!(KernelSpec::default_set(t), KernelSpec::default_set(t));
    }
}

/// Checks that the matvec dispatch covers rows 0..n exactly as the kernel indexes them:
/// workgroup (x, y) owns rows `(y·X + x)·ROWS ..` where X is the dispatched x count.
fn check_matvec_cover(s: &KernelSpec, n: u32) {
    let [x, y, z] = s.workgroups(1, n);
    let max = s.profile.limits.workgroups_per_dim;
    let rows = s.matvec_entry(n, 0).2 as u64;
    assert!(x >= 1 && y >= 1 && z == 1, "N = {n}: {x} x {y} x {z}");
    assert!(x <= max && y <= max, "N = {n}: {x} x {y} over {max} per dimension");
    let wgs = x as u64 * y as u64;
    // The last workgroup's first row is in reach, and every row is owned.
    assert!(wgs * rows >= n as u64, "N = {n}: {x} x {y} workgroups of {rows} rows");
    // No row of the last y-slice is wasted beyond one slice of X workgroups.
    assert!((wgs - x as u64) * rows < n as u64, "N = {n}: {x} x {y} dispatches a whole slice too many");
}

#[test]
fn matvec_workgroups_fold_into_two_dimensions() {
    let s = spec(Op::Matvec, 4, 32, Scheme::Sym, Target::Generic, Tier::Base);
    assert_eq!(s.tuning.rows_per_workgroup, 8);
    assert_eq!(s.workgroups(1, 1), [1, 1, 1]);
    assert_eq!(s.workgroups(1, 4096), [512, 1, 1]);
    assert_eq!(s.workgroups(1, 4097), [513, 1, 1]);
    assert_eq!(s.workgroups(1, 65535 * 8), [65535, 1, 1]);
    assert_eq!(s.workgroups(1, 65535 * 8 + 1), [65535, 2, 1]);
    // N larger than 65535 * 8: fold over y.
    let n = 65535 * 8 * 3 + 5;
    assert_eq!(s.workgroups(1, n), [65535, 4, 1]);
    for n in [1, 3, 8, 9, 65535 * 8 - 1, 65535 * 8, 65535 * 8 + 1, 65535 * 8 * 3 + 5, 1 << 20, 1 << 30, u32::MAX] {
        check_matvec_cover(&s, n);
    }
    assert_eq!(
        s.dispatch().workgroups,
        ["min(ceil(N / 8), 65535)".to_string(), "ceil(ceil(N / 8) / 65535)".into(), "1".into()]
    );
}

#[test]
fn subgroup_matvecs_take_their_wide_shape_from_min_k_below_max_n() {
    for tier in [Tier::Subgroups, Tier::Dot4Subgroups] {
        let s = spec(Op::Matvec, 3, 32, Scheme::Sym, Target::Native, tier);
        let wide = s.tuning.wide.unwrap_or_else(|| panic!("{tier}: the matvec has a wide shape"));
        assert_eq!((wide.workgroup_size, wide.min_k, wide.max_n), (256, 8192, 8191), "{tier}");
        let name = format!("{}_wide", s.name());
        assert_eq!(s.matvec_entry(4096, 8191), (s.name(), 128, 8), "{tier}");
        assert_eq!(s.matvec_entry(4096, 8192), (name.clone(), 256, 8), "{tier}");
        assert_eq!(s.matvec_entry(8191, 14336), (name.clone(), 256, 8), "{tier}");
        assert_ne!(s.matvec_entry(8192, 14336).0, name, "{tier}: N past max_n");
        // The tall shape, where there is one, starts above max_n: the rules never overlap.
        if let Some(tall) = s.tuning.tall {
            assert!(tall.min_n > wide.max_n, "{tier}");
        }
        // Same rows, so the same grid: the manifest's wide passes only change the entry point.
        let d = s.dispatch();
        let w = d.wide.unwrap_or_else(|| panic!("{tier}: the manifest names the wide passes"));
        assert_eq!((w.min_k, w.max_n, w.passes.len()), (8192, 8191, 1), "{tier}");
        assert_eq!(w.passes[0].entry_point, name, "{tier}");
        assert_eq!(w.passes[0].workgroups, d.workgroups, "{tier}");
        let text = codegen::wgsl::emit(&s).unwrap().text;
        assert!(text.contains(&format!("fn {name}(")) && text.contains("@workgroup_size(256)"), "{tier}");
    }
    // Unmeasured tiers and the f16 baseline have none.
    for tier in [Tier::Base, Tier::F16, Tier::F16Subgroups, Tier::Dot4] {
        let other = spec(Op::Matvec, 3, 32, Scheme::Sym, Target::Native, tier);
        assert_eq!((other.tuning.wide, other.dispatch().wide), (None, None), "{tier}");
    }
    let f16 = KernelSpec::new(Op::Matvec, Format::f16(), Target::Native, Tier::Subgroups).unwrap();
    assert_eq!(f16.tuning.wide, None);
}

#[test]
fn dot4_subgroups_matvec_takes_its_tall_shape_from_min_n() {
    let s = spec(Op::Matvec, 2, 32, Scheme::Sym, Target::Native, Tier::Dot4Subgroups);
    let tall = s.tuning.tall.expect("the dot4-subgroups matvec has a tall shape");
    assert_eq!((tall.workgroup_size, tall.rows_per_workgroup, tall.min_n), (64, 16, 8192));
    assert_eq!(s.matvec_entry(8191, 4096), (s.name(), 128, 8));
    assert_eq!(s.matvec_entry(8192, 4096), (format!("{}_tall", s.name()), 64, 16));
    // Tall before wide: a long row of a tall matrix takes the tall shape.
    assert_eq!(s.matvec_entry(8192, 16384), (format!("{}_tall", s.name()), 64, 16));
    assert_eq!(s.workgroups(1, 8191), [1024, 1, 1]);
    assert_eq!(s.workgroups(1, 8192), [512, 1, 1]);
    assert_eq!(s.workgroups(1, 8197), [513, 1, 1]);
    for n in [8191, 8192, 8197, 65535 * 16 + 1, u32::MAX] {
        check_matvec_cover(&s, n);
    }
    let d = s.dispatch();
    let t = d.tall.expect("the manifest names the tall passes");
    assert_eq!(t.min_n, 8192);
    assert_eq!(t.passes.len(), 1);
    assert_eq!(t.passes[0].entry_point, format!("{}_tall", s.name()));
    assert_eq!(t.passes[0].workgroups[0], "min(ceil(N / 16), 65535)");
    // Both entry points are in the module, and only the dot4-subgroups matvec has the second.
    let text = codegen::wgsl::emit(&s).unwrap().text;
    assert!(text.contains(&format!("fn {}(", s.name())) && text.contains(&format!("fn {}_tall(", s.name())));
    for tier in [Tier::Base, Tier::Subgroups, Tier::Dot4] {
        let other = spec(Op::Matvec, 2, 32, Scheme::Sym, Target::Native, tier);
        assert_eq!(other.tuning.tall, None, "{tier}");
        assert_eq!(other.dispatch().tall, None);
    }
    // The f16 baseline of the dot4-subgroups tier does not use dot4.
    let f16 = KernelSpec::new(Op::Matvec, Format::f16(), Target::Native, Tier::Dot4Subgroups).unwrap();
    assert_eq!(f16.tuning.tall, None);
}

#[test]
fn matmul_workgroups_tile_m_and_n() {
    let s = spec(Op::Matmul, 8, 128, Scheme::Asym, Target::Edge, Tier::F16);
    assert_eq!((s.tuning.tile_m, s.tuning.tile_n), (64, 64));
    assert_eq!(s.workgroups(1, 1), [1, 1, 1]);
    assert_eq!(s.workgroups(128, 4096), [64, 2, 1]);
    assert_eq!(s.workgroups(129, 4097), [65, 3, 1]);
    assert_eq!(s.workgroups(65535 * 64, 65535 * 64), [65535, 65535, 1]);
    assert_eq!(s.dispatch().workgroups, ["ceil(N / 64)".to_string(), "ceil(M / 64)".into(), "1".into()]);
    assert_eq!(s.rows_per_workgroup(), 64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matvec_workgroups_cover_n(n in 1u32..=u32::MAX) {
        for t in Target::ALL {
            check_matvec_cover(&spec(Op::Matvec, 2, 32, Scheme::Asym, t, Tier::Base), n);
        }
    }

    #[test]
    fn matmul_workgroups_cover_m_n(m in 1u32..=65535 * 64, n in 1u32..=65535 * 64) {
        let s = spec(Op::Matmul, 3, 64, Scheme::Sym, Target::Chrome, Tier::Subgroups);
        let (tm, tn) = (s.tuning.tile_m as u64, s.tuning.tile_n as u64);
        let [x, y, z] = s.workgroups(m, n);
        prop_assert_eq!(z, 1);
        prop_assert!(x <= 65535 && y <= 65535);
        prop_assert!(x as u64 * tn >= n as u64 && (x as u64 - 1) * tn < n as u64);
        prop_assert!(y as u64 * tm >= m as u64 && (y as u64 - 1) * tm < m as u64);
    }
}

#[test]
fn tier_selection_takes_the_richest_tier_the_device_has() {
    use codegen::{Profile, Target, Tier};
    assert_eq!(Profile::select_tier(Target::Chrome, true, true, false), Tier::Subgroups);
    assert_eq!(Profile::select_tier(Target::Chrome, true, true, true), Tier::F16Subgroups);
    assert_eq!(Profile::select_tier(Target::Chrome, false, true, true), Tier::Subgroups);
    assert_eq!(Profile::select_tier(Target::Chrome, true, false, true), Tier::F16);
    assert_eq!(Profile::select_tier(Target::Chrome, false, false, true), Tier::Base);
    // Firefox and Safari have no subgroup tier, whatever the device has.
    assert_eq!(Profile::select_tier(Target::Firefox, true, true, true), Tier::F16);
    assert_eq!(Profile::select_tier(Target::Safari, false, true, true), Tier::Base);
}

/// The int8 activation rule (docs/FORMAT.md §12) on its edge cases.
#[test]
fn int8_activations_follow_the_format() {
    use codegen::codec::Activations8;
    let mut x = vec![0.0f32; 32 * 5];
    // Block 0: zeros. Block 1: below 2^-100 (zeros, scale 0).
    x[32] = 3.0e-31;
    // Block 2: amax 100 -> scale 1; ties round to even.
    x[64..72].copy_from_slice(&[2.5, -3.5, 0.5, 100.0, -1.5, 6.5, 0.0, -0.5]);
    // Block 3: amax exactly 127/4 -> scale 1/4 and code -127.
    x[96] = -31.75;
    x[97] = 0.125;
    // Block 4: amax 127.5 needs scale 2 (127.5 > 127 at scale 1); 3.0 / 2 = 1.5 ties to 2.
    x[128] = 127.5;
    x[129] = 3.0;
    let a = Activations8::quantize(&x);
    assert_eq!(a.scales, [0.0, 0.0, 1.0, 0.25, 2.0]);
    assert!(a.codes[..64].iter().all(|&q| q == 0));
    assert_eq!(&a.codes[64..72], &[2, -4, 0, 100, -2, 6, 0, 0]);
    assert_eq!(&a.codes[96..98], &[-127, 0]);
    assert_eq!(&a.codes[128..130], &[64, 2]);
    assert_eq!(a.block_sums()[2], 102);
    // Every value is within half a step of its code, and the codes stand for exact values.
    let mut rng = 0x1234_5678u32;
    let y: Vec<f32> = (0..32 * 64)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            (rng as f32 / u32::MAX as f32 - 0.5) * 10f32.powi((i / 32) as i32 % 9 - 4)
        })
        .collect();
    let a = Activations8::quantize(&y);
    for (i, (&v, d)) in y.iter().zip(a.dequantize()).enumerate() {
        let s = a.scales[i / 32];
        assert!((v - d).abs() <= s / 2.0, "x[{i}] = {v} became {d} at scale {s}");
        let amax = y[i / 32 * 32..i / 32 * 32 + 32].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(amax / s <= 127.0 && amax / s > 63.0, "block {} uses its range: {amax} / {s}", i / 32);
    }
}

/// The runtimes' split length, at 512 workgroups aimed at. tests/node/check-sample.mjs
/// evaluates every emitted kv-attend kernel's manifest rule over the same table, so the rule and
/// this function cannot drift apart unnoticed.
#[test]
fn kv_attend_split_len_follows_the_table_the_manifest_rule_is_checked_against() {
    assert_eq!(codegen::kv::SPLIT_WORKGROUPS, 512);
    for (len, heads, chunk, want) in [
        (1024, 8, 32, 32),
        (8192, 8, 32, 128),
        (32768, 8, 32, 512),
        (16500, 1, 32, 64),
        (1, 1, 32, 32),
        (100000, 3, 32, 608),
    ] {
        assert_eq!(codegen::kv::default_split_len(len, heads, chunk), want, "len {len}, kv_heads {heads}");
    }
    let a = KernelSpec::kv(Op::KvAttend, Format::quant(2, 32, Scheme::Asym).unwrap(), 128, Target::Native, Tier::Base)
        .unwrap();
    assert_eq!(a.tuning.chunk, 32, "the table assumes the kernels' chunk");
}
