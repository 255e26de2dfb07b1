// A small reference of the KV cache (docs/FORMAT.md §11), written from the document's text for
// tests/node/shadergen-mjs.test.mjs: what a cache's bytes must hold after a series of appends
// (§11.2, §11.3, with §5's asym rule in f32, every operation rounded once) and the attention
// of §11.4 in f64 over the bytes a kernel reads. Weight-format pieces come from format.mjs.

import { codeAt, f16ToNumber } from './format.mjs';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f16 bits of the f32 value `x`, rounded to nearest, ties to even (§11.3 step 1). */
export function f16Bits(x) {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 2 ** (shift - 1);
    let r = Math.floor(mant / 2 ** shift);
    const rest = mant - r * 2 ** shift;
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && out & 1)) out++; // a carry into the exponent is right
  return sign | out;
}

/** The smallest f16 (bits) not below x ≥ 0. */
function f16Up(x) {
  const h = f16Bits(x);
  return f16ToNumber(h) >= x ? h : h + 1;
}

// −0 orders below +0 (§5).
const below = (a, b) => a < b || (a === 0 && b === 0 && Object.is(a, -0) && !Object.is(b, -0));

/**
 * §11.3 step 2 for one group of f16 bit patterns: `{ scale, min, codes, alt }`, where
 * `alt[i]` is the other code a GPU's inexact division may pick (−1 when there is none).
 */
export function quantizeGroup(halves, bits) {
  const values = halves.map(f16ToNumber);
  let lo = 0;
  let hi = 0;
  for (let i = 1; i < values.length; i++) {
    if (below(values[i], values[lo])) lo = i;
    if (below(values[hi], values[i])) hi = i;
  }
  const m = values[lo];
  const maxq = 2 ** bits - 1;
  const c = Math.fround(1 / maxq);
  const scale = f16Up(Math.fround(Math.fround(values[hi] - m) * c));
  const s = f16ToNumber(scale);
  const clamp = (q) => Math.min(Math.max(q, 0), maxq);
  const codes = [];
  const alt = [];
  for (const v of values) {
    if (s === 0) {
      codes.push(0);
      alt.push(-1);
      continue;
    }
    const diff = Math.fround(v - m);
    const q = clamp(Math.floor(Math.fround(Math.fround(diff / s) + 0.5)));
    codes.push(q);
    // A WGSL division may be off by 2.5 ULP: near an integer n, codes n − 1 and n both pass.
    const x = diff / s + 0.5;
    const n = Math.round(x);
    const near = n >= 1 && Math.abs(x - n) <= 8 * 2 ** -23 * n;
    const other = near ? (q === clamp(n) ? clamp(n - 1) : clamp(n)) : q;
    alt.push(other === q ? -1 : other);
  }
  return { scale, min: halves[lo], codes, alt };
}

const half = (words, i) => (i & 1 ? words[i >> 1] >>> 16 : words[i >> 1] & 0xffff);

/**
 * Checks cache bytes (`{len, codes, scales, mins, window}` Uint32Arrays) against the tokens
 * appended so far (`tokens[t] = {k, v}`, Float32Array [kv_heads][head_dim] each): stored
 * tokens quantized by §11.3 (codes exact, or a listed near-tie when `gpu`), windowed tokens
 * as f16. Returns a list of mismatches (empty when the bytes are right) and the near-ties.
 */
