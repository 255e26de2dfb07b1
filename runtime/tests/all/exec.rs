//! Execution proof: every emitted kernel (each target, tier, op, format) runs on the wgpu
//! adapter at hand (Mesa lavapipe in CI) and matches the scalar reference on random data,
//! ragged shapes included, within the tolerance its tier states.

use codegen::{Format, KernelSpec, Op, Target, Weights, reference, wgsl};
use runtime::Gpu;
use std::collections::BTreeMap;

/// A small deterministic generator (splitmix64): the same cases on every run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Never zero: magnitude in [0.05, 1) times `scale`, random sign.
    pub fn value(&mut self, scale: f32) -> f32 {
        let v = 0.05 + 0.95 * self.unit();
        if self.next() & 1 == 0 { v * scale } else { -v * scale }
    }
}

pub fn gpu() -> Option<Gpu> {
    match Gpu::new() {
        Ok(g) => {
            eprintln!("wgpu adapter: {}", g.describe());
            Some(g)
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI requires a wgpu adapter (lavapipe): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no wgpu adapter ({e}); run .ci/setup.sh to install Mesa lavapipe");
            None
        }
    }
}

/// Random weights for a format: rows of different magnitudes, so scales vary.
pub fn weights(rng: &mut Rng, format: Format, n: usize, k: usize) -> (Weights, Vec<f32>) {
    let mut data = Vec::with_capacity(n * k);
    for _ in 0..n {
        let row_scale = 0.25 + 2.0 * rng.unit();
        data.extend((0..k).map(|_| rng.value(row_scale)));
    }
    (Weights::quantize(format, n, k, &data).expect("random data quantizes"), data)
}

/// Shapes (M, N, K in groups) per op: ragged N (not a multiple of rows per workgroup or
/// tile), M = 1, 3, 17, 70 (past one matmul tile), K = one group, and for matvec a K of
/// 140 groups (4480 to 17920 elements): more 32-blocks than a workgroup has invocations,
/// so its loop takes several steps and the last one is partial.
pub fn shapes(op: Op) -> &'static [(usize, usize, usize)] {
    match op {
        Op::Matvec => &[(1, 1, 1), (1, 7, 1), (1, 70, 3), (1, 257, 8), (1, 9, 140)],
        Op::Matmul => &[(1, 5, 1), (3, 33, 2), (17, 70, 3), (70, 9, 4)],
        Op::KvAppend | Op::KvAttend => &[],
    }
}

/// Every distinct kernel text across all targets' default sets: targets that emit the same
/// naga-dialect text for a name compute the same thing, so each text runs once.
pub fn distinct_kernels(kv: bool) -> BTreeMap<(String, String), Vec<KernelSpec>> {
    let mut kernels: BTreeMap<(String, String), Vec<KernelSpec>> = BTreeMap::new();
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t).into_iter().filter(|s| s.op.is_kv() == kv) {
            let text = wgsl::emit(&spec).expect("emits").naga_text;
            kernels.entry((spec.name(), text)).or_default().push(spec);
        }
    }
    kernels
}

