#!/usr/bin/env node
// Engine runner for the Rust differential test harness.
//
//   node tests/node/run-cases.mjs CASE_DIR ENGINE        ENGINE: v8-simd | v8-scalar | dawn
//
// CASE_DIR holds package/ (an emitted package: manifest.json, .wgsl, .wasm), cases.json and
// the raw little-endian .bin inputs it names. For every case this writes one of
//   CASE_DIR/out/ENGINE/c<id>.bin    the f32 output y (M x N, little-endian)
//   CASE_DIR/out/ENGINE/c<id>.skip   one line: why this engine cannot run the case
//   CASE_DIR/out/ENGINE/c<id>.err    the error, when the case failed
// and prints one line to stdout: `<engine>: ran R, skipped S, failed F` (timings go to stderr).
// Exit status 0 unless the runner itself could not work (bad arguments, unreadable
// cases.json or manifest). A machine without a WebGPU adapter gets .skip files, exit 0.
//
// Everything about a kernel comes from the manifest (found by name): bindings by name and
// number, the params uniform's field offsets, dispatch expressions, the wasm ABI. Buffer
// sizes are checked against docs/FORMAT.md from the manifest's bits / group_size / scheme.
// No dependencies beyond Node built-ins and `webgpu` (loaded only for ENGINE=dawn).
//
// Test knob: RUN_CASES_DAWN_DISABLE=shader-f16,subgroups keeps those features off the Dawn
// device (to exercise the skip path on a machine that has them).

import { mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const ENGINES = ['v8-simd', 'v8-scalar', 'dawn'];
const BUFFER_NAMES = ['weights', 'scales', 'mins', 'x', 'y'];
const GPU_FEATURES = ['shader-f16', 'subgroups'];

function usage(message) {
  process.stderr.write(`run-cases: ${message}\nusage: node tests/node/run-cases.mjs CASE_DIR ${ENGINES.join('|')}\n`);
  process.exit(2);
}

function oneLine(e) {
  const text = e instanceof Error ? e.message || String(e) : String(e);
  return text.replace(/\s*\n\s*/g, ' | ').trim();
}

// ---------------------------------------------------------------------------------------
// Dispatch expressions: integers, M, N, K, ceil(a / b), min(a, b), parentheses.

/** Parses one `dispatch.workgroups` expression into a function of {M, N, K}. */
export function compileDispatch(text) {
  if (typeof text !== 'string') throw new Error(`dispatch expression ${JSON.stringify(text)} is not a string`);
  const fail = (what) => {
    throw new Error(`dispatch expression "${text}": ${what} (only integers, M, N, K, ceil(a / b), min(a, b) and parentheses are understood)`);
  };
  const tokens = [];
  const re = /\s*(?:(\d+)|([A-Za-z_]\w*)|([(),/]))/y;
  let pos = 0;
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    re.lastIndex = pos;
    const t = re.exec(text);
    if (!t) fail(`unexpected "${text.slice(pos).trim()[0]}"`);
    tokens.push(t[1] !== undefined ? { int: t[1] } : t[2] !== undefined ? { id: t[2] } : { op: t[3] });
    pos = re.lastIndex;
  }
  let i = 0;
  const peek = () => tokens[i];
  const expect = (op) => {
    const t = tokens[i++];
    if (!t || t.op !== op) fail(`expected "${op}" but found ${t ? JSON.stringify(t.op ?? t.id ?? t.int) : 'the end'}`);
  };
  const expr = () => {
    const t = tokens[i++];
    if (!t) fail('unexpected end');
    if (t.int !== undefined) {
      const v = Number(t.int);
      if (!Number.isSafeInteger(v)) fail(`integer ${t.int} is too large`);
      return () => v;
    }
    if (t.op === '(') {
      const inner = expr();
      expect(')');
      return inner;
    }
    if (t.id === 'M' || t.id === 'N' || t.id === 'K') {
      const name = t.id;
      return (env) => env[name];
    }
    if (t.id === 'ceil') {
      expect('(');
      const a = expr();
      expect('/');
      const b = expr();
      expect(')');
      return (env) => {
        const [x, y] = [a(env), b(env)];
        if (y === 0) throw new Error(`dispatch expression "${text}": division by zero`);
        let q = Math.floor(x / y);
        while (q * y < x) q++;
        while (q > 0 && (q - 1) * y >= x) q--;
        return q;
      };
    }
    if (t.id === 'min') {
      expect('(');
      const a = expr();
      expect(',');
      const b = expr();
      expect(')');
      return (env) => Math.min(a(env), b(env));
    }
    fail(`unexpected ${t.id !== undefined ? `name "${t.id}"` : `"${t.op}"`}`);
  };
  const f = expr();
  if (i !== tokens.length) fail(`unexpected ${JSON.stringify(peek().op ?? peek().id ?? peek().int)} after a complete expression`);
  return (env) => {
    const v = f(env);
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`dispatch expression "${text}" gives ${v}, not a u32`);
    return v;
  };
}

