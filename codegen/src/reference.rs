//! The scalar reference: the oracle every engine is compared with.
//!
//! It computes in f64 from the dequantized weights (`Weights::dequantize`, exactly the
//! values `docs/FORMAT.md` defines), so its own rounding is negligible next to an f32
//! kernel's. Alongside each output it returns a magnitude: the sum of the absolute values
//! of every term a kernel may add up in any order (weights split into `scale·q` and `min`
//! parts as the asymmetric kernels compute them). A kernel passes when
//! `|got − want| ≤ tolerance · magnitude + f32::MIN_POSITIVE`, with the tolerance its tier
//! states ([`crate::profile::Tier::tolerance`]).

use crate::codec::Weights;
use crate::spec::Scheme;

/// Reference outputs with their magnitudes.
#[derive(Debug, Clone)]
pub struct Check {
    /// Outputs, row-major (M x N).
    pub want: Vec<f64>,
    /// Σ |term| for each output.
    pub magnitude: Vec<f64>,
}

/// The first output that differs by more than allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Flat index into the output.
    pub index: usize,
    /// What the engine returned.
    pub got: f32,
    /// The reference value.
    pub want: f64,
    /// The allowed absolute error there.
    pub allowed: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "output[{}] = {} but the reference is {} (allowed error {:e})",
            self.index, self.got, self.want, self.allowed
        )
    }
}

impl Check {
    /// Compares engine output with the reference at relative `tolerance`.
    pub fn compare(&self, got: &[f32], tolerance: f64) -> Result<(), Mismatch> {
        if got.len() != self.want.len() {
            return Err(Mismatch {
                index: got.len().min(self.want.len()),
                got: f32::NAN,
                want: f64::NAN,
                allowed: 0.0,
            });
        }
        for (i, (&g, (&w, &m))) in got.iter().zip(self.want.iter().zip(&self.magnitude)).enumerate() {
            let allowed = tolerance * m + f32::MIN_POSITIVE as f64;
            // NaN compares false, so a NaN output fails too.
            let within = (g as f64 - w).abs() <= allowed;
            if !within {
                return Err(Mismatch { index: i, got: g, want: w, allowed });
            }
        }
        Ok(())
    }
}

impl Check {
    /// The largest error relative to the magnitude, over all outputs: what a tolerance must
    /// cover. Reported by the tests so a loose tolerance is visible.
    pub fn worst_relative_error(&self, got: &[f32]) -> f64 {
        got.iter()
            .zip(self.want.iter().zip(&self.magnitude))
            .map(|(&g, (&w, &m))| (g as f64 - w).abs() / m.max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max)
    }
}

/// `Y[M x N] = X[M x K] · Wᵀ` (matvec is `m = 1`).
pub fn matmul(w: &Weights, x: &[f32], m: usize) -> Check {
    assert_eq!(x.len(), m * w.k, "x must be M x K");
    let deq = w.dequantize();
    // Per-element magnitude of the parts a kernel adds: |scale·(q−z)| or |scale·q| + |min|.
    let mag_w: Vec<f64> = if w.format.is_f16() {
        deq.iter().map(|v| v.abs() as f64).collect()
    } else {
        let codes = w.codes();
        let z = w.format.zero_point() as f64;
        let g = w.format.group_size() as usize;
        (0..w.n * w.k)
            .map(|i| {
                let (row, col) = (i / w.k, i % w.k);
                let s = w.scale(row, col / g).abs() as f64;
                match w.format.scheme() {
                    Scheme::Sym => s * (codes[i] as f64 - z).abs(),
                    Scheme::Asym => s * codes[i] as f64 + w.min(row, col / g).abs() as f64,
                }
            })
            .collect()
    };
    let mut want = vec![0.0; m * w.n];
    let mut magnitude = vec![0.0; m * w.n];
    for r in 0..m {
        let xr = &x[r * w.k..(r + 1) * w.k];
        for n in 0..w.n {
            let wr = &deq[n * w.k..(n + 1) * w.k];
            let mr = &mag_w[n * w.k..(n + 1) * w.k];
            let (mut acc, mut mag) = (0.0f64, 0.0f64);
            for k in 0..w.k {
                acc += wr[k] as f64 * xr[k] as f64;
                mag += mr[k] * (xr[k] as f64).abs();
            }
            want[r * w.n + n] = acc;
            magnitude[r * w.n + n] = mag;
        }
    }
    Check { want, magnitude }
}

/// `y[N] = W · x`.
pub fn matvec(w: &Weights, x: &[f32]) -> Check {
    matmul(w, x, 1)
}

/// Decode attention (`docs/FORMAT.md` §11.4) in f64: `n_heads` query heads `q`
/// (`[n_heads][D]`) over `len` tokens of `kv_heads` heads, whose key and value elements
/// `key(h, t, d)` and `value(h, t, d)` are given as the kernels see them. Returns
/// `[n_heads][D]` outputs and their magnitudes
/// `Σ_t p·|V|·(1 + |score − max| + Σ_d |q·K|/√D)`: an f32 kernel's error in a score moves its
/// weight by that score's own rounding, scaled by the exponent.
pub fn attention(
    n_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    q: &[f32],
    key: impl Fn(usize, usize, usize) -> f32,
    value: impl Fn(usize, usize, usize) -> f32,
) -> Check {
    assert!(len > 0 && n_heads.is_multiple_of(kv_heads) && q.len() == n_heads * head_dim, "attention: bad shape");
    let g = n_heads / kv_heads;
    let d_n = head_dim;
    let inv = 1.0 / (d_n as f64).sqrt();
    let mut want = vec![0.0; n_heads * d_n];
    let mut magnitude = vec![0.0; n_heads * d_n];
    for j in 0..n_heads {
        let h = j / g;
        let qj = &q[j * d_n..(j + 1) * d_n];
        let mut scores = Vec::with_capacity(len);
        let mut abs = Vec::with_capacity(len);
        for t in 0..len {
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for (d, &x) in qj.iter().enumerate() {
                let k = key(h, t, d) as f64;
                s += x as f64 * k;
                a += (x as f64 * k).abs();
            }
            scores.push(s * inv);
            abs.push(a * inv);
        }
        let mx = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
        let sum: f64 = e.iter().sum();
        for t in 0..len {
            let p = e[t] / sum;
            let weight = p * (1.0 + (scores[t] - mx).abs() + abs[t]);
            for d in 0..d_n {
                let v = value(h, t, d) as f64;
                want[j * d_n + d] += p * v;
                magnitude[j * d_n + d] += weight * v.abs();
            }
        }
    }
    Check { want, magnitude }
}

/// [`attention`] over a quantized cache, as every engine's kv-attend must compute it.
pub fn kv_attention(cache: &crate::kv::KvCache, q: &[f32], n_heads: usize) -> Check {
    let l = &cache.layout;
    attention(
        n_heads,
        l.kv_heads as usize,
        l.head_dim as usize,
        cache.len,
        q,
        |h, t, d| cache.element(0, h, t, d),
        |h, t, d| cache.element(1, h, t, d),
    )
}
