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
use super::kv_gpu::{compare_caches, tokens};
use codegen::kv::{KvCache, KvLayout};
use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier, Weights, reference};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use runtime::Gpu;
use runtime::wasm::{Variant, WasmRunner};
use std::path::{Path, PathBuf};

/// One case: a kernel (Chrome's variant, whose text is Tint's dialect and whose naga-dialect
/// twin wgpu runs), its inputs and what the engine must produce.
pub struct Case {
    pub spec: KernelSpec,
    pub input: Input,
}

/// A case's inputs and expected result.
pub enum Input {
    /// matvec / matmul: `Y = X · Wᵀ`, checked against the reference.
    Weights { w: Weights, x: Vec<f32>, m: usize, want: reference::Check },
    /// kv-append of `k`, `v` to `before`: the engine returns the cache words (codes, scales,
    /// mins, window), which must be the codec's `after` (GPU engines: up to near-ties).
    KvAppend { before: KvCache, k: Vec<f32>, v: Vec<f32>, after: KvCache },
    /// kv-attend over `cache`: checked against the reference.
    KvAttend { cache: KvCache, q: Vec<f32>, n_heads: usize, want: reference::Check },
}

impl Case {
    fn describe(&self) -> String {
        match &self.input {
            Input::Weights { w, m, .. } => format!("{} M={m} N={} K={}", self.spec.name(), w.n, w.k),
            Input::KvAppend { before, k, .. } => {
                let l = before.layout;
                let n = k.len() / (l.kv_heads * l.head_dim) as usize;
                format!("{} H={} R={} len={} +{n}", self.spec.name(), l.kv_heads, l.window, before.len)
            }
            Input::KvAttend { cache, n_heads, .. } => {
                let l = cache.layout;
                format!("{} H={} heads={n_heads} R={} len={}", self.spec.name(), l.kv_heads, l.window, cache.len)
            }
        }
    }
}

/// What an engine did with a case: output words (f32 bits, or cache words for kv-append).
pub enum Outcome {
    Ran(Vec<u32>),
    CannotRun(String),
    Failed(String),
}

pub trait Engine {
    fn name(&self) -> String;
    /// Runs every case; one outcome per case, in order.
    fn run(&mut self, cases: &[Case]) -> Vec<Outcome>;
    /// Relative tolerance for a case on this engine.
    fn tolerance(&self, case: &Case) -> f64 {
        case.spec.tolerance()
    }
    /// Whether the engine's f32 division is IEEE's (WebAssembly), so kv-append must be
    /// bit-exact; WGSL allows 2.5 ULP (`docs/FORMAT.md` §11.3).
    fn exact_division(&self) -> bool {
        false
    }
}

fn f32_words(y: Vec<f32>) -> Vec<u32> {
    y.into_iter().map(f32::to_bits).collect()
}

/// The words of a cache as kv-append's outcome carries them.
fn cache_words(c: &KvCache) -> Vec<u32> {
    [&c.store.words, &c.store.scales, &c.store.mins, &c.window].into_iter().flatten().copied().collect()
}

/// The inverse of [`cache_words`] for a cache shaped like `like`.
fn cache_from_words(like: &KvCache, words: &[u32]) -> Option<KvCache> {
    let mut c = like.clone();
    let mut at = 0;
    for part in [&mut c.store.words, &mut c.store.scales, &mut c.store.mins, &mut c.window] {
        let n = part.len();
        part.copy_from_slice(words.get(at..at + n)?);
        at += n;
    }
    (at == words.len()).then_some(c)
}