// ---------------------------------------------------------------------------------------
// Cases and the manifest.

function loadJson(path, what) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    usage(`cannot read ${what} ${path}: ${oneLine(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    usage(`${what} ${path} is not JSON: ${oneLine(e)}`);
  }
}

/** Reads a case's input file (or null), as a Uint8Array. */
function readInput(caseDir, c, name) {
  const file = c[name];
  if (file === null || file === undefined) return null;
  if (typeof file !== 'string') throw new Error(`case field "${name}" must be a file name or null`);
  const b = readFileSync(resolve(caseDir, file));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

const u32 = (v, what) => {
  if (!Number.isSafeInteger(v) || v < 1 || v > 0xffffffff) throw new Error(`case field "${what}" = ${JSON.stringify(v)} is not a positive u32`);
  return v;
};

/**
 * Everything a case needs, engine-independent: the kernel, shape and input bytes, checked
 * against the manifest and docs/FORMAT.md.
 */
function prepare(caseDir, kernels, c) {
  const kernel = kernels.get(c.kernel);
  if (!kernel) throw new Error(`kernel "${c.kernel}" is not in the manifest`);
  const m = u32(c.m, 'm');
  const n = u32(c.n, 'n');
  const k = u32(c.k, 'k');
  if (kernel.k_multiple_of && k % kernel.k_multiple_of !== 0) {
    throw new Error(`K = ${k} is not a multiple of ${kernel.k_multiple_of} (kernel ${kernel.name})`);
  }
  if (kernel.op === 'matvec' && m !== 1) throw new Error(`matvec kernel ${kernel.name} takes M = 1, got M = ${m}`);
  const bound = new Set(kernel.bindings.map((b) => b.name));
  const data = {};
  for (const name of ['weights', 'scales', 'mins', 'x']) {
    data[name] = readInput(caseDir, c, name);
    if (bound.has(name) && !data[name]) throw new Error(`kernel ${kernel.name} reads "${name}" but the case gives none`);
    if (!bound.has(name) && data[name]) throw new Error(`the case gives "${name}" but kernel ${kernel.name} has no such binding`);
  }
  // Byte lengths per docs/FORMAT.md (§2, §6, §7).
  const groups = (n * k) / kernel.group_size;
  const want = {
    weights: kernel.bits === 16 ? 4 * Math.ceil((n * k) / 2) : (n * k * kernel.bits) / 8,
    scales: 4 * Math.ceil(groups / 2),
    mins: 4 * Math.ceil(groups / 2),
    x: 4 * m * k,
  };
  for (const name of ['weights', 'scales', 'mins', 'x']) {
    if (data[name] && data[name].byteLength !== want[name]) {
      throw new Error(`"${name}" has ${data[name].byteLength} bytes; ${kernel.name} with M=${m} N=${n} K=${k} needs ${want[name]} (docs/FORMAT.md)`);
    }
  }
  return { kernel, m, n, k, data, yBytes: 4 * m * n };
}

// ---------------------------------------------------------------------------------------
// V8 (WebAssembly).

// A tiny module using v128 (i32x4.splat; drop): validates only where SIMD is on.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
  0x0a, 0x09, 0x01, 0x07, 0x00, 0x41, 0x00, 0xfd, 0x11, 0x1a, 0x0b,
]);
const WASM_FEATURES = { simd128: () => WebAssembly.validate(SIMD_PROBE) };

function makeV8Engine(packageDir, variant) {
  const modules = new Map();
  const stats = { compileMs: 0 };
  const module = (file) => {
    let mod = modules.get(file);
    if (!mod) {
      const t = performance.now();
      try {
        mod = new WebAssembly.Module(readFileSync(join(packageDir, file)));
      } catch (e) {
        throw new Error(`${file}: ${oneLine(e)}`);
      }
      stats.compileMs += performance.now() - t;
      modules.set(file, mod);
    }
    return mod;
  };
  return {
    stats,
    async run(p) {
      const w = p.kernel.wasm;
      if (!w) throw new Error(`kernel ${p.kernel.name} has no "wasm" entry`);
      for (const f of w[`${variant}_features`] ?? []) {
        const probe = WASM_FEATURES[f];
        if (!probe) return { skip: `missing feature ${f} (unknown to this runner)` };
        if (!probe()) return { skip: `missing feature ${f}` };
      }
      if (!w[variant]) throw new Error(`kernel ${p.kernel.name} has no wasm.${variant} module`);
      const instance = new WebAssembly.Instance(module(w[variant]), {});
      const memory = instance.exports[w.memory];
      const func = instance.exports[w.export];
      if (!(memory instanceof WebAssembly.Memory)) throw new Error(`module ${w[variant]} exports no memory "${w.memory}"`);
      if (typeof func !== 'function') throw new Error(`module ${w[variant]} exports no function "${w.export}"`);
      if (func.length !== w.args.length) {
        throw new Error(`export ${w.export} takes ${func.length} parameters but the manifest lists ${w.args.length} args`);
      }

      // Place the buffers from the scratch boundary on, aligned, in argument order.
      const align = w.layout?.align ?? 16;
      const alignUp = (v) => Math.ceil(v / align) * align;
      let next = alignUp(w.layout?.scratch_bytes ?? 0);
      const at = {};
      const sizes = { ...Object.fromEntries(['weights', 'scales', 'mins', 'x'].map((b) => [b, p.data[b]?.byteLength])), y: p.yBytes };
      for (const name of w.args) {
        if (!BUFFER_NAMES.includes(name)) continue;
        if (name !== 'y' && !p.data[name]) {
          at[name] = 0; // a buffer the kernel does not read
          continue;
        }
        at[name] = next;
        next = alignUp(next + sizes[name]);
      }
      if (!('y' in at)) throw new Error(`the manifest's wasm.args for ${p.kernel.name} have no "y"`);
      if (next > 2 ** 32) throw new Error(`buffers need ${next} bytes, over the 4 GiB a wasm32 memory can hold`);
      const pages = Math.ceil(next / 65536);
      const have = memory.buffer.byteLength / 65536;
      if (pages > have) {
        try {
          memory.grow(pages - have);
        } catch (e) {
          throw new Error(`growing memory from ${have} to ${pages} pages: ${oneLine(e)}`);
        }
      }
      const heap = new Uint8Array(memory.buffer);
      for (const name of ['weights', 'scales', 'mins', 'x']) if (p.data[name]) heap.set(p.data[name], at[name]);

      const values = { m: p.m, n: p.n, k: p.k };
      const args = w.args.map((name) => {
        if (name in at) return at[name] | 0;
        if (name in values) return values[name] | 0;
        throw new Error(`unknown wasm argument "${name}" in the manifest`);
      });
      func(...args);
      return { y: new Uint8Array(memory.buffer, at.y, p.yBytes).slice() };
    },
  };
}

