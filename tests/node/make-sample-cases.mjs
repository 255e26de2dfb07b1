#!/usr/bin/env node
// Builds a sample CASE_DIR for run-cases.mjs, the way the Rust harness would, plus the
// expected outputs from format.mjs (an independent reading of docs/FORMAT.md):
//
//   node tests/node/make-sample-cases.mjs CASE_DIR [SEED]
//
// writes CASE_DIR/package/ (`shadergen emit --target chrome`; the binary is
// target/debug/shadergen or $SHADERGEN), cases.json, c<id>.*.bin, and for each case
// expected/c<id>.bin (f32 y or kv-attend's out), expected/c<id>.ref.bin (f64 pairs: want,
// magnitude), for kv-append expected/c<id>.cache.bin (the cache's words after the append:
// codes, scales, mins, window) and expected/c<id>.near.json (codes a WGSL division may round
// the other way: [{row, col, code, other}]), or, for a case the runner must reject,
// expected/c<id>.expect-err (a substring of the error).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkKvExamples,
  checkWorkedExamples,
  kvAppend,
  kvAttention,
  kvEmpty,
  kvLayout,
  kvQuantizedLen,
  packF16,
  packMatrix,
  reference,
} from './format.mjs';

const [caseDirArg, seedArg] = process.argv.slice(2);
if (!caseDirArg) {
  process.stderr.write('usage: node tests/node/make-sample-cases.mjs CASE_DIR [SEED]\n');
  process.exit(2);
}
const caseDir = resolve(caseDirArg);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const shadergen = process.env.SHADERGEN ?? join(root, 'target/debug/shadergen');

checkWorkedExamples();
checkKvExamples();

// Deterministic PRNG (mulberry32).
let state = Number(seedArg ?? 0x5eed) >>> 0;
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
};
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive

// An f16 bit pattern with exponent field in [eLo, eHi], random mantissa, sign as asked.
const randF16 = (eLo, eHi, negative) => ((negative ? 0x8000 : 0) | (randInt(eLo, eHi) << 10) | randInt(0, 1023)) & 0xffff;

// A scale: mostly normal in [2^-8, 2^-2); now and then zero or subnormal (edge cases).
function randScale() {
  const r = rand();
  if (r < 0.03) return 0;
  if (r < 0.06) return randInt(1, 1023); // subnormal
  return randF16(7, 12, false);
}
const randMin = () => (rand() < 0.03 ? 0 : randF16(7, 14, rand() < 0.5));

rmSync(caseDir, { recursive: true, force: true });
mkdirSync(join(caseDir, 'expected'), { recursive: true });
execFileSync(shadergen, ['emit', '--target', 'chrome', '--out', join(caseDir, 'package')], { stdio: ['ignore', 'ignore', 'inherit'] });
const manifest = JSON.parse(readFileSync(join(caseDir, 'package/manifest.json'), 'utf8'));
const kernels = new Map(manifest.kernels.map((k) => [k.name, k]));

// [kernel, m, n, k]; $SAMPLE_PLAN (JSON, same shape) replaces the default plan.
const plan = process.env.SAMPLE_PLAN ? JSON.parse(process.env.SAMPLE_PLAN) : [
  ['matvec_q4g32s_base', 1, 7, 32], // odd number of scales: last word half empty
  ['matvec_q3g64a_subgroups', 1, 33, 192],
  ['matmul_q2g128s_f16', 3, 37, 256], // ragged tile in N
  ['matvec_f16_base', 1, 5, 96],
  ['matmul_q3g64a_base', 3, 70, 128],
  ['matmul_q8g32s_subgroups', 40, 33, 96], // two tiles in M, two in N
  ['matvec_q2g32a_f16_subgroups', 1, 130, 64],
  ['matvec_q8g128a_f16', 1, 3, 128],
  ['matmul_f16_f16', 3, 9, 64],
  ['matvec_q4g64a_base', 1, 1, 64],
  ['matmul_q4g32a_f16_subgroups', 2, 64, 160],
  ['matvec_q2g32s_base', 1, 524294, 32], // dispatch y = 2: N / 8 rows per workgroup > 65535
];

