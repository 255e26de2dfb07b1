// shadergen.mjs, the JavaScript runtime every package carries, loaded from an emitted package
// in Node: on Dawn (Chrome's WebGPU, npm `webgpu`, on Mesa lavapipe), forced onto the
// WebAssembly twins (SIMD and scalar), with no GPU at all, over http (the fetch path a page
// takes), and after the device is destroyed. Every result is checked against format.mjs,
// the independent implementation of docs/FORMAT.md: matvec / matmul (§2–7) within the
// manifest's tolerance relative to Σ|terms| (codegen/src/reference.rs); the KV cache (§11)
// word for word against kvAppend's cache after the same appends (exact on WebAssembly; on
// WebGPU a code may be its near-tie neighbour, kvCompare), attention against kvAttention
// within the tolerance relative to §11.4's magnitude; the dot4 tiers' matvec (opt-in:
// allowInt8) against the reference over format.mjs's int8 activations (§12), and its first
// pass's scratch word for word. Selection is checked against tests/caps/*.json.
//
//   cargo build -p shadergen && node --test tests/node/shadergen-mjs.test.mjs
//
// Environment: SHADERGEN_BIN (default target/debug/shadergen); CI=true makes a missing Dawn
// adapter a failure instead of a skip.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkX8Examples, kvAppend, kvAttention, kvCompare, kvEmpty, kvLayout, packF16, packMatrix, quantizeX8, reference } from './format.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.SHADERGEN_BIN ? path.resolve(process.env.SHADERGEN_BIN) : path.join(REPO, 'target', 'debug', 'shadergen');
const CI = process.env.CI === 'true';
const TINY = 2 ** -126;

// Formats of the weight tests: 3-bit asym, 4-bit sym, 8-bit asym; KV: 4-bit and 3-bit, D 64.
const WEIGHT_FORMATS = [
  { bits: 3, group_size: 32, scheme: 'asym' },
  { bits: 4, group_size: 64, scheme: 'sym' },
  { bits: 8, group_size: 32, scheme: 'asym' },
];
const KV_SHAPE = { head_dim: 64, kv_heads: 2, max_seq: 256, window: 16 };
const KV_FORMATS = [
  { bits: 4, group_size: 32 },
  { bits: 3, group_size: 64 },
];
const N_HEADS = 8; // GQA 4

let tmp;
let pkgDir;
let ShaderGen;
let mod;
let dawn; // { gpu } or { reason }

// ---------------------------------------------------------------------------------------
// Deterministic data

function rng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Random quantized weights of `format` (never zeros) and their host arrays. */
function makeWeights(format, n, k, seed) {
  const rand = rng(seed);
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
  const codes = Uint8Array.from({ length: n * k }, () => int(0, 2 ** format.bits - 1));
  const groups = (n * k) / format.group_size;
  const f16 = (eLo, eHi, negative) => ((negative ? 0x8000 : 0) | (int(eLo, eHi) << 10) | int(0, 1023)) & 0xffff;
  const scales = packF16(Array.from({ length: groups }, () => f16(9, 13, false)));
  const mins = format.scheme === 'asym' ? packF16(Array.from({ length: groups }, () => f16(9, 14, rand() < 0.5))) : undefined;
  return { format, n, k, weights: packMatrix(codes, n, k, format.bits), scales, mins };
}

function makeFloats(count, seed, spread = 2) {
  const rand = rng(seed);
  return Float32Array.from({ length: count }, () => (rand() * 2 - 1) * spread);
}

// ---------------------------------------------------------------------------------------
// Checks

function assertClose(got, { want, magnitude }, tolerance, what) {
  assert.ok(got instanceof Float32Array, `${what}: result is ${got?.constructor?.name}, not a Float32Array`);
  assert.equal(got.length, want.length, `${what}: ${got.length} outputs, want ${want.length}`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const allowed = tolerance * magnitude[i] + TINY;
    if (!(err <= allowed)) {
      assert.fail(`${what}: output ${i} = ${got[i]}, want ${want[i]} (error ${err.toExponential(3)} > ${tolerance} x magnitude ${magnitude[i].toExponential(3)})`);
    }
    if (magnitude[i] > 0) worst = Math.max(worst, err / magnitude[i]);
  }
  return worst;
}

/** The tolerance of what ran: the WGSL kernel's, or its WebAssembly twin's. */
function toleranceOf(sg, choice) {
  const kernel = sg.manifest.kernels.find((k) => k.name === choice.kernel);
  assert.ok(kernel, `chosen kernel ${choice.kernel} is in the manifest`);
  return choice.backend === 'webgpu' ? kernel.tolerance : kernel.wasm.tolerance;
}

/** matvec and matmul of every weight format on `sg`; checks each ran on `backend`. */
async function checkWeights(sg, backend, label) {
  for (const [i, format] of WEIGHT_FORMATS.entries()) {
    for (const op of ['matvec', 'matmul']) {
      const [m, n, k] = op === 'matvec' ? [1, 37, 192] : [5, 70, 128];
      const data = makeWeights(format, n, k, 100 + i);
      const x = makeFloats(m * k, 200 + i);
      const choice = sg.backendFor(op, format);
      assert.equal(choice.backend, backend, `${label}: ${op} ${JSON.stringify(format)} runs on ${choice.backend} (${choice.reason})`);
      const w = sg.upload(data);
      const before = { ...sg.calls };
      const y = op === 'matvec' ? await sg.matvec(w, x) : await sg.matmul(w, x, m);
      assert.equal(sg.calls[backend], (before[backend] ?? 0) + 1, `${label}: ${op} counted on ${backend}: ${JSON.stringify(sg.calls)}`);
      const ref = reference(format, data, x, m, n, k);
      assertClose(y, ref, toleranceOf(sg, choice), `${label} ${op} ${choice.kernel} M=${m} N=${n} K=${k}`);
      // A second call reuses what the first set up (GPU buffers, WebAssembly memory); releasing
      // the weights right after making it frees them only once it is done.
      const x2 = makeFloats(m * k, 300 + i);
      const pending = op === 'matvec' ? sg.matvec(w, x2) : sg.matmul(w, x2, m);
      sg.release(w);
      assertClose(await pending, reference(format, data, x2, m, n, k), toleranceOf(sg, choice), `${label} ${op} again`);
      await assert.rejects(sg.matvec(w, x2.subarray(0, k)), (e) => e.code === 'invalid-argument' && /released/.test(e.message));
    }
  }
}

/** Token `t`'s keys and values: Float32Array [kv_heads][head_dim] each. */
function token(t, shape) {
  const count = shape.kv_heads * shape.head_dim;
  return { k: makeFloats(count, 1000 + 2 * t, 3), v: makeFloats(count, 1001 + 2 * t, 3) };
}

const joinTokens = (list, key) => {
  const out = new Float32Array(list.reduce((a, t) => a + t[key].length, 0));
  let at = 0;
  for (const t of list) {
    out.set(t[key], at);
    at += t[key].length;
  }
  return out;
};

/** kvAppend's input for `list` (tokens): the keys [n][H][D], then the values. */
const kvNew = (list) => {
  const k = joinTokens(list, 'k');
  const out = new Float32Array(2 * k.length);
  out.set(k);
  out.set(joinTokens(list, 'v'), k.length);
  return out;
};

