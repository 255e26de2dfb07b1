// shadergen.mjs in real browser engines: headless Chromium (WebGPU on SwiftShader: subgroups,
// no shader-f16) and headless Firefox ESR (WebGPU on lavapipe: shader-f16, no subgroups), with
// the flags and prefs of DESIGN.md. For each browser this emits a package for its target
// (`shadergen emit --target chrome|firefox`), serves it with the test page (page.html,
// page.mjs) and the case files (cases.mjs) from 127.0.0.1, launches the browser on the page,
// waits for the page's report and checks, here in Node:
//   - the capabilities report the page's shadergen.mjs made (sg.caps): WebGPU present, with
//     the features this browser has here;
//   - every op (matvec, matmul in several formats incl. 3-bit asym and the f16 baseline;
//     kv-append then kv-attend, GQA 4, window > 0) ran on the expected backend and tier and
//     matched the expected outputs of tests/node/format.mjs (an independent implementation of
//     docs/FORMAT.md) within the manifest's tolerance relative to Σ|terms|;
//   - the same again on WebAssembly: prefer 'wasm-simd', prefer 'wasm-scalar', and with
//     navigator.gpu hidden (then the automatic choice must be wasm-simd).
// Each browser's caps report and per-op results are written to
// target/browser-results/<browser>.json (format: tests/browser/README.md).
//
//   cargo build -p shadergen && node --test tests/browser/
//
// Environment:
//   SHADERGEN_BIN                  the shadergen binary (default: <repo>/target/debug/shadergen)
//   CI=true                        a missing browser, no navigator.gpu or a timeout fails (locally: skip)
//   SHADERGEN_BROWSERS=chromium    only these browsers (comma separated; default chromium,firefox)
//   SHADERGEN_BROWSER_TIMEOUT_S    seconds to wait for a page's report (default 120)
//   SHADERGEN_BROWSER_RESULTS      folder for the result files (default <repo>/target/browser-results)
//   SHADERGEN_BROWSER_SELFTEST=1   corrupt one expected output: the test must fail
//   SHADERGEN_BROWSER_NO_WEBGPU=1  launch without WebGPU's flags/prefs (the no-WebGPU path: CI fails)
//   SHADERGEN_CHROMIUM, SHADERGEN_FIREFOX  the browser executables (default: chromium, firefox-esr on PATH)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCases } from './cases.mjs';
import { BROWSERS, CHROMIUM_FLAGS, FIREFOX_PREFS, findBrowser, launch, startServer } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN = process.env.SHADERGEN_BIN ? path.resolve(process.env.SHADERGEN_BIN) : path.join(REPO, 'target', 'debug', 'shadergen');
const CI = process.env.CI === 'true';
const TIMEOUT_MS = 1000 * Number(process.env.SHADERGEN_BROWSER_TIMEOUT_S ?? 120);
const RESULTS = process.env.SHADERGEN_BROWSER_RESULTS ? path.resolve(process.env.SHADERGEN_BROWSER_RESULTS) : path.join(REPO, 'target', 'browser-results');
const SELFTEST = process.env.SHADERGEN_BROWSER_SELFTEST === '1';
const NO_WEBGPU = process.env.SHADERGEN_BROWSER_NO_WEBGPU === '1';
const ONLY = (process.env.SHADERGEN_BROWSERS ?? 'chromium,firefox').split(',').map((s) => s.trim()).filter(Boolean);
const F32_MIN_POSITIVE = 2 ** -126;

/**
 * What each browser has here (DESIGN.md; browsers.toml [observed.*]) and so what shadergen.mjs
 * must pick. `runs`: the page's runs, each with the backend (and WebGPU tier) every op must get.
 */
