//! The quantized KV cache (`docs/FORMAT.md` §11): its layout, the append rule every engine
//! follows, and the memory arithmetic behind `shadergen kv-plan`.
//!
//! One layer's cache is a single quantized matrix (the weight format of §2–5, always `asym`)
//! of `2·H·S` rows and `D` columns (keys of every KV head, then values), plus an f16
//! residual window of the `R` most recent tokens per head and tensor. Reusing the weight
//! format means the codec, the packing and the decoders are the ones matvec already uses.
//!
//! The append rule, in one sentence: every K/V value is first rounded to f16; the last
//! `min(len, R)` tokens live in window slot `t mod R`; every older token has been quantized
//! (from its f16 value) into store row `(kv·H + h)·S + t`. So the cache's bytes depend only on
//! the tokens and `R`, not on how appends were batched.

use crate::codec::{Weights, half_at, set_half};
use crate::error::{KvError, SpecError};
use crate::spec::{Format, Scheme};
use half::f16;

/// Head dimensions the kernels are generated for.
pub const HEAD_DIMS: [u32; 2] = [64, 128];

/// Largest supported ratio of query heads to KV heads (grouped-query attention).
pub const MAX_GQA: u32 = 8;

/// Checks that `format` and `head_dim` make a KV-cache format: quantized, `asym`
/// (scale and min per group, as KIVI), head_dim 64 or 128, group ≤ head_dim.
pub fn check_format(format: Format, head_dim: u32) -> Result<(), SpecError> {
    if !HEAD_DIMS.contains(&head_dim) {
        return Err(SpecError::HeadDim(head_dim));
    }
    if format.is_f16() {
        return Err(SpecError::KvFormat(
            "the f16 baseline (bits 16) is not a KV-cache format; use 2, 3, 4 or 8".into(),
        ));
    }
    if format.scheme() != Scheme::Asym {
        return Err(SpecError::KvFormat("KV caches store a scale and a min per group: use scheme asym".into()));
    }
    if format.group_size() > head_dim {
        return Err(SpecError::KvFormat(format!(
            "group {} is larger than head_dim {head_dim}: groups run along one token's head vector",
            format.group_size()
        )));
    }
    Ok(())
}

/// The shape of one layer's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// Codes, group and scheme (always asym).
    pub format: Format,
    /// D: elements per head vector.
    pub head_dim: u32,
    /// H: KV heads.
    pub kv_heads: u32,
    /// S: preallocated tokens.
    pub max_seq: u32,
    /// R: f16 residual-window tokens (0 = off).
    pub window: u32,
}

impl KvLayout {
    /// A checked layout.
    pub fn new(format: Format, head_dim: u32, kv_heads: u32, max_seq: u32, window: u32) -> Result<KvLayout, SpecError> {
        check_format(format, head_dim)?;
        if kv_heads == 0 {
            return Err(SpecError::Zero("kv_heads"));
        }
        if max_seq == 0 {
            return Err(SpecError::Zero("max_seq"));
        }
        if !max_seq.is_multiple_of(2) {
            return Err(SpecError::KvFormat(format!(
                "max_seq {max_seq} must be even (so no two heads share a word of scales)"
            )));
        }
        if window > max_seq {
            return Err(SpecError::KvFormat(format!("window {window} is larger than max_seq {max_seq}")));
        }
        Ok(KvLayout { format, head_dim, kv_heads, max_seq, window })
    }

    /// Rows of the store: keys then values of every head, `max_seq` each.
    pub fn store_rows(&self) -> usize {
        2 * self.kv_heads as usize * self.max_seq as usize
    }

    /// Store row of token `t` of head `h` (`kv` 0 = keys, 1 = values).
    pub fn row(&self, kv: usize, h: usize, t: usize) -> usize {
        (kv * self.kv_heads as usize + h) * self.max_seq as usize + t
    }

    /// Element index (f16 units) of `[kv, h, slot, d]` in the window array.
    pub fn window_index(&self, kv: usize, h: usize, slot: usize, d: usize) -> usize {
        ((kv * self.kv_heads as usize + h) * self.window as usize + slot) * self.head_dim as usize + d
    }

    /// u32 words of the window array (f16 pairs); at least one, as WebGPU buffers cannot be empty.
    pub fn window_words(&self) -> usize {
        (2 * self.kv_heads as usize * self.window as usize * self.head_dim as usize).div_ceil(2).max(1)
    }

    /// Tokens quantized into the store when the cache holds `len` tokens.
    pub fn quantized_len(&self, len: usize) -> usize {
        len - len.min(self.window as usize)
    }

