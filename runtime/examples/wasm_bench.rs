//! WASM benchmark (not a test): the SIMD and scalar modules of matvec 4096x4096 and matmul
//! 64x4096x4096 at 2, 3, 4, 8 bits (group 32, sym) and the f16 baseline, in wasmtime
//! (in-process, one thread). Prints a table and writes JSON rows to the path given (default
//! bench/wasm-wasmtime.json). The modules' machine code does not depend on how this host
//! program was built, so a debug build measures the same kernels.
//!
//! cargo run -p shadergen-runtime --example wasm_bench [-- OUT.json [--quick]]

use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier, Weights};
use runtime::wasm::{Variant, WasmRunner};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or("bench/wasm-wasmtime.json".into());
    let quick = args.iter().any(|a| a == "--quick");
    let runner = WasmRunner::new().expect("wasmtime starts");
    let (n, k) = if quick { (1024, 1024) } else { (4096, 4096) };
    let mut rows = Vec::new();
    println!("wasmtime 48, one thread; N x K = {n} x {k}");
    println!(
        "{:<7} {:>4} {:>14} {:>11} {:>11} {:>7} {:>12} {:>10}",
        "op", "bits", "shape", "simd ms", "scalar ms", "ratio", "weight GB/s", "GFLOP/s"
    );
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let data: Vec<f32> = (0..n * k).map(|_| rand()).collect();
    for op in [Op::Matvec, Op::Matmul] {
        let m = if op == Op::Matvec {
            1
        } else if quick {
            16
        } else {
            64
        };
        let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
        for bits in [2, 3, 4, 8, 16] {
            let format = Format::from_bits(bits, 32, Scheme::Sym).unwrap();
            let spec = KernelSpec::new(op, format, Target::Generic, Tier::Base).unwrap();
            let w = Weights::quantize(format, n, k, &data).unwrap();
            let mut times = [0.0f64; 2];
            for (i, variant) in [Variant::Simd, Variant::Scalar].into_iter().enumerate() {
                let mut kernel = runner.load(&spec, variant, &w, m).unwrap();
                kernel.run(&x).unwrap(); // warm-up (and page in the weights)
                let reps = if op == Op::Matvec { 15 } else { 3 };
                let mut samples: Vec<f64> = (0..reps)
                    .map(|_| {
                        let t = Instant::now();
                        kernel.run(&x).unwrap();
                        t.elapsed().as_secs_f64()
                    })
                    .collect();
                samples.sort_by(f64::total_cmp);
                times[i] = samples[samples.len() / 2];
            }
            let bytes = w.bytes() as f64;
            let flops = 2.0 * (m * n * k) as f64;
            let shape = format!("{m}x{n}x{k}");
            println!(
                "{:<7} {:>4} {:>14} {:>11.3} {:>11.3} {:>7.2} {:>12.2} {:>10.2}",
                op.name(),
                bits,
                shape,
                times[0] * 1e3,
                times[1] * 1e3,
                times[1] / times[0],
                bytes / times[0] / 1e9,
                flops / times[0] / 1e9
            );
            rows.push(format!(
                "    {{\"engine\": \"wasmtime 48\", \"op\": \"{}\", \"bits\": {bits}, \"group_size\": 32, \"shape\": \"{shape}\", \"simd_median_us\": {:.1}, \"scalar_median_us\": {:.1}, \"simd_over_scalar\": {:.3}, \"weight_bytes\": {}, \"simd_weight_gb_per_s\": {:.3}, \"simd_gflop_per_s\": {:.3}}}",
                op.name(),
                times[0] * 1e6,
                times[1] * 1e6,
                times[1] / times[0],
                w.bytes(),
                bytes / times[0] / 1e9,
                flops / times[0] / 1e9
            ));
        }
    }
    let json = format!("{{\n  \"machine\": \"{}\",\n  \"rows\": [\n{}\n  ]\n}}\n", machine(), rows.join(",\n"));
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    println!("wrote {out}");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
