//! The differential harness: the same proptest-generated cases run on every engine and are
//! compared with the scalar reference (the oracle).
//!
//! Engines, behind one trait (as wasmtime's fuzzing `DiffEngine`): wgpu (on lavapipe in CI),
//! wasmtime (SIMD and scalar modules), V8 (Node, which runs `.wasm` as Chrome does: SIMD
//! and scalar), and Dawn for Node (Chrome's WebGPU and its Tint compiler, on lavapipe).
//! The Node engines read only an emitted package and its manifest (`tests/node/run-cases.mjs`).
//! An engine that cannot run a case says why; a run in which an engine ran nothing fails,
//! and in CI an engine that skips anything fails.

use super::exec::{Rng, weights};
use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier, Weights, reference};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use runtime::Gpu;
use runtime::wasm::{Variant, WasmRunner};
use std::path::{Path, PathBuf};

/// One case: a kernel (Chrome's variant, whose text is Tint's dialect and whose naga-dialect
/// twin wgpu runs), its inputs and the reference.
pub struct Case {
    pub spec: KernelSpec,
    pub w: Weights,
    pub x: Vec<f32>,
    pub m: usize,
    pub want: reference::Check,
}

/// What an engine did with a case.
pub enum Outcome {
    Ran(Vec<f32>),
    CannotRun(String),
    Failed(String),
}

pub trait Engine {
    fn name(&self) -> String;
    /// Runs every case; one outcome per case, in order.
    fn run(&mut self, cases: &[Case]) -> Vec<Outcome>;
    /// Relative tolerance for a case on this engine.
    fn tolerance(&self, case: &Case) -> f64 {
        case.spec.profile.tier.tolerance()
    }
}

struct WgpuEngine(Gpu);