/** Appends `list` (tokens) to `want` ({cache, near}: format.mjs's cache and its near-ties). */
function expectAppend(l, want, list) {
  const step = kvAppend(l, want.cache, kvNew(list), list.length);
  want.cache = step.cache;
  want.near.push(...step.near);
  return want;
}

/** format.mjs's cache after appending `batches` (lists of tokens) in turn, and its near-ties. */
const expectedCache = (l, batches) => batches.reduce((want, list) => expectAppend(l, want, list), { cache: kvEmpty(l), near: [] });

/**
 * Checks the engine's cache words (`got`, from kvRead) against format.mjs's cache `want` with
 * its near-ties: exact, or (`wgsl`) a code may be its near-tie neighbour. Returns how many
 * codes took the neighbour.
 */
function assertCache(l, got, { cache: want, near }, what, wgsl = false) {
  assert.equal(got.len, want.len, `${what}: len`);
  const check = kvCompare(l, got, want, near, { wgsl, limit: 5 });
  assert.deepEqual(check.bad, [], `${what}: cache words after ${want.len} tokens (${check.wrong} wrong)`);
  return check.near;
}

/**
 * Appends `batches` (token counts) to a fresh cache of `format`, checking the cache's words
 * after each append against kvAppend's and attention (GQA 4) after some against
 * kvAttention's; returns the cache, the tokens and how many codes took a near-tie neighbour.
 */
async function checkKv(sg, format, backend, label, batches = [5, 1, 14, 60, 1, 69], attendAfter = [0, 2, 5]) {
  const layout = { ...format, ...KV_SHAPE };
  const kvFormat = { ...format, head_dim: KV_SHAPE.head_dim };
  for (const op of ['kv-append', 'kv-attend']) {
    const c = sg.backendFor(op, kvFormat);
    assert.equal(c.backend, backend, `${label}: ${op} runs on ${c.backend} (${c.reason})`);
  }
  const l = kvLayout(layout);
  const cache = sg.kvCache(layout);
  const tokens = [];
  const want = { cache: kvEmpty(l), near: [] };
  let ties = 0;
  for (const [b, count] of batches.entries()) {
    const fresh = Array.from({ length: count }, (_, i) => token(tokens.length + i, KV_SHAPE));
    await sg.kvAppend(cache, joinTokens(fresh, 'k'), joinTokens(fresh, 'v'));
    tokens.push(...fresh);
    assert.equal(cache.len, tokens.length);
    expectAppend(l, want, fresh);
    const bytes = await sg.kvRead(cache);
    ties += assertCache(l, bytes, want, label, backend === 'webgpu');
    if (attendAfter.includes(b)) {
      const q = makeFloats(N_HEADS * KV_SHAPE.head_dim, 5000 + tokens.length, 1);
      const choice = sg.backendFor('kv-attend', kvFormat);
      const before = sg.calls[backend] ?? 0;
      const out = await sg.kvAttend(cache, q, N_HEADS);
      assert.equal(sg.calls[backend], before + 1, `${label}: kvAttend counted on ${backend}`);
      assertClose(out, kvAttention(l, bytes, q, N_HEADS), toleranceOf(sg, choice), `${label} kv-attend ${choice.kernel} len ${tokens.length}`);
    }
  }
  return { cache, tokens, layout, ties };
}

// ---------------------------------------------------------------------------------------
// Setup