    /// Checks new tokens for an append (`k`, `v`: `[n][H][D]` f32, every value finite in f16)
    /// and returns `n`. Every backend calls this before appending.
    pub fn check_new(&self, k: &[f32], v: &[f32]) -> Result<usize, KvError> {
        let (h_n, d_n) = (self.kv_heads as usize, self.head_dim as usize);
        let per_token = h_n * d_n;
        let n = k.len() / per_token;
        for (what, data) in [("k", k), ("v", v)] {
            if data.len() != n * per_token || (what == "v" && v.len() != k.len()) {
                return Err(KvError::Length {
                    what,
                    expected: n * per_token,
                    found: data.len(),
                    shape: format!("new tokens x kv_heads {h_n} x head_dim {d_n}"),
                });
            }
        }
        to_f16("k", k, h_n, d_n)?;
        to_f16("v", v, h_n, d_n)?;
        Ok(n)
    }

    /// The `KvParams` uniform (`docs/FORMAT.md` §11.5, the order of `wgsl::KV_PARAMS`) for a
    /// kv-append of `n_new` tokens to a cache of `len` (`n_heads`, `split_len`, `n_splits` 0), or
    /// a kv-attend over `len` tokens (`n_new` 0). Every host builds it here.
    pub fn params(&self, len: u32, n_new: u32, n_heads: u32, split_len: u32, n_splits: u32) -> [u32; 8] {
        [self.kv_heads, self.max_seq, self.window, len, n_new, n_heads, split_len, n_splits]
    }

    /// Exact bytes, for `kv-plan` and the README's memory report.
    pub fn memory(&self) -> KvMemory {
        let (h, d, g) = (self.kv_heads as u64, self.head_dim as u64, self.format.group_size() as u64);
        // Per token and head and tensor: D codes, one f16 scale and one f16 min per group.
        let per_token = 2 * h * (d * self.format.bits() as u64 / 8 + 4 * d / g);
        KvMemory { per_token, window: 2 * h * self.window as u64 * d * 2, fp16_per_token: 2 * h * d * 2 }
    }
}

/// Bytes of one layer's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvMemory {
    /// Store bytes per token (codes + scales + mins of K and V, all heads).
    pub per_token: u64,
    /// The f16 residual window, a fixed cost.
    pub window: u64,
    /// An unquantized f16 cache's bytes per token, for comparison.
    pub fp16_per_token: u64,
}

/// One layer's cache contents, as the kernels read and write them.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCache {
    /// Shape.
    pub layout: KvLayout,
    /// Tokens held.
    pub len: usize,
    /// The quantized store: `2·H·S` rows of `D` (rows of tokens in the window hold stale data).
    pub store: Weights,
    /// The residual window: f16 pairs, `[2][H][R][D]`.
    pub window: Vec<u32>,
}

impl KvCache {
    /// An empty cache (every byte zero).
    pub fn new(layout: KvLayout) -> KvCache {
        KvCache {
            layout,
            len: 0,
            store: Weights::zeros(layout.format, layout.store_rows(), layout.head_dim as usize),
            window: vec![0; layout.window_words()],
        }
    }

    /// Appends `n` tokens: `k` and `v` are `[n][H][D]` f32. Follows §11's rule exactly
    /// (round to f16; flush tokens leaving the window; quantize tokens that skip it).
    pub fn append(&mut self, k: &[f32], v: &[f32]) -> Result<(), KvError> {
        let l = self.layout;
        let (h_n, d_n, r) = (l.kv_heads as usize, l.head_dim as usize, l.window as usize);
        let n = l.check_new(k, v)?;
        if n == 0 {
            return Ok(());
        }
        let (p, end) = (self.len, self.len + n);
        if end > l.max_seq as usize {
            return Err(KvError::Full { len: p, new: n, max_seq: l.max_seq as usize });
        }
        let halves: [Vec<u16>; 2] = [to_f16("k", k, h_n, d_n)?, to_f16("v", v, h_n, d_n)?];
        let (q_old, q_new) = (l.quantized_len(p), l.quantized_len(end));
        let mut row = vec![0f32; d_n];
        for (kv, new) in halves.iter().enumerate() {
            for h in 0..h_n {
                // Flush first: a slot is read before any new token may take it.
                for t in q_old..q_new {
                    for (d, x) in row.iter_mut().enumerate() {
                        let bits = if t < p {
                            half_at(&self.window, l.window_index(kv, h, t % r, d))
                        } else {
                            new[((t - p) * h_n + h) * d_n + d]
                        };
                        *x = f16::from_bits(bits).to_f32();
                    }
                    self.store.set_row(l.row(kv, h, t), &row).expect("f16 values always quantize");
                }
                for t in q_new.max(p)..end {
                    for d in 0..d_n {
                        set_half(&mut self.window, l.window_index(kv, h, t % r, d), new[((t - p) * h_n + h) * d_n + d]);
                    }
                }
            }
        }
        self.len = end;
        Ok(())
    }

