// Every kernel `shadergen emit` writes, for every target, compiled by Tint (Chrome's WGSL
// compiler) inside Dawn for Node (npm `webgpu`), down to the backend (SPIR-V on lavapipe):
// createShaderModule + getCompilationInfo, then createComputePipelineAsync.
//
//   cargo build -p shadergen && node --test tests/dawn/
//
// Environment:
//   SHADERGEN_BIN            the shadergen binary (default: <repo>/target/debug/shadergen)
//   CI=true                  no adapter, or a kernel left uncompiled for a missing feature, fails
//   SHADERGEN_TINT_DEDUPE=1  compile each distinct (text, entry point) once; copies reuse the result
//   SHADERGEN_TINT_SELFTEST=1  corrupt one emitted chrome kernel first: the compile test must fail
//
// Dialects: kernels are compiled as emitted, except one documented dialect difference: naga
// (firefox, native) rejects `enable subgroups;` while Tint requires it (codegen/src/profile.rs,
// `Dialect`), so naga-dialect kernels that need `subgroups` get that one directive added before
// Tint sees them. They are counted as "adapted" in the summary; nothing else is ever changed.
//
// Devices: a kernel is compiled on a device with exactly the features its manifest entry lists
// (all of FEATURES the adapter has are usable; kernels needing others are "not compiled"), so an
// undeclared feature fails as it would in a browser without it. A device compiles at most
// MAX_PIPELINES_PER_DEVICE kernels, then is destroyed and replaced. With dawn.node 0.6.2 on
// lavapipe, one device that has created ~350-600 pipelines crashes the process (SIGSEGV, or abort
// "The futex facility returned an unexpected error code" in dawn::native::InstanceBase::
// ProcessEvents) or leaves a popErrorScope / createComputePipelineAsync promise pending forever;
// a fresh device per 200 kernels ran the whole set repeatedly without either.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.SHADERGEN_BIN
  ? path.resolve(process.env.SHADERGEN_BIN)
  : path.join(REPO, 'target', 'debug', 'shadergen');
const TARGETS = ['generic', 'chrome', 'edge', 'firefox', 'safari', 'native'];
const FEATURES = ['shader-f16', 'subgroups'];
const CI = process.env.CI === 'true';
const DEDUPE = process.env.SHADERGEN_TINT_DEDUPE === '1';
const SELFTEST = process.env.SHADERGEN_TINT_SELFTEST === '1';
const MAX_PIPELINES_PER_DEVICE = 200;
// A Dawn promise that has not settled by then never will (see above): fail instead of hanging.
const SETTLE_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// Dawn

let gpuState; // { gpu, adapter, features } or { reason }
const devices = new Set();

/** The Dawn adapter, once per process; `{ reason }` when there is none. */
async function getGpu() {
  if (gpuState) return gpuState;
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    const gpu = create([]);
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      gpuState = { reason: 'navigator.gpu.requestAdapter() returned null (no Vulkan device: is Mesa lavapipe installed?)' };
    } else {
      gpuState = { gpu, adapter, features: FEATURES.filter((f) => adapter.features.has(f)) };
    }
  } catch (e) {
    gpuState = { reason: `Dawn for Node failed to start: ${e?.message ?? e}` };
  }
  return gpuState;
}

/** Skips (locally) or fails (CI) when there is no adapter; otherwise returns the GPU state. */
async function requireGpu(t) {
  const g = await getGpu();
  if (g.reason) {
    if (CI) assert.fail(`CI requires Dawn on lavapipe: ${g.reason}`);
    t.skip(`no WebGPU adapter, Tint checks skipped: ${g.reason}`);
    return null;
  }
  return g;
}