function emit(out, args) {
  const r = spawnSync(BIN, ['emit', '--quiet', '--out', out, ...args], { encoding: 'utf8' });
  if (r.error) assert.fail(`running ${BIN}: ${r.error.message}`);
  assert.equal(r.status, 0, `shadergen emit ${args.join(' ')}: ${r.stderr}`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `shadergen binary not found at ${BIN}: build it with cargo build -p shadergen (or set SHADERGEN_BIN)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shadergen-mjs-'));
  pkgDir = path.join(tmp, 'pkg');
  emit(pkgDir, ['--target', 'chrome', '--ops', 'matvec,matmul,kv-append,kv-attend', '--bits', '3,4,8', '--group', '32,64', '--head-dim', '64']);
  // The emitted copy is the one under test.
  mod = await import(pathToFileURL(path.join(pkgDir, 'shadergen.mjs')).href);
  ShaderGen = mod.ShaderGen;
  try {
    const { create } = await import('webgpu');
    const gpu = create([]);
    const adapter = await gpu.requestAdapter();
    dawn = adapter ? { gpu } : { reason: 'navigator.gpu.requestAdapter() returned null (no Vulkan device: is Mesa lavapipe installed?)' };
  } catch (e) {
    dawn = { reason: `Dawn for Node failed to start: ${e?.message ?? e}` };
  }
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  // dawn.node can hold the event loop open after its devices are gone; the file must end.
  setTimeout(() => process.exit(), 3000).unref();
});

/** Dawn's GPU object, or a skip (locally) / failure (CI) when there is none. */
function requireDawn(t) {
  if (dawn.gpu) return dawn.gpu;
  if (CI) assert.fail(`CI requires Dawn on lavapipe: ${dawn.reason}`);
  t.skip(`no WebGPU adapter: ${dawn.reason}`);
  return null;
}

// ---------------------------------------------------------------------------------------
// The package and the module

test('every package carries shadergen.mjs, byte for byte the template, named in the manifest', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.runtime, 'shadergen.mjs');
  const emitted = fs.readFileSync(path.join(pkgDir, 'shadergen.mjs'), 'utf8');
  const template = fs.readFileSync(path.join(REPO, 'templates', 'shadergen.mjs'), 'utf8');
  assert.ok(emitted === template, `${BIN} carries another templates/shadergen.mjs than the one checked out: rebuild it (cargo build -p shadergen)`);
});

test('the module has no static imports and touches Node only through guarded dynamic imports', () => {
  const text = fs.readFileSync(path.join(pkgDir, 'shadergen.mjs'), 'utf8');
  assert.deepEqual(text.match(/^\s*import\s.*$/gm), null, 'no top-level import statements');
  assert.deepEqual(text.match(/\bimport\s*\(\s*['"]/g), null, 'no dynamic import of a literal specifier (bundlers would follow it)');
  assert.deepEqual(text.match(/\brequire\s*\(/g), null, 'no require()');
  // Every use of process is behind typeof checks, in the IN_NODE test.
  for (const line of text.split('\n').filter((l) => /\bprocess\b/.test(l) && !/^\s*\/\//.test(l))) {
    assert.match(line, /typeof process|IN_NODE|process\.versions/, `unguarded use of process: ${line.trim()}`);
  }
});

// ---------------------------------------------------------------------------------------
// Capabilities and selection

test('capabilities report (docs/CAPS.md §1) on Dawn', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu });
  try {
    const c = sg.caps;
    assert.deepEqual(Object.keys(c).sort(), ['engine', 'schema', 'source', 'user_agent', 'wasm', 'webgpu']);
    assert.equal(c.schema, 1);
    assert.equal(c.source, 'shadergen.mjs');
    assert.equal(c.user_agent, null);
    assert.equal(c.engine, 'dawn-node');
    assert.equal(sg.suggestedTarget, 'generic');
    assert.deepEqual(Object.keys(c.webgpu).sort(), ['adapter', 'features', 'is_fallback_adapter', 'limits', 'wgsl_language_features']);
    assert.deepEqual(Object.keys(c.webgpu.adapter).sort(), ['architecture', 'description', 'device', 'vendor']);
    for (const v of Object.values(c.webgpu.adapter)) assert.ok(v === null || typeof v === 'string');
    assert.deepEqual(c.webgpu.features, [...c.webgpu.features].sort());
    assert.ok(c.webgpu.features.includes('subgroups') && c.webgpu.features.includes('shader-f16'), `Dawn on lavapipe: ${c.webgpu.features}`);
    for (const name of ['maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage']) {
      assert.equal(typeof c.webgpu.limits[name], 'number', name);
    }
    assert.deepEqual(c.webgpu.wgsl_language_features, [...c.webgpu.wgsl_language_features].sort());
    assert.equal(typeof c.webgpu.is_fallback_adapter, 'boolean');
    assert.deepEqual(c.wasm, { simd128: true, relaxed_simd: c.wasm.relaxed_simd, threads: c.wasm.threads });
    assert.equal(typeof c.wasm.relaxed_simd, 'boolean');
    assert.equal(c.wasm.threads, true, 'V8 validates shared memory and atomics');
    // The device has exactly the chosen kernels' features.
    const chosen = sg.select().filter((x) => x.backend === 'webgpu').map((x) => sg.manifest.kernels.find((k) => k.name === x.kernel));
    assert.deepEqual(sg.deviceDescriptor.requiredFeatures, [...new Set(chosen.flatMap((k) => k.features))].sort());
    assert.deepEqual(sg.deviceDescriptor.requiredFeatures, ['subgroups'], 'f16 not allowed: no shader-f16 requested');
    assert.deepEqual([...sg.device.features].filter((f) => f === 'shader-f16' || f === 'subgroups'), ['subgroups']);
  } finally {
    sg.destroy();
  }
});

test('engine and target from user agents (docs/CAPS.md §2)', () => {
  const { engineFromUserAgent, suggestTarget } = mod;
  const cases = [
    ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36', 'chromium', 'chrome'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0', 'chromium', 'edge'],
    ['Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0', 'gecko', 'firefox'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.0 Safari/605.1.15', 'webkit', 'safari'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/130.0 Mobile/15E148 Safari/604.1', 'webkit', 'safari'],
    ['Deno/2.1.4', 'wgpu-native', 'native'],
    [null, 'unknown', 'generic'],
  ];
  for (const [ua, engine, target] of cases) {
    assert.equal(engineFromUserAgent(ua), engine, String(ua));
    assert.equal(suggestTarget({ engine, user_agent: ua }), target, String(ua));
  }
  assert.equal(suggestTarget({ engine: 'dawn-node', user_agent: null }), 'generic');
});

/** A report with `features` and the spec's default limits, overridden by `limits`. */
function report({ features = [], limits = {}, simd = true, webgpu = true } = {}) {
  return {
    schema: 1,
    source: 'synthetic',
    user_agent: null,
    engine: 'unknown',
    webgpu: webgpu
      ? {
          adapter: { vendor: null, architecture: null, device: null, description: null },
          features: [...features].sort(),
          limits: {
            maxComputeWorkgroupStorageSize: 16384,
            maxComputeInvocationsPerWorkgroup: 256,
            maxComputeWorkgroupSizeX: 256,
            maxComputeWorkgroupsPerDimension: 65535,
            maxStorageBufferBindingSize: 134217728,
            maxBufferSize: 268435456,
            maxStorageBuffersPerShaderStage: 8,
            ...limits,
          },
          wgsl_language_features: [],
          is_fallback_adapter: false,
        }
      : null,
    wasm: { simd128: simd, relaxed_simd: false, threads: false },
  };
}

test('the selection rule (docs/CAPS.md §3) on synthetic reports', () => {
  const { selectKernels } = mod;
  const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'manifest.json'), 'utf8'));
  const pick = (caps, family, options) => selectKernels(manifest, caps, options).find((c) => c.family === family);
  const families = new Set(selectKernels(manifest, report()).map((c) => c.family));
  assert.equal(families.size, 2 * 12 + 2 * 6, 'matvec/matmul: 3 bits x 2 groups x 2 schemes; KV: 3 bits x 2 groups');
  assert.ok(families.has('matvec/3/32/asym') && families.has('kv-attend/4/32/asym/64'));

  assert.deepEqual(pick(report({ webgpu: false }), 'matvec/4/32/sym'), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_base', backend: 'wasm-simd', tier: null, reason: 'no WebGPU',
  });
  assert.deepEqual(pick(report({ webgpu: false, simd: false }), 'matvec/4/32/sym'), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_base', backend: 'wasm-scalar', tier: null, reason: 'no WebGPU; no wasm simd128',
  });
  assert.deepEqual(pick(report(), 'matvec/4/32/sym'), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_base', backend: 'webgpu', tier: 'base', reason: 'no subgroups; no shader-f16',
  });
  assert.deepEqual(pick(report({ features: ['subgroups', 'shader-f16'] }), 'matvec/4/32/sym'), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_subgroups', backend: 'webgpu', tier: 'subgroups', reason: 'adapter has subgroups; f16 not allowed',
  });
  assert.deepEqual(pick(report({ features: ['subgroups', 'shader-f16'] }), 'matvec/4/32/sym', { allowF16: true }), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_f16_subgroups', backend: 'webgpu', tier: 'f16-subgroups', reason: 'adapter has subgroups; adapter has shader-f16, f16 allowed',
  });
  assert.deepEqual(pick(report({ features: ['shader-f16'] }), 'kv-attend/4/32/asym/64', { allowF16: true }), {
    family: 'kv-attend/4/32/asym/64', kernel: 'kv_attend_q4g32a_d64_f16', backend: 'webgpu', tier: 'f16', reason: 'adapter has shader-f16, f16 allowed; no subgroups',
  });
  // matmul's 16384 bytes of workgroup storage over a 6000-byte adapter: WebAssembly, saying why.
  const small = pick(report({ features: ['subgroups'], limits: { maxComputeWorkgroupStorageSize: 6000 } }), 'matmul/4/32/sym');
  assert.equal(small.backend, 'wasm-simd');
  assert.match(small.reason, /^no runnable WebGPU kernel \(adapter has subgroups; no shader-f16; matmul_q4g32s_subgroups: workgroup storage 16384 > 6000; matmul_q4g32s_base: workgroup storage 16384 > 6000\)$/);
  // A kernel over the invocation limit is passed over for a poorer tier that fits.
  const big = JSON.parse(JSON.stringify(manifest));
  big.kernels.find((k) => k.name === 'matvec_q4g32s_subgroups').workgroup_size = [512, 1, 1];
  const fits = selectKernels(big, report({ features: ['subgroups'] })).find((c) => c.family === 'matvec/4/32/sym');
  assert.equal(fits.kernel, 'matvec_q4g32s_base');
  assert.equal(fits.reason, 'adapter has subgroups; no shader-f16; but matvec_q4g32s_subgroups: workgroup invocations 512 > 256, workgroup_size[0] 512 > maxComputeWorkgroupSizeX 256');
  // f16 not allowed: when the subgroups kernel does not fit, the f16 kernel below it in the
  // tier order is not eligible either; base is.
  const noF16 = selectKernels(big, report({ features: ['subgroups', 'shader-f16'] })).find((c) => c.family === 'matvec/4/32/sym');
  assert.equal(noF16.kernel, 'matvec_q4g32s_base', noF16.reason);
  assert.equal(noF16.reason, 'adapter has subgroups; f16 not allowed; but matvec_q4g32s_subgroups: workgroup invocations 512 > 256, workgroup_size[0] 512 > maxComputeWorkgroupSizeX 256');
  // A target without subgroup tiers wants no subgroups kernel even when the adapter has them.
  const generic = { ...manifest, target: 'generic', kernels: manifest.kernels.filter((k) => k.tier === 'base' || k.tier === 'f16') };
  assert.equal(selectKernels(generic, report({ features: ['subgroups'] }))[0].reason, 'target generic has no subgroup tier; no shader-f16');
});

/** The pinned fields of a choice (docs/CAPS.md §4: `reason` is not pinned). */
const pinned = ({ backend, family, kernel, tier }) => ({ backend, family, kernel, tier });

test('selection agrees with the shared vectors (tests/caps/*.json, docs/CAPS.md §4)', () => {
  const dir = path.join(REPO, 'tests', 'caps');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 5, `vector files in ${dir}: ${files}`);
  const packages = new Map();
  for (const file of files) {
    const v = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    assert.equal(mod.suggestTarget(v.caps), v.package_target, `${file}: §2 suggests the package_target`);
    let manifest = packages.get(v.package_target);
    if (!manifest) {
      const out = path.join(tmp, `caps-${v.package_target}`);
      emit(out, ['--target', v.package_target]);
      manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
      packages.set(v.package_target, manifest);
    }
    const got = mod.selectKernels(manifest, v.caps, { allowF16: v.allow_f16 }).map(pinned);
    assert.equal(got.length, v.expect.length, `${file}: one choice per family`);
    got.forEach((c, i) => assert.deepEqual(c, v.expect[i], `${file}: choice ${i} (${v.expect[i].family})`));
  }
});

test('the report shadergen.mjs measures on Dawn reads in Rust, and both rules agree on it', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu });
  sg.destroy();
  const reports = { dawn: sg.caps, none: (await ShaderGen.load(pkgDir, { gpu: null })).caps };
  for (const [name, caps] of Object.entries(reports)) {
    const file = path.join(tmp, `caps-${name}.json`);
    fs.writeFileSync(file, JSON.stringify(caps));
    for (const allowF16 of [false, true]) {
      const args = ['select', '--caps', file, '--package', pkgDir, '--json', ...(allowF16 ? ['--allow-f16'] : [])];
      const r = spawnSync(BIN, args, { encoding: 'utf8' });
      assert.equal(r.status, 0, `shadergen ${args.join(' ')}: ${r.stderr}`);
      const rust = JSON.parse(r.stdout);
      assert.equal(rust.suggested_target, mod.suggestTarget(caps));
      const js = mod.selectKernels(sg.manifest, caps, { allowF16 });
      assert.deepEqual(js.map(pinned), rust.choices.map(pinned), `${name}, allowF16 ${allowF16}`);
      const words = js.filter((c, i) => c.reason !== rust.choices[i].reason).length;
      if (words) t.diagnostic(`${name}, allowF16 ${allowF16}: ${words} reasons worded differently`);
    }
  }
});

// ---------------------------------------------------------------------------------------
// Running the kernels

test('matvec and matmul on WebGPU (Dawn), 3/4/8-bit, sym and asym', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu });
  try {
    await checkWeights(sg, 'webgpu', 'dawn');
    assert.equal(sg.backendFor('matvec', WEIGHT_FORMATS[0]).tier, 'subgroups');
  } finally {
    sg.destroy();
  }
});

test('matvec on WebGPU with f16 allowed: the f16-subgroups kernel within its 1e-2', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu, allowF16: true });
  try {
    const format = WEIGHT_FORMATS[1];
    const choice = sg.backendFor('matvec', format);
    assert.equal(choice.tier, 'f16-subgroups', choice.reason);
    assert.deepEqual(sg.deviceDescriptor.requiredFeatures, ['shader-f16', 'subgroups']);
    const data = makeWeights(format, 33, 256, 7);
    const x = makeFloats(256, 8);
    const worst = assertClose(await sg.matvec(sg.upload(data), x), reference(format, data, x, 1, 33, 256), toleranceOf(sg, choice), 'f16 matvec');
    assert.ok(worst > 1e-6, `an f16 kernel computes in f16 (worst relative error ${worst})`);
  } finally {
    sg.destroy();
  }
});

for (const prefer of ['wasm-simd', 'wasm-scalar']) {
  test(`matvec and matmul on WebAssembly (prefer: ${prefer})`, async () => {
    const sg = await ShaderGen.load(pkgDir, { gpu: dawn.gpu ?? null, prefer });
    try {
      assert.equal(sg.device, null, 'no device requested when WebAssembly is forced');
      await checkWeights(sg, prefer, prefer);
      assert.equal(sg.backendFor('matmul', WEIGHT_FORMATS[1]).reason, `prefer: ${prefer}`);
    } finally {
      sg.destroy();
    }
  });
}

test('no GPU at all: every family falls back to WebAssembly SIMD', async () => {
  const sg = await ShaderGen.load(pkgDir, { gpu: null });
  try {
    assert.equal(sg.caps.webgpu, null);
    assert.equal(sg.caps.engine, 'unknown');
    for (const c of sg.select()) {
      assert.equal(c.backend, 'wasm-simd', c.family);
      assert.equal(c.reason, 'no WebGPU');
    }
    await checkWeights(sg, 'wasm-simd', 'no gpu');
    for (const format of KV_FORMATS) await checkKv(sg, format, 'wasm-simd', `no gpu kv ${format.bits}`);
  } finally {
    sg.destroy();
  }
});

test('kv-append then kv-attend on WebGPU (Dawn): GQA 4, a window, two splits and more', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu });
  try {
    for (const format of KV_FORMATS) {
      const { ties } = await checkKv(sg, format, 'webgpu', `dawn kv ${format.bits}`);
      t.diagnostic(`q${format.bits}: ${ties} codes took the near-tie neighbour on the GPU`);
    }
  } finally {
    sg.destroy();
  }
});

for (const prefer of ['wasm-simd', 'wasm-scalar']) {
  test(`kv-append then kv-attend on WebAssembly (prefer: ${prefer}): bytes exact`, async () => {
    const sg = await ShaderGen.load(pkgDir, { gpu: null, prefer });
    try {
      for (const format of KV_FORMATS) {
        const { ties } = await checkKv(sg, format, prefer, `${prefer} kv ${format.bits}`);
        assert.equal(ties, 0);
      }
    } finally {
      sg.destroy();
    }
  });
}

test('a device lost during matvec: the call re-runs on WebAssembly, and so do later ones', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const sg = await ShaderGen.load(pkgDir, { gpu });
  try {
    const format = WEIGHT_FORMATS[0];
    const data = makeWeights(format, 37, 192, 11);
    const x = makeFloats(192, 12);
    const ref = reference(format, data, x, 1, 37, 192);
    const w = sg.upload(data);
    assertClose(await sg.matvec(w, x), ref, 1e-5, 'before loss');
    assert.equal(sg.calls.webgpu, 1);

    // Destroyed after the call started on WebGPU (it plans in a microtask, before the loss is
    // reported): the GPU work fails and the call itself re-runs on the WebAssembly twin.
    const pending = sg.matvec(w, x);
    sg.device.destroy();
    assertClose(await pending, ref, 1e-5, 'the call the loss interrupted');
    assert.deepEqual(sg.calls, { webgpu: 1, 'wasm-simd': 1, 'wasm-scalar': 0 });
    const after = sg.backendFor('matvec', format);
    assert.equal(after.backend, 'wasm-simd');
    assert.match(after.reason, /device lost/);
    assert.equal(sg.device, null);
    assertClose(await sg.matmul(w, x, 1), ref, 1e-5, 'a later call');
    assert.equal(sg.calls['wasm-simd'], 2);
  } finally {
    sg.destroy();
  }
});

test('a device lost during kv-append and kv-attend: a mirrored cache carries on in WebAssembly', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const layout = { ...KV_FORMATS[0], ...KV_SHAPE };
  const l = kvLayout(layout);
  const q = makeFloats(N_HEADS * KV_SHAPE.head_dim, 13, 1);
  const first = Array.from({ length: 40 }, (_, i) => token(i, KV_SHAPE));
  const more = Array.from({ length: 30 }, (_, i) => token(40 + i, KV_SHAPE));
  for (const interrupt of ['kv-append', 'kv-attend']) {
    const sg = await ShaderGen.load(pkgDir, { gpu });
    try {
      const cache = sg.kvCache(layout); // mirrored (the default)
      const lonely = sg.kvCache({ ...layout, mirror: false });
      for (const c of [cache, lonely]) await sg.kvAppend(c, joinTokens(first, 'k'), joinTokens(first, 'v'));
      const gpuOut = await sg.kvAttend(cache, q, N_HEADS);
      assert.equal(sg.calls.webgpu, 3);
      // The batches appended so far. After the loss, kvRead reads the WebAssembly mirror, whose
      // words are exact (no near-tie allowance).
      const batches = [first];
      if (interrupt === 'kv-append') {
        const pending = sg.kvAppend(cache, joinTokens(more, 'k'), joinTokens(more, 'v'));
        sg.device.destroy();
        await pending;
        batches.push(more);
        // Submitted before the loss, or re-run after it: either way the mirror has the tokens.
        assert.equal(sg.calls.webgpu + sg.calls['wasm-simd'], 4, JSON.stringify(sg.calls));
      } else {
        const pending = sg.kvAttend(cache, q, N_HEADS);
        sg.device.destroy();
        const bytes = await sg.kvRead(cache);
        assertCache(l, bytes, expectedCache(l, batches), 'the mirror holds the §11.3 words');
        assertClose(await pending, kvAttention(l, bytes, q, N_HEADS), 1e-5, 'the kv-attend the loss interrupted');
        assertClose(gpuOut, kvAttention(l, bytes, q, N_HEADS), 1e-5, 'kv-attend before the loss, against the mirror');
        assert.equal(sg.calls['wasm-simd'], 1, JSON.stringify(sg.calls));
      }
      const len = batches.flat().length;
      assert.equal(cache.len, len);
      const bytes = await sg.kvRead(cache);
      assertCache(l, bytes, expectedCache(l, batches), `after losing the device in ${interrupt}`);
      assertClose(await sg.kvAttend(cache, q, N_HEADS), kvAttention(l, bytes, q, N_HEADS), 1e-5, `kv-attend after losing the device in ${interrupt}`);
      // Appends after the loss go on in WebAssembly.
      const later = Array.from({ length: 3 }, (_, i) => token(len + i, KV_SHAPE));
      await sg.kvAppend(cache, joinTokens(later, 'k'), joinTokens(later, 'v'));
      batches.push(later);
      const final = await sg.kvRead(cache);
      assertCache(l, final, expectedCache(l, batches), 'after later appends');
      assertClose(await sg.kvAttend(cache, q, N_HEADS), kvAttention(l, final, q, N_HEADS), 1e-5, 'kv-attend after later appends');
      // The unmirrored cache went with the device.
      await assert.rejects(sg.kvAttend(lonely, q, N_HEADS), (e) => e.code === 'device-lost' && /mirror: false/.test(e.message));
      await assert.rejects(sg.kvAppend(lonely, later[0].k, later[0].v), (e) => e.code === 'device-lost');
    } finally {
      sg.destroy();
    }
  }
});

test('a package over http (the fetch path a page takes)', async () => {
  const server = http.createServer((req, res) => {
    const file = path.join(pkgDir, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(pkgDir) || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const type = file.endsWith('.wasm') ? 'application/wasm' : file.endsWith('.json') ? 'application/json' : 'text/plain';
    res.writeHead(200, { 'content-type': type }).end(fs.readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    const sg = await ShaderGen.load(`${base}/`, { gpu: null });
    assert.equal(sg.baseUrl, `${base}/`);
    const format = WEIGHT_FORMATS[0];
    const data = makeWeights(format, 9, 64, 21);
    const x = makeFloats(64, 22);
    assertClose(await sg.matvec(sg.upload(data), x), reference(format, data, x, 1, 9, 64), 1e-5, 'matvec over http');
    // The manifest's own URL works too; a missing package names the URL.
    assert.equal((await ShaderGen.load(`${base}/manifest.json`, { gpu: null })).baseUrl, `${base}/`);
    await assert.rejects(ShaderGen.load(`${base}/nothing/`, { gpu: null }), (e) => e.code === 'load-failed' && e.message.includes(`${base}/nothing/manifest.json`) && /404/.test(e.message));
  } finally {
    server.close();
  }
});

test('bad input gets typed errors naming the value', async () => {
  const sg = await ShaderGen.load(pkgDir, { gpu: null });
  const code = (c) => (e) => {
    assert.equal(e.name, 'ShaderGenError');
    assert.equal(e.code, c, e.message);
    return true;
  };
  try {
    await assert.rejects(ShaderGen.load(pkgDir, { prefer: 'cuda' }), (e) => code('invalid-argument')(e) && e.value === 'cuda' && /'wasm-simd'/.test(e.message));
    await assert.rejects(ShaderGen.load(path.join(tmp, 'missing'), { gpu: null }), code('load-failed'));
    const data = makeWeights(WEIGHT_FORMATS[0], 8, 64, 1);
    assert.throws(() => sg.upload({ ...data, format: { bits: 2, group_size: 32, scheme: 'sym' } }), (e) => code('not-in-package')(e) && /matvec\/2\/32\/sym/.test(e.message) && /matvec\/3\/32\/asym/.test(e.message));
    assert.throws(() => sg.upload({ ...data, format: { bits: 5, group_size: 32 } }), (e) => code('invalid-argument')(e) && e.value === 5 && /2, 3, 4, 8 or 16/.test(e.message));
    assert.throws(() => sg.upload({ ...data, weights: data.weights.subarray(1) }), (e) => code('invalid-argument')(e) && /weights has 47 values; .* needs 48/.test(e.message));
    assert.throws(() => sg.upload({ ...data, scales: new Float32Array(8) }), (e) => code('invalid-argument')(e) && /scales must be a Uint32Array/.test(e.message));
    assert.throws(() => sg.upload({ ...data, mins: undefined }), code('invalid-argument'));
    assert.throws(() => sg.upload({ ...data, k: 48 }), (e) => code('invalid-argument')(e) && e.value === 48 && /multiple of the group size 32/.test(e.message));
    const w = sg.upload(data);
    await assert.rejects(sg.matvec(w, new Float32Array(63)), (e) => code('invalid-argument')(e) && /x has 63 values; K=64 needs 64/.test(e.message));
    await assert.rejects(sg.matmul(w, new Float32Array(64), 2), (e) => code('invalid-argument')(e) && /M=2 x K=64 needs 128/.test(e.message));
    await assert.rejects(sg.matvec({}, new Float32Array(64)), code('invalid-argument'));

    assert.throws(() => sg.kvCache({ bits: 4, group_size: 32, head_dim: 96, kv_heads: 2, max_seq: 64 }), (e) => code('invalid-argument')(e) && e.value === 96);
    assert.throws(() => sg.kvCache({ bits: 2, group_size: 32, head_dim: 64, kv_heads: 2, max_seq: 64 }), code('not-in-package'));
    assert.throws(() => sg.kvCache({ bits: 4, group_size: 32, head_dim: 64, kv_heads: 2, max_seq: 63 }), (e) => code('invalid-argument')(e) && e.value === 63);
    assert.throws(() => sg.kvCache({ bits: 4, group_size: 32, head_dim: 64, kv_heads: 2, max_seq: 64, window: 65 }), (e) => code('invalid-argument')(e) && e.value === 65);
    const cache = sg.kvCache({ bits: 4, group_size: 32, head_dim: 64, kv_heads: 2, max_seq: 4, window: 2 });
    await assert.rejects(sg.kvAttend(cache, new Float32Array(8 * 64), 8), (e) => code('invalid-argument')(e) && /empty cache/.test(e.message));
    await assert.rejects(sg.kvAppend(cache, new Float32Array(100), new Float32Array(100)), (e) => code('invalid-argument')(e) && /k has 100 values/.test(e.message));
    await assert.rejects(sg.kvAppend(cache, new Float32Array(128), new Float32Array(256)), (e) => code('invalid-argument')(e) && /v has 256 values/.test(e.message));
    const huge = new Float32Array(128);
    huge[70] = 70000;
    await assert.rejects(sg.kvAppend(cache, new Float32Array(128), huge), (e) => code('invalid-argument')(e) && e.value === 70000 && /v\[70\]/.test(e.message) && /head 1/.test(e.message));
    await assert.rejects(sg.kvAppend(cache, new Float32Array(5 * 128), new Float32Array(5 * 128)), (e) => code('invalid-argument')(e) && /overflows max_seq = 4/.test(e.message));
    assert.equal(cache.len, 0, 'refused appends change nothing');
    await sg.kvAppend(cache, new Float32Array(128).fill(1), new Float32Array(128).fill(2));
    await assert.rejects(sg.kvAttend(cache, new Float32Array(5 * 64), 5), (e) => code('invalid-argument')(e) && e.value === 5 && /kv_heads \(2\) times 1 to 8/.test(e.message));
    await assert.rejects(sg.kvAttend(cache, new Float32Array(18 * 64), 18), (e) => code('invalid-argument')(e) && e.value === 18);
    await assert.rejects(sg.kvAttend(cache, new Float32Array(4 * 64), 2), (e) => code('invalid-argument')(e) && /q has 256 values; n_heads 2 x head_dim 64 needs 128/.test(e.message));
    assert.throws(() => sg.backendFor('softmax', WEIGHT_FORMATS[0]), (e) => code('invalid-argument')(e) && e.value === 'softmax');
    // destroy() lets the calls made before it finish, then refuses new ones.
    const ok = makeWeights(WEIGHT_FORMATS[0], 8, 64, 2);
    const x = makeFloats(64, 3);
    const pending = sg.matvec(sg.upload(ok), x);
    await sg.destroy();
    assertClose(await pending, reference(ok.format, ok, x, 1, 8, 64), 1e-5, 'a call made before destroy()');
  } finally {
    sg.destroy();
  }
  await assert.rejects(sg.matvec(sg, new Float32Array(1)), (e) => e.code === 'destroyed');
  assert.throws(() => sg.upload(makeWeights(WEIGHT_FORMATS[0], 8, 64, 2)), (e) => e.code === 'destroyed');
});

// ---------------------------------------------------------------------------------------
// int8 activations (docs/FORMAT.md §12): the dot4 tiers' matvec, opt-in with allowInt8

const INT8_FORMATS = [2, 3, 4, 8].flatMap((bits) =>
  ['sym', 'asym'].flatMap((scheme) => [32, 64].map((group_size) => ({ bits, group_size, scheme }))),
);
let int8Pkgs; // { all: every tier of chrome, noDot4Subgroups: base, subgroups and dot4 only }

/** Packages of matvec (and matmul, to see it unaffected) at 2/3/4/8 bits, made on first use. */
function int8Packages() {
  if (!int8Pkgs) {
    const args = ['--target', 'chrome', '--ops', 'matvec,matmul', '--bits', '2,3,4,8', '--group', '32,64'];
    int8Pkgs = { all: path.join(tmp, 'int8-all'), noDot4Subgroups: path.join(tmp, 'int8-dot4') };
    emit(int8Pkgs.all, args);
    emit(int8Pkgs.noDot4Subgroups, [...args, '--tier', 'base,subgroups,dot4']);
  }
  return int8Pkgs;
}

/**
 * Activations that exercise §12: a block of ties at scale 1 (amax 100: 2.5 → 2, −3.5 → −4,
 * 0.5 → 0), a block of zeros, a block below 2^-100 (zeros too), amax 127.5 (scale 2), a
 * negative amax, then random blocks of spreads from 1e-3 to 1e3.
 */
function int8Input(k, seed) {
  const rand = rng(seed);
  const x = new Float32Array(k);
  const blocks = k / 32;
  for (let b = 0; b < blocks; b++) {
    const at = 32 * b;
    const spread = [1e-3, 1, 30, 1e3][b % 4];
    for (let i = 0; i < 32; i++) {
      switch (b) {
        case 0:
          x[at + i] = i === 0 ? 100 : i < 4 ? [2.5, -3.5, 0.5][i - 1] : i % 2 ? Math.floor(rand() * 41) - 20 + 0.5 : (rand() * 2 - 1) * 90;
          break;
        case 1:
          x[at + i] = 0;
          break;
        case 2:
          x[at + i] = (rand() * 2 - 1) * 2 ** -101;
          break;
        case 3:
          x[at + i] = i === 7 ? 127.5 : (rand() * 2 - 1) * 127;
          break;
        case 4:
          x[at + i] = i === 31 ? -200 : (rand() * 2 - 1) * 150;
          break;
        default:
          x[at + i] = (rand() * 2 - 1) * spread;
      }
    }
  }
  return x;
}

/** How many outputs of `got` are outside `tolerance` of `ref` (relative to its magnitude). */
function outside(got, { want, magnitude }, tolerance) {
  let n = 0;
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= tolerance * magnitude[i] + TINY)) n++;
  return n;
}

/**
 * matvec of every INT8_FORMATS format on `sg`, which must run int8-activation kernels of
 * `tier` on WebGPU: within the kernel's tolerance of the reference over §12's int8 values,
 * and measurably not the f32-activation product.
 */
async function checkInt8Matvec(sg, tier, label, shapes = [[37, 256]]) {
  for (const [i, format] of INT8_FORMATS.entries()) {
    const choice = sg.backendFor('matvec', format);
    assert.equal(choice.backend, 'webgpu', `${label}: ${JSON.stringify(format)}: ${choice.reason}`);
    assert.equal(choice.tier, tier, `${label}: ${JSON.stringify(format)}: ${choice.reason}`);
    const kernel = sg.manifest.kernels.find((k) => k.name === choice.kernel);
    assert.equal(kernel.activations, 'int8', kernel.name);
    assert.deepEqual(kernel.wgsl_language_features, ['packed_4x8_integer_dot_product'], kernel.name);
    for (const [n, k] of shapes) {
      const data = makeWeights(format, n, k, 700 + i);
      const w = sg.upload(data);
      for (const seed of [800 + i, 900 + i]) {
        const x = int8Input(k, seed);
        const before = sg.calls.webgpu;
        const y = await sg.matvec(w, x);
        assert.equal(sg.calls.webgpu, before + 1, `${label}: counted on webgpu`);
        const q = quantizeX8(x);
        const what = `${label} ${kernel.name} N=${n} K=${k} seed ${seed}`;
        assertClose(y, reference(format, data, q.values, 1, n, k), kernel.tolerance, `${what} (reference over int8 x)`);
        assert.ok(outside(y, reference(format, data, x, 1, n, k), kernel.tolerance) > 0, `${what}: the result is the f32-activation product, not int8's`);
      }
      sg.release(w);
    }
  }
}

