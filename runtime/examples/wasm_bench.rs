//! WASM benchmark (not a test): the SIMD and scalar modules of matvec 4096x4096 and matmul
//! 64x4096x4096 at 2, 3, 4, 8 bits (group 32, sym) and the f16 baseline, in wasmtime
//! (in-process, one thread), then the dot4 tier's matvec (x quantized to int8, integer dot
//! products) at 4096x4096 and 4096x14336 (N x K), 2, 3, 4, 8 bits, group 32, sym. Prints a
//! table and writes JSON rows to the path given (default bench/wasm-wasmtime.json). With
//! `--dot4` only the dot4 rows run, and the file's other rows are kept. The modules' machine
//! code does not depend on how this host program was built, so a debug build measures the
//! same kernels.
//!
//! cargo run -p shadergen-runtime --example wasm_bench [-- OUT.json [--quick] [--dot4]]

use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier, Weights};
use runtime::wasm::{Variant, WasmRunner};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or("bench/wasm-wasmtime.json".into());
    let quick = args.iter().any(|a| a == "--quick");
    let only_dot4 = args.iter().any(|a| a == "--dot4");
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
    for op in if only_dot4 { &[][..] } else { &[Op::Matvec, Op::Matmul][..] } {
        let op = *op;
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
    if only_dot4 {
        // Keep the file's rows of the other benchmarks.
        let old = std::fs::read_to_string(&out).unwrap_or_default();
        rows = old
            .lines()
            .filter(|l| l.trim_start().starts_with("{\"engine\"") && !l.contains("\"tier\": \"dot4\""))
            .map(|l| l.trim_end_matches(',').to_string())
            .collect();
    }
    // dot4: matvec over int8 activations (the layer shapes of an 8B model: 4096 x 4096 and
    // the FFN's down projection, 4096 x 14336).
    let shapes: &[(usize, usize)] = if quick { &[(1024, 1024)] } else { &[(4096, 4096), (4096, 14336)] };
    for &(n, k) in shapes {
        let data: Vec<f32> = (0..n * k).map(|_| rand()).collect();
        let x: Vec<f32> = (0..k).map(|_| rand()).collect();
        for bits in [2, 3, 4, 8] {
            let format = Format::from_bits(bits, 32, Scheme::Sym).unwrap();
            let spec = KernelSpec::new(Op::Matvec, format, Target::Native, Tier::Dot4).unwrap();
            let w = Weights::quantize(format, n, k, &data).unwrap();
            let (mut times, mut mins) = ([0.0f64; 2], [0.0f64; 2]);
            for (i, variant) in [Variant::Simd, Variant::Scalar].into_iter().enumerate() {
                let mut kernel = runner.load(&spec, variant, &w, 1).unwrap();
                for _ in 0..3 {
                    kernel.run(&x).unwrap(); // warm-up (and page in the weights)
                }
                let mut samples: Vec<f64> = (0..31)
                    .map(|_| {
                        let t = Instant::now();
                        kernel.run(&x).unwrap();
                        t.elapsed().as_secs_f64()
                    })
                    .collect();
                samples.sort_by(f64::total_cmp);
                times[i] = samples[samples.len() / 2];
                mins[i] = samples[0];
            }
            let load = load_average();
            let bytes = w.bytes() as f64;
            let flops = 2.0 * (n * k) as f64;
            let shape = format!("1x{n}x{k}");
            println!(
                "{:<7} {:>4} {:>14} {:>11.3} {:>11.3} {:>7.2} {:>12.2} {:>10.2}   min {:.3} / {:.3} ms, load {load:.2}",
                "dot4",
                bits,
                shape,
                times[0] * 1e3,
                times[1] * 1e3,
                times[1] / times[0],
                bytes / times[0] / 1e9,
                flops / times[0] / 1e9,
                mins[0] * 1e3,
                mins[1] * 1e3,
            );
            rows.push(format!(
                "    {{\"engine\": \"wasmtime 48\", \"op\": \"matvec\", \"tier\": \"dot4\", \"activations\": \"int8\", \"bits\": {bits}, \"group_size\": 32, \"shape\": \"{shape}\", \"simd_median_us\": {:.1}, \"scalar_median_us\": {:.1}, \"simd_over_scalar\": {:.3}, \"weight_bytes\": {}, \"simd_weight_gb_per_s\": {:.3}, \"simd_gflop_per_s\": {:.3}, \"simd_min_us\": {:.1}, \"scalar_min_us\": {:.1}, \"load_average\": {load:.2}}}",
                times[0] * 1e6,
                times[1] * 1e6,
                times[1] / times[0],
                w.bytes(),
                bytes / times[0] / 1e9,
                flops / times[0] / 1e9,
                mins[0] * 1e6,
                mins[1] * 1e6,
            ));
        }
    }
    let json = format!("{{\n  \"machine\": \"{}\",\n  \"rows\": [\n{}\n  ]\n}}\n", machine(), rows.join(",\n"));
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    println!("wrote {out}");
}

/// The one-minute load average (other processes compete for the two cores).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
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