/// Checks an outcome's words against the case.
fn check(case: &Case, words: &[u32], tolerance: f64, exact: bool) -> Result<f64, String> {
    match &case.input {
        Input::Weights { want, .. } | Input::KvAttend { want, .. } => {
            let y: Vec<f32> = words.iter().map(|&w| f32::from_bits(w)).collect();
            want.compare(&y, tolerance).map_err(|e| e.to_string())?;
            Ok(want.worst_relative_error(&y))
        }
        Input::KvAppend { k, v, after, before } => {
            let got = cache_from_words(after, words)
                .ok_or_else(|| format!("{} cache words, expected {}", words.len(), cache_words(after).len()))?;
            // The values every token was quantized from, as compare_caches indexes them: the
            // window's f16 for tokens this append flushed, the new inputs after them.
            let l = after.layout;
            let (h_n, d_n) = (l.kv_heads as usize, l.head_dim as usize);
            let src: Vec<Vec<f32>> = [k, v]
                .iter()
                .enumerate()
                .map(|(kv, new)| {
                    let mut s = Vec::with_capacity((before.len + 1) * h_n * d_n);
                    for t in 0..before.len {
                        for h in 0..h_n {
                            for d in 0..d_n {
                                s.push(if before.is_quantized(t) { 0.0 } else { before.element(kv, h, t, d) });
                            }
                        }
                    }
                    s.extend_from_slice(new);
                    s
                })
                .collect();
            let from = l.quantized_len(before.len);
            let near = compare_caches(&case.spec.name(), &got, after, &src, from)?;
            if exact && near > 0 {
                return Err(format!("{near} codes differ from the codec's; WebAssembly's division is exact"));
            }
            Ok(0.0)
        }
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
                let g = &self.0;
                let result = match &c.input {
                    Input::Weights { w, x, m, .. } => g.run(&c.spec, &g.upload(w), x, *m).map(f32_words),
                    Input::KvAppend { before, k, v, .. } => {
                        let mut dev = g.upload_kv(before);
                        g.kv_append(&c.spec, &mut dev, k, v).and_then(|()| g.download_kv(&dev)).map(|c| cache_words(&c))
                    }
                    Input::KvAttend { cache, q, n_heads, .. } => {
                        g.kv_attend(&c.spec, &g.upload_kv(cache), q, *n_heads).map(f32_words)
                    }
                };
                match result {
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
            .map(|c| {
                let result = match &c.input {
                    Input::Weights { w, x, m, .. } => self.0.run(&c.spec, self.1, w, x, *m).map(f32_words),
                    Input::KvAppend { before, k, v, .. } => {
                        let mut cache = before.clone();
                        self.0.kv_append(&c.spec, self.1, &mut cache, k, v).map(|()| cache_words(&cache))
                    }
                    Input::KvAttend { cache, q, n_heads, .. } => {
                        self.0.kv_attend(&c.spec, self.1, cache, q, *n_heads).map(f32_words)
                    }
                };
                match result {
                    Ok(y) => Outcome::Ran(y),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            })
            .collect()
    }
    fn tolerance(&self, _: &Case) -> f64 {
        Tier::Base.tolerance() // the modules compute in f32 whatever the WebGPU tier
    }
    fn exact_division(&self) -> bool {
        true
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
                    Outcome::Ran(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
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
        if self.engine == "dawn" { case.spec.tolerance() } else { Tier::Base.tolerance() }
    }
    fn exact_division(&self) -> bool {
        self.engine != "dawn"
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
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let kernel = c.spec.name();
        let entry = match &c.input {
            Input::Weights { w, x, m, .. } => {
                let scales = if w.format.is_f16() { "null".into() } else { write("scales", &w.scales) };
                let mins = if w.format.has_min() { write("mins", &w.mins) } else { "null".into() };
                format!(
                    "{{\"id\": {id}, \"kernel\": \"{kernel}\", \"m\": {m}, \"n\": {}, \"k\": {}, \"weights\": {}, \"scales\": {scales}, \"mins\": {mins}, \"x\": {}}}",
                    w.n,
                    w.k,
                    write("weights", &w.words),
                    write("x", &bits(x))
                )
            }
            Input::KvAppend { before: cache, .. } | Input::KvAttend { cache, .. } => {
                let l = cache.layout;
                let common = format!(
                    "\"id\": {id}, \"kernel\": \"{kernel}\", \"op\": \"{}\", \"kv_heads\": {}, \"max_seq\": {}, \"window\": {}, \"len\": {}, \"codes\": {}, \"scales\": {}, \"mins\": {}, \"window_words\": {}",
                    c.spec.op.name(),
                    l.kv_heads,
                    l.max_seq,
                    l.window,
                    cache.len,
                    write("codes", &cache.store.words),
                    write("scales", &cache.store.scales),
                    write("mins", &cache.store.mins),
                    write("window", &cache.window)
                );
                match &c.input {
                    Input::KvAppend { k, v, .. } => {
                        let n = k.len() / (l.kv_heads * l.head_dim) as usize;
                        let mut new = bits(k);
                        new.extend(bits(v));
                        format!("{{{common}, \"n_new\": {n}, \"kv_new\": {}}}", write("kv_new", &new))
                    }
                    Input::KvAttend { q, n_heads, .. } => {
                        format!("{{{common}, \"n_heads\": {n_heads}, \"q\": {}}}", write("q", &bits(q)))
                    }
                    Input::Weights { .. } => unreachable!(),
                }
            }
        };
        entries.push(entry);
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
        for op in Op::ALL.into_iter().filter(|o| !o.is_kv()) {
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
                // dot4 kernels compute with x's int8 codes (FORMAT.md §12).
                let want = reference::matmul(&w, &spec.kernel_activations(&x), m);
                out.push(Case { spec, input: Input::Weights { w, x, m, want } });
            }
        }
    }
    out.extend(kv_cases(&mut runner));
    out
}

/// KV cases: for every KV format and head_dim, one kv-append and one kv-attend with a drawn
/// tier, KV heads, GQA ratio (1, 4 or 8), window (0 or up to 40), cache length (ragged, up to
/// several splits) and new-token count.
fn kv_cases(runner: &mut TestRunner) -> Vec<Case> {
    let tiers = Target::Chrome.info().tiers;
    let draw = (0..tiers.len(), 1usize..=3, 0usize..3, 0u32..=40, 1usize..=300, 1usize..=20, any::<u64>());
    let mut out = Vec::new();
    for spec in
        KernelSpec::default_set(Target::Chrome).into_iter().filter(|s| s.op.is_kv() && s.profile.tier == Tier::Base)
    {
        let (tier, h, gqa, window, len, n_new, seed) = draw.new_tree(runner).unwrap().current();
        let spec = KernelSpec::kv(spec.op, spec.format, spec.head_dim, Target::Chrome, tiers[tier]).unwrap();
        let window = if seed % 3 == 0 { 0 } else { window };
        let d = spec.head_dim as usize;
        let max_seq = (len + n_new).next_multiple_of(2) as u32;
        let layout = KvLayout::new(spec.format, spec.head_dim, h as u32, max_seq, window).unwrap();
        let mut rng = Rng(seed);
        let mut cache = KvCache::new(layout);
        cache.append(&tokens(&mut rng, len, h, d), &tokens(&mut rng, len, h, d)).unwrap();
        let input = if spec.op == Op::KvAppend {
            let (k, v) = (tokens(&mut rng, n_new, h, d), tokens(&mut rng, n_new, h, d));
            let mut after = cache.clone();
            after.append(&k, &v).unwrap();
            Input::KvAppend { before: cache, k, v, after }
        } else {
            let n_heads = h * [1, 4, 8][gqa];
            let q: Vec<f32> = (0..n_heads * d).map(|_| rng.value(1.0)).collect();
            let want = reference::kv_attention(&cache, &q, n_heads);
            Input::KvAttend { cache, q, n_heads, want }
        };
        out.push(Case { spec, input });
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
            let what = format!("{name}: {}", c.describe());
            match o {
                Outcome::Ran(y) => {
                    ran += 1;
                    match check(c, &y, engine.tolerance(c), engine.exact_division()) {
                        Ok(e) => worst = worst.max(e),
                        Err(e) => failures.push(format!("{what}: {e}")),
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
