#!/usr/bin/env node
// Builds a sample CASE_DIR for run-cases.mjs, the way the Rust harness would, plus the
// expected outputs from format.mjs (an independent reading of docs/FORMAT.md):
//
//   node tests/node/make-sample-cases.mjs CASE_DIR [SEED]
//
// writes CASE_DIR/package/ (`shadergen emit --target chrome`; the binary is
// target/debug/shadergen or $SHADERGEN), cases.json, c<id>.*.bin, and for each case
// expected/c<id>.bin (f32 y), expected/c<id>.ref.bin (f64 pairs: want, magnitude) or, for a
// case the runner must reject, expected/c<id>.expect-err (a substring of the error).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkWorkedExamples, packF16, packMatrix, reference } from './format.mjs';

const [caseDirArg, seedArg] = process.argv.slice(2);
if (!caseDirArg) {
  process.stderr.write('usage: node tests/node/make-sample-cases.mjs CASE_DIR [SEED]\n');
  process.exit(2);
}
const caseDir = resolve(caseDirArg);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const shadergen = process.env.SHADERGEN ?? join(root, 'target/debug/shadergen');

checkWorkedExamples();

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
  ['matvec_q2g32s_base', 1, 262150, 32], // dispatch y = 2: N / 4 rows per workgroup > 65535
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

writeFileSync(join(caseDir, 'cases.json'), `${JSON.stringify({ cases }, null, 1)}\n`);
process.stdout.write(`wrote ${cases.length} cases to ${caseDir}\n`);