export function checkCacheBytes(layout, bytes, tokens, { gpu = false } = {}) {
  const { bits, group_size: g, head_dim: d, kv_heads: h, max_seq: s, window: r } = layout;
  const bad = [];
  let ties = 0;
  const len = tokens.length;
  if (bytes.len !== len) bad.push(`len ${bytes.len}, want ${len}`);
  const q = len - Math.min(len, r);
  for (let t = 0; t < len; t++) {
    for (let kv = 0; kv < 2; kv++) {
      for (let head = 0; head < h; head++) {
        const src = kv === 0 ? tokens[t].k : tokens[t].v;
        const halves = Array.from(src.subarray(head * d, head * d + d), f16Bits);
        if (t >= q) {
          for (let e = 0; e < d; e++) {
            const at = ((kv * h + head) * r + (t % r)) * d + e;
            if (half(bytes.window, at) !== halves[e]) bad.push(`window kv${kv} head ${head} token ${t} [${e}]: 0x${half(bytes.window, at).toString(16)}, want 0x${halves[e].toString(16)}`);
          }
          continue;
        }
        const row = (kv * h + head) * s + t;
        for (let g0 = 0; g0 < d; g0 += g) {
          const want = quantizeGroup(halves.slice(g0, g0 + g), bits);
          const gi = row * (d / g) + g0 / g;
          if (half(bytes.scales, gi) !== want.scale) bad.push(`scale of row ${row} group ${g0 / g}: 0x${half(bytes.scales, gi).toString(16)}, want 0x${want.scale.toString(16)}`);
          if (half(bytes.mins, gi) !== want.min) bad.push(`min of row ${row} group ${g0 / g}: 0x${half(bytes.mins, gi).toString(16)}, want 0x${want.min.toString(16)}`);
          for (let j = 0; j < g; j++) {
            const col = g0 + j;
            const code = codeAt(bytes.codes, (row * (d / 32) + (col >> 5)) * bits, col & 31, bits);
            if (code === want.codes[j]) continue;
            if (gpu && code === want.alt[j]) {
              ties++;
              continue;
            }
            bad.push(`code of row ${row} (kv${kv} head ${head} token ${t}) col ${col}: ${code}, want ${want.codes[j]}`);
          }
        }
      }
    }
  }
  return { bad, ties };
}

/** The element [kv, head, t, e] a kernel reads from cache bytes (§11.2). */
function element(layout, bytes, kv, head, t, e) {
  const { bits, group_size: g, head_dim: d, kv_heads: h, max_seq: s, window: r } = layout;
  if (t < bytes.len - Math.min(bytes.len, r)) {
    const row = (kv * h + head) * s + t;
    const code = codeAt(bytes.codes, (row * (d / 32) + (e >> 5)) * bits, e & 31, bits);
    const gi = row * (d / g) + Math.floor(e / g);
    return Math.fround(f16ToNumber(half(bytes.scales, gi)) * code + f16ToNumber(half(bytes.mins, gi)));
  }
  return f16ToNumber(half(bytes.window, ((kv * h + head) * r + (t % r)) * d + e));
}

/**
 * §11.4 in f64 over the cache bytes: `{ want, magnitude }` per output [n_heads][head_dim],
 * magnitude Σ_t p·|V|·(1 + |score − max| + Σ_d |q·K| / sqrt(D)).
 */
export function attention(layout, bytes, q, nHeads) {
  const { head_dim: d, kv_heads: h } = layout;
  const len = bytes.len;
  const group = nHeads / h;
  const K = [];
  const V = [];
  for (let head = 0; head < h; head++) {
    for (let t = 0; t < len; t++) {
      for (let e = 0; e < d; e++) {
        K[(head * len + t) * d + e] = element(layout, bytes, 0, head, t, e);
        V[(head * len + t) * d + e] = element(layout, bytes, 1, head, t, e);
      }
    }
  }
  const want = new Float64Array(nHeads * d);
  const magnitude = new Float64Array(nHeads * d);
  const root = Math.sqrt(d);
  for (let j = 0; j < nHeads; j++) {
    const head = Math.floor(j / group);
    const score = [];
    const abs = [];
    for (let t = 0; t < len; t++) {
      let dot = 0;
      let a = 0;
      for (let e = 0; e < d; e++) {
        const term = q[j * d + e] * K[(head * len + t) * d + e];
        dot += term;
        a += Math.abs(term);
      }
      score.push(dot / root);
      abs.push(a / root);
    }
    const max = Math.max(...score);
    const w = score.map((x) => Math.exp(x - max));
    const z = w.reduce((a, b) => a + b, 0);
    for (let t = 0; t < len; t++) {
      const p = w[t] / z;
      const weight = p * (1 + Math.abs(score[t] - max) + abs[t]);
      for (let e = 0; e < d; e++) {
        const v = V[(head * len + t) * d + e];
        want[j * d + e] += p * v;
        magnitude[j * d + e] += weight * Math.abs(v);
      }
    }
  }
  return { want, magnitude };
}
