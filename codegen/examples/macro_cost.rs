//! The compile-time cost of one `#[kernel]`: the work the macro does (emit and validate the
//! WGSL for every target and tier, and both WebAssembly modules) timed in a build with the
//! same profile as proc-macros get in `cargo build` (dev). Not a test; see bench/NOTES.md.
//!
//! cargo run -p shadergen-codegen --example macro_cost

use codegen::{Format, KernelSpec, Op, Scheme, Target, wasm, wgsl};
use std::time::Instant;

fn main() {
    let mut samples = Vec::new();
    for (op, bits) in [(Op::Matvec, 3), (Op::Matmul, 3), (Op::Matvec, 4), (Op::Matmul, 8), (Op::Matvec, 16)] {
        let format = Format::from_bits(bits, 64, Scheme::Sym).unwrap();
        let start = Instant::now();
        let mut variants = 0;
        for target in Target::ALL {
            for &tier in target.info().tiers {
                wgsl::emit(&KernelSpec::new(op, format, target, tier).unwrap()).unwrap();
                variants += 1;
            }
        }
        wasm::emit(&KernelSpec::new(op, format, Target::Generic, codegen::Tier::Base).unwrap()).unwrap();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("{} {}: {variants} WGSL variants + 2 WASM modules in {ms:.1} ms", op.name(), format);
        samples.push(ms);
    }
    samples.sort_by(f64::total_cmp);
    println!("median per #[kernel]: {:.1} ms", samples[samples.len() / 2]);
}
