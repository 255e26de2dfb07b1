//! The WASM modules (SIMD and scalar) of every kernel run in wasmtime and match the
//! reference on the same random cases as the GPU kernels, within the f32 tolerance.

use super::exec::{Rng, shapes, weights, x8_edge_blocks};
use codegen::{KernelSpec, Target, Tier, reference};
use runtime::wasm::{Variant, WasmRunner};

#[test]
fn every_wasm_module_matches_the_reference_in_wasmtime() {
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0002);
    let (mut cases, mut worst) = (0, [0.0f64; 2]);
    let mut failures = Vec::new();
    // The modules do not depend on target or tier: one spec per op and format covers them.
    for spec in KernelSpec::default_set(Target::Generic).into_iter().filter(|s| s.profile.tier == Tier::Base) {
        for &(m, n, groups) in shapes(spec.op) {
            let k = groups * spec.format.group_size() as usize;
            let (w, _) = weights(&mut rng, spec.format, n, k);
            let x: Vec<f32> = (0..m * k).map(|_| rng.value(1.0)).collect();
            let want = reference::matmul(&w, &x, m);
            for (i, variant) in [Variant::Simd, Variant::Scalar].into_iter().enumerate() {
                match runner.run(&spec, variant, &w, &x, m) {
                    Ok(got) => {
                        worst[i] = worst[i].max(want.worst_relative_error(&got));
                        if let Err(e) = want.compare(&got, Tier::Base.tolerance()) {
                            failures.push(format!("{} {} M={m} N={n} K={k}: {e}", spec.name(), variant.name()));
                        }
                    }
                    Err(e) => failures.push(format!("{} {}: {e}", spec.name(), variant.name())),
                }
                cases += 1;
            }
        }
    }
    eprintln!("wasmtime: {cases} cases; worst error / magnitude: simd {:.2e}, scalar {:.2e}", worst[0], worst[1]);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(cases > 0);
}

/// The dot4 matvec modules (int8 activations, integer dot products) of every quantized
/// format match the reference over `kernel_activations(x)` (x's int8 values) at ragged
/// shapes, with x's edge blocks (zeros, below 2^-100, exact ties, amax = 127 · 2^e) and
/// weights of every code (random words: codes 0 and 2^bits − 1 included), and the SIMD and
/// scalar modules return the same bits (same integer parts, same f32 operations).
#[test]
fn every_dot4_wasm_module_matches_the_reference_in_wasmtime() {
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0008);
    let (mut cases, mut worst, mut kernels) = (0, 0.0f64, 0);
    let mut failures = Vec::new();
    // Native has every tier; Dot4 and Dot4Subgroups emit the same modules (golden_wat checks it).
    for spec in
        KernelSpec::default_set(Target::Native).into_iter().filter(|s| s.uses_dot4() && s.profile.tier == Tier::Dot4)
    {
        kernels += 1;
        let g = spec.format.group_size() as usize;
        for (i, &n) in [1usize, 7, 70, 257].iter().enumerate() {
            for groups in 1..=8usize {
                let k = groups * g;
                let (mut w, _) = weights(&mut rng, spec.format, n, k);
                if (i + groups) % 2 == 1 {
                    w.words.iter_mut().for_each(|v| *v = rng.next() as u32);
                }
                // Blocks of varied magnitude (x's scales differ per block), then the edge blocks.
                let mut x: Vec<f32> = (0..k).map(|j| rng.value([1.0, 300.0, 0.01, 5.0e-4][(j / 32) % 4])).collect();
                x8_edge_blocks(&mut x);
                if groups % 3 == 2 {
                    x.rotate_right(32 * (groups % 4));
                }
                let want = reference::matmul(&w, &spec.kernel_activations(&x), 1);
                let what = format!("{} N={n} K={k}", spec.name());
                let got: Vec<_> = [Variant::Simd, Variant::Scalar]
                    .into_iter()
                    .map(|variant| match runner.run(&spec, variant, &w, &x, 1) {
                        Ok(got) => {
                            worst = worst.max(want.worst_relative_error(&got));
                            if let Err(e) = want.compare(&got, Tier::Dot4.tolerance()) {
                                failures.push(format!("{what} {}: {e}", variant.name()));
                            }
                            Some(got)
                        }
                        Err(e) => {
                            failures.push(format!("{what} {}: {e}", variant.name()));
                            None
                        }
                    })
                    .collect();
                if let [Some(a), Some(b)] = &got[..]
                    && let Some(j) = a.iter().zip(b).position(|(p, q)| p.to_bits() != q.to_bits())
                {
                    failures.push(format!("{what}: y[{j}] simd {:e} != scalar {:e}", a[j], b[j]));
                }
                cases += 1;
            }
        }
    }
    eprintln!("wasmtime dot4: {kernels} kernels, {cases} cases x 2 modules; worst error / magnitude {worst:.2e}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(kernels, 24, "2, 3, 4, 8 bits x groups 32, 64, 128 x sym, asym");
}