const EXPECT = {
  chromium: {
    features: { has: ['subgroups'], lacks: ['shader-f16'] },
    adapter: 'SwiftShader',
    // Chromium names its CPU adapter (vendor google, architecture swiftshader).
    isAdapter: (a) => a?.architecture === 'swiftshader',
    // (allowF16 would change nothing without shader-f16: no second WebGPU run.)
    runs: [{ name: 'webgpu', options: { prefer: 'auto' }, backend: 'webgpu', tier: 'subgroups' }],
  },
  firefox: {
    features: { has: ['shader-f16'], lacks: ['subgroups'] },
    adapter: 'lavapipe',
    // Firefox reports empty adapter info; lavapipe is a CPU device, so a fallback adapter.
    isAdapter: () => true,
    runs: [
      { name: 'webgpu', options: { prefer: 'auto' }, backend: 'webgpu', tier: 'base' },
      // The f16 tier, on the cases whose kernels differ from base in more than `enable f16;`
      // (a KV kernel's f16 tier does not), and few of them: each costs lavapipe seconds to compile.
      {
        name: 'webgpu-allow-f16',
        options: { prefer: 'webgpu', allowF16: true },
        backend: 'webgpu',
        tier: 'f16',
        only: (c) => (c.op === 'matvec' && c.bits === 3) || (c.op === 'matmul' && c.bits === 16),
      },
    ],
  },
};
const WASM_RUNS = [
  { name: 'wasm-simd', options: { prefer: 'wasm-simd' }, backend: 'wasm-simd' },
  { name: 'wasm-scalar', options: { prefer: 'wasm-scalar' }, backend: 'wasm-scalar' },
  // navigator.gpu hidden before load (as in a browser without WebGPU): auto must pick WASM SIMD.
  { name: 'no-webgpu', options: { prefer: 'auto' }, hide_gpu: true, backend: 'wasm-simd' },
];

// ---------------------------------------------------------------------------------------------