test('int8 activations (docs/FORMAT.md §12): format.mjs agrees with the rule on pinned values', () => {
  checkX8Examples();
  const q = quantizeX8(int8Input(256, 1));
  assert.deepEqual([...q.codes.slice(0, 4)], [100, 2, -4, 0], 'ties to even at scale 1');
  assert.deepEqual([q.scales[1], q.scales[2], q.scales[3], q.scales[4]], [0, 0, 2, 2]);
  assert.ok(q.codes.slice(32, 96).every((c) => c === 0), 'the zero and the tiny block quantize to zeros');
});

test('selection with allowInt8 (docs/CAPS.md §3): dot4 tiers only on request, with the language feature', () => {
  const { selectKernels, TIERS, TARGET_TIERS } = mod;
  assert.deepEqual(TIERS, ['base', 'f16', 'subgroups', 'f16-subgroups', 'dot4', 'dot4-subgroups']);
  assert.deepEqual(TARGET_TIERS.firefox, ['base', 'f16', 'dot4']);
  assert.deepEqual(TARGET_TIERS.safari, ['base', 'f16', 'dot4']);
  const manifest = JSON.parse(fs.readFileSync(path.join(int8Packages().all, 'manifest.json'), 'utf8'));
  const dot4 = (caps) => ({ ...caps, webgpu: caps.webgpu && { ...caps.webgpu, wgsl_language_features: ['packed_4x8_integer_dot_product'] } });
  const pick = (caps, family, options) => selectKernels(manifest, caps, options).find((c) => c.family === family);
  const sub = report({ features: ['subgroups'] });
  // Without the option nothing changes, whatever the adapter's WGSL has.
  for (const caps of [sub, dot4(sub)]) {
    assert.deepEqual(selectKernels(manifest, caps), selectKernels(manifest, sub));
    assert.equal(pick(caps, 'matvec/4/32/sym').kernel, 'matvec_q4g32s_subgroups');
  }
  // With it: matvec over quantized weights takes dot4-subgroups (or dot4 without subgroups).
  assert.deepEqual(pick(dot4(sub), 'matvec/4/32/sym', { allowInt8: true }), {
    family: 'matvec/4/32/sym', kernel: 'matvec_q4g32s_dot4_subgroups', backend: 'webgpu', tier: 'dot4-subgroups',
    reason: 'adapter has packed_4x8_integer_dot_product, int8 allowed; adapter has subgroups; no shader-f16',
  });
  assert.equal(pick(dot4(report()), 'matvec/2/64/asym', { allowInt8: true }).kernel, 'matvec_q2g64a_dot4');
  // f16 allowed as well: int8 still wins (dot4 tiers are the richest).
  assert.equal(pick(dot4(report({ features: ['subgroups', 'shader-f16'] })), 'matvec/8/32/asym', { allowInt8: true, allowF16: true }).tier, 'dot4-subgroups');
  // Other ops compute the same at dot4 tiers (f32 activations): unchanged.
  for (const c of selectKernels(manifest, dot4(sub), { allowInt8: true })) {
    if (c.family.startsWith('matvec/')) assert.equal(c.tier, 'dot4-subgroups', c.family);
    else assert.equal(c.tier, 'subgroups', c.family);
  }
  // No language feature (or a report without the field): the tiers below, saying why.
  const without = pick(sub, 'matvec/4/32/sym', { allowInt8: true });
  assert.equal(without.kernel, 'matvec_q4g32s_subgroups');
  assert.equal(without.reason, 'adapter has subgroups; no shader-f16; no packed_4x8_integer_dot_product');
  const noField = { ...sub, webgpu: { ...sub.webgpu } };
  delete noField.webgpu.wgsl_language_features;
  assert.equal(pick(noField, 'matvec/4/32/sym', { allowInt8: true }).kernel, 'matvec_q4g32s_subgroups');
  // Fallback as for every tier: a dot4-subgroups kernel that cannot run gives dot4, then subgroups.
  const big = JSON.parse(JSON.stringify(manifest));
  big.kernels.find((k) => k.name === 'matvec_q4g32s_dot4_subgroups').workgroup_size = [512, 1, 1];
  const fits = selectKernels(big, dot4(sub), { allowInt8: true }).find((c) => c.family === 'matvec/4/32/sym');
  assert.equal(fits.kernel, 'matvec_q4g32s_dot4');
  assert.match(fits.reason, /but matvec_q4g32s_dot4_subgroups: workgroup invocations 512 > 256/);
  big.kernels.find((k) => k.name === 'matvec_q4g32s_dot4').workgroup_storage_bytes = 1 << 20;
  assert.equal(selectKernels(big, dot4(sub), { allowInt8: true }).find((c) => c.family === 'matvec/4/32/sym').kernel, 'matvec_q4g32s_subgroups');
  // A kernel that declares a language feature the report lacks is not runnable.
  assert.equal(mod.notRunnable(manifest.kernels.find((k) => k.name === 'matvec_q4g32s_dot4'), sub.webgpu), 'no WGSL language feature packed_4x8_integer_dot_product');
  // WebAssembly stands for the family with its poorest tier's twin, as before.
  assert.equal(pick(report({ webgpu: false }), 'matvec/4/32/sym', { allowInt8: true }).kernel, 'matvec_q4g32s_base');
  // A package without dot4 tiers (generic) or a target without them: the usual answer.
  const generic = { ...manifest, target: 'generic', kernels: manifest.kernels.filter((k) => k.tier === 'base' || k.tier === 'f16') };
  assert.equal(selectKernels(generic, dot4(sub), { allowInt8: true })[0].tier, 'base');
});