    /// The value the kernels see at `[kv, h, t, d]` (dequantized, or the window's f16).
    pub fn element(&self, kv: usize, h: usize, t: usize, d: usize) -> f32 {
        let l = &self.layout;
        assert!(t < self.len, "token {t} is not in the cache (len {})", self.len);
        if t < l.quantized_len(self.len) {
            self.store.value(l.row(kv, h, t), d)
        } else {
            f16::from_bits(half_at(&self.window, l.window_index(kv, h, t % l.window as usize, d))).to_f32()
        }
    }

    /// Whether token `t` is read from the store (and is quantized).
    pub fn is_quantized(&self, t: usize) -> bool {
        t < self.layout.quantized_len(self.len)
    }
}

/// Rounds new K or V values to f16 bit patterns, refusing what f16 cannot hold.
fn to_f16(what: &'static str, data: &[f32], h_n: usize, d_n: usize) -> Result<Vec<u16>, KvError> {
    data.iter()
        .enumerate()
        .map(|(i, &x)| {
            let h = f16::from_f32(x);
            if h.is_finite() {
                Ok(h.to_bits())
            } else {
                Err(KvError::Value { what, token: i / (h_n * d_n), head: i / d_n % h_n, dim: i % d_n, value: x })
            }
        })
        .collect()
}

/// The workgroups kv-attend's split pass aims at: `kv_heads · splits` is about this many.
/// Measured on an H100 at 8k and 32k tokens (bench/NOTES.md, session 8): 512 workgroups of 128
/// invocations beat 1024 by 4-13% at every width (fewer splits: less merging per token and a
/// smaller combine pass), and 256 took 17-56% longer (too few in flight to hide latency).
pub const SPLIT_WORKGROUPS: u32 = 512;

/// The split length the runtimes use for kv-attend over `len` tokens: enough splits that
/// `kv_heads · splits` is about [`SPLIT_WORKGROUPS`], each a multiple of `chunk` tokens.
/// Written into the manifest as the same rule.
pub fn default_split_len(len: u32, kv_heads: u32, chunk: u32) -> u32 {
    let target_splits = SPLIT_WORKGROUPS.div_ceil(kv_heads.max(1));
    chunk * len.div_ceil(target_splits).div_ceil(chunk).max(1)
}

/// The KV-cache format of `bits` and `group` for `head_dim`, from the values a user types
/// (`shadergen kv-plan`): head_dim 64 or 128, bits 2, 3, 4 or 8, group 32, 64 or 128 with
/// group ≤ head_dim; the scheme is always asym.
pub fn format_of(bits: u32, group: u32, head_dim: u32) -> Result<Format, SpecError> {
    if !HEAD_DIMS.contains(&head_dim) {
        return Err(SpecError::HeadDim(head_dim));
    }
    if !Format::QUANT_BITS.contains(&bits) {
        return Err(SpecError::KvFormat(format!(
            "unsupported bits `{bits}`: expected 2, 3, 4 or 8 (a KV cache is quantized; \
             the f16 cache it is compared with is bits 16)"
        )));
    }
    let format = Format::quant(bits, group, Scheme::Asym)?;
    check_format(format, head_dim)?;
    Ok(format)
}

/// How many tokens the caches of `layers` layers hold in a memory budget, and how many an
/// unquantized f16 cache of the same shape would (`shadergen kv-plan`). Every byte count is
/// [`KvLayout::memory`] summed over the layers; only the token counts round (down, to whole
/// tokens that fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvPlan {
    /// The cache format (asym).
    pub format: Format,
    /// D.
    pub head_dim: u32,
    /// H.
    pub kv_heads: u32,
    /// R: f16 window tokens per head.
    pub window: u32,
    /// Layers, each with a cache of this shape.
    pub layers: u32,
    /// The budget, bytes.
    pub budget: u64,
    /// Store bytes per token, all layers (codes + scales + mins of K and V).
    pub per_token_bytes: u64,
    /// f16 window bytes, all layers: a fixed cost.
    pub window_bytes: u64,
    /// An f16 cache's bytes per token, all layers.
    pub fp16_per_token_bytes: u64,
    /// The longest cache that fits: `(budget − window_bytes) / per_token_bytes` tokens,
    /// rounded down to even (§11: `max_seq` is even); at least 2 and at least the window.
    pub max_seq: u64,
    /// Tokens an f16 cache of the same layers, heads and head_dim holds:
    /// `budget / fp16_per_token_bytes`.
    pub fp16_max_seq: u64,
}