function emit(target, out) {
  const r = spawnSync(BIN, ['emit', '--quiet', '--target', target, '--out', out], { encoding: 'utf8' });
  if (r.error) assert.fail(`running ${BIN}: ${r.error.message}`);
  assert.equal(r.status, 0, `shadergen emit --target ${target} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  assert.equal(manifest.target, target);
  assert.ok(fs.existsSync(path.join(out, 'shadergen.mjs')), `the package for ${target} has no shadergen.mjs (${out})`);
  return manifest;
}

/** Skips locally, fails in CI. */
function unavailable(t, why) {
  if (CI) assert.fail(`CI requires it: ${why}`);
  t.skip(why);
}

const decodeF32 = (b64) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

const decodeU32 = (b64) => {
  const buf = Buffer.from(b64, 'base64');
  return new Uint32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

/**
 * Compares `got` (Float32Array) with {want, magnitude} at relative `tolerance`:
 * |got − want| ≤ tolerance · magnitude + f32 MIN_POSITIVE (codegen/src/reference.rs).
 * Returns {ok, worst (largest error / magnitude), mismatches (first few), message}.
 */
export function compare(got, { want, magnitude }, tolerance) {
  if (got.length !== want.length) {
    return { ok: false, worst: null, mismatches: [], message: `${got.length} outputs, want ${want.length}` };
  }
  let worst = 0;
  const mismatches = [];
  let bad = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const allowed = tolerance * magnitude[i] + F32_MIN_POSITIVE;
    const rel = err / Math.max(magnitude[i], Number.MIN_VALUE);
    if (Number.isNaN(err) || !(err <= allowed)) {
      bad++;
      if (mismatches.length < 3) mismatches.push({ index: i, got: got[i], want: want[i], allowed });
    }
    worst = Number.isNaN(rel) ? NaN : Math.max(worst, rel);
  }
  const message = bad
    ? `${bad}/${want.length} outputs off: ${mismatches.map((m) => `[${m.index}] got ${m.got} want ${m.want} (allowed ±${m.allowed.toExponential(2)})`).join(', ')}`
    : null;
  return { ok: bad === 0, worst, mismatches, message };
}

/** The manifest entry the page's selection names for `family` of a case. */
function describeCase(c) {
  if (c.op === 'kv') return `kv q${c.bits}g${c.group_size} d${c.head_dim} H${c.kv_heads} heads ${c.n_heads} S${c.max_seq} R${c.window}`;
  return `${c.op} ${c.bits === 16 ? 'f16' : `q${c.bits}g${c.group_size}${c.scheme[0]}`} ${c.m}x${c.n}x${c.k}`;
}

/**
 * Checks one run of the page against the expected outputs. Returns the run's record for the
 * results file and a list of failure messages.
 */
function checkRun(run, want, manifest, cases, expected) {
  const failures = [];
  const kernels = new Map(manifest.kernels.map((k) => [k.name, k]));
  const ops = [];
  if (run.error) failures.push(`${want.name}: ${run.error}`);
  for (const op of run.ops ?? []) {
    const c = cases[op.case];
    const where = `${want.name}: case ${op.case} (${describeCase(c)}) ${op.op}${op.step !== undefined ? ` step ${op.step}` : ''}`;
    const kernel = kernels.get(op.kernel);
    const record = {
      case: op.case,
      op: op.op,
      step: op.step,
      bits: c.bits,
      group_size: c.group_size,
      scheme: c.scheme,
      shape: c.op === 'kv' ? { head_dim: c.head_dim, kv_heads: c.kv_heads, n_heads: c.n_heads, max_seq: c.max_seq, window: c.window, len: op.len } : { m: c.m, n: c.n, k: c.k },
      kernel: op.kernel ?? null,
      backend: op.backend ?? null,
      tier: op.tier ?? null,
      reason: op.reason ?? null,
      ms: typeof op.ms === 'number' ? Math.round(op.ms * 10) / 10 : null,
      check: op.op === 'kv-append' ? 'bytes' : 'tolerance',
      tolerance: null,
      worst_relative_error: null,
      ok: false,
      error: op.error ?? null,
    };
    ops.push(record);
    if (op.error) {
      failures.push(`${where}: ${op.error}`);
      continue;
    }
    if (op.backend !== want.backend) failures.push(`${where}: ran on ${op.backend} (${op.reason ?? 'no reason given'}), want ${want.backend}`);
    if (want.tier && op.tier !== want.tier) failures.push(`${where}: WebGPU tier ${op.tier} (${op.kernel}: ${op.reason ?? ''}), want ${want.tier}`);
    if (!kernel) {
      failures.push(`${where}: kernel ${op.kernel} is not in the manifest`);
      continue;
    }
    const fam = { 'kv-append': 'kv-append', 'kv-attend': 'kv-attend', matvec: 'matvec', matmul: 'matmul' }[op.op];
    if (kernel.op !== fam || kernel.bits !== c.bits || (kernel.bits !== 16 && kernel.group_size !== c.group_size) || kernel.scheme !== c.scheme || (c.op === 'kv' && kernel.kv?.head_dim !== c.head_dim)) {
      failures.push(`${where}: ran kernel ${op.kernel}, which is not this case's format`);
    }
    if (op.op === 'kv-append') {
      // The cache's bytes after the append (read back from where it lives: the GPU's buffers on
      // WebGPU) equal the reference's exactly: the cases hold no near-ties (cases.mjs).
      const exp = expected[op.case].steps[op.step];
      const problems = [];
      if (op.len !== exp.len) problems.push(`cache holds ${op.len} tokens, want ${exp.len}`);
      for (const buf of ['codes', 'scales', 'mins', 'window']) {
        if (typeof op.cache?.[buf] !== 'string') {
          problems.push(`no ${buf} read back`);
          continue;
        }
        const got = decodeU32(op.cache[buf]);
        const want = exp.cache[buf];
        if (got.length !== want.length) {
          problems.push(`${buf} has ${got.length} words, want ${want.length}`);
          continue;
        }
        const diff = [];
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) diff.push(i);
        if (diff.length) {
          const hex = (v) => `0x${v.toString(16).padStart(8, '0')}`;
          problems.push(`${buf}: ${diff.length}/${want.length} words differ, first ${diff.slice(0, 3).map((i) => `[${i}] ${hex(got[i])} want ${hex(want[i])}`).join(', ')}`);
        }
      }
      record.ok = problems.length === 0;
      if (problems.length) failures.push(`${where} on ${op.backend}${op.tier ? `/${op.tier}` : ''} (${op.kernel}): ${problems.join('; ')}`);
      continue;
    }
    const tolerance = op.backend === 'webgpu' ? kernel.tolerance : kernel.wasm?.tolerance;
    record.tolerance = tolerance;
    if (typeof tolerance !== 'number') {
      failures.push(`${where}: the manifest states no tolerance for ${op.kernel} on ${op.backend}`);
      continue;
    }
    if (typeof op.output !== 'string') {
      failures.push(`${where}: the page reported no output`);
      continue;
    }
    const exp = op.op === 'kv-attend' ? expected[op.case].steps[op.step] : expected[op.case];
    if (op.op === 'kv-attend' && op.len !== undefined && op.len !== exp.len) failures.push(`${where}: cache holds ${op.len} tokens, want ${exp.len}`);
    const got = decodeF32(op.output);
    const cmp = compare(got, exp, tolerance);
    record.worst_relative_error = cmp.worst;
    record.ok = cmp.ok;
    if (!cmp.ok) failures.push(`${where} on ${op.backend}${op.tier ? `/${op.tier}` : ''} (${op.kernel}, tolerance ${tolerance}): ${cmp.message}`);
  }
  // Every case and every step ran.
  const ran = new Set((run.ops ?? []).map((o) => `${o.case}/${o.op}/${o.step ?? ''}`));
  for (const c of cases.filter((x) => want.cases.includes(x.id))) {
    const names = c.op === 'kv' ? c.steps.flatMap((_, s) => [`${c.id}/kv-append/${s}`, `${c.id}/kv-attend/${s}`]) : [`${c.id}/${c.op}/`];
    for (const n of names) if (!run.error && !ran.has(n)) failures.push(`${want.name}: case ${n} did not run`);
  }
  return {
    record: {
      name: want.name,
      options: want.options,
      hide_gpu: !!want.hide_gpu,
      cases: want.cases,
      expected_backend: want.backend,
      expected_tier: want.tier ?? null,
      load_ms: typeof run.load_ms === 'number' ? Math.round(run.load_ms * 10) / 10 : null,
      caps: run.caps ?? null,
      selection: run.selection ?? null,
      device_features: run.device_features ?? null,
      error: run.error ?? null,
      ok: failures.length === 0,
      ops,
    },
    failures,
  };
}

