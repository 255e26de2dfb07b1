//! The quantization codec: quantize, pack, unpack, dequantize. The only implementation of
//! the byte layout in `docs/FORMAT.md`; the reference, the runtime's uploads, the tests and
//! the CLI all go through it.
//!
//! Layout in one sentence: each row of K weights is a run of 32-code blocks; a block of a
//! `bits`-wide format is `bits` u32 words made of bit planes (2→[2], 3→[2,1], 4→[4], 8→[8]);
//! in a p-bit plane, code e sits in byte `e mod 4p` at bit `p·(e div 4p)`, so one mask
//! yields four codes in the four bytes of a word.

use crate::error::{CodecError, SpecError};
use crate::spec::{BLOCK, Format, Scheme};
use half::f16;

/// The bit planes a block of `bits`-wide codes is split into, low bits first.
pub fn planes(bits: u32) -> &'static [u32] {
    match bits {
        2 => &[2],
        3 => &[2, 1],
        4 => &[4],
        8 => &[8],
        _ => &[],
    }
}

/// Packs 32 codes (each `< 2^bits`) into `bits` little-endian u32 words.
pub fn pack_block(bits: u32, codes: &[u8; 32], out: &mut [u32]) {
    debug_assert_eq!(out.len(), bits as usize);
    out.fill(0);
    let mut word0 = 0usize;
    let mut low = 0u32;
    for &p in planes(bits) {
        let bytes = 4 * p as usize;
        for (e, &c) in codes.iter().enumerate() {
            let part = ((c as u32) >> low) & ((1 << p) - 1);
            let byte = e % bytes;
            let shift = 8 * (byte % 4) as u32 + p * (e / bytes) as u32;
            out[word0 + byte / 4] |= part << shift;
        }
        word0 += p as usize;
        low += p;
    }
}

/// Unpacks the 32 codes of one block written by [`pack_block`].
pub fn unpack_block(bits: u32, words: &[u32]) -> [u8; 32] {
    let mut codes = [0u8; 32];
    let mut word0 = 0usize;
    let mut low = 0u32;
    for &p in planes(bits) {
        let bytes = 4 * p as usize;
        for (e, c) in codes.iter_mut().enumerate() {
            let byte = e % bytes;
            let shift = 8 * (byte % 4) as u32 + p * (e / bytes) as u32;
            let part = (words[word0 + byte / 4] >> shift) & ((1 << p) - 1);
            *c |= (part << low) as u8;
        }
        word0 += p as usize;
        low += p;
    }
    codes
}

/// Packs f16 bit patterns two per u32 (element 2i in the low half), padding with zero.
pub fn pack_halves(halves: &[u16]) -> Vec<u32> {
    halves.chunks(2).map(|c| c[0] as u32 | (c.get(1).copied().unwrap_or(0) as u32) << 16).collect()
}

/// The f16 bit pattern at element `i` of a [`pack_halves`] array.
pub fn half_at(words: &[u32], i: usize) -> u16 {
    (words[i / 2] >> (16 * (i % 2))) as u16
}

/// Sets element `i` of a [`pack_halves`] array to the f16 bit pattern `h`.
pub fn set_half(words: &mut [u32], i: usize, h: u16) {
    let shift = 16 * (i % 2);
    words[i / 2] = (words[i / 2] & !(0xffff << shift)) | (h as u32) << shift;
}

/// A weight matrix W[N x K] in one of the formats, as the kernels read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// The format.
    pub format: Format,
    /// Rows.
    pub n: usize,
    /// Columns (the reduction axis).
    pub k: usize,
    /// Packed codes (or f16 pairs for the baseline), row-major, `n·k·bits/32` words.
    pub words: Vec<u32>,
    /// f16 scales, one per (row, group), packed in pairs; empty for the f16 baseline.
    pub scales: Vec<u32>,
    /// f16 mins, as `scales`; empty unless the scheme is asym.
    pub mins: Vec<u32>,
}

/// The smallest f16 not below `v` (round toward +inf), so a scale never shrinks a step.
pub(crate) fn f16_up(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() >= v { h } else { f16::from_bits(next_up_bits(h.to_bits())) }
}

/// The largest f16 not above `v` (round toward −inf), so a min never exceeds the group minimum.
pub(crate) fn f16_down(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() <= v { h } else { f16::from_bits(next_down_bits(h.to_bits())) }
}

fn next_up_bits(b: u16) -> u16 {
    if b == 0x8000 {
        1
    } else if b & 0x8000 != 0 {
        b - 1
    } else {
        b + 1
    }
}

