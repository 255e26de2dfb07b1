//! A downstream crate using shadergen as a user would: declare kernels with
//! `#[macros::kernel]` (emitted and validated while this crate compiles), quantize weights,
//! and run on the GPU and in WebAssembly, checked against the scalar reference.
//!
//! Run with `cargo run -p shadergen-downstream-example`. Exits non-zero if any backend's
//! error exceeds its tolerance.

use runtime::codegen::{Tier, Weights, reference};
use runtime::wasm::Variant;
use runtime::{Backend, Prefer, Runtime};

/// Decode: `y = W · x` with 3-bit weights, one f16 scale per 64.
#[macros::kernel(bits = 3, group = 64)]
struct Proj;

/// Prefill: `Y = X · Wᵀ` over the same weights.
#[macros::kernel(bits = 3, group = 64, op = matmul)]
struct ProjBatch;

const N: usize = 512;
const K: usize = 1024;
const M: usize = 4;

/// Deterministic pseudo-random values in [-1, 1].
fn random(len: usize, mut seed: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let weights = Weights::quantize(Proj::format(), N, K, &random(N * K, 1))?;
    let x = random(M * K, 2);
    println!("{} and {}: {N} x {K} weights, {} bytes", Proj::NAME, ProjBatch::NAME, weights.bytes());

    let mut failed = false;
    for prefer in [Prefer::Gpu, Prefer::Wasm(Variant::Simd)] {
        let rt = Runtime::with(prefer)?;
        let tolerance = match rt.backend() {
            Backend::Gpu(tier) => tier.tolerance(),
            Backend::Wasm(_) => Tier::Base.tolerance(),
        };
        println!("{}", rt.describe());
        let w = rt.upload(&weights);
        let runs = [
            ("matvec", Proj::run(&rt, &w, &x[..K])?, reference::matmul(&weights, &x[..K], 1)),
            ("matmul", ProjBatch::run(&rt, &w, &x, M)?, reference::matmul(&weights, &x, M)),
        ];
        for (op, y, check) in runs {
            let error = check.worst_relative_error(&y);
            let ok = error <= tolerance;
            failed |= !ok;
            println!(
                "  {op}: max relative error {error:.2e} (tolerance {tolerance:.0e}) {}",
                if ok { "ok" } else { "FAIL" }
            );
        }
    }
    if failed {
        return Err("an error exceeded its tolerance".into());
    }
    Ok(())
}
