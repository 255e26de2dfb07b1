//! The KV-cache accuracy report (README, "KV cache accuracy"): attention output through each
//! quantized cache format against unquantized f32 attention on the same tokens.
//!
//!     cargo run --release -p shadergen-codegen --example kv_accuracy
//!
//! Both sides use the f64 reference (`reference::attention`), so the numbers measure the
//! format (quantization and the f16 window), not an engine; every engine matches that
//! reference within 1e-5 (runtime tests). Data: 8 KV heads, 32 query heads (GQA 4),
//! head_dim 128, 2048 tokens; q, k, v standard normal ("random"), and the same with 4 of the
//! 128 key channels scaled by 20 in every head ("outliers", the pattern real models' keys
//! show). Error: ‖out − out_f32‖₂ / ‖out_f32‖₂ over all heads; and the cosine similarity.

use codegen::kv::{KvCache, KvLayout};
use codegen::{Format, Scheme, reference};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f32 {
        ((-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()) as f32
    }
}

const H: usize = 8;
const HEADS: usize = 32;
const D: usize = 128;
const LEN: usize = 2048;

struct Data {
    k: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
}

fn data(seed: u64, outliers: bool) -> Data {
    let mut rng = Rng(seed);
    let mut k: Vec<f32> = (0..LEN * H * D).map(|_| rng.normal()).collect();
    if outliers {
        for (i, x) in k.iter_mut().enumerate() {
            if [5, 37, 70, 101].contains(&(i % D)) {
                *x *= 20.0;
            }
        }
    }
    let v = (0..LEN * H * D).map(|_| rng.normal()).collect();
    let q = (0..HEADS * D).map(|_| rng.normal()).collect();
    Data { k, v, q }
}

/// (relative L2 error, cosine similarity) of `got` against `want`.
fn error(got: &[f64], want: &[f64]) -> (f64, f64) {
    let (mut diff, mut norm, mut dot, mut norm_g) = (0.0, 0.0, 0.0, 0.0);
    for (g, w) in got.iter().zip(want) {
        diff += (g - w) * (g - w);
        norm += w * w;
        dot += g * w;
        norm_g += g * g;
    }
    ((diff / norm).sqrt(), dot / (norm * norm_g).sqrt())
}

fn main() {
    let sets = [("random", data(1, false)), ("outliers", data(2, true))];
    let exact: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, d)| {
            let (k, v) = (&d.k, &d.v);
            reference::attention(
                HEADS,
                H,
                D,
                LEN,
                &d.q,
                |h, t, j| k[(t * H + h) * D + j],
                |h, t, j| v[(t * H + h) * D + j],
            )
            .want
        })
        .collect();
    println!("KV cache accuracy: attention output vs unquantized f32 attention");
    println!("({H} KV heads, {HEADS} query heads, head_dim {D}, {LEN} tokens; relative L2 error, cosine similarity)\n");
    println!(
        "| bits | group | window | bits/element | random: error | random: cosine | outliers: error | outliers: cosine |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for bits in Format::QUANT_BITS {
        for group in [32, 128] {
            for window in [0u32, 128] {
                let format = Format::quant(bits, group, Scheme::Asym).unwrap();
                let layout = KvLayout::new(format, D as u32, H as u32, LEN as u32, window).unwrap();
                let per_element = layout.memory().per_token as f64 * 8.0 / (2 * H * D) as f64;
                let mut cells = Vec::new();
                for ((_, d), want) in sets.iter().zip(&exact) {
                    let mut cache = KvCache::new(layout);
                    cache.append(&d.k, &d.v).expect("normal data fits f16");
                    let got = reference::kv_attention(&cache, &d.q, HEADS).want;
                    let (e, c) = error(&got, want);
                    cells.push(format!("{e:.4} | {c:.5}"));
                }
                println!("| {bits} | {group} | {window} | {per_element:.2} | {} |", cells.join(" | "));
            }
        }
    }
    // The f16 window alone (every token kept in f16) bounds what quantization can reach.
    let cells: Vec<String> = sets
        .iter()
        .zip(&exact)
        .map(|((_, d), want)| {
            let f16 = |x: &[f32]| x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect::<Vec<_>>();
            let (k, v) = (f16(&d.k), f16(&d.v));
            let at = |x: &[f32], h: usize, t: usize, j: usize| x[(t * H + h) * D + j];
            let got =
                reference::attention(HEADS, H, D, LEN, &d.q, |h, t, j| at(&k, h, t, j), |h, t, j| at(&v, h, t, j)).want;
            let (e, c) = error(&got, want);
            format!("{e:.4} | {c:.5}")
        })
        .collect();
    println!("| f16 | - | - | 16.00 | {} |", cells.join(" | "));
}