fn next_down_bits(b: u16) -> u16 {
    if b == 0 {
        0x8001
    } else if b & 0x8000 != 0 {
        b + 1
    } else {
        b - 1
    }
}

/// Why one group could not be quantized; [`GroupError::at`] names the row and column.
#[derive(Debug)]
pub(crate) enum GroupError {
    /// The scale overflows f16; the group's range.
    Scale(f32),
    /// The min overflows f16: (index in the group, value).
    Min(usize, f32),
}

impl GroupError {
    fn at(self, row: usize, group: usize, g: usize) -> CodecError {
        match self {
            GroupError::Scale(range) => CodecError::ScaleOverflow { row, group, range },
            GroupError::Min(j, value) => CodecError::F16Overflow { row, col: group * g + j, value },
        }
    }
}

/// `1 / (2^bits − 1)` rounded to f32: asym scales are computed with this product rather than
/// a division, because WGSL allows a division 2.5 ULP of error and a product none.
pub fn inv_max_code(bits: u32) -> f32 {
    1.0 / ((1u32 << bits) - 1) as f32
}

/// Quantizes one group of finite `vals` into `codes` (same length); returns the f16 scale and
/// min (zero for `sym`). The rules of `docs/FORMAT.md` §5, in f32 with IEEE rounding: the
/// WGSL and WASM `kv-append` kernels evaluate exactly these operations in this order.
pub(crate) fn quantize_group(format: Format, vals: &[f32], codes: &mut [u8]) -> Result<(f16, f16), GroupError> {
    let maxq = format.max_code();
    let zero = format.zero_point();
    // Min and max in the order where −0 < +0 (WebAssembly's f32.min/max), so every engine
    // stores the same sign for a zero min: docs/FORMAT.md §5.
    let below = |a: f32, b: f32| a < b || (a == b && a.is_sign_negative() && !b.is_sign_negative());
    let (lo, hi) = vals.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
        (if below(v, a) { v } else { a }, if below(b, v) { v } else { b })
    });
    let (scale, min) = match format.scheme() {
        Scheme::Sym => {
            let amax = lo.abs().max(hi.abs());
            // Levels −(2^(b−1)−1)..2^(b−1)−1 cover ±amax; the most negative code is spare.
            let s = f16_up(amax / (zero - 1).max(1) as f32);
            if s.is_infinite() {
                return Err(GroupError::Scale(amax));
            }
            (s, f16::ZERO)
        }
        Scheme::Asym => {
            let m = f16_down(lo);
            if m.is_infinite() {
                return Err(GroupError::Min(vals.iter().position(|&v| v == lo).unwrap_or(0), lo));
            }
            let s = f16_up((hi - m.to_f32()) * inv_max_code(format.bits()));
            if s.is_infinite() {
                return Err(GroupError::Scale(hi - lo));
            }
            (s, m)
        }
    };
    let sf = scale.to_f32();
    for (c, &v) in codes.iter_mut().zip(vals) {
        let q = if sf == 0.0 {
            zero as f32
        } else {
            match format.scheme() {
                Scheme::Sym => (v / sf).round() + zero as f32,
                // floor(x + 0.5), not round(): WGSL's round() breaks ties to even.
                Scheme::Asym => ((v - min.to_f32()) / sf + 0.5).floor(),
            }
        };
        *c = q.clamp(0.0, maxq as f32) as u8;
    }
    Ok((scale, min))
}