impl KvPlan {
    /// Plans `layers` layers of `kv_heads` heads of `head_dim` in `format` with an f16 window
    /// of `window` tokens in `budget` bytes. Fails when a value is invalid or the budget
    /// holds no valid cache (not even `max_seq` = 2, or no `max_seq` ≥ the window).
    pub fn new(
        format: Format,
        head_dim: u32,
        kv_heads: u32,
        window: u32,
        layers: u32,
        budget: u64,
    ) -> Result<KvPlan, KvPlanError> {
        if layers == 0 {
            return Err(SpecError::Zero("layers").into());
        }
        // memory() is linear in the window: take one window token's bytes and multiply in
        // u128 (2·H·R·D·2 can pass u64 for absurd H and R).
        let unit = KvLayout::new(format, head_dim, kv_heads, 2, 1)?.memory();
        let (l, r) = (layers as u128, window as u128);
        let per_token = l * unit.per_token as u128;
        let window_bytes = l * r * unit.window as u128;
        let fp16_per_token = l * unit.fp16_per_token as u128;
        let min_seq = (r + r % 2).max(2);
        let needed = window_bytes + min_seq * per_token;
        if (budget as u128) < needed {
            return Err(KvPlanError::TooSmall { budget, needed, min_seq, window, window_bytes, layers });
        }
        let fit = (budget as u128 - window_bytes) / per_token;
        Ok(KvPlan {
            format,
            head_dim,
            kv_heads,
            window,
            layers,
            budget,
            // Each is at most the budget (checked above), so fits u64.
            per_token_bytes: per_token as u64,
            window_bytes: window_bytes as u64,
            fp16_per_token_bytes: fp16_per_token.min(u64::MAX as u128) as u64,
            max_seq: (fit - fit % 2) as u64,
            fp16_max_seq: (budget as u128 / fp16_per_token) as u64,
        })
    }

    /// Bytes the planned caches take: `window_bytes + max_seq · per_token_bytes` (≤ the budget).
    pub fn used_bytes(&self) -> u64 {
        self.window_bytes + self.max_seq * self.per_token_bytes
    }

    /// `max_seq / fp16_max_seq`: how many times the f16 cache's context the quantized cache
    /// holds in the same budget; `None` when an f16 cache holds no token at all.
    pub fn multiplier(&self) -> Option<f64> {
        (self.fp16_max_seq > 0).then(|| self.max_seq as f64 / self.fp16_max_seq as f64)
    }

    /// `fp16_per_token_bytes / per_token_bytes`, which is `16 / (bits + 32 / group)`: the
    /// multiplier a budget tends to as it grows (the window's fixed cost amortised).
    pub fn asymptotic_ratio(&self) -> f64 {
        self.fp16_per_token_bytes as f64 / self.per_token_bytes as f64
    }
}

/// Why [`KvPlan::new`] has no plan.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KvPlanError {
    /// An invalid format, head_dim, head count or layer count.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The budget is below the smallest valid cache.
    #[error("{}", too_small(*.budget, *.needed, *.min_seq, *.window, *.window_bytes, *.layers))]
    TooSmall {
        /// The budget, bytes.
        budget: u64,
        /// Bytes of the smallest cache: the window plus `min_seq` tokens.
        needed: u128,
        /// The smallest `max_seq`: 2, or the window rounded up to even.
        min_seq: u128,
        /// The window, tokens.
        window: u32,
        /// The window's bytes, all layers.
        window_bytes: u128,
        /// Layers.
        layers: u32,
    },
}

fn too_small(budget: u64, needed: u128, min_seq: u128, window: u32, window_bytes: u128, layers: u32) -> String {
    let layers = if layers == 1 { "1 layer".to_string() } else { format!("{layers} layers") };
    if window == 0 {
        format!(
            "a budget of {budget} bytes holds no cache: the smallest ({layers}, max_seq {min_seq}) takes {needed} bytes"
        )
    } else {
        format!(
            "a budget of {budget} bytes holds no cache with a window of {window} tokens: the f16 window alone takes \
             {window_bytes} bytes over {layers}, and the smallest cache around it (max_seq {min_seq}, as the window \
             is at most max_seq) takes {needed} bytes"
        )
    }
}
