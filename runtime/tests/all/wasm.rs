//! The WASM modules (SIMD and scalar) of every kernel run in wasmtime and match the
//! reference on the same random cases as the GPU kernels, within the f32 tolerance.

use super::exec::{Rng, shapes, weights};
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