impl Engine for WgpuEngine {
    fn name(&self) -> String {
        format!("wgpu ({})", self.0.describe())
    }
    fn run(&mut self, cases: &[Case]) -> Vec<Outcome> {
        cases
            .iter()
            .map(|c| {
                if !self.0.supports(c.spec.profile.tier) {
                    return Outcome::CannotRun(format!("adapter lacks {:?}", c.spec.features()));
                }
                match self.0.run(&c.spec, &self.0.upload(&c.w), &c.x, c.m) {
                    Ok(y) => Outcome::Ran(y),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            })
            .collect()
    }
}

struct WasmtimeEngine(WasmRunner, Variant);

impl Engine for WasmtimeEngine {
    fn name(&self) -> String {
        format!("wasmtime {}", self.1.name())
    }
    fn run(&mut self, cases: &[Case]) -> Vec<Outcome> {
        cases
            .iter()
            .map(|c| match self.0.run(&c.spec, self.1, &c.w, &c.x, c.m) {
                Ok(y) => Outcome::Ran(y),
                Err(e) => Outcome::Failed(e.to_string()),
            })
            .collect()
    }
    fn tolerance(&self, _: &Case) -> f64 {
        Tier::Base.tolerance() // the modules compute in f32 whatever the WebGPU tier
    }
}

/// An engine in Node: `tests/node/run-cases.mjs DIR ENGINE` over a case folder.
struct NodeEngine {
    engine: &'static str,
    dir: PathBuf,
}

impl Engine for NodeEngine {
    fn name(&self) -> String {
        match self.engine {
            "dawn" => "Dawn/Tint in Node (lavapipe)".into(),
            e => format!("V8 in Node ({})", e.trim_start_matches("v8-")),
        }
    }
    fn run(&mut self, cases: &[Case]) -> Vec<Outcome> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let script = root.join("tests/node/run-cases.mjs");
        let status =
            std::process::Command::new("node").arg(&script).arg(&self.dir).arg(self.engine).current_dir(&root).output();
        let why = match status {
            Ok(o) if o.status.success() => {
                eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim());
                None
            }
            Ok(o) => Some(format!("runner failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Some(format!("cannot start node: {e}")),
        };
        let out = self.dir.join("out").join(self.engine);
        (0..cases.len())
            .map(|id| {
                if let Some(why) = &why {
                    return Outcome::CannotRun(why.clone());
                }
                let file = |ext| out.join(format!("c{id}.{ext}"));
                if let Ok(bytes) = std::fs::read(file("bin")) {
                    Outcome::Ran(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
                } else if let Ok(reason) = std::fs::read_to_string(file("skip")) {
                    Outcome::CannotRun(reason.trim().into())
                } else if let Ok(err) = std::fs::read_to_string(file("err")) {
                    Outcome::Failed(err.trim().into())
                } else {
                    Outcome::Failed("the runner wrote no result".into())
                }
            })
            .collect()
    }
    fn tolerance(&self, case: &Case) -> f64 {
        if self.engine == "dawn" { case.spec.profile.tier.tolerance() } else { Tier::Base.tolerance() }
    }
}

/// Writes the case folder the Node engines read: Chrome's package for the cases' kernels,
/// `cases.json` and the raw buffers.
fn write_case_dir(dir: &Path, cases: &[Case]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut specs: Vec<KernelSpec> = Vec::new();
    for c in cases {
        if !specs.iter().any(|s| s.name() == c.spec.name()) {
            specs.push(c.spec);
        }
    }
    codegen::manifest::build(Target::Chrome, &specs, |_, _, _| {}).unwrap().write(&dir.join("package")).unwrap();
    let mut entries = Vec::new();
    for (id, c) in cases.iter().enumerate() {
        let write = |what: &str, words: &[u32]| -> String {
            let name = format!("c{id}.{what}.bin");
            std::fs::write(dir.join(&name), bytemuck_bytes(words)).unwrap();
            format!("\"{name}\"")
        };
        let scales = if c.w.format.is_f16() { "null".into() } else { write("scales", &c.w.scales) };
        let mins = if c.w.format.has_min() { write("mins", &c.w.mins) } else { "null".into() };
        let x: Vec<u32> = c.x.iter().map(|v| v.to_bits()).collect();
        entries.push(format!(
            "{{\"id\": {id}, \"kernel\": \"{}\", \"m\": {}, \"n\": {}, \"k\": {}, \"weights\": {}, \"scales\": {scales}, \"mins\": {mins}, \"x\": {}}}",
            c.spec.name(),
            c.m,
            c.w.n,
            c.w.k,
            write("weights", &c.w.words),
            write("x", &x)
        ));
    }
    std::fs::write(dir.join("cases.json"), format!("{{\"cases\": [\n{}\n]}}\n", entries.join(",\n"))).unwrap();
}

fn bytemuck_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The cases: for every op and format, one proptest-drawn (tier, M, N, groups, seed), plus
/// as many fully random ones. Ragged shapes come naturally (N and M are drawn, not tiled).
fn cases() -> Vec<Case> {
    let tiers = Target::Chrome.info().tiers;
    let shape = (0..tiers.len(), 1usize..=20, 1usize..=70, 1usize..=4, any::<u64>());
    let mut runner = TestRunner::deterministic();
    let mut out = Vec::new();
    let mut formats: Vec<Format> = vec![Format::f16()];
    for bits in Format::QUANT_BITS {
        for g in Format::GROUP_SIZES {
            for s in Scheme::ALL {
                formats.push(Format::quant(bits, g, s).unwrap());
            }
        }
    }
    for round in 0..2 {
        for &op in &Op::ALL {
            for &format in &formats {
                let (tier, m, n, groups, seed) = shape.new_tree(&mut runner).unwrap().current();
                // The second round also draws the format, so pairs of choices vary.
                let format = if round == 0 { format } else { formats[(seed % formats.len() as u64) as usize] };
                let m = if op == Op::Matvec { 1 } else { m };
                let spec = KernelSpec::new(op, format, Target::Chrome, tiers[tier]).unwrap();
                let k = groups * format.group_size() as usize;
                let mut rng = Rng(seed);
                let (w, _) = weights(&mut rng, format, n, k);
                let x: Vec<f32> = (0..m * k).map(|_| rng.value(1.0)).collect();
                let want = reference::matmul(&w, &x, m);
                out.push(Case { spec, w, x, m, want });
            }
        }
    }
    out
}

#[test]
fn every_engine_agrees_with_the_reference() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let cases = cases();
    let dir = std::env::temp_dir().join(format!("shadergen-diff-{}", std::process::id()));
    write_case_dir(&dir, &cases);
    let mut engines: Vec<Box<dyn Engine>> = vec![
        Box::new(WasmtimeEngine(WasmRunner::new().unwrap(), Variant::Simd)),
        Box::new(WasmtimeEngine(WasmRunner::new().unwrap(), Variant::Scalar)),
        Box::new(NodeEngine { engine: "v8-simd", dir: dir.clone() }),
        Box::new(NodeEngine { engine: "v8-scalar", dir: dir.clone() }),
        Box::new(NodeEngine { engine: "dawn", dir: dir.clone() }),
    ];
    match Gpu::new() {
        Ok(g) => engines.push(Box::new(WgpuEngine(g))),
        Err(e) => panic!("the harness requires a wgpu adapter (run .ci/setup.sh for lavapipe): {e}"),
    }
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for engine in &mut engines {
        let name = engine.name();
        let outcomes = engine.run(&cases);
        let (mut ran, mut skipped, mut worst) = (0, Vec::new(), 0.0f64);
        for (c, o) in cases.iter().zip(outcomes) {
            let what = format!("{name}: {} M={} N={} K={}", c.spec.name(), c.m, c.w.n, c.w.k);
            match o {
                Outcome::Ran(y) => {
                    ran += 1;
                    worst = worst.max(c.want.worst_relative_error(&y));
                    if let Err(e) = c.want.compare(&y, engine.tolerance(c)) {
                        failures.push(format!("{what}: {e}"));
                    }
                }
                Outcome::CannotRun(why) => skipped.push(format!("{what}: {why}")),
                Outcome::Failed(e) => failures.push(format!("{what}: {e}")),
            }
        }
        report.push(format!("{name}: ran {ran}/{}, worst error / magnitude {worst:.2e}", cases.len()));
        if ran == 0 {
            failures.push(format!("{name} ran nothing: {}", skipped.first().map(String::as_str).unwrap_or("")));
        } else if ci && !skipped.is_empty() {
            failures.push(format!("{name} skipped {} cases in CI, e.g. {}", skipped.len(), skipped[0]));
        }
    }
    eprintln!("{} cases on {} engines:\n  {}", cases.len(), engines.len(), report.join("\n  "));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