#[test]
fn every_kernel_matches_the_reference_on_wgpu() {
    let Some(gpu) = gpu() else { return };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut rng = Rng(0x5ead_e75e_ed00_0001);
    let (mut ran, mut cases, mut missing) = (0usize, 0usize, Vec::new());
    let mut failures = Vec::new();
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    for ((name, _), specs) in distinct_kernels(false) {
        let spec = specs[0];
        if !gpu.supports(spec.profile.tier) {
            missing.push(name);
            continue;
        }
        let targets: Vec<_> = specs.iter().map(|s| s.profile.target.name()).collect();
        // A matvec with a tall entry point also runs it: N past its min_n, ragged.
        let tall = spec.tuning.tall.map(|t| (1, t.min_n as usize + 5, 2));
        // And a wide one: K past its min_k with a ragged last step (3 blocks past 256 lanes'
        // first step at group 32), N ragged.
        let group = spec.format.group_size() as usize;
        let wide = spec.tuning.wide.map(|w| (1, 9, (w.min_k as usize).div_ceil(group) + 3));
        for &(m, n, groups) in shapes(spec.op).iter().chain(tall.iter()).chain(wide.iter()) {
            let k = groups * spec.format.group_size() as usize;
            let (w, _) = weights(&mut rng, spec.format, n, k);
            let mut x: Vec<f32> = (0..m * k).map(|_| rng.value(1.0)).collect();
            if spec.uses_dot4() {
                x8_edge_blocks(&mut x);
            }
            // dot4 kernels compute with x's int8 values (docs/FORMAT.md §12): a code that
            // differs from the codec's by one moves the output far past the tolerance.
            let want = reference::matmul(&w, &spec.kernel_activations(&x), m);
            let uploaded = gpu.upload(&w);
            match gpu.run(&spec, &uploaded, &x, m) {
                Ok(got) => {
                    let e = worst.entry(spec.profile.tier.name()).or_default();
                    *e = e.max(want.worst_relative_error(&got));
                    if let Err(e) = want.compare(&got, spec.profile.tier.tolerance()) {
                        failures.push(format!("{name} (targets {targets:?}) M={m} N={n} K={k}: {e}"));
                    }
                }
                Err(e) => failures.push(format!("{name} M={m} N={n} K={k}: {e}")),
            }
            cases += 1;
        }
        ran += 1;
    }
    for (tier, e) in &worst {
        eprintln!("tier {tier}: worst error / magnitude {e:.2e}");
    }
    eprintln!("ran {ran} distinct kernels, {cases} cases; tiers the adapter lacks: {} kernels", missing.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0, "no kernel ran");
    if ci {
        assert!(missing.is_empty(), "CI's lavapipe must run every tier; not run: {missing:?}");
    }
}

/// The int8 activation rule's edge cases (docs/FORMAT.md §12) in the first blocks of `x`:
/// a block of zeros, one below 2^-100 (quantized to zeros), one with exact ties (round
/// half to even: 2.5 -> 2, -3.5 -> -4, 0.5 -> 0 at scale 1), and one whose largest
/// magnitude is exactly 127 · 2^e.
pub fn x8_edge_blocks(x: &mut [f32]) {
    let blocks: [&dyn Fn(usize) -> f32; 4] = [
        &|_| 0.0,
        &|i| if i % 2 == 0 { 3.0e-31 } else { -1.0e-31 },
        &|i| [2.5, -3.5, 0.5, 100.0, -1.5, 6.5, 0.0, -0.5][i % 8],
        &|i| if i == 5 { -127.0 * 0.25 } else { (i as f32 - 16.0) * 0.01 },
    ];
    for (b, f) in blocks.iter().enumerate() {
        for i in 0..32 {
            if let Some(v) = x.get_mut(b * 32 + i) {
                *v = f(i);
            }
        }
    }
}

/// A native kernel takes the device's limits: a shape over the spec-default 128 MiB binding
/// is refused by the profile but accepted once the device allows it (lavapipe allows more).
#[test]
fn native_kernels_use_the_devices_limits() {
    let Some(gpu) = gpu() else { return };
    let spec = KernelSpec::new(Op::Matvec, Format::f16(), Target::Native, codegen::Tier::Base).unwrap();
    // 16384 x 8192 f16 weights: 256 MiB.
    assert!(spec.check_shape(1, 16384, 8192).is_err());
    let device = gpu.native_limits(spec);
    let allowed = gpu.device().limits().max_storage_buffer_binding_size;
    assert_eq!(device.profile.limits.storage_binding, allowed);
    assert_eq!(device.check_shape(1, 16384, 8192).is_ok(), allowed >= 256 << 20, "limit {allowed}");
    // Browser targets keep their profile's limits.
    let chrome = KernelSpec::new(Op::Matvec, Format::f16(), Target::Chrome, codegen::Tier::Base).unwrap();
    assert_eq!(gpu.native_limits(chrome), chrome);
}