test('a dot4-subgroups matvec runs its tall entry point from dispatch.tall.min_n rows on', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(int8Packages().all, 'manifest.json'), 'utf8'));
  const matvecs = manifest.kernels.filter((k) => k.op === 'matvec' && k.activations === 'int8');
  assert.ok(matvecs.length > 0);
  for (const kernel of matvecs) {
    const tall = kernel.dispatch.tall;
    if (kernel.tier !== 'dot4-subgroups') {
      assert.equal(tall, undefined, kernel.name);
      continue;
    }
    const n = tall.min_n;
    assert.deepEqual(mod.passesOf(kernel, { M: 1, N: n - 1, K: 64 }), [{ entry_point: kernel.entry_point, workgroups: [Math.ceil((n - 1) / 8), 1, 1] }]);
    assert.deepEqual(mod.passesOf(kernel, { M: 1, N: n + 5, K: 64 }), [{ entry_point: `${kernel.entry_point}_tall`, workgroups: [Math.ceil((n + 5) / 16), 1, 1] }]);
    assert.match(fs.readFileSync(path.join(int8Packages().all, kernel.wgsl), 'utf8'), new RegExp(`fn ${kernel.entry_point}_tall\\(`));
  }
});

test('subgroup matvecs run their wide entry point where K >= dispatch.wide.min_k and N <= max_n', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(int8Packages().all, 'manifest.json'), 'utf8'));
  const matvecs = manifest.kernels.filter((k) => k.op === 'matvec');
  assert.ok(matvecs.some((k) => k.tier === 'subgroups') && matvecs.some((k) => k.tier === 'dot4-subgroups'));
  for (const kernel of matvecs) {
    const wide = kernel.dispatch.wide;
    if (kernel.tier !== 'subgroups' && kernel.tier !== 'dot4-subgroups') {
      assert.equal(wide, undefined, kernel.name);
      continue;
    }
    const { min_k: k, max_n: n } = wide;
    const own = (N) => [{ entry_point: kernel.entry_point, workgroups: [Math.ceil(N / 8), 1, 1] }];
    assert.deepEqual(mod.passesOf(kernel, { M: 1, N: n, K: k - 32 }), own(n), kernel.name);
    assert.deepEqual(mod.passesOf(kernel, { M: 1, N: n, K: k }), [{ entry_point: `${kernel.entry_point}_wide`, workgroups: [Math.ceil(n / 8), 1, 1] }], kernel.name);
    // Past max_n: the tall entry point where there is one, else the kernel's own.
    const past = mod.passesOf(kernel, { M: 1, N: n + 1, K: k })[0].entry_point;
    assert.equal(past, kernel.dispatch.tall ? `${kernel.entry_point}_tall` : kernel.entry_point, kernel.name);
    assert.match(fs.readFileSync(path.join(int8Packages().all, kernel.wgsl), 'utf8'), new RegExp(`fn ${kernel.entry_point}_wide\\(`));
  }
});