/** A fresh device with `features`; its uncaptured errors and loss are recorded. */
async function newDevice(g, features) {
  // An adapter hands out one device: each further device comes from a fresh adapter.
  const adapter = g.adapterUsed ? await g.gpu.requestAdapter() : g.adapter;
  g.adapterUsed = true;
  assert.ok(adapter, 'requestAdapter() returned null for a further device');
  const device = await adapter.requestDevice({ requiredFeatures: features });
  const state = { device, uncaptured: [], lost: null, destroyed: false };
  device.addEventListener('uncapturederror', (ev) => state.uncaptured.push(ev.error?.message ?? String(ev.error)));
  device.lost.then((info) => {
    if (!state.destroyed) state.lost = `device lost (${info.reason}): ${info.message}`;
  });
  devices.add(state);
  return state;
}

function destroyDevice(state) {
  if (state.destroyed) return;
  state.destroyed = true;
  devices.delete(state);
  state.device.destroy();
}

after(() => {
  for (const d of [...devices]) destroyDevice(d);
  // dawn.node can hold the event loop open after its devices are gone; the test file must end.
  setTimeout(() => process.exit(), 3000).unref();
});

/** dawn.node's pending promises do not keep Node's event loop alive: hold it open meanwhile. */
async function keepingAlive(fn) {
  const timer = setInterval(() => {}, 1000);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

function settle(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Dawn did not settle ${what} within ${SETTLE_MS / 1000} s`)), SETTLE_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function firstLine(s) {
  return String(s).trim().split('\n')[0];
}

/**
 * Compiles one WGSL text with Tint the way Chrome would: createShaderModule, getCompilationInfo,
 * then createComputePipelineAsync (layout 'auto') inside validation and internal error scopes.
 * Returns the problems found: [{ stage: 'module' | 'pipeline' | 'device', message, line, column,
 * source }]; empty when the kernel compiled. Errors are collected, never thrown (except a hang).
 */
export async function checkWgsl(state, code, entryPoint) {
  const { device } = state;
  const problems = [];
  const lines = code.split('\n');
  const at = (line, column) => ({ line, column, source: line ? (lines[line - 1] ?? '').trim() : undefined });

  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code });
  const info = await settle(module.getCompilationInfo(), 'getCompilationInfo');
  const moduleScope = await settle(device.popErrorScope(), 'popErrorScope (module)');
  for (const m of info.messages) {
    if (m.type === 'error') problems.push({ stage: 'module', message: m.message, ...at(m.lineNum, m.linePos) });
  }
  if (moduleScope && problems.length === 0) problems.push({ stage: 'module', message: moduleScope.message, ...at() });

  if (problems.length === 0) {
    device.pushErrorScope('validation');
    device.pushErrorScope('internal');
    try {
      await settle(
        device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint } }),
        'createComputePipelineAsync',
      );
    } catch (e) {
      if (e.message?.startsWith('Dawn did not settle')) throw e;
      problems.push({ stage: 'pipeline', message: `${e.reason ?? e.name}: ${e.message}`, ...at() });
    }
    for (const scope of ['internal', 'validation']) {
      const err = await settle(device.popErrorScope(), `popErrorScope (pipeline, ${scope})`);
      if (err && !problems.some((p) => p.message.includes(err.message))) {
        problems.push({ stage: 'pipeline', message: `${scope} error: ${err.message}`, ...at() });
      }
    }
  }
  for (const message of state.uncaptured.splice(0)) problems.push({ stage: 'device', message, ...at() });
  if (state.lost) problems.push({ stage: 'device', message: state.lost, ...at() });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// shadergen

function emit(target, out) {
  const r = spawnSync(BIN, ['emit', '--quiet', '--target', target, '--out', out], { encoding: 'utf8' });
  if (r.error) assert.fail(`running ${BIN}: ${r.error.message}`);
  assert.equal(r.status, 0, `shadergen emit --target ${target} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  assert.equal(manifest.target, target, `${out}/manifest.json names target ${manifest.target}`);
  assert.ok(Array.isArray(manifest.kernels) && manifest.kernels.length > 0, `${target}: manifest lists no kernels`);
  return manifest;
}

const ENABLE_LINE = /^\s*enable\s+[^;]*;\s*$/;

/** The text Tint is given: as emitted, plus `enable subgroups;` for naga-dialect subgroup kernels. */
function tintText(manifest, kernel, code) {
  const needs = (kernel.features ?? []).includes('subgroups');
  const hasEnable = /^\s*enable\s[^;]*\bsubgroups\b[^;]*;/m.test(code);
  if (manifest.dialect !== 'naga' || !needs || hasEnable) return { code, adapted: false };
  const lines = code.split('\n');
  let i = 0;
  while (i < lines.length && ENABLE_LINE.test(lines[i])) i++;
  lines.splice(i, 0, 'enable subgroups;');
  return { code: lines.join('\n'), adapted: true };
}

const sha = (s) => createHash('sha256').update(s).digest('hex');

function formatFailures(failures) {
  // Identical texts fail identically: group by (text, problem) and list the kernels.
  const groups = new Map();
  for (const f of failures) {
    const key = `${f.hash}\0${f.stage}\0${f.message}\0${f.line}`;
    if (!groups.has(key)) groups.set(key, { ...f, kernels: [] });
    groups.get(key).kernels.push(`${f.target}/${f.kernel}`);
  }
  const out = [];
  for (const g of groups.values()) {
    const where = g.line ? ` line ${g.line}:${g.column}` : '';
    const note = g.adapted ? ' (naga text; Tint was given it with `enable subgroups;` added)' : '';
    out.push(`- ${g.kernels.join(', ')}${note}\n  ${g.stage}${where}: ${g.message.trim().replace(/\n/g, '\n    ')}`);
    if (g.source) out.push(`    > ${g.source}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Tests

test('every emitted kernel compiles with Tint (Dawn on lavapipe)', { timeout: 30 * 60_000 }, async (t) => {
  assert.ok(
    fs.existsSync(BIN),
    `shadergen binary not found at ${BIN}: build it with cargo build -p shadergen (or set SHADERGEN_BIN)`,
  );
  const g = await requireGpu(t);
  if (!g) return;

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shadergen-tint-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));

  const started = performance.now();
  const failures = [];
  const notCompiled = [];
  // Per target and kernel: "compiled", "rejected" or "not compiled: needs ..." — written to
  // target/test-results/tint.json for `shadergen matrix`.
  const results = {};
  const rawTexts = new Set();
  const tintTexts = new Set();
  const cache = new Map(); // (features, entry point, text) -> problems, with SHADERGEN_TINT_DEDUPE=1
  let compiledTotal = 0;
  let kernelTotal = 0;

  t.diagnostic(`Dawn adapter features used: ${g.features.join(', ') || '(none)'}${DEDUPE ? '; dedupe on' : ''}`);
  await keepingAlive(async () => {
    for (const target of TARGETS) {
      const t0 = performance.now();
      const dir = path.join(root, target);
      const manifest = emit(target, dir);
      if (SELFTEST && target === 'chrome') {
        const victim = path.join(dir, manifest.kernels[0].wgsl);
        fs.writeFileSync(victim, fs.readFileSync(victim, 'utf8').replace(/\bfn\b/, 'fn fn'));
        t.diagnostic(`SHADERGEN_TINT_SELFTEST: corrupted ${target}/${manifest.kernels[0].wgsl}; this test must fail`);
      }
      const row = { target, dialect: manifest.dialect, total: manifest.kernels.length, compiled: 0, adapted: 0, reused: 0, skipped: [], failed: 0 };
      const emitMs = performance.now() - t0;
      // Each kernel is compiled on a device that has exactly the features its manifest entry
      // declares, so a kernel that needs an undeclared feature (`enable f16;` without
      // shader-f16) fails here as it would in a browser that lacks that feature.
      const byFeatures = new Map();
      for (const kernel of manifest.kernels) {
        rawTexts.add(fs.readFileSync(path.join(dir, kernel.wgsl), 'utf8'));
        const features = [...(kernel.features ?? [])].sort();
        const missing = features.filter((f) => !g.features.includes(f));
        if (missing.length) {
          row.skipped.push(kernel.name);
          notCompiled.push(`${target}/${kernel.name} (needs ${missing.join(', ')})`);
          (results[target] ??= {})[kernel.name] = `not compiled: needs ${missing.join(', ')}`;
          continue;
        }
        const fkey = features.join(',');
        if (!byFeatures.has(fkey)) byFeatures.set(fkey, { features, kernels: [] });
        byFeatures.get(fkey).kernels.push(kernel);
      }
      for (const { features, kernels } of byFeatures.values()) {
        let state = null;
        let pipelines = 0;
        try {
          for (const kernel of kernels) {
            const raw = fs.readFileSync(path.join(dir, kernel.wgsl), 'utf8');
            const { code, adapted } = tintText(manifest, kernel, raw);
            tintTexts.add(code);
            if (adapted) row.adapted++;
            // Every pass's entry point is a pipeline (kv-attend has a split and a combine pass).
            const entries = (kernel.dispatch?.passes ?? []).map((p) => p.entry_point);
            if (!entries.includes(kernel.entry_point)) entries.unshift(kernel.entry_point);
            const problems = [];
            for (const entry of entries) {
              const key = `${features.join(',')}\0${entry}\0${code}`;
              if (DEDUPE && cache.has(key)) {
                problems.push(...cache.get(key));
                row.reused++;
                continue;
              }
              if (!state || state.lost || pipelines >= MAX_PIPELINES_PER_DEVICE) {
                if (state) destroyDevice(state);
                state = await newDevice(g, features);
                pipelines = 0;
              }
              pipelines++;
              const found = await checkWgsl(state, code, entry);
              if (DEDUPE) cache.set(key, found);
              problems.push(...found);
            }
            if (problems.length) {
              row.failed++;
              (results[target] ??= {})[kernel.name] = 'rejected';
              for (const p of problems) failures.push({ target, kernel: kernel.name, hash: sha(code), adapted, ...p });
            } else {
              row.compiled++;
              (results[target] ??= {})[kernel.name] = 'compiled';
            }
          }
        } finally {
          if (state) destroyDevice(state);
        }
      }
      row.ms = performance.now() - t0;
      row.emitMs = emitMs;
      compiledTotal += row.compiled;
      kernelTotal += row.total;
      const extra = [
        row.adapted ? `${row.adapted} adapted (+enable subgroups)` : '',
        row.reused ? `${row.reused} reused` : '',
        row.failed ? `${row.failed} FAILED` : '',
        row.skipped.length ? `${row.skipped.length} not compiled (missing features)` : '',
      ].filter(Boolean).join(', ');
      t.diagnostic(
        `${target.padEnd(8)} (${row.dialect}): ${row.compiled}/${row.total} compiled` +
          `${extra ? `, ${extra}` : ''} in ${(row.ms / 1000).toFixed(1)} s (emit ${(row.emitMs / 1000).toFixed(1)} s)`,
      );
    }
  });

  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(
    `total: ${compiledTotal}/${kernelTotal} kernels compiled in ${seconds.toFixed(1)} s; ` +
      `${rawTexts.size} distinct emitted texts, ${tintTexts.size} distinct texts given to Tint (compiled ones)`,
  );
  if (notCompiled.length) {
    t.diagnostic(`not compiled, adapter lacks a feature (${notCompiled.length}): ${notCompiled.join(', ')}`);
  }

  if (!SELFTEST) {
    const dir = path.join(REPO, 'target', 'test-results');
    fs.mkdirSync(dir, { recursive: true });
    const adapter = (await getGpu()).adapter?.info;
    const record = { engine: 'Dawn for Node (Tint)', adapter: adapter ? `${adapter.vendor} ${adapter.architecture} ${adapter.description}`.trim() : null, results };
    fs.writeFileSync(path.join(dir, 'tint.json'), `${JSON.stringify(record, null, 1)}\n`);
  }

  const messages = [];
  if (failures.length) {
    const kernels = new Set(failures.map((f) => `${f.target}/${f.kernel}`)).size;
    messages.push(`Tint rejected ${kernels} kernel(s):\n${formatFailures(failures)}`);
  }
  if (CI && notCompiled.length) {
    messages.push(
      `CI requires every kernel compiled, but the adapter lacks features for ${notCompiled.length}: ` +
        notCompiled.join(', '),
    );
  }
  if (messages.length) assert.fail(messages.join('\n\n'));
});

test('a broken kernel is reported', async (t) => {
  const g = await requireGpu(t);
  if (!g) return;
  const state = await newDevice(g, []);
  try {
    await keepingAlive(async () => {
      // A type error Tint rejects at createShaderModule, with its line.
      const typeError = [
        '@group(0) @binding(0) var<storage, read_write> y: array<f32>;',
        '',
        '@compute @workgroup_size(64)',
        'fn main(@builtin(global_invocation_id) id: vec3<u32>) {',
        '    let v: u32 = 1.5;',
        '    y[id.x] = f32(v);',
        '}',
      ].join('\n');
      const p1 = await checkWgsl(state, typeError, 'main');
      assert.ok(p1.length > 0, 'an invalid kernel was accepted');
      assert.equal(p1[0].stage, 'module');
      assert.equal(p1[0].line, 5, `error reported at line ${p1[0].line}: ${p1[0].message}`);
      assert.match(p1[0].message, /u32|abstract-float|f32/);
      assert.equal(formatFailures(p1.map((p) => ({ ...p, target: 'test', kernel: 'typeError', hash: sha(typeError) }))).includes('line 5'), true);

      // Parses, but fails when the pipeline is built: workgroup storage over the spec-default
      // 16384 bytes (the limit every target assumes).
      const tooBig = [
        'var<workgroup> tile: array<f32, 8192>;',
        '@group(0) @binding(0) var<storage, read_write> y: array<f32>;',
        '',
        '@compute @workgroup_size(64)',
        'fn main(@builtin(local_invocation_index) i: u32) {',
        '    tile[i] = f32(i);',
        '    workgroupBarrier();',
        '    y[i] = tile[63u - i];',
        '}',
      ].join('\n');
      const p2 = await checkWgsl(state, tooBig, 'main');
      assert.ok(p2.length > 0, 'a kernel over the workgroup storage limit was accepted');
      assert.equal(p2[0].stage, 'pipeline', JSON.stringify(p2));

      // A wrong entry point fails at pipeline creation too.
      const p3 = await checkWgsl(state, tooBig.replace('array<f32, 8192>', 'array<f32, 64>'), 'nope');
      assert.ok(p3.length > 0 && p3[0].stage === 'pipeline', JSON.stringify(p3));

      // A feature the device lacks: `enable f16;` on a device without shader-f16.
      const f16 = [
        'enable f16;',
        '@group(0) @binding(0) var<storage, read_write> y: array<f32>;',
        '',
        '@compute @workgroup_size(64)',
        'fn main(@builtin(local_invocation_index) i: u32) {',
        '    y[i] = f32(f16(i) * 0.5h);',
        '}',
      ].join('\n');
      const p4 = await checkWgsl(state, f16, 'main');
      assert.ok(p4.length > 0 && p4[0].stage === 'module' && p4[0].line === 1, JSON.stringify(p4));

      // And the same valid text with the right entry point compiles: the check is not always-fail.
      assert.deepEqual(await checkWgsl(state, tooBig.replace('array<f32, 8192>', 'array<f32, 64>'), 'main'), []);
    });
  } finally {
    destroyDevice(state);
  }
});