/// Memory grows from the module's one page to what the buffers need (here ~9 MiB), and
/// the result is still the reference's: no silent truncation.
#[test]
fn wasm_memory_grows_for_large_shapes() {
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0003);
    let format = codegen::Format::quant(4, 128, codegen::Scheme::Asym).unwrap();
    let spec = KernelSpec::new(codegen::Op::Matvec, format, Target::Generic, Tier::Base).unwrap();
    let (n, k) = (4100, 4096);
    let (w, _) = weights(&mut rng, format, n, k);
    let x: Vec<f32> = (0..k).map(|_| rng.value(1.0)).collect();
    let want = reference::matmul(&w, &x, 1);
    for variant in [Variant::Simd, Variant::Scalar] {
        let got = runner.run(&spec, variant, &w, &x, 1).unwrap();
        want.compare(&got, Tier::Base.tolerance()).unwrap_or_else(|e| panic!("{}: {e}", variant.name()));
    }
}

/// `Runtime` runs the same kernel on the GPU and on both WASM modules, with the weights
/// uploaded once, and each agrees with the reference; the forced choices are honoured.
#[test]
fn runtime_runs_on_every_backend() {
    use runtime::{Backend, Prefer, Runtime};
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut rng = Rng(0x0a5e_77a5_0000_0004);
    let format = codegen::Format::quant(3, 64, codegen::Scheme::Sym).unwrap();
    let (w, _) = weights(&mut rng, format, 37, 256);
    let x: Vec<f32> = (0..3 * 256).map(|_| rng.value(1.0)).collect();
    let mut prefs = vec![Prefer::Wasm(Variant::Simd), Prefer::Wasm(Variant::Scalar)];
    match Runtime::with(Prefer::Gpu) {
        Ok(_) => prefs.push(Prefer::Gpu),
        Err(e) if ci => panic!("CI requires a wgpu adapter: {e}"),
        Err(e) => eprintln!("SKIPPED the GPU backend: {e}"),
    }
    for prefer in prefs {
        let rt = Runtime::with(prefer).unwrap();
        match (prefer, rt.backend()) {
            (Prefer::Wasm(v), Backend::Wasm(b)) => assert_eq!(v, b),
            (Prefer::Gpu, Backend::Gpu(tier)) => assert!(!tier.shader_f16(), "f16 tiers only when asked for"),
            other => panic!("asked {:?}, got {:?}", other.0, other.1),
        }
        let up = rt.upload(&w);
        let y = rt.matvec(&up, &x[..256]).unwrap();
        reference::matmul(&w, &x[..256], 1).compare(&y, Tier::Base.tolerance()).unwrap();
        let y = rt.matmul(&up, &x, 3).unwrap();
        reference::matmul(&w, &x, 3).compare(&y, Tier::Base.tolerance()).unwrap();
        // A shape mistake is an error, not a panic.
        assert!(rt.matvec(&up, &x[..255]).is_err(), "{}", rt.describe());
    }
}

