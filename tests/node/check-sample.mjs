#!/usr/bin/env node
// Compares run-cases.mjs outputs with the expected outputs make-sample-cases.mjs wrote:
//
//   node tests/node/check-sample.mjs CASE_DIR [ENGINE...]     (default: every out/* engine)
//
// An output passes when |got − want| ≤ tolerance · magnitude + 2^-126 for every element,
// with the kernel's manifest `tolerance` (1e-5 for f32 tiers, 1e-2 for f16 tiers) and the
// magnitude Σ|w·x| over the terms the kernel adds. Cases marked expect-err must produce a
// .err containing that text. A .skip is reported and allowed unless --no-skip is given.
// Exits 1 on any mismatch, missing output, or unexpected .err.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compileDispatch } from './run-cases.mjs';

// The runner's dispatch-expression evaluator: every expression the manifest uses, and
// what it must refuse.
{
  const env = { M: 40, N: 262150, K: 96 };
  const good = [
    ['min(ceil(N / 4), 65535)', 65535],
    ['ceil(ceil(N / 4) / 65535)', 2],
    ['ceil(N / 32)', 8193],
    ['ceil(M / 32)', 2],
    ['1', 1],
    [' ( min ( K , 7 ) ) ', 7],
    ['ceil(4294967295 / 1)', 4294967295],
  ];
  for (const [text, want] of good) {
    const got = compileDispatch(text)(env);
    if (got !== want) throw new Error(`dispatch "${text}" gave ${got}, want ${want}`);
  }
  const bad = ['N / 4', 'N + 1', 'ceil(N)', 'max(N, 1)', 'min(N)', 'process.exit()', '', '1 2', 'ceil(N / 0)', 'N * 65536 ', '-1', 'ceil(N / 4', 'n'];
  for (const text of bad) {
    let threw = false;
    try {
      compileDispatch(text)(env);
    } catch {
      threw = true;
    }
    if (!threw) throw new Error(`dispatch "${text}" should have been refused`);
  }
}

const args = process.argv.slice(2);
const noSkip = args.includes('--no-skip');
const [caseDirArg, ...engineArgs] = args.filter((a) => a !== '--no-skip');
if (!caseDirArg) {
  process.stderr.write('usage: node tests/node/check-sample.mjs CASE_DIR [--no-skip] [ENGINE...]\n');
  process.exit(2);
}
const caseDir = resolve(caseDirArg);
const { cases } = JSON.parse(readFileSync(join(caseDir, 'cases.json'), 'utf8'));
const manifest = JSON.parse(readFileSync(join(caseDir, 'package/manifest.json'), 'utf8'));
const kernels = new Map(manifest.kernels.map((k) => [k.name, k]));
if (!engineArgs.length && !existsSync(join(caseDir, 'out'))) {
  process.stderr.write(`no ${join(caseDir, 'out')}: run tests/node/run-cases.mjs first\n`);
  process.exit(2);
}
const engines = engineArgs.length ? engineArgs : readdirSync(join(caseDir, 'out')).sort();

const tolerance = (kern) => kern.tolerance ?? (kern.tier.includes('f16') ? 1e-2 : 1e-5);
const f64 = (path) => {
  const b = readFileSync(path);
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const f32 = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

let bad = 0;
for (const engine of engines) {
  const out = join(caseDir, 'out', engine);
  const tally = { pass: 0, skip: 0, fail: 0 };
  for (const c of cases) {
    const at = (ext) => join(out, `c${c.id}.${ext}`);
    const expectErr = join(caseDir, `expected/c${c.id}.expect-err`);
    const fail = (why) => {
      tally.fail++;
      process.stdout.write(`  FAIL ${engine} c${c.id} ${c.kernel} M=${c.m} N=${c.n} K=${c.k}: ${why}\n`);
    };
    if (existsSync(expectErr)) {
      const want = readFileSync(expectErr, 'utf8').trim();
      if (!existsSync(at('err'))) fail(`expected an error containing "${want}"`);
      else if (!readFileSync(at('err'), 'utf8').includes(want)) fail(`error "${readFileSync(at('err'), 'utf8').trim()}" lacks "${want}"`);
      else tally.pass++;
      continue;
    }
    if (existsSync(at('err'))) {
      fail(`engine error: ${readFileSync(at('err'), 'utf8').trim()}`);
      continue;
    }
    if (existsSync(at('skip'))) {
      const why = readFileSync(at('skip'), 'utf8').trim();
      if (noSkip) fail(`skipped: ${why}`);
      else {
        tally.skip++;
        process.stdout.write(`  skip ${engine} c${c.id} ${c.kernel}: ${why}\n`);
      }
      continue;
    }
    if (!existsSync(at('bin'))) {
      fail('no output file');
      continue;
    }
    const got = f32(at('bin'));
    const ref = f64(join(caseDir, `expected/c${c.id}.ref.bin`));
    if (got.length * 2 !== ref.length) {
      fail(`${got.length} outputs, expected ${ref.length / 2}`);
      continue;
    }
    const tol = tolerance(kernels.get(c.kernel));
    let worst = 0;
    let first = null;
    for (let i = 0; i < got.length; i++) {
      const [want, mag] = [ref[2 * i], ref[2 * i + 1]];
      const err = Math.abs(got[i] - want);
      if (!(err <= tol * mag + 2 ** -126) && first === null) first = `y[${i}] = ${got[i]}, want ${want} (allowed ${(tol * mag).toExponential(2)})`;
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err / Math.max(mag, 2 ** -1022));
    }
    if (first) fail(`${first}; worst relative error ${worst.toExponential(2)} > ${tol}`);
    else {
      tally.pass++;
      if (process.env.CHECK_VERBOSE) process.stdout.write(`  ok   ${engine} c${c.id} ${c.kernel}: worst ${worst.toExponential(2)} (tol ${tol})\n`);
    }
  }
  bad += tally.fail;
  process.stdout.write(`${engine}: ${tally.pass} passed, ${tally.skip} skipped, ${tally.fail} failed\n`);
}
process.exit(bad ? 1 : 0);