// ---------------------------------------------------------------------------------------
// Dawn (WebGPU).

/** The params uniform: the manifest's u32 fields at their offsets (m, n, k, pad = 0). */
function paramsBytes(kernel, p) {
  const size = 16;
  const view = new DataView(new ArrayBuffer(size));
  const values = { m: p.m, n: p.n, k: p.k, pad: 0 };
  for (const f of kernel.params ?? []) {
    if (f.type !== 'u32') throw new Error(`params field "${f.name}" has type ${f.type}; only u32 is understood`);
    if (!(f.name in values)) throw new Error(`unknown params field "${f.name}" in the manifest`);
    if (!Number.isInteger(f.offset) || f.offset < 0 || f.offset + 4 > size || f.offset % 4) {
      throw new Error(`params field "${f.name}" has offset ${f.offset}, outside the 16-byte uniform`);
    }
    view.setUint32(f.offset, values[f.name], true);
  }
  return view.buffer;
}

const keepAlive = {};

/** A Dawn device, or { skip: reason } when there is none. */
async function makeDawnEngine(packageDir) {
  let webgpu;
  try {
    webgpu = await import('webgpu');
  } catch (e) {
    return { skip: `no WebGPU adapter (the webgpu module did not load: ${oneLine(e)})` };
  }
  const { create, globals } = webgpu;
  Object.assign(globalThis, globals);
  // Keep the instance (and adapter) reachable for the whole run: if the GPU object is
  // garbage-collected, Dawn tears its instance down under the live device and the next
  // mapAsync aborts the process (std::system_error / futex errors).
  const gpu = (keepAlive.gpu = create([]));
  const adapter = (keepAlive.adapter = await gpu.requestAdapter());
  if (!adapter) return { skip: 'no WebGPU adapter' };
  const disabled = new Set((process.env.RUN_CASES_DAWN_DISABLE ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  const requiredFeatures = GPU_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f));
  const requiredLimits = {};
  for (const l of ['maxStorageBufferBindingSize', 'maxBufferSize']) requiredLimits[l] = adapter.limits[l];
  let device;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  } catch (e) {
    return { skip: `no WebGPU device: ${oneLine(e)}` };
  }
  let lost = null;
  device.lost.then((info) => {
    lost = `device lost (${info.reason}): ${oneLine(info.message)}`;
  });
  const uncaptured = [];
  device.onuncapturederror = (ev) => uncaptured.push(oneLine(ev.error?.message ?? ev.error));

  const info = adapter.info ?? {};
  const describe = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ') || 'unknown adapter';
  const pipelines = new Map();
  const dispatchers = new Map();
  const stats = { compileMs: 0 };

  async function popScopes(what) {
    const errors = [];
    for (let i = 0; i < 2; i++) {
      const e = await device.popErrorScope();
      if (e) errors.push(oneLine(e.message));
    }
    if (errors.length) throw new Error(`${what}: ${errors.join(' | ')}`);
  }

  // Compiled pipelines by kernel name; a kernel that failed to compile stays failed.
  async function pipeline(kernel) {
    const cached = pipelines.get(kernel.name);
    if (cached?.error) throw cached.error;
    if (cached) return cached.pipeline;
    const t = performance.now();
    const code = readFileSync(join(packageDir, kernel.wgsl), 'utf8');
    let module;
    let compiled;
    device.pushErrorScope('validation');
    device.pushErrorScope('internal');
    try {
      module = device.createShaderModule({ label: kernel.name, code });
      compiled = device.createComputePipeline({
        label: kernel.name,
        layout: 'auto',
        compute: { module, entryPoint: kernel.entry_point },
      });
    } finally {
      try {
        await popScopes(`pipeline ${kernel.name}`);
      } catch (e) {
        let detail = '';
        try {
          const messages = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
          const fresh = messages.filter((m) => !e.message.includes(oneLine(m.message)));
          detail = fresh.map((m) => `${m.lineNum}:${m.linePos} ${oneLine(m.message)}`).join(' | ');
        } catch {}
        const error = new Error(detail ? `${e.message} [${detail}]` : e.message);
        pipelines.set(kernel.name, { error });
        throw error;
      }
    }
    stats.compileMs += performance.now() - t;
    pipelines.set(kernel.name, { pipeline: compiled });
    return compiled;
  }

  function workgroups(kernel, env) {
    let d = dispatchers.get(kernel.name);
    if (!d) {
      const exprs = kernel.dispatch?.workgroups;
      if (!Array.isArray(exprs) || exprs.length !== 3) throw new Error(`kernel ${kernel.name}: dispatch.workgroups must list 3 expressions`);
      d = exprs.map(compileDispatch);
      dispatchers.set(kernel.name, d);
    }
    return d.map((f) => f(env));
  }

  const limits = device.limits;
  return {
    describe,
    features: requiredFeatures,
    stats,
    async run(p) {
      if (lost) throw new Error(lost);
      const { kernel } = p;
      const missing = (kernel.features ?? []).filter((f) => !device.features.has(f));
      if (missing.length) return { skip: `missing feature ${missing.join(', ')}` };
      const pipe = await pipeline(kernel);
      const counts = workgroups(kernel, { M: p.m, N: p.n, K: p.k });
      const maxDim = limits.maxComputeWorkgroupsPerDimension;
      if (counts.some((c) => c > maxDim)) throw new Error(`dispatch ${counts.join(' x ')} exceeds maxComputeWorkgroupsPerDimension ${maxDim}`);

      const buffers = [];
      const make = (label, size, usage) => {
        const b = device.createBuffer({ label, size, usage });
        buffers.push(b);
        return b;
      };
      const storage = (name, bytes) => {
        const size = Math.max(4, Math.ceil(bytes.byteLength / 4) * 4);
        if (size > limits.maxStorageBufferBindingSize || size > limits.maxBufferSize) {
          throw new Error(`"${name}" needs ${size} bytes, over the device's maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize} / maxBufferSize ${limits.maxBufferSize}`);
        }
        const b = make(name, size, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
        if (bytes.byteLength % 4 === 0) device.queue.writeBuffer(b, 0, bytes);
        else {
          const padded = new Uint8Array(size);
          padded.set(bytes);
          device.queue.writeBuffer(b, 0, padded);
        }
        return b;
      };

      let read = null;
      try {
        let y = null;
        device.pushErrorScope('validation');
        device.pushErrorScope('out-of-memory');
        try {
          const entries = [];
          for (const b of kernel.bindings) {
            let buffer;
            if (b.name === 'params') {
              buffer = make('params', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
              device.queue.writeBuffer(buffer, 0, paramsBytes(kernel, p));
            } else if (b.name === 'y') {
              if (p.yBytes > limits.maxStorageBufferBindingSize) throw new Error(`y needs ${p.yBytes} bytes, over maxStorageBufferBindingSize`);
              y = buffer = make('y', p.yBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
            } else if (b.name in p.data) {
              buffer = storage(b.name, p.data[b.name]);
            } else {
              throw new Error(`kernel ${kernel.name} has binding ${b.binding} named "${b.name}", which this runner does not know`);
            }
            entries.push({ binding: b.binding, resource: { buffer } });
          }
          if (!y) throw new Error(`kernel ${kernel.name} has no binding named "y"`);
          read = make('readback', p.yBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
          const bind = device.createBindGroup({ label: kernel.name, layout: pipe.getBindGroupLayout(0), entries });
          const enc = device.createCommandEncoder({ label: kernel.name });
          const pass = enc.beginComputePass({ label: kernel.name });
          pass.setPipeline(pipe);
          pass.setBindGroup(0, bind);
          pass.dispatchWorkgroups(...counts);
          pass.end();
          enc.copyBufferToBuffer(y, 0, read, 0, p.yBytes);
          device.queue.submit([enc.finish()]);
        } finally {
          await popScopes(`running ${kernel.name}`);
        }
        await read.mapAsync(GPUMapMode.READ);
        const out = new Uint8Array(read.getMappedRange()).slice();
        read.unmap();
        if (lost) throw new Error(lost);
        if (uncaptured.length) throw new Error(`uncaptured WebGPU error: ${uncaptured.splice(0).join(' | ')}`);
        return { y: out };
      } finally {
        for (const b of buffers) b.destroy();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------

async function main() {
  const [caseDirArg, engineName, ...extra] = process.argv.slice(2);
  if (!caseDirArg || !engineName || extra.length) usage('expected two arguments');
  if (!ENGINES.includes(engineName)) usage(`unknown engine "${engineName}"`);
  const caseDir = resolve(caseDirArg);
  const packageDir = join(caseDir, 'package');
  const cases = loadJson(join(caseDir, 'cases.json'), 'cases file')?.cases;
  if (!Array.isArray(cases)) usage(`${join(caseDir, 'cases.json')} has no "cases" array`);
  const ids = new Set();
  for (const c of cases) {
    if (!c || !Number.isSafeInteger(c.id) || c.id < 0) usage(`case ${JSON.stringify(c)} has no non-negative integer "id"`);
    if (ids.has(c.id)) usage(`case id ${c.id} appears twice`);
    ids.add(c.id);
  }
  const manifest = loadJson(join(packageDir, 'manifest.json'), 'manifest');
  if (!Array.isArray(manifest?.kernels)) usage('the manifest has no "kernels" array');
  const kernels = new Map(manifest.kernels.map((k) => [k.name, k]));

  const outDir = join(caseDir, 'out', engineName);
  mkdirSync(outDir, { recursive: true });
  for (const c of cases) for (const ext of ['bin', 'skip', 'err']) rmSync(join(outDir, `c${c.id}.${ext}`), { force: true });
  const counts = { ran: 0, skipped: 0, failed: 0 };
  const write = (c, ext, data) => {
    writeFileSync(join(outDir, `c${c.id}.${ext}`), data);
    counts[{ bin: 'ran', skip: 'skipped', err: 'failed' }[ext]]++;
  };

  const t0 = performance.now();
  let engine;
  if (engineName === 'dawn') {
    try {
      engine = await makeDawnEngine(packageDir);
    } catch (e) {
      engine = { skip: `no WebGPU adapter (${oneLine(e)})` };
    }
  } else {
    engine = makeV8Engine(packageDir, engineName === 'v8-simd' ? 'simd' : 'scalar');
  }
  const tSetup = performance.now();
  const perKernel = new Map();
  if (engine.skip) {
    for (const c of cases) write(c, 'skip', `${engine.skip}\n`);
  } else {
    for (const c of cases) {
      const t = performance.now();
      try {
        const p = prepare(caseDir, kernels, c);
        const r = await engine.run(p);
        if (r.skip) write(c, 'skip', `${r.skip}\n`);
        else write(c, 'bin', r.y);
      } catch (e) {
        write(c, 'err', `${oneLine(e)}\n`);
      }
      perKernel.set(c.kernel, (perKernel.get(c.kernel) ?? 0) + performance.now() - t);
    }
  }
  const tEnd = performance.now();
  const ms = (v) => `${v.toFixed(1)} ms`;
  process.stderr.write(
    `${engineName}: ${engine.describe ? `${engine.describe}, features [${engine.features.join(', ')}]; ` : ''}` +
      `setup ${ms(tSetup - t0)}, ${cases.length} cases ${ms(tEnd - tSetup)}` +
      `${engine.stats ? ` (of which compiling ${ms(engine.stats.compileMs)})` : ''}\n`,
  );
  if (process.env.RUN_CASES_VERBOSE) for (const [k, v] of perKernel) process.stderr.write(`  ${k}: ${ms(v)}\n`);
  process.stdout.write(`${engineName}: ran ${counts.ran}, skipped ${counts.skipped}, failed ${counts.failed}\n`);
}

// Run only as a script (check-sample.mjs imports compileDispatch from here).
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  // process.exit: Dawn's instance can keep Node's event loop alive after the last case.
  main().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`run-cases: ${e?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