/// KV tokens `[n][H][D]` whose groups (of `g` values) reach every branch of the append rule:
/// ordinary values of varied magnitude with outliers, constant groups (scale 0, every code 0,
/// zeros included), f16-subnormal values and values that round to zero, values exactly halfway between two f16
/// (round-to-nearest-even ties) with some exact zeros, and with `huge`, values near f16's
/// largest (whose scores would leave nothing of a softmax but its maximum).
fn kv_tokens(rng: &mut Rng, n: usize, h: usize, d: usize, g: usize, huge: bool) -> Vec<f32> {
    use half::f16;
    let mut out = Vec::with_capacity(n * h * d);
    for _ in 0..n * h * d / g {
        match rng.next() % if huge { 8 } else { 7 } {
            0..=3 => {
                let scale = 0.25 + 2.0 * rng.unit();
                out.extend((0..g).map(|j| rng.value(if j % 8 == 3 { 10.0 * scale } else { scale })));
            }
            4 => {
                let c = if rng.next().is_multiple_of(3) { 0.0 } else { rng.value(3.0) };
                out.extend(std::iter::repeat_n(c, g));
            }
            // 2^-26 .. 2^-14, log-uniform: f16 subnormals, and values that round to zero
            5 => out.extend((0..g).map(|_| {
                let v = (-14.0 - 12.0 * rng.unit()).exp2();
                if rng.next() & 1 == 0 { v } else { -v }
            })),
            7 => out.extend((0..g).map(|_| rng.value(60000.0))),
            _ => out.extend((0..g).map(|_| {
                if rng.next().is_multiple_of(8) {
                    return 0.0;
                }
                // normal or (one in four) subnormal f16, and the value halfway to the next
                let x = if rng.next().is_multiple_of(4) {
                    f16::from_bits((rng.next() % 0x3ff) as u16 | if rng.next() & 1 == 0 { 0 } else { 0x8000 })
                } else {
                    f16::from_f32(rng.value(4.0))
                };
                let next = f16::from_bits(x.to_bits() + 1);
                (x.to_f32() + next.to_f32()) / 2.0
            })),
        }
    }
    out
}

/// The first difference between two caches, named by buffer and word.
fn cache_difference(got: &codegen::KvCache, want: &codegen::KvCache) -> Option<String> {
    let (g, w) = (&got.store, &want.store);
    for (what, a, b) in [
        ("codes", &g.words, &w.words),
        ("scales", &g.scales, &w.scales),
        ("mins", &g.mins, &w.mins),
        ("window", &got.window, &want.window),
    ] {
        if a.len() != b.len() {
            return Some(format!("{what}: {} words, want {}", a.len(), b.len()));
        }
        if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
            return Some(format!("{what} word {i}: {:#010x}, want {:#010x}", a[i], b[i]));
        }
    }
    (got.len != want.len).then(|| format!("len {}, want {}", got.len, want.len))
}

/// kv-append's SIMD and scalar modules write exactly the bytes of `KvCache::append`, call
/// after call: no window and windows that divide nothing, appends longer than the window,
/// a window as long as the cache, ragged counts up to max_seq, every format and head_dim.
#[test]
fn wasm_kv_append_writes_the_codecs_bytes() {
    use codegen::kv::{KvCache, KvLayout};
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0005);
    // (kv_heads, max_seq, window, tokens per call): the calls fill the cache.
    let plans: [(u32, u32, u32, &[usize]); 4] = [
        (2, 24, 0, &[1, 3, 7, 2, 11]),
        (2, 30, 5, &[2, 7, 1, 4, 9, 1, 6]),
        (1, 22, 8, &[3, 12, 1, 6]),
        (3, 10, 10, &[4, 6]),
    ];
    let (mut calls, mut failures) = (0, Vec::new());
    let specs: Vec<KernelSpec> = KernelSpec::default_set(Target::Generic)
        .into_iter()
        .filter(|s| s.op == codegen::Op::KvAppend && s.profile.tier == Tier::Base)
        .collect();
    for spec in &specs {
        let (d, g) = (spec.head_dim as usize, spec.format.group_size() as usize);
        for &(h, max_seq, window, counts) in &plans {
            assert_eq!(counts.iter().sum::<usize>(), max_seq as usize);
            let layout = KvLayout::new(spec.format, spec.head_dim, h, max_seq, window).unwrap();
            let mut want = KvCache::new(layout);
            let mut kernels: Vec<_> = [Variant::Simd, Variant::Scalar]
                .map(|v| (v, runner.load_kv(spec, v).unwrap(), KvCache::new(layout)))
                .into();
            for &n in counts {
                let (k, v) =
                    (kv_tokens(&mut rng, n, h as usize, d, g, true), kv_tokens(&mut rng, n, h as usize, d, g, true));
                let p = want.len;
                want.append(&k, &v).unwrap();
                for (variant, kernel, got) in &mut kernels {
                    let what = format!("{} {} H={h} S={max_seq} R={window} p={p} n={n}", spec.name(), variant.name());
                    match kernel.kv_append(got, &k, &v) {
                        Ok(()) => {
                            if let Some(diff) = cache_difference(got, &want) {
                                failures.push(format!("{what}: {diff}"));
                                *got = want.clone();
                            }
                        }
                        Err(e) => failures.push(format!("{what}: {e}")),
                    }
                    calls += 1;
                }
            }
        }
    }
    eprintln!("wasmtime kv-append: {} kernels, {calls} calls, bit-exact with KvCache::append", specs.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(specs.len(), 20);
}