impl Weights {
    /// Round-to-nearest, group-wise quantization of row-major `data` (N x K) along K.
    ///
    /// Guarantees, checked by property tests: every dequantized value is within half a step
    /// (the stored f16 scale) of its input; codes round-trip through the packing exactly.
    /// The f16 baseline stores each value rounded to nearest f16.
    pub fn quantize(format: Format, n: usize, k: usize, data: &[f32]) -> Result<Weights, CodecError> {
        if n == 0 {
            return Err(SpecError::Zero("N").into());
        }
        format.check_k(k as u64)?;
        if data.len() != n * k {
            return Err(CodecError::Length { n, k, expected: n * k, found: data.len() });
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(CodecError::NonFinite { row: i / k, col: i % k, value: data[i] });
        }
        if format.is_f16() {
            let halves: Vec<u16> = data
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let h = f16::from_f32(v);
                    if h.is_infinite() {
                        Err(CodecError::F16Overflow { row: i / k, col: i % k, value: v })
                    } else {
                        Ok(h.to_bits())
                    }
                })
                .collect::<Result<_, _>>()?;
            return Ok(Weights { format, n, k, words: pack_halves(&halves), scales: vec![], mins: vec![] });
        }
        let g = format.group_size() as usize;
        let mut codes = vec![0u8; n * k];
        let mut scales = Vec::with_capacity(n * (k / g));
        let mut mins = Vec::with_capacity(if format.has_min() { n * (k / g) } else { 0 });
        for row in 0..n {
            for gi in 0..k / g {
                let base = row * k + gi * g;
                let (scale, min) = quantize_group(format, &data[base..base + g], &mut codes[base..base + g])
                    .map_err(|e| e.at(row, gi, g))?;
                scales.push(scale.to_bits());
                if format.has_min() {
                    mins.push(min.to_bits());
                }
            }
        }
        Ok(Self::from_codes(format, n, k, &codes, &scales, &mins))
    }

    /// An all-zero matrix (codes, scales and mins 0) of a quantized format: the initial state
    /// of a preallocated KV-cache store.
    pub fn zeros(format: Format, n: usize, k: usize) -> Weights {
        let groups = n * k / format.group_size() as usize;
        Weights {
            format,
            n,
            k,
            words: vec![0; n * k / BLOCK as usize * format.block_words() as usize],
            scales: vec![0; groups.div_ceil(2)],
            mins: if format.has_min() { vec![0; groups.div_ceil(2)] } else { vec![] },
        }
    }

    /// Quantizes `data` (K finite values) into row `row` with the rules of [`Weights::quantize`],
    /// leaving the other rows as they are. Quantized formats only.
    pub fn set_row(&mut self, row: usize, data: &[f32]) -> Result<(), CodecError> {
        assert!(!self.format.is_f16() && row < self.n && data.len() == self.k, "set_row: row or length out of range");
        if let Some(c) = data.iter().position(|v| !v.is_finite()) {
            return Err(CodecError::NonFinite { row, col: c, value: data[c] });
        }
        let g = self.format.group_size() as usize;
        let bw = self.format.block_words() as usize;
        let mut codes = vec![0u8; self.k];
        let groups = self.groups();
        for gi in 0..groups {
            let span = gi * g..(gi + 1) * g;
            let (scale, min) =
                quantize_group(self.format, &data[span.clone()], &mut codes[span]).map_err(|e| e.at(row, gi, g))?;
            set_half(&mut self.scales, row * groups + gi, scale.to_bits());
            if self.format.has_min() {
                set_half(&mut self.mins, row * groups + gi, min.to_bits());
            }
        }
        let first = row * self.k / BLOCK as usize;
        for (b, chunk) in codes.chunks_exact(BLOCK as usize).enumerate() {
            let at = (first + b) * bw;
            pack_block(self.format.bits(), chunk.try_into().expect("32 codes"), &mut self.words[at..at + bw]);
        }
        Ok(())
    }

    /// Packs already-chosen codes, scales and mins (f16 bit patterns).
    pub fn from_codes(format: Format, n: usize, k: usize, codes: &[u8], scales: &[u16], mins: &[u16]) -> Weights {
        let bw = format.block_words() as usize;
        let mut words = vec![0u32; n * k / BLOCK as usize * bw];
        for (b, chunk) in codes.chunks_exact(BLOCK as usize).enumerate() {
            pack_block(format.bits(), chunk.try_into().expect("32 codes"), &mut words[b * bw..(b + 1) * bw]);
        }
        Weights { format, n, k, words, scales: pack_halves(scales), mins: pack_halves(mins) }
    }

    /// The code of weight `[row, col]` (quantized formats).
    pub fn code(&self, row: usize, col: usize) -> u32 {
        let bw = self.format.block_words() as usize;
        let block = (row * self.k + col) / BLOCK as usize;
        unpack_block(self.format.bits(), &self.words[block * bw..(block + 1) * bw])[col % BLOCK as usize] as u32
    }

    /// All codes, row-major.
    pub fn codes(&self) -> Vec<u8> {
        let bw = self.format.block_words() as usize;
        self.words.chunks_exact(bw).flat_map(|b| unpack_block(self.format.bits(), b)).collect()
    }

    /// The f16 scale of `[row, group]`, as f32 (exact).
    pub fn scale(&self, row: usize, group: usize) -> f32 {
        f16::from_bits(half_at(&self.scales, row * self.groups() + group)).to_f32()
    }

    /// The f16 min of `[row, group]`, as f32; 0 for symmetric formats.
    pub fn min(&self, row: usize, group: usize) -> f32 {
        if self.format.has_min() {
            f16::from_bits(half_at(&self.mins, row * self.groups() + group)).to_f32()
        } else {
            0.0
        }
    }

    /// Groups per row.
    pub fn groups(&self) -> usize {
        self.k / self.format.group_size() as usize
    }

    /// The dequantized value of `[row, col]`, computed as `docs/FORMAT.md` defines it (in f32).
    pub fn value(&self, row: usize, col: usize) -> f32 {
        if self.format.is_f16() {
            return f16::from_bits(half_at(&self.words, row * self.k + col)).to_f32();
        }
        let g = col / self.format.group_size() as usize;
        let q = self.code(row, col) as i32;
        match self.format.scheme() {
            Scheme::Sym => self.scale(row, g) * (q - self.format.zero_point() as i32) as f32,
            Scheme::Asym => self.scale(row, g) * q as f32 + self.min(row, g),
        }
    }

    /// The whole matrix dequantized, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        if self.format.is_f16() {
            return (0..self.n * self.k).map(|i| f16::from_bits(half_at(&self.words, i)).to_f32()).collect();
        }
        let codes = self.codes();
        let z = self.format.zero_point() as i32;
        (0..self.n * self.k)
            .map(|i| {
                let (row, col) = (i / self.k, i % self.k);
                let g = col / self.format.group_size() as usize;
                let q = codes[i] as i32;
                match self.format.scheme() {
                    Scheme::Sym => self.scale(row, g) * (q - z) as f32,
                    Scheme::Asym => self.scale(row, g) * q as f32 + self.min(row, g),
                }
            })
            .collect()
    }

    /// Bytes of weights + scales + mins as stored.
    pub fn bytes(&self) -> usize {
        4 * (self.words.len() + self.scales.len() + self.mins.len())
    }
}