/** The page's diagnostics, for a failure message. */
function diagnostics(server, browser) {
  const out = [];
  const progress = server.logs.filter((l) => l.level === 'progress');
  const other = server.logs.filter((l) => l.level !== 'progress');
  if (progress.length) out.push(`page's last progress: ${progress.at(-1).message}`);
  if (other.length) out.push(`page reports:\n${other.map((l) => `  [${l.level}] ${String(l.message).replace(/\n/g, '\n    ')}`).join('\n')}`);
  const lines = browser.consoleLines();
  if (lines.length) out.push(`browser console/log (${lines.length} lines, last 40):\n${lines.slice(-40).map((l) => `  ${l}`).join('\n')}`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

for (const name of Object.keys(BROWSERS)) {
  test(`${name}: shadergen.mjs on WebGPU and WebAssembly matches the reference`, { timeout: TIMEOUT_MS + 120_000 }, async (t) => {
    if (!ONLY.includes(name)) return t.skip(`SHADERGEN_BROWSERS=${ONLY.join(',')}`);
    const found = findBrowser(name);
    if (found.reason) return unavailable(t, `${name}: ${found.reason}`);
    assert.ok(fs.existsSync(BIN), `shadergen binary not found at ${BIN}: build it with cargo build -p shadergen (or set SHADERGEN_BIN)`);

    const root = fs.mkdtempSync(path.join(os.tmpdir(), `shadergen-browser-${name}-`));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    const { target } = BROWSERS[name];
    const t0 = performance.now();
    const manifest = emit(target, path.join(root, 'pkg'));
    const { cases, expected } = buildCases(path.join(root, 'cases'));
    if (SELFTEST) {
      const e = expected.find((x) => x.want);
      e.want[0] += 1e-3 * (e.magnitude[0] || 1);
      t.diagnostic('SHADERGEN_BROWSER_SELFTEST: one expected matvec output moved by 1e-3 x magnitude; this test must fail');
    }
    const runs = [...EXPECT[name].runs, ...WASM_RUNS].map((r) => ({ ...r }));
    for (const run of runs) run.cases = cases.filter((c) => !run.only || run.only(c)).map((c) => c.id);
    const planRuns = runs.map(({ name: n, options, hide_gpu, cases: ids }) => ({ name: n, options, hide_gpu: !!hide_gpu, cases: ids }));
    fs.writeFileSync(path.join(root, 'cases', 'plan.json'), JSON.stringify({ package: '/pkg/', runs: planRuns }));
    const prepMs = performance.now() - t0;

    const server = await startServer({ '/pkg/': path.join(root, 'pkg'), '/page/': HERE, '/cases/': path.join(root, 'cases') });
    t.after(() => server.close());
    const t1 = performance.now();
    const browser = launch(name, found.exe, `${server.url}/page/page.html`, { webgpu: !NO_WEBGPU });
    t.after(() => browser.kill());
    let timer;
    const outcome = await Promise.race([
      server.result.then((r) => ({ result: r })),
      browser.exited.then((e) => ({ exited: e })),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve({ timeout: true }), TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    // A browser may exit right after reporting: take a result that arrived meanwhile.
    const result = outcome.result ?? (await Promise.race([server.result, new Promise((r) => setTimeout(r, 200))]));
    const pageMs = performance.now() - t1;
    await browser.kill();

    if (!result) {
      const why = outcome.exited
        ? `${name} exited (code ${outcome.exited.code}, signal ${outcome.exited.signal}${outcome.exited.error ? `, ${outcome.exited.error}` : ''}) before the page reported`
        : `no report from the page within ${TIMEOUT_MS / 1000} s`;
      const diag = diagnostics(server, browser);
      if (CI) assert.fail(`${name} (${found.version}): ${why}\n${diag}`);
      t.diagnostic(diag);
      return t.skip(`${name}: ${why}`);
    }
    t.diagnostic(`${found.version}: emit + cases ${(prepMs / 1000).toFixed(1)} s, browser ${(pageMs / 1000).toFixed(1)} s (page's own ${((result.total_ms ?? 0) / 1000).toFixed(1)} s)`);

    const failures = [];
    if (result.error) failures.push(`the page failed: ${result.error}`);
    const expect = EXPECT[name];
    const records = [];
    let gpuMissing = null;
    for (const want of runs) {
      const run = (result.runs ?? []).find((r) => r.name === want.name);
      if (!run) {
        if (!result.error) failures.push(`${want.name}: the page reported no such run`);
        continue;
      }
      const caps = run.caps;
      if (want.backend === 'webgpu' && caps && caps.webgpu === null) {
        gpuMissing = `${name} gave no WebGPU adapter (navigator.gpu ${run.has_navigator_gpu ? 'present, requestAdapter() null' : 'missing'})`;
        records.push({ name: want.name, skipped: gpuMissing });
        continue;
      }
      const { record, failures: f } = checkRun(run, want, manifest, cases, expected);
      records.push(record);
      failures.push(...f);
      // The capabilities report the page's shadergen.mjs measured.
      if (!caps) {
        failures.push(`${want.name}: the page reported no caps`);
        continue;
      }
      if (caps.schema !== 1) failures.push(`${want.name}: caps.schema is ${caps.schema}, want 1`);
      if (!caps.wasm?.simd128) failures.push(`${want.name}: caps.wasm.simd128 is ${caps.wasm?.simd128} (every engine here has WASM SIMD)`);
      if (want.hide_gpu) {
        if (caps.webgpu !== null) failures.push(`${want.name}: navigator.gpu was hidden, but caps.webgpu is ${JSON.stringify(caps.webgpu)?.slice(0, 200)}`);
      } else if (want.backend === 'webgpu') {
        const features = caps.webgpu.features ?? [];
        for (const f of expect.features.has) if (!features.includes(f)) failures.push(`${want.name}: the adapter lacks ${f} (features: ${features.join(', ')})`);
        for (const f of expect.features.lacks) if (features.includes(f)) failures.push(`${want.name}: the adapter has ${f}, not expected of ${expect.adapter} (features: ${features.join(', ')})`);
        if (caps.webgpu.is_fallback_adapter !== true || !expect.isAdapter(caps.webgpu.adapter)) {
          failures.push(`${want.name}: expected ${name}'s CPU adapter (${expect.adapter}), got ${JSON.stringify(caps.webgpu.adapter)}, is_fallback_adapter ${caps.webgpu.is_fallback_adapter}`);
        }
      }
    }

    // An error the page did not catch (a rejected promise nobody awaited, a throw in a
    // callback) is a bug even when every output matched.
    for (const l of server.logs) {
      if (l.level === 'window-error' || l.level === 'unhandled-rejection') failures.push(`the page had an uncaught ${l.level}: ${l.message}`);
    }

    const gpuCaps = (result.runs ?? []).find((r) => r.name === 'webgpu')?.caps ?? null;
    const noGpuCaps = (result.runs ?? []).find((r) => r.name === 'no-webgpu')?.caps ?? null;
    const report = {
      schema: 1,
      browser: name,
      version: found.version,
      user_agent: result.user_agent ?? null,
      target,
      package: { generator: manifest.generator, target: manifest.target, kernels: manifest.kernels.length },
      launch: name === 'chromium' ? { flags: CHROMIUM_FLAGS } : { args: ['--headless', '--no-remote', '--profile', '<fresh dir>'], prefs: FIREFOX_PREFS },
      date: new Date().toISOString(),
      ms: { prepare: Math.round(prepMs), browser: Math.round(pageMs), page: typeof result.total_ms === 'number' ? Math.round(result.total_ms) : null },
      caps: gpuCaps,
      caps_without_webgpu: noGpuCaps,
      runs: records,
      page_log: server.logs.filter((l) => l.level !== 'progress'),
      ok: failures.length === 0 && !gpuMissing,
      failures,
    };
    fs.mkdirSync(RESULTS, { recursive: true });
    const file = path.join(RESULTS, `${name}.json`);
    fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
    const summary = records.map((r) => (r.skipped ? `${r.name}: skipped` : `${r.name}: ${r.ops.filter((o) => o.ok).length}/${r.ops.length} ok`)).join('; ');
    t.diagnostic(`${summary} -> ${path.relative(REPO, file)}`);

    if (failures.length) assert.fail(`${name} (${found.version}), ${failures.length} failure(s):\n- ${failures.join('\n- ')}\n${diagnostics(server, browser)}`);
    if (gpuMissing) unavailable(t, `${gpuMissing}; the WASM runs passed`);
  });
}