/// kv-attend's SIMD and scalar modules match the f64 reference over caches the codec built:
/// GQA 1, 4 and 8, lengths that are no multiple of 64 (or of anything), no window, windows
/// shorter and longer than the context, and queries large enough for a peaked softmax.
#[test]
fn wasm_kv_attend_matches_the_reference() {
    use codegen::kv::{KvCache, KvLayout};
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0006);
    // (kv_heads, gqa, len, window, query scale)
    let cases = [
        (2usize, 1usize, 37usize, 0u32, 1.0f32),
        (2, 4, 100, 16, 1.0),
        (1, 8, 77, 30, 1.0),
        (2, 4, 9, 12, 1.0),
        (1, 1, 70, 20, 8.0),
    ];
    let (mut ran, mut worst, mut failures) = (0, [0.0f64; 2], Vec::new());
    for spec in KernelSpec::default_set(Target::Generic)
        .into_iter()
        .filter(|s| s.op == codegen::Op::KvAttend && s.profile.tier == Tier::Base)
    {
        let (d, g) = (spec.head_dim as usize, spec.format.group_size() as usize);
        for &(h, gqa, len, window, q_scale) in &cases {
            let layout = KvLayout::new(spec.format, spec.head_dim, h as u32, (len as u32 + 3) & !1, window).unwrap();
            let mut cache = KvCache::new(layout);
            // Two appends, so that part of the context was flushed out of the window.
            for n in [len / 3, len - len / 3] {
                cache.append(&kv_tokens(&mut rng, n, h, d, g, false), &kv_tokens(&mut rng, n, h, d, g, false)).unwrap();
            }
            let n_heads = h * gqa;
            let q: Vec<f32> = (0..n_heads * d).map(|_| rng.value(q_scale)).collect();
            let want = reference::kv_attention(&cache, &q, n_heads);
            for (i, variant) in [Variant::Simd, Variant::Scalar].into_iter().enumerate() {
                let what = format!("{} {} H={h} gqa={gqa} L={len} R={window}", spec.name(), variant.name());
                match runner.kv_attend(&spec, variant, &cache, &q, n_heads) {
                    Ok(got) => {
                        worst[i] = worst[i].max(want.worst_relative_error(&got));
                        if let Err(e) = want.compare(&got, Tier::Base.tolerance()) {
                            failures.push(format!("{what}: {e}"));
                        }
                    }
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
                ran += 1;
            }
        }
    }
    eprintln!(
        "wasmtime kv-attend: {ran} runs; worst error / magnitude: simd {:.2e}, scalar {:.2e}",
        worst[0], worst[1]
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0);
}