/// Activations quantized to int8 per 32-element block, as the `dot4` tiers' matvec reads
/// them (`docs/FORMAT.md` §12). Block `b` holds `codes[32b .. 32b + 32]` and `scales[b]`, and
/// element `i` stands for `codes[i] · scales[b]` exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations8 {
    /// One signed code per activation, in `−127 ..= 127`.
    pub codes: Vec<i8>,
    /// One scale per block: a power of two, or 0 for a block quantized to zeros.
    pub scales: Vec<f32>,
}

/// Below this largest magnitude a block quantizes to zeros (`docs/FORMAT.md` §12): it keeps
/// every scale and its inverse normal f32 numbers, so the products below are exact on every
/// engine, including GPUs that flush subnormals.
pub const X8_TINY: f32 = 7.888_609e-31; // 2^-100

/// The scale exponent `e` of a block whose largest magnitude is `amax ≥ X8_TINY`: the
/// smallest integer with `amax · 2^−e ≤ 127`. Read from the f32 exponent field, then one
/// exact comparison, so every engine finds the same `e` (WGSL's log2 is approximate).
pub fn x8_exponent(amax: f32) -> i32 {
    let e = ((amax.to_bits() >> 23) & 0xff) as i32 - 127 - 6;
    if amax * pow2(-e) > 127.0 { e + 1 } else { e }
}

/// `2^e` for `−126 ≤ e ≤ 127`, built from its bits (exact).
fn pow2(e: i32) -> f32 {
    f32::from_bits(((127 + e) as u32) << 23)
}

impl Activations8 {
    /// Quantizes finite activations (a multiple of 32 of them) by the rules of
    /// `docs/FORMAT.md` §12: per block `q = round_ties_even(x · 2^−e)`, scale `2^e`. Every
    /// step is exact in f32, so the WGSL pre-pass and the WASM kernels produce these codes bit
    /// for bit.
    pub fn quantize(x: &[f32]) -> Activations8 {
        assert!(x.len().is_multiple_of(BLOCK as usize), "activations come in 32-element blocks");
        let mut codes = Vec::with_capacity(x.len());
        let mut scales = Vec::with_capacity(x.len() / BLOCK as usize);
        for block in x.chunks_exact(BLOCK as usize) {
            let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            if amax >= X8_TINY {
                let e = x8_exponent(amax);
                let inv = pow2(-e);
                codes.extend(block.iter().map(|&v| (v * inv).round_ties_even() as i8));
                scales.push(pow2(e));
            } else {
                codes.extend(std::iter::repeat_n(0, block.len()));
                scales.push(0.0);
            }
        }
        Activations8 { codes, scales }
    }

    /// The values the codes stand for (exact in f32).
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes.iter().enumerate().map(|(i, &q)| q as f32 * self.scales[i / BLOCK as usize]).collect()
    }

    /// The sum of each block's codes (what the kernels use for zero points and mins).
    pub fn block_sums(&self) -> Vec<i32> {
        self.codes.chunks_exact(BLOCK as usize).map(|b| b.iter().map(|&q| q as i32).sum()).collect()
    }
}
