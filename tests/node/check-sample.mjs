#!/usr/bin/env node
// Compares run-cases.mjs outputs with the expected outputs make-sample-cases.mjs wrote:
//
//   node tests/node/check-sample.mjs CASE_DIR [ENGINE...]     (default: every out/* engine)
//
// An output passes when |got − want| ≤ tolerance · magnitude + 2^-126 for every element,
// with the kernel's manifest `tolerance` (1e-5 for f32 tiers, 1e-2 for f16 tiers) and the
// magnitude Σ|w·x| over the terms the kernel adds (kv-attend: the magnitude of
// docs/FORMAT.md §11.4, the tolerance of the wasm twins on V8). kv-append must give the
// expected cache words exactly; on Dawn (WGSL) a code may be the other one where the
// division is a near-tie (§11.3). Cases marked expect-err must produce a
// .err containing that text. A .skip is reported and allowed unless --no-skip is given.
// Exits 1 on any mismatch, missing output, or unexpected .err.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { kvCompare, kvLayout } from './format.mjs';
import { compileDispatch, compileExpression } from './run-cases.mjs';

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

// The KV kernels' expressions (KvParams names, a * b, max): the manifest's split_len rule.
{
  const names = ['kv_heads', 'max_seq', 'window', 'len', 'n_new', 'n_heads', 'split_len', 'n_splits'];
  const kv = (text) => compileExpression(text, { names, extended: true, what: 'KV expression' });
  const rule = '64 * max(1, ceil(ceil(len / ceil(256 / kv_heads)) / 64))';
  for (const [len, heads, want] of [[1, 1, 64], [300, 2, 64], [16384, 1, 64], [16385, 1, 128], [16500, 1, 128], [100000, 3, 1216]]) {
    const got = kv(rule)({ len, kv_heads: heads });
    if (got !== want) throw new Error(`split_len rule for len ${len}, kv_heads ${heads} gave ${got}, want ${want}`);
  }
  if (kv('ceil(len / split_len)')({ len: 16500, split_len: 128 }) !== 129) throw new Error('n_splits rule');
  if (kv('2 * 3 * max(kv_heads, 4)')({ kv_heads: 5 }) !== 30) throw new Error('product of three factors');
  for (const text of ['M', 'len + 1', 'len - 1', 'max(len)', 'len *', '* len', 'split_len / 2', 'exp(len)', 'len len']) {
    let threw = false;
    try {
      kv(text)({ len: 5, split_len: 64 });
    } catch {
      threw = true;
    }
    if (!threw) throw new Error(`KV expression "${text}" should have been refused`);
  }
  let threw = false;
  try {
    kv('ceil(len / split_len)')({ len: 5 }); // split_len not given (yet)
  } catch {
    threw = true;
  }
  if (!threw) throw new Error('a name without a value should have been refused');
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

// Every kv-attend kernel's split_len rule, evaluated here, gives what the Rust runtimes'
// default_split_len gives (the same table is asserted in codegen/tests/all/spec.rs): the
// manifest's rule and the Rust function are written separately and must not drift apart.
{
  // [len, kv_heads, chunk, split_len]: 512 workgroups aimed at (codegen::kv::SPLIT_WORKGROUPS).
  const table = [[1024, 8, 32, 32], [8192, 8, 32, 128], [32768, 8, 32, 512], [16500, 1, 32, 64], [1, 1, 32, 32], [100000, 3, 32, 608]];
  const names = ['kv_heads', 'max_seq', 'window', 'len', 'n_new', 'n_heads', 'split_len', 'n_splits'];
  const attends = manifest.kernels.filter((k) => k.op === 'kv-attend');
  if (!attends.length) throw new Error('the sample package has no kv-attend kernel');
  for (const k of attends) {
    const rule = k.dispatch.host_values.find((hv) => hv.name === 'split_len').rule;
    for (const [len, heads, chunk, want] of table) {
      if (k.kv.chunk !== chunk) throw new Error(`${k.name}: chunk ${k.kv.chunk}, the table assumes ${chunk}`);
      const got = compileExpression(rule, { names, extended: true, what: 'split_len rule' })({ len, kv_heads: heads });
      if (got !== want) throw new Error(`${k.name}: split_len rule "${rule}" gives ${got} for len ${len}, kv_heads ${heads}; default_split_len gives ${want}`);
    }
  }
}
if (!engineArgs.length && !existsSync(join(caseDir, 'out'))) {
  process.stderr.write(`no ${join(caseDir, 'out')}: run tests/node/run-cases.mjs first\n`);
  process.exit(2);
}
const engines = engineArgs.length ? engineArgs : readdirSync(join(caseDir, 'out')).sort();

const tolerance = (kern) => kern.tolerance ?? (kern.tier.includes('f16') ? 1e-2 : 1e-5);
// KV kernels: the WebAssembly twins' own tolerance on V8, the WGSL kernel's on Dawn.
const kvTolerance = (kern, engine) => (engine.startsWith('v8-') ? kern.wasm?.tolerance ?? kern.tolerance : kern.tolerance);
const u32s = (path) => {
  const b = readFileSync(path);
  return new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const describe = (c) =>
  c.op === 'kv-append' || c.op === 'kv-attend'
    ? `H=${c.kv_heads} S=${c.max_seq} R=${c.window} len=${c.len} ${c.op === 'kv-append' ? `+${c.n_new}` : `heads=${c.n_heads}`}`
    : `M=${c.m} N=${c.n} K=${c.k}`;

/**
 * kv-append: the cache's words after the append must be the expected ones; on a WGSL engine
 * (Dawn) a code may instead be the listed neighbour where the division is a near-tie
 * (docs/FORMAT.md §11.3; format.mjs kvCompare). Returns an error text, or null (and counts
 * near-ties in `tally`).
 */
function checkAppend(c, kern, got, engine, tally) {
  const want = u32s(join(caseDir, `expected/c${c.id}.cache.bin`));
  if (got.length !== want.length) return `${got.length} cache words, expected ${want.length}`;
  const l = kvLayout({ bits: kern.bits, group_size: kern.group_size, head_dim: kern.kv.head_dim, kv_heads: c.kv_heads, max_seq: c.max_seq, window: c.window });
  const total = l.words.codes + l.words.scales + l.words.mins + l.words.window;
  if (want.length !== total) return `the expected file has ${want.length} words, the layout ${total}`;
  // The files hold codes, scales, mins, window, one after the other.
  const split = (words) => {
    const out = {};
    let at = 0;
    for (const name of ['codes', 'scales', 'mins', 'window']) {
      out[name] = words.subarray(at, at + l.words[name]);
      at += l.words[name];
    }
    return out;
  };
  const near = JSON.parse(readFileSync(join(caseDir, `expected/c${c.id}.near.json`), 'utf8'));
  const check = kvCompare(l, split(got), split(want), near, { wgsl: engine === 'dawn', limit: 1 });
  if (check.wrong) return `${check.bad[0]}${check.wrong > 1 ? ` (and ${check.wrong - 1} more)` : ''}`;
  tally.near += check.near;
  return null;
}
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
  const tally = { pass: 0, skip: 0, fail: 0, near: 0 };
  for (const c of cases) {
    const at = (ext) => join(out, `c${c.id}.${ext}`);
    const expectErr = join(caseDir, `expected/c${c.id}.expect-err`);
    const fail = (why) => {
      tally.fail++;
      process.stdout.write(`  FAIL ${engine} c${c.id} ${c.kernel} ${describe(c)}: ${why}\n`);
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
    const kern = kernels.get(c.kernel);
    if (c.op === 'kv-append') {
      const why = checkAppend(c, kern, u32s(at('bin')), engine, tally);
      if (why) fail(why);
      else tally.pass++;
      continue;
    }
    const got = f32(at('bin'));
    const ref = f64(join(caseDir, `expected/c${c.id}.ref.bin`));
    if (got.length * 2 !== ref.length) {
      fail(`${got.length} outputs, expected ${ref.length / 2}`);
      continue;
    }
    const tol = c.op === 'kv-attend' ? kvTolerance(kern, engine) : tolerance(kern);
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
  const kv = cases.filter((c) => c.op === 'kv-append' || c.op === 'kv-attend').length;
  process.stdout.write(
    `${engine}: ${tally.pass} passed, ${tally.skip} skipped, ${tally.fail} failed (of ${cases.length} cases, ${kv} KV; ${tally.near} kv-append codes at a near-tie)\n`,
  );
}
process.exit(bad ? 1 : 0);