/// Bad calls are errors that name the problem, and leave the cache as it was; memory grows
/// for a cache larger than the module's first page.
#[test]
fn wasm_kv_refuses_bad_calls_and_grows_memory() {
    use codegen::kv::{KvCache, KvLayout};
    use codegen::{Format, Op, Scheme};
    let runner = WasmRunner::new().expect("wasmtime starts");
    let mut rng = Rng(0x0a5e_77a5_0000_0007);
    let format = Format::quant(4, 32, Scheme::Asym).unwrap();
    let append = KernelSpec::kv(Op::KvAppend, format, 64, Target::Generic, Tier::Base).unwrap();
    let attend = KernelSpec::kv(Op::KvAttend, format, 64, Target::Generic, Tier::Base).unwrap();
    let (h, d) = (2usize, 64usize);
    let mut cache = KvCache::new(KvLayout::new(format, 64, h as u32, 8, 2).unwrap());
    let err = |r: Result<(), runtime::RuntimeError>| r.unwrap_err().to_string();
    for variant in [Variant::Simd, Variant::Scalar] {
        let mut k = runner.load_kv(&append, variant).unwrap();
        let tok = |rng: &mut Rng, n: usize| kv_tokens(rng, n, h, d, 32, true);
        let (a, b) = (tok(&mut rng, 3), tok(&mut rng, 3));
        assert!(err(k.kv_append(&mut cache, &a[1..], &b[1..])).contains("expected"));
        assert!(err(k.kv_append(&mut cache, &a, &b[..2 * h * d])).contains("expected"));
        assert!(err(k.kv_append(&mut cache, &[], &[])).contains("nothing to append"));
        let mut bad = a.clone();
        bad[h * d + 5] = 70000.0;
        let e = err(k.kv_append(&mut cache, &bad, &b));
        assert!(e.contains("k[token 1, kv head 0, dim 5] = 7e4"), "{e}");
        bad[h * d + 5] = f32::NAN;
        assert!(err(k.kv_append(&mut cache, &a, &bad)).contains("NaN"));
        let (a9, b9) = (tok(&mut rng, 9), tok(&mut rng, 9));
        assert!(err(k.kv_append(&mut cache, &a9, &b9)).contains("max_seq = 8"));
        let mut other = KvCache::new(KvLayout::new(Format::quant(3, 32, Scheme::Asym).unwrap(), 64, 2, 8, 2).unwrap());
        assert!(err(k.kv_append(&mut other, &a, &b)).contains("head_dim"));
        assert_eq!(cache, KvCache::new(cache.layout), "a refused call changed the cache");
        let mut wrong = runner.load_kv(&attend, variant).unwrap();
        assert!(err(wrong.kv_append(&mut cache, &a, &b)).contains("not a kv-append kernel"));
        let q = vec![0.5f32; 2 * h * d];
        assert!(wrong.kv_attend(&cache, &q, 2 * h).unwrap_err().to_string().contains("cache length"));
    }
    cache.append(&kv_tokens(&mut rng, 5, h, d, 32, true), &kv_tokens(&mut rng, 5, h, d, 32, true)).unwrap();
    for variant in [Variant::Simd, Variant::Scalar] {
        let q = vec![0.5f32; 3 * d];
        let e = runner.kv_attend(&attend, variant, &cache, &q, 3).unwrap_err().to_string();
        assert!(e.contains("n_heads = 3"), "{e}");
        let q = vec![0.5f32; 18 * d];
        let e = runner.kv_attend(&attend, variant, &cache, &q, 18).unwrap_err().to_string();
        assert!(e.contains("n_heads = 18"), "{e}");
        let e = runner.kv_attend(&attend, variant, &cache, &q[1..], 2).unwrap_err().to_string();
        assert!(e.contains("q has"), "{e}");
        assert!(
            runner
                .load_kv(&KernelSpec::new(Op::Matvec, format, Target::Generic, Tier::Base).unwrap(), variant)
                .is_err()
        );
    }

    // About 1.3 MiB of cache: memory grows from one page, and both ops still agree.
    let format = Format::quant(8, 128, Scheme::Asym).unwrap();
    let append = KernelSpec::kv(Op::KvAppend, format, 128, Target::Generic, Tier::Base).unwrap();
    let attend = KernelSpec::kv(Op::KvAttend, format, 128, Target::Generic, Tier::Base).unwrap();
    let (h, d, len) = (16usize, 128usize, 300usize);
    let layout = KvLayout::new(format, 128, h as u32, len as u32, 64).unwrap();
    let (k, v) = (kv_tokens(&mut rng, len, h, d, 128, false), kv_tokens(&mut rng, len, h, d, 128, false));
    let mut want = KvCache::new(layout);
    want.append(&k, &v).unwrap();
    let q: Vec<f32> = (0..h * d).map(|_| rng.value(1.0)).collect();
    let check = reference::kv_attention(&want, &q, h);
    for variant in [Variant::Simd, Variant::Scalar] {
        let mut got = KvCache::new(layout);
        runner.kv_append(&append, variant, &mut got, &k, &v).unwrap();
        assert_eq!(cache_difference(&got, &want), None, "{}", variant.name());
        let out = runner.kv_attend(&attend, variant, &got, &q, h).unwrap();
        check.compare(&out, Tier::Base.tolerance()).unwrap_or_else(|e| panic!("{}: {e}", variant.name()));
    }
}
