// The browser tests' cases: random inputs (never zeros) and their expected outputs from
// tests/node/format.mjs, an independent implementation of docs/FORMAT.md. The inputs go to
// the page as files (cases.json and raw little-endian .bin files); the expected outputs stay
// in Node, where browser.test.mjs compares the page's outputs with them.

import fs from 'node:fs';
import path from 'node:path';
import {
  checkWorkedExamples,
  f16Round,
  kvAppend,
  kvAttention,
  kvEmpty,
  kvLayout,
  kvQuantizeGroup,
  packF16,
  packMatrix,
  reference,
} from '../node/format.mjs';

/** Weight cases: [op, bits, group, scheme, m, n, k]. Ragged N everywhere (not a tile multiple). */
export const MATRIX_PLAN = [
  ['matvec', 4, 32, 'sym', 1, 67, 256],
  ['matvec', 3, 64, 'asym', 1, 33, 192], // 3-bit asym: two planes, scale and min
  ['matvec', 2, 128, 'asym', 1, 21, 256],
  ['matvec', 8, 32, 'sym', 1, 9, 96],
  ['matvec', 16, 32, 'sym', 1, 21, 160], // the f16 baseline
  ['matmul', 3, 32, 'asym', 5, 37, 128],
  ['matmul', 4, 64, 'sym', 3, 70, 128],
  ['matmul', 16, 32, 'sym', 4, 19, 64],
];

/**
 * KV cases: a cache of `kv_heads` heads, `n_heads` query heads (GQA n_heads / kv_heads),
 * window R > 0; `appends` lists the tokens of each kv-append, and after each one kv-attend
 * runs with fresh queries. The first append of the second case stays inside the window.
 */
export const KV_PLAN = [
  { bits: 3, group_size: 32, head_dim: 64, kv_heads: 2, n_heads: 8, max_seq: 128, window: 16, appends: [45, 1, 30] },
  { bits: 4, group_size: 128, head_dim: 128, kv_heads: 1, n_heads: 4, max_seq: 64, window: 5, appends: [3, 20] },
];

/** Deterministic PRNG (mulberry32). */
function prng(seed) {
  let state = seed >>> 0;
  const rand = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive
  const f16 = (eLo, eHi, negative) => ((negative ? 0x8000 : 0) | (int(eLo, eHi) << 10) | int(0, 1023)) & 0xffff;
  // Nonzero values in ±[0.05, 1] or so (an f32 with a full mantissa).
  const value = (scale = 1) => {
    const v = (0.05 + 0.95 * rand()) * scale;
    return Math.fround(rand() < 0.5 ? -v : v);
  };
  return { rand, int, f16, value };
}

/**
 * Where (v − m) / s + 0.5 lies within a few ULP of an integer, a GPU's inexact division may
 * pick the neighbouring code (FORMAT.md §11.3), and a cache so written legitimately differs
 * from the reference. Such values (about one in 2000) are drawn again, between the group's
 * minimum and maximum, which keeps its scale and min. Works on each group of `g` consecutive
 * values of `kvNew` (a token's head vector is `D` values, a multiple of `g`).
 */
function avoidNearTies(kvNew, g, bits, r) {
  for (let start = 0; start < kvNew.length; start += g) {
    for (let round = 0; ; round++) {
      const halves = Array.from(kvNew.subarray(start, start + g), f16Round);
      const { near } = kvQuantizeGroup(halves, bits);
      const bad = near.flatMap((other, j) => (other >= 0 ? [j] : []));
      if (!bad.length) break;
      if (round === 50) throw new Error('cannot draw a group without near-ties');
      const vals = Array.from(kvNew.subarray(start, start + g));
      const lo = Math.min(...vals);
      const hi = Math.max(...vals);
      for (const j of bad) {
        if (vals[j] === lo || vals[j] === hi) continue; // never: min and max are not near
        kvNew[start + j] = Math.fround(lo + (hi - lo) * (0.05 + 0.9 * r.rand()));
      }
    }
  }
}

const bytes = (typed) => new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);

/**
 * Writes the cases into `dir` (cases.json + c<id>.<name>.bin) and returns
 * { cases, expected }: expected[id] is, for a weight case, { want, magnitude } (Float64Array,
 * M x N); for a KV case, { steps: [{ len, cache, want, magnitude }] } per append + attend,
 * `cache` the reference cache after that append ({ codes, scales, mins, window }: Uint32Array).
 */
export function buildCases(dir, seed = 0x5eed) {
  checkWorkedExamples();
  fs.mkdirSync(dir, { recursive: true });
  const r = prng(seed);
  const cases = [];
  const expected = [];
  const file = (id, name, typed) => {
    const f = `c${id}.${name}.bin`;
    fs.writeFileSync(path.join(dir, f), bytes(typed));
    return f;
  };

  for (const [op, bits, g, scheme, m, n, k] of MATRIX_PLAN) {
    const id = cases.length;
    let weights;
    let scales = null;
    let mins = null;
    if (bits === 16) {
      weights = packF16(Array.from({ length: n * k }, () => r.f16(9, 15, r.rand() < 0.5)));
    } else {
      const codes = Uint8Array.from({ length: n * k }, () => r.int(0, 2 ** bits - 1));
      weights = packMatrix(codes, n, k, bits);
      scales = packF16(Array.from({ length: (n * k) / g }, () => r.f16(7, 12, false)));
      if (scheme === 'asym') mins = packF16(Array.from({ length: (n * k) / g }, () => r.f16(7, 14, r.rand() < 0.5)));
    }
    const x = Float32Array.from({ length: m * k }, () => r.value());
    const c = { id, op, bits, group_size: g, scheme, m, n, k, files: { weights: file(id, 'weights', weights), x: file(id, 'x', x) } };
    if (scales) c.files.scales = file(id, 'scales', scales);
    if (mins) c.files.mins = file(id, 'mins', mins);
    cases.push(c);
    expected.push(reference({ bits, group_size: g, scheme }, { weights, scales, mins }, x, m, n, k));
  }

  for (const plan of KV_PLAN) {
    const id = cases.length;
    const layout = kvLayout(plan);
    const { head_dim: d, kv_heads: h, n_heads: nh, group_size: g } = plan;
    let cache = kvEmpty(layout);
    const steps = [];
    const files = [];
    plan.appends.forEach((count, s) => {
      const kvNew = Float32Array.from({ length: 2 * count * h * d }, () => r.value(2));
      avoidNearTies(kvNew, g, plan.bits, r);
      const q = Float32Array.from({ length: nh * d }, () => r.value());
      const appended = kvAppend(layout, cache, kvNew, count);
      if (appended.near.length) throw new Error(`KV case ${id}: near-ties left: ${JSON.stringify(appended.near)}`);
      cache = appended.cache;
      const { want, magnitude } = kvAttention(layout, cache, q, nh);
      steps.push({ len: cache.len, cache, want, magnitude });
      files.push({ n_new: count, kv_new: file(id, `s${s}.kv_new`, kvNew), q: file(id, `s${s}.q`, q) });
    });
    const { appends, ...shape } = plan;
    cases.push({ id, op: 'kv', scheme: 'asym', ...shape, steps: files });
    expected.push({ steps });
  }

  fs.writeFileSync(path.join(dir, 'cases.json'), `${JSON.stringify({ seed, cases }, null, 1)}\n`);
  return { cases, expected };
}