test('int8-activation matvec on WebGPU (Dawn): bits 2, 3, 4, 8, sym and asym, dot4-subgroups and dot4', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const { all, noDot4Subgroups } = int8Packages();
  const sg = await ShaderGen.load(all, { gpu, allowInt8: true });
  try {
    assert.ok(sg.caps.webgpu.wgsl_language_features.includes('packed_4x8_integer_dot_product'), `Dawn's WGSL: ${sg.caps.webgpu.wgsl_language_features}`);
    assert.deepEqual(sg.deviceDescriptor.requiredFeatures, ['subgroups']);
    // K = 2112: 66 blocks; N = 8197: the tall entry point; K = 8320 (260 blocks), N = 9: the wide one.
    await checkInt8Matvec(sg, 'dot4-subgroups', 'dawn', [[37, 256], [5, 2112], [8197, 128], [9, 8320]]);
    // matmul is unaffected by the option.
    assert.equal(sg.backendFor('matmul', INT8_FORMATS[0]).tier, 'subgroups');
  } finally {
    sg.destroy();
  }
  const sg2 = await ShaderGen.load(noDot4Subgroups, { gpu, allowInt8: true });
  try {
    assert.match(sg2.backendFor('matvec', INT8_FORMATS[0]).reason, /no dot4-subgroups kernel in the package/);
    await checkInt8Matvec(sg2, 'dot4', 'dawn dot4');
  } finally {
    sg2.destroy();
  }
});