const cases = [];
const bin = (name, typed) => {
  writeFileSync(join(caseDir, name), new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  return name;
};

plan.forEach(([name, m, n, k], id) => {
  const kern = kernels.get(name);
  if (!kern) throw new Error(`kernel ${name} is not in the emitted manifest`);
  const { bits, group_size: g, scheme } = kern;
  let weights;
  let scales = null;
  let mins = null;
  if (bits === 16) {
    weights = packF16(Array.from({ length: n * k }, () => (rand() < 0.02 ? randInt(0, 1023) : randF16(9, 15, rand() < 0.5))));
  } else {
    const codes = Uint8Array.from({ length: n * k }, () => randInt(0, 2 ** bits - 1));
    weights = packMatrix(codes, n, k, bits);
    const groups = (n * k) / g;
    scales = packF16(Array.from({ length: groups }, randScale));
    if (scheme === 'asym') mins = packF16(Array.from({ length: groups }, randMin));
  }
  const x = Float32Array.from({ length: m * k }, () => rand() * 2 - 1);
  const c = { id, kernel: name, m, n, k, weights: bin(`c${id}.weights.bin`, weights), scales: null, mins: null, x: bin(`c${id}.x.bin`, x) };
  if (scales) c.scales = bin(`c${id}.scales.bin`, scales);
  if (mins) c.mins = bin(`c${id}.mins.bin`, mins);
  cases.push(c);

  const { want, magnitude } = reference(kern, { weights, scales, mins }, x, m, n, k);
  bin(`expected/c${id}.bin`, Float32Array.from(want));
  const ref = new Float64Array(2 * want.length);
  want.forEach((v, i) => {
    ref[2 * i] = v;
    ref[2 * i + 1] = magnitude[i];
  });
  bin(`expected/c${id}.ref.bin`, ref);
});

// Cases every engine must reject (a .err naming the problem).
const reject = (c, message) => {
  const id = cases.length;
  cases.push({ id, ...c });
  writeFileSync(join(caseDir, `expected/c${id}.expect-err`), `${message}\n`);
};
// (They reuse case 0's files, so only with the default plan.)
if (!process.env.SAMPLE_PLAN) {
  reject({ kernel: 'matvec_q9g32s_base', m: 1, n: 7, k: 32, weights: 'c0.weights.bin', scales: 'c0.scales.bin', mins: null, x: 'c0.x.bin' }, 'not in the manifest');
  reject({ kernel: 'matvec_q4g32s_base', m: 1, n: 8, k: 32, weights: 'c0.weights.bin', scales: 'c0.scales.bin', mins: null, x: 'c0.x.bin' }, '"weights" has 112 bytes');
}

// ---------------------------------------------------------------------------------------
// KV cases (docs/FORMAT.md §11): a cache built by format.mjs's append from random tokens in
// random batches, then a kv-append (expected: the cache's words after it, and the codes a
// WGSL division may round the other way) or a kv-attend (expected: the f64 attention and
// its magnitudes).

// Tokens, f32 [n][H][D]: per head vector a scale, outliers at every 8th dim; per group now
// and then signed zeros, a constant (scale 0), f16-subnormal values or (if `huge`) values
// near 65504 (not in the keys of an attention case: one such key makes the softmax one-hot).
function kvTokens(n, h, d, g, huge) {
  const out = new Float32Array(n * h * d);
  for (let v = 0; v < n * h; v++) {
    const scale = 0.25 + 2 * rand();
    for (let g0 = 0; g0 < d; g0 += g) {
      const kind = rand();
      const constant = (rand() * 2 - 1) * scale;
      for (let j = 0; j < g; j++) {
        let x;
        if (kind < 0.06) x = rand() < 0.5 ? 0 : -0;
        else if (kind < 0.1) x = constant;
        else if (kind < 0.13) x = (rand() * 2 - 1) * 2 ** -18;
        else if (kind < 0.145 && huge) x = (rand() * 2 - 1) * 65000;
        else x = (rand() * 2 - 1) * scale * (j % 8 === 3 ? 10 : 1);
        out[v * d + g0 + j] = x;
      }
    }
  }
  return out;
}
const kvNewValues = (l, n, hugeKeys) => {
  const both = new Float32Array(2 * n * l.h * l.d);
  both.set(kvTokens(n, l.h, l.d, l.g, hugeKeys));
  both.set(kvTokens(n, l.h, l.d, l.g, true), n * l.h * l.d);
  return both;
};

// A cache holding `len` tokens, appended in random batches (the bytes do not depend on them).
function kvHistory(l, len, hugeKeys) {
  let cache = kvEmpty(l);
  while (cache.len < len) {
    const n = Math.min(len - cache.len, randInt(1, 48));
    cache = kvAppend(l, cache, kvNewValues(l, n, hugeKeys), n).cache;
  }
  return cache;
}

// Random words in what no kernel may read or write but the append's targets: store rows of
// tokens ≥ Q, window slots not holding a token Q .. len − 1 (§11.2). NaN f16 patterns included.
function kvStaleGarbage(l, cache) {
  const junk = () => (rand() * 2 ** 32) >>> 0;
  const setHalf = (words, i, bits) => {
    words[i >> 1] = i & 1 ? ((words[i >> 1] & 0xffff) | (bits << 16)) >>> 0 : ((words[i >> 1] & 0xffff0000) | bits) >>> 0;
  };
  const q = kvQuantizedLen(l, cache.len);
  const live = new Set();
  for (let t = q; t < cache.len; t++) live.add(t % l.r);
  for (let kv = 0; kv < 2; kv++) {
    for (let h = 0; h < l.h; h++) {
      for (let t = q; t < l.s; t++) {
        const row = (kv * l.h + h) * l.s + t;
        const blockWords = (l.d / 32) * l.bits;
        for (let i = 0; i < blockWords; i++) cache.codes[row * blockWords + i] = junk();
        for (let gi = row * (l.d / l.g); gi < (row + 1) * (l.d / l.g); gi++) {
          setHalf(cache.scales, gi, junk() & 0xffff);
          setHalf(cache.mins, gi, junk() & 0xffff);
        }
      }
      for (let slot = 0; slot < l.r; slot++) {
        if (live.has(slot)) continue;
        const at = (((kv * l.h + h) * l.r + slot) * l.d) / 2;
        for (let i = 0; i < l.d / 2; i++) cache.window[at + i] = junk();
      }
    }
  }
}

// [kernel, kv_heads, max_seq, window R, len, n_new (kv-append) or query heads per KV head
// (kv-attend), stale garbage]; $SAMPLE_KV_PLAN (JSON, same shape) replaces it.
const kvPlan = process.env.SAMPLE_KV_PLAN ? JSON.parse(process.env.SAMPLE_KV_PLAN) : [
  // Four kv-append and four kv-attend kernels (every bit width, both head dims, every tier;
  // lavapipe compiles each for seconds), several cases each.
  ['kv_append_q4g32a_d128_base', 2, 40, 0, 5, 3, false], // R = 0: straight into the store
  ['kv_append_q2g64a_d64_f16', 1, 64, 8, 3, 2, false], // into the window only
  ['kv_append_q3g128a_d128_subgroups', 3, 50, 5, 7, 9, true], // flush + skip the window; G = D: two rows share a scale word
  ['kv_append_q8g32a_d64_f16_subgroups', 2, 34, 6, 6, 1, false], // one token flushed, its slot reused
  ['kv_append_q4g32a_d128_base', 2, 30, 4, 12, 11, true], // a burst longer than the window
  ['kv_append_q2g64a_d64_f16', 1, 2, 1, 0, 2, false], // smallest cache: one token to the store, one to the window
  ['kv_append_q8g32a_d64_f16_subgroups', 4, 20, 20, 10, 10, true], // R = S: nothing is ever stored
  ['kv_append_q3g128a_d128_subgroups', 1, 16, 3, 1, 15, false], // fills the cache
  ['kv_attend_q4g32a_d128_base', 2, 300, 16, 300, 4, false], // GQA 4, 5 splits, full cache
  ['kv_attend_q2g64a_d64_f16', 1, 130, 0, 129, 1, false], // R = 0, ragged last split
  ['kv_attend_q8g128a_d128_subgroups', 3, 70, 40, 65, 8, true], // GQA 8, most tokens in the window
  ['kv_attend_q3g32a_d64_f16_subgroups', 1, 10, 10, 1, 8, false], // one token, in the window
  ['kv_attend_q2g64a_d64_f16', 8, 200, 3, 150, 1, true], // 8 KV heads
  ['kv_attend_q4g32a_d128_base', 2, 100, 7, 5, 4, true], // fewer tokens than the window
  ['kv_attend_q3g32a_d64_f16_subgroups', 1, 16600, 2, 16500, 2, false], // split_len 64 from the rule: two steps a split
];

const kvCases = [];
for (const [name, h, s, r, len, extra, garbage] of kvPlan) {
  const kern = kernels.get(name);
  if (!kern) throw new Error(`kernel ${name} is not in the emitted manifest`);
  const l = kvLayout({ bits: kern.bits, group_size: kern.group_size, head_dim: kern.kv.head_dim, kv_heads: h, max_seq: s, window: r });
  const before = kvHistory(l, len, kern.op === 'kv-append');
  if (garbage) kvStaleGarbage(l, before);
  const id = cases.length;
  const c = {
    id,
    kernel: name,
    op: kern.op,
    kv_heads: h,
    max_seq: s,
    window: r,
    len,
    codes: bin(`c${id}.codes.bin`, before.codes),
    scales: bin(`c${id}.scales.bin`, before.scales),
    mins: bin(`c${id}.mins.bin`, before.mins),
    window_words: bin(`c${id}.window.bin`, before.window),
  };
  if (kern.op === 'kv-append') {
    const kvNew = kvNewValues(l, extra, true);
    if (kvCases.length === 0) {
      kvNew[1] = 65519; // below 65520: rounds to f16's largest finite value, 65504
      kvNew[kvNew.length - 1] = -65519;
    }
    c.n_new = extra;
    c.kv_new = bin(`c${id}.kv_new.bin`, kvNew);
    const { cache, near } = kvAppend(l, before, kvNew, extra);
    const words = new Uint32Array([...cache.codes, ...cache.scales, ...cache.mins, ...cache.window]);
    bin(`expected/c${id}.cache.bin`, words);
    writeFileSync(join(caseDir, `expected/c${id}.near.json`), `${JSON.stringify(near)}\n`);
  } else {
    const nHeads = h * extra;
    const q = Float32Array.from({ length: nHeads * l.d }, () => rand() - 0.5);
    c.n_heads = nHeads;
    c.q = bin(`c${id}.q.bin`, q);
    const { want, magnitude, maxWeight } = kvAttention(l, before, q, nHeads);
    // A useful case spreads the softmax: a one-hot one would pass whatever the scores were.
    const peak = maxWeight.reduce((a, b) => a + b, 0) / nHeads;
    if (len >= 16 && !(peak < 0.9)) throw new Error(`kv-attend case ${id}: the largest weight averages ${peak.toFixed(3)}: the data make a near one-hot softmax`);
    bin(`expected/c${id}.bin`, Float32Array.from(want));
    const ref = new Float64Array(2 * want.length);
    want.forEach((v, i) => {
      ref[2 * i] = v;
      ref[2 * i + 1] = magnitude[i];
    });
    bin(`expected/c${id}.ref.bin`, ref);
  }
  cases.push(c);
  kvCases.push(c);
}

// KV cases every engine must reject (with the default KV plan: they reuse its files).
if (!process.env.SAMPLE_KV_PLAN) {
  const a = kvCases.find((c) => c.op === 'kv-append');
  const b = kvCases.find((c) => c.op === 'kv-attend');
  const { id: _a, ...app } = a;
  const { id: _b, ...att } = b;
  const size = (file) => readFileSync(join(caseDir, file)).length;
  reject({ ...app, window_words: app.codes }, `"window_words" has ${size(app.codes)} bytes; ${app.kernel} with kv_heads=2 max_seq=40 window=0 head_dim=128 n_new=3 needs 4`);
  reject({ ...app, max_seq: 41 }, 'max_seq = 41 is not a multiple of 2');
  reject({ ...app, window: 42 }, 'window = 42 is over max_seq = 40');
  reject({ ...app, n_new: 36 }, 'appending n_new = 36 tokens at len = 5 overflows max_seq = 40');
  reject({ ...app, kv_new: null }, 'reads "kv_new" but the case gives no "kv_new"');
  const tooBig = new Float32Array(readFileSync(join(caseDir, app.kv_new)).buffer.slice(0));
  tooBig[tooBig.length - 5] = 65520; // rounds to infinity in f16 (the tie goes to the even side)
  const id = cases.length;
  reject({ ...app, kv_new: bin(`c${id}.kv_new.bin`, tooBig) }, 'is 65520, which f16 cannot hold');
  reject({ ...app, kernel: 'matvec_q4g32s_base' }, "the case's op is kv-append but kernel matvec_q4g32s_base is matvec");
  reject({ ...att, op: 'kv-append' }, `the case's op is "kv-append" but kernel ${att.kernel} is kv-attend`);
  reject({ ...att, n_heads: att.n_heads + 1 }, `n_heads = ${att.n_heads + 1} must be kv_heads (2) times 1 to 8`);
  reject({ ...att, n_heads: 9 * att.kv_heads }, `n_heads = ${9 * att.kv_heads} must be kv_heads (2) times 1 to 8`);
  reject({ ...att, len: 0 }, 'kv-attend over an empty cache');
  reject({ ...att, kv_new: app.kv_new }, 'the case gives "kv_new" but kv-attend takes no such input');
  reject({ ...att, q: app.kv_new }, `"q" has ${size(app.kv_new)} bytes`);
}

writeFileSync(join(caseDir, 'cases.json'), `${JSON.stringify({ cases }, null, 1)}\n`);
process.stdout.write(`wrote ${cases.length} cases to ${caseDir}\n`);