test('allowInt8 falls back as the other tiers do: no language feature, a lost device', async (t) => {
  const gpu = requireDawn(t);
  if (!gpu) return;
  const dir = int8Packages().all;
  const format = { bits: 4, group_size: 32, scheme: 'sym' };
  const data = makeWeights(format, 37, 256, 41);
  const x = int8Input(256, 42);
  const f32 = reference(format, data, x, 1, 37, 256);
  // An adapter whose WGSL lacks packed_4x8_integer_dot_product (and one whose list cannot be read).
  const hide = (features) => ({
    requestAdapter: (options) => gpu.requestAdapter(options),
    get wgslLanguageFeatures() {
      if (features === null) throw new Error('unreadable');
      return new Set(features);
    },
  });
  for (const wrapped of [hide([]), hide(null)]) {
    const sg = await ShaderGen.load(dir, { gpu: wrapped, allowInt8: true });
    try {
      assert.deepEqual(sg.caps.webgpu.wgsl_language_features, []);
      const choice = sg.backendFor('matvec', format);
      assert.equal(choice.tier, 'subgroups', choice.reason);
      assert.match(choice.reason, /no packed_4x8_integer_dot_product/);
      assertClose(await sg.matvec(sg.upload(data), x), f32, 1e-5, 'matvec without the language feature');
    } finally {
      sg.destroy();
    }
  }
  // Options are checked.
  await assert.rejects(ShaderGen.load(dir, { gpu: null, allowInt8: 'yes' }), (e) => e.code === 'invalid-argument' && e.value === 'yes' && /allowInt8/.test(e.message));
  // A device lost during an int8 matvec: the call re-runs on the family's WebAssembly twin (f32 activations).
  const sg = await ShaderGen.load(dir, { gpu, allowInt8: true });
  try {
    const w = sg.upload(data);
    assertClose(await sg.matvec(w, x), reference(format, data, quantizeX8(x).values, 1, 37, 256), 1e-5, 'int8 before the loss');
    const pending = sg.matvec(w, x);
    sg.device.destroy();
    const out = await pending;
    const choice = sg.backendFor('matvec', format);
    assert.equal(choice.backend, 'wasm-simd');
    const twin = sg.manifest.kernels.find((k) => k.name === choice.kernel);
    assert.equal(twin.name, 'matvec_q4g32s_base');
    assertClose(out, f32, twin.wasm.tolerance, 'the call the loss interrupted, on the twin of the family (WebAssembly)');
    assertClose(await sg.matvec(w, x), f32, twin.wasm.tolerance, 'a later call');
    assert.deepEqual(sg.calls, { webgpu: 1, 'wasm-simd': 2, 'wasm-scalar': 0 });
  } finally {
    sg.destroy();
  }
});
