#!/usr/bin/env node
// Engine runner for the Rust differential test harness.
//
//   node tests/node/run-cases.mjs CASE_DIR ENGINE        ENGINE: v8-simd | v8-scalar | dawn
//
// CASE_DIR holds package/ (an emitted package: manifest.json, .wgsl, .wasm), cases.json and
// the raw little-endian .bin inputs it names. For every case this writes one of
//   CASE_DIR/out/ENGINE/c<id>.bin    the output: matvec / matmul: f32 y (M x N, little-endian);
//                                    kv-attend: f32 out [n_heads][head_dim]; kv-append: the
//                                    cache's words after the call: codes, scales, mins, window
//   CASE_DIR/out/ENGINE/c<id>.skip   one line: why this engine cannot run the case
//   CASE_DIR/out/ENGINE/c<id>.err    the error, when the case failed
// and prints one line to stdout: `<engine>: ran R, skipped S, failed F` (timings go to stderr).
// Exit status 0 unless the runner itself could not work (bad arguments, unreadable
// cases.json or manifest). A machine without a WebGPU adapter gets .skip files, exit 0.
//
// Everything about a kernel comes from the manifest (found by name): bindings by name and
// number, the params uniform's field offsets, dispatch expressions, the wasm ABI. Buffer
// sizes are checked against docs/FORMAT.md from the manifest's bits / group_size / scheme.
// KV cases (`op` kv-append / kv-attend; fields kv_heads, max_seq, window, len, codes,
// scales, mins, window_words, and n_new + kv_new or n_heads + q) follow docs/FORMAT.md §11:
// the KvParams uniform from the manifest's `params`, split_len / n_splits from its
// `dispatch.host_values` rules, every pass of `dispatch.passes` in one submission sharing one
// bind group (an explicit layout from `bindings`), the wasm arguments by binding name.
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
// Expressions: dispatch workgroup counts (docs/FORMAT.md §8) and, for KV kernels, the
// workgroup counts of every pass and the host-value rules (§11.4), over named u32 values.

/**
 * Parses an integer expression into a function of an environment of named values.
 * `names`: the names it may use. `extended`: also `a * b` and `max(a, b)` (the KV kernels'
 * rules use them); without it only integers, the names, ceil(a / b), min(a, b) and
 * parentheses. `what` names the expression in errors.
 */
export function compileExpression(text, { names, extended = false, what = 'expression' }) {
  const allowed = new Set(names);
  if (typeof text !== 'string') throw new Error(`${what} ${JSON.stringify(text)} is not a string`);
  const grammar = extended
    ? `integers, ${[...allowed].join(', ')}, a * b, ceil(a / b), min(a, b), max(a, b) and parentheses`
    : `integers, ${[...allowed].join(', ')}, ceil(a / b), min(a, b) and parentheses`;
  const fail = (why) => {
    throw new Error(`${what} "${text}": ${why} (only ${grammar} are understood)`);
  };
  const tokens = [];
  const re = extended ? /\s*(?:(\d+)|([A-Za-z_]\w*)|([(),/*]))/y : /\s*(?:(\d+)|([A-Za-z_]\w*)|([(),/]))/y;
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
  const safe = (v, how) => {
    if (!Number.isSafeInteger(v)) throw new Error(`${what} "${text}": ${how} gives ${v}, too large`);
    return v;
  };
  const binary = (name, combine) => {
    expect('(');
    const a = expr();
    expect(name === 'ceil' ? '/' : ',');
    const b = expr();
    expect(')');
    return (env) => combine(a(env), b(env));
  };
  // expr: a factor, or (extended) factors joined by `*`.
  const expr = () => {
    let f = factor();
    while (extended && peek()?.op === '*') {
      i++;
      const [a, b] = [f, factor()];
      f = (env) => safe(a(env) * b(env), 'a product');
    }
    return f;
  };
  const factor = () => {
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
    if (t.id !== undefined && allowed.has(t.id)) {
      const name = t.id;
      return (env) => {
        const v = env[name];
        if (!Number.isSafeInteger(v)) throw new Error(`${what} "${text}": ${name} has no value here`);
        return v;
      };
    }
    if (t.id === 'ceil') {
      return binary('ceil', (x, y) => {
        if (y === 0) throw new Error(`${what} "${text}": division by zero`);
        let q = Math.floor(x / y);
        while (q * y < x) q++;
        while (q > 0 && (q - 1) * y >= x) q--;
        return q;
      });
    }
    if (t.id === 'min') return binary('min', Math.min);
    if (extended && t.id === 'max') return binary('max', Math.max);
    fail(`unexpected ${t.id !== undefined ? `name "${t.id}"` : `"${t.op}"`}`);
  };
  const f = expr();
  if (i !== tokens.length) fail(`unexpected ${JSON.stringify(peek().op ?? peek().id ?? peek().int)} after a complete expression`);
  return (env) => {
    const v = f(env);
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${what} "${text}" gives ${v}, not a u32`);
    return v;
  };
}

/** Parses one matvec/matmul `dispatch.workgroups` expression into a function of {M, N, K}. */
export function compileDispatch(text) {
  return compileExpression(text, { names: ['M', 'N', 'K'], what: 'dispatch expression' });
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
// KV cases (docs/FORMAT.md §11): kv-append and kv-attend over a quantized KV cache.

const KV_OPS = ['kv-append', 'kv-attend'];
// §11.5: the KvParams fields, and the size of the uniform.
const KV_PARAM_FIELDS = ['kv_heads', 'max_seq', 'window', 'len', 'n_new', 'n_heads', 'split_len', 'n_splits'];
const KV_PARAMS_BYTES = 32;
// The case's input files by the binding they fill (§11.1, §11.3, §11.4).
const KV_CASE_FILES = { codes: 'codes', scales: 'scales', mins: 'mins', window: 'window_words', kv_new: 'kv_new', q: 'q' };
// The buffers of each op, by binding name: inputs (from the case), the output, scratch.
const KV_BUFFERS = {
  'kv-append': { inputs: ['codes', 'scales', 'mins', 'window', 'kv_new'], outputs: ['codes', 'scales', 'mins', 'window'], scratch: [] },
  'kv-attend': { inputs: ['codes', 'scales', 'mins', 'window', 'q'], outputs: ['out'], scratch: ['partials'] },
};

const intIn = (v, what, lo) => {
  if (!Number.isSafeInteger(v) || v < lo || v > 0xffffffff) {
    throw new Error(`case field "${what}" = ${JSON.stringify(v)} is not an integer in ${lo} .. 4294967295`);
  }
  return v;
};

/** Whether the manifest kernel is a KV op. */
const isKv = (kernel) => KV_OPS.includes(kernel?.op);

/** Evaluates the manifest's `dispatch.host_values` rules in order over `env` (adding each). */
function hostValues(kernel, env) {
  const rules = kernel.dispatch?.host_values ?? [];
  if (!Array.isArray(rules)) throw new Error(`kernel ${kernel.name}: dispatch.host_values is not an array`);
  const fields = kernel.params.map((f) => f.name);
  for (const hv of rules) {
    if (!fields.includes(hv?.name)) throw new Error(`kernel ${kernel.name}: host value ${JSON.stringify(hv?.name)} is not a params field`);
    if (hv.name in env) throw new Error(`kernel ${kernel.name}: host value "${hv.name}" is already given by the case`);
    env[hv.name] = compileExpression(hv.rule, { names: fields, extended: true, what: `${kernel.name}: the host-value rule for ${hv.name}` })(env);
  }
  return env;
}

/** The KvParams uniform: the manifest's u32 fields at their offsets (§11.5; unused fields 0). */
function kvParamsBytes(kernel, values) {
  const view = new DataView(new ArrayBuffer(KV_PARAMS_BYTES));
  const taken = new Set();
  for (const f of kernel.params) {
    if (f.type !== 'u32') throw new Error(`params field "${f.name}" has type ${f.type}; only u32 is understood`);
    if (!Number.isInteger(f.offset) || f.offset < 0 || f.offset + 4 > KV_PARAMS_BYTES || f.offset % 4) {
      throw new Error(`params field "${f.name}" has offset ${f.offset}, outside the ${KV_PARAMS_BYTES}-byte KvParams uniform`);
    }
    if (taken.has(f.offset)) throw new Error(`params field "${f.name}" shares offset ${f.offset} with another field`);
    taken.add(f.offset);
    view.setUint32(f.offset, values[f.name], true);
  }
  return view.buffer;
}

/**
 * A KV case, engine-independent: shape, input bytes and params checked against the manifest
 * and docs/FORMAT.md §11.
 */
function prepareKv(caseDir, kernel, c) {
  const op = kernel.op;
  if (c.op !== op) throw new Error(`the case's op is ${JSON.stringify(c.op)} but kernel ${kernel.name} is ${op}`);
  const kv = kernel.kv;
  if (!kv || typeof kv !== 'object') throw new Error(`KV kernel ${kernel.name} has no "kv" object in the manifest`);
  const { bits, group_size: g } = kernel;
  const d = kv.head_dim;
  // §11: head_dim 64 or 128; bits 2, 3, 4, 8; group 32, 64, 128 with G ≤ D; always asym.
  if (![64, 128].includes(d)) throw new Error(`kernel ${kernel.name}: kv.head_dim = ${JSON.stringify(d)}; a KV cache has 64 or 128 (docs/FORMAT.md §11)`);
  if (![2, 3, 4, 8].includes(bits)) throw new Error(`kernel ${kernel.name}: bits = ${bits}; a KV cache has 2, 3, 4 or 8 (docs/FORMAT.md §11)`);
  if (![32, 64, 128].includes(g) || g > d) throw new Error(`kernel ${kernel.name}: group_size = ${g}; a KV cache has 32, 64 or 128, at most head_dim ${d}`);
  if (kernel.scheme !== 'asym') throw new Error(`kernel ${kernel.name}: scheme ${JSON.stringify(kernel.scheme)}; a KV cache is always asym`);
  if (!Array.isArray(kernel.params)) throw new Error(`kernel ${kernel.name} has no "params" array`);
  for (const f of kernel.params) {
    if (!KV_PARAM_FIELDS.includes(f.name)) throw new Error(`unknown params field "${f.name}" in the manifest (docs/FORMAT.md §11.5 has ${KV_PARAM_FIELDS.join(', ')})`);
  }

  const h = intIn(c.kv_heads, 'kv_heads', 1);
  const s = intIn(c.max_seq, 'max_seq', 2);
  const r = intIn(c.window, 'window', 0);
  const len = intIn(c.len, 'len', 0);
  const even = kv.max_seq_multiple_of ?? 2;
  if (s % even !== 0) throw new Error(`max_seq = ${s} is not a multiple of ${even} (docs/FORMAT.md §11: even, so that no two heads share a word of scales or mins)`);
  if (r > s) throw new Error(`window = ${r} is over max_seq = ${s} (docs/FORMAT.md §11: 0 ≤ window ≤ max_seq)`);
  if (len > s) throw new Error(`len = ${len} is over max_seq = ${s}`);
  let nNew = 0;
  let nHeads = 0;
  if (op === 'kv-append') {
    nNew = intIn(c.n_new, 'n_new', 1);
    if (len + nNew > s) throw new Error(`appending n_new = ${nNew} tokens at len = ${len} overflows max_seq = ${s}`);
  } else {
    if (len === 0) throw new Error('kv-attend over an empty cache (len = 0): a softmax over no tokens is undefined');
    nHeads = intIn(c.n_heads, 'n_heads', 1);
    const maxGqa = kv.max_gqa ?? 8;
    if (nHeads % h !== 0 || nHeads / h > maxGqa) {
      throw new Error(`n_heads = ${nHeads} must be kv_heads (${h}) times 1 to ${maxGqa} (docs/FORMAT.md §11.4)`);
    }
  }

  // Inputs, and the bindings that take them.
  const { inputs, outputs, scratch } = KV_BUFFERS[op];
  const data = {};
  for (const [binding, field] of Object.entries(KV_CASE_FILES)) {
    const bytes = readInput(caseDir, c, field);
    if (inputs.includes(binding)) {
      if (!bytes) throw new Error(`kernel ${kernel.name} reads "${binding}" but the case gives no "${field}"`);
      data[binding] = bytes;
    } else if (bytes) {
      throw new Error(`the case gives "${field}" but ${op} takes no such input`);
    }
  }
  const known = new Set(['params', ...inputs, ...outputs, ...scratch]);
  const bound = new Set();
  for (const b of kernel.bindings ?? []) {
    if (!known.has(b.name)) throw new Error(`kernel ${kernel.name} has binding ${b.binding} named "${b.name}", which ${op} does not have`);
    bound.add(b.name);
  }
  for (const name of known) if (!bound.has(name)) throw new Error(`kernel ${kernel.name} has no binding named "${name}"`);

  // Byte lengths per docs/FORMAT.md §11.1 (the store is N = 2·H·S rows of K = D, §2), §11.3, §11.4.
  const groups = 2 * h * s * (d / g);
  const want = {
    codes: (2 * h * s * d * bits) / 8,
    scales: 4 * Math.ceil(groups / 2),
    mins: 4 * Math.ceil(groups / 2),
    window: 4 * Math.max(1, Math.ceil((2 * h * r * d) / 2)),
    kv_new: 2 * nNew * h * d * 4,
    q: nHeads * d * 4,
  };
  const shape = `kv_heads=${h} max_seq=${s} window=${r} head_dim=${d}${op === 'kv-append' ? ` n_new=${nNew}` : ` n_heads=${nHeads}`}`;
  for (const name of inputs) {
    if (!Number.isSafeInteger(want[name])) throw new Error(`"${KV_CASE_FILES[name]}" would need ${want[name]} bytes: too large`);
    if (data[name].byteLength !== want[name]) {
      throw new Error(`"${KV_CASE_FILES[name]}" has ${data[name].byteLength} bytes; ${kernel.name} with ${shape} needs ${want[name]} (docs/FORMAT.md §11)`);
    }
  }
  // §11.3 step 1: new values are rounded to f16; the host refuses those whose f16 is infinite
  // or NaN (round to nearest even: |v| ≥ 65520 rounds to infinity).
  if (op === 'kv-append') {
    const values = new Float32Array(data.kv_new.slice().buffer);
    for (let i = 0; i < values.length; i++) {
      if (!(Math.abs(values[i]) < 65520)) {
        const per = h * d;
        const kvi = Math.floor(i / (nNew * per));
        const token = Math.floor(i / per) % nNew;
        throw new Error(
          `kv_new ${kvi ? 'value' : 'key'} of token ${len + token}, head ${Math.floor(i / d) % h}, dim ${i % d} is ${values[i]}, ` +
            'which f16 cannot hold (|v| must round to at most 65504; docs/FORMAT.md §11.3)',
        );
      }
    }
  }

  // The uniform: the case's values, then the manifest's host-value rules; unused fields 0.
  const given = { kv_heads: h, max_seq: s, window: r, len, ...(op === 'kv-append' ? { n_new: nNew } : { n_heads: nHeads }) };
  const env = hostValues(kernel, { ...given });
  if (op === 'kv-attend') {
    // §11.4: split_len a positive multiple of the kernel's chunk; n_splits = ceil(len / split_len).
    const chunk = kv.chunk;
    if (!('split_len' in env) || !('n_splits' in env)) throw new Error(`kernel ${kernel.name}: the manifest gives no host-value rule for split_len and n_splits`);
    if (!Number.isSafeInteger(chunk) || chunk < 1) throw new Error(`kernel ${kernel.name}: kv.chunk = ${JSON.stringify(chunk)}`);
    if (env.split_len < 1 || env.split_len % chunk !== 0) throw new Error(`split_len = ${env.split_len} (from the manifest's rule) is not a positive multiple of the chunk ${chunk}`);
    if (env.n_splits !== Math.ceil(len / env.split_len)) throw new Error(`n_splits = ${env.n_splits} (from the manifest's rule) is not ceil(len / split_len) = ${Math.ceil(len / env.split_len)}`);
  }
  const params = Object.fromEntries(KV_PARAM_FIELDS.map((f) => [f, env[f] ?? 0]));
  const sizes = { ...want, out: nHeads * d * 4, partials: nHeads * (params.n_splits ?? 0) * (d + 2) * 4 };
  return {
    kv: true,
    kernel,
    op,
    params,
    paramsBytes: kvParamsBytes(kernel, params),
    data,
    sizes,
    outputs,
    outBytes: outputs.reduce((a, name) => a + sizes[name], 0),
  };
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
  // A KV kernel: every argument is the byte offset of the buffer of that binding name
  // (params included: the 32 bytes of the uniform); kv-append rewrites the cache buffers in
  // place, kv-attend writes `out`.
  function runKv(p, w, memory, func) {
    const sizes = { params: KV_PARAMS_BYTES, ...p.sizes };
    const bytes = { params: new Uint8Array(p.paramsBytes), ...p.data };
    const needed = ['params', ...new Set([...KV_BUFFERS[p.op].inputs, ...p.outputs])];
    for (const name of needed) {
      if (!w.args.includes(name)) throw new Error(`the manifest's wasm.args for ${p.kernel.name} have no "${name}"`);
    }
    const align = w.layout?.align ?? 16;
    const alignUp = (v) => Math.ceil(v / align) * align;
    let next = alignUp(w.layout?.scratch_bytes ?? 0);
    const at = {};
    const allowed = [...needed, ...KV_BUFFERS[p.op].scratch];
    for (const name of w.args) {
      if (!allowed.includes(name) || name in at) throw new Error(`wasm argument "${name}" of ${p.kernel.name} is not a buffer of ${p.op} (or comes twice)`);
      at[name] = next;
      next = alignUp(next + sizes[name]);
    }
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
    for (const name of w.args) {
      if (bytes[name]) heap.set(bytes[name], at[name]);
      else heap.fill(0xff, at[name], at[name] + sizes[name]); // an output only: NaN until written
    }
    func(...w.args.map((name) => at[name] | 0));
    const out = new Uint8Array(p.outBytes);
    let o = 0;
    for (const name of p.outputs) {
      out.set(new Uint8Array(memory.buffer, at[name], sizes[name]), o);
      o += sizes[name];
    }
    return { y: out };
  }

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
      if (p.kv) return runKv(p, w, memory, func);

      // Place the buffers from the scratch boundary on, aligned, in argument order.
      const align = w.layout?.align ?? 16;
      const alignUp = (v) => Math.ceil(v / align) * align;
      let next = alignUp(w.layout?.scratch_bytes ?? 0);
      const at = {};
      // dot4 kernels (FORMAT.md §12) take one more buffer, `xq`: scratch the module fills and
      // reads, K/32 blocks of `layout.xq_block_bytes`.
      const scratch = w.args.includes('xq') ? { xq: (p.k / 32) * (w.layout?.xq_block_bytes ?? 0) } : {};
      if (scratch.xq === 0) throw new Error(`kernel ${p.kernel.name} takes "xq" but its wasm.layout has no xq_block_bytes`);
      const sizes = { ...Object.fromEntries(['weights', 'scales', 'mins', 'x'].map((b) => [b, p.data[b]?.byteLength])), y: p.yBytes, ...scratch };
      for (const name of w.args) {
        if (!BUFFER_NAMES.includes(name) && !(name in scratch)) continue;
        if (name !== 'y' && !(name in scratch) && !p.data[name]) {
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
  async function pipeline(kernel, entryPoint) {
    const key = `${kernel.name} ${entryPoint}`;
    const cached = pipelines.get(key);
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
        label: entryPoint,
        layout: 'auto',
        compute: { module, entryPoint },
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
        pipelines.set(key, { error });
        throw error;
      }
    }
    stats.compileMs += performance.now() - t;
    pipelines.set(key, { pipeline: compiled });
    return compiled;
  }

  // A KV kernel's passes (`dispatch.passes`, in order) share one bind group, so their
  // pipelines share one explicit layout built from the manifest's bindings. Compiled once per
  // kernel, as { passes: [{ pipeline, counts }], layout }; a kernel that failed stays failed.
  const BUFFER_TYPES = { uniform: 'uniform', read: 'read-only-storage', read_write: 'storage' };
  async function kvPipelines(kernel) {
    const cached = pipelines.get(kernel.name);
    if (cached?.error) throw cached.error;
    if (cached) return cached.kv;
    const passes = kernel.dispatch?.passes;
    const fields = kernel.params.map((f) => f.name);
    let kv;
    try {
      if (!Array.isArray(passes) || !passes.length) throw new Error(`kernel ${kernel.name}: dispatch.passes must list at least one pass`);
      const counts = passes.map((pass, i) => {
        if (typeof pass?.entry_point !== 'string') throw new Error(`kernel ${kernel.name}: dispatch.passes[${i}] has no entry_point`);
        if (!Array.isArray(pass.workgroups) || pass.workgroups.length !== 3) throw new Error(`kernel ${kernel.name}: dispatch.passes[${i}].workgroups must list 3 expressions`);
        return pass.workgroups.map((text) => compileExpression(text, { names: fields, extended: true, what: `${kernel.name}: dispatch.passes[${i}] (${pass.entry_point}) workgroup expression` }));
      });
      const entries = kernel.bindings.map((b) => {
        const type = BUFFER_TYPES[b.access];
        if (!type) throw new Error(`kernel ${kernel.name}: binding ${b.binding} ("${b.name}") has access ${JSON.stringify(b.access)}; known: ${Object.keys(BUFFER_TYPES).join(', ')}`);
        return { binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } };
      });
      const t = performance.now();
      const code = readFileSync(join(packageDir, kernel.wgsl), 'utf8');
      let module;
      const compiled = [];
      let layout;
      device.pushErrorScope('validation');
      device.pushErrorScope('internal');
      try {
        layout = device.createBindGroupLayout({ label: kernel.name, entries });
        const pipelineLayout = device.createPipelineLayout({ label: kernel.name, bindGroupLayouts: [layout] });
        module = device.createShaderModule({ label: kernel.name, code });
        for (const pass of passes) {
          compiled.push(device.createComputePipeline({ label: pass.entry_point, layout: pipelineLayout, compute: { module, entryPoint: pass.entry_point } }));
        }
      } finally {
        try {
          await popScopes(`pipelines of ${kernel.name} (${passes.map((x) => x.entry_point).join(', ')})`);
        } catch (e) {
          let detail = '';
          try {
            const messages = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
            const fresh = messages.filter((m) => !e.message.includes(oneLine(m.message)));
            detail = fresh.map((m) => `${m.lineNum}:${m.linePos} ${oneLine(m.message)}`).join(' | ');
          } catch {}
          throw new Error(detail ? `${e.message} [${detail}]` : e.message);
        }
      }
      stats.compileMs += performance.now() - t;
      kv = { layout, passes: compiled.map((pipeline, i) => ({ pipeline, counts: counts[i], entry: passes[i].entry_point })) };
    } catch (error) {
      pipelines.set(kernel.name, { error });
      throw error;
    }
    pipelines.set(kernel.name, { kv });
    return kv;
  }

  // The entry point and workgroup expressions for N rows of K columns: a matvec's
  // `dispatch.tall` pass from N >= min_n on, else its `dispatch.wide` pass where K >= min_k
  // and N <= max_n, else the kernel's own.
  function entryOf(kernel, n, k) {
    const checked = (which, keys) => {
      const s = kernel.dispatch?.[which];
      if (s == null) return null;
      if (!keys.every((key) => Number.isSafeInteger(s[key])) || !Array.isArray(s.passes) || s.passes.length !== 1 || typeof s.passes[0]?.entry_point !== 'string') {
        throw new Error(`kernel ${kernel.name}: dispatch.${which} must have ${keys.join(', ')} and one pass with an entry_point`);
      }
      return s;
    };
    const tall = checked('tall', ['min_n']);
    const wide = checked('wide', ['min_k', 'max_n']);
    const use = tall && n >= tall.min_n ? tall : wide && k >= wide.min_k && n <= wide.max_n ? wide : null;
    if (use == null) return { entryPoint: kernel.entry_point, exprs: kernel.dispatch?.workgroups };
    return { entryPoint: use.passes[0].entry_point, exprs: use.passes[0].workgroups };
  }

  function workgroups(kernel, { entryPoint, exprs }, env) {
    const key = `${kernel.name} ${entryPoint}`;
    let d = dispatchers.get(key);
    if (!d) {
      if (!Array.isArray(exprs) || exprs.length !== 3) throw new Error(`kernel ${kernel.name}: the workgroups of ${entryPoint} must list 3 expressions`);
      d = exprs.map(compileDispatch);
      dispatchers.set(key, d);
    }
    return d.map((f) => f(env));
  }

  const limits = device.limits;

  // kv-append: the cache buffers are rewritten in place and read back (codes, scales, mins,
  // window, concatenated); kv-attend: the split pass fills `partials`, the combine pass `out`.
  async function runKv(p) {
    const { kernel } = p;
    const { layout, passes } = await kvPipelines(kernel);
    const maxDim = limits.maxComputeWorkgroupsPerDimension;
    const counts = passes.map(({ counts: c, entry }) => {
      const n = c.map((f) => f(p.params));
      if (n.some((v) => v > maxDim)) throw new Error(`pass ${entry}: dispatch ${n.join(' x ')} exceeds maxComputeWorkgroupsPerDimension ${maxDim}`);
      return n;
    });
    const buffers = [];
    const make = (label, size, usage) => {
      if (size > limits.maxStorageBufferBindingSize || size > limits.maxBufferSize) {
        throw new Error(`"${label}" needs ${size} bytes, over the device's maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize} / maxBufferSize ${limits.maxBufferSize}`);
      }
      const b = device.createBuffer({ label, size, usage });
      buffers.push(b);
      return b;
    };
    const { STORAGE, UNIFORM, COPY_DST, COPY_SRC, MAP_READ } = GPUBufferUsage;
    try {
      let read;
      const byName = {};
      device.pushErrorScope('validation');
      device.pushErrorScope('out-of-memory');
      try {
        for (const b of kernel.bindings) {
          const name = b.name;
          if (name === 'params') {
            byName[name] = make(name, KV_PARAMS_BYTES, UNIFORM | COPY_DST);
            device.queue.writeBuffer(byName[name], 0, p.paramsBytes);
          } else if (p.data[name]) {
            byName[name] = make(name, p.sizes[name], STORAGE | COPY_DST | COPY_SRC);
            device.queue.writeBuffer(byName[name], 0, p.data[name]);
          } else {
            // An output or scratch buffer: NaN until the kernel writes it (WebGPU has no empty buffers).
            const size = Math.max(4, p.sizes[name]);
            byName[name] = make(name, size, STORAGE | COPY_DST | COPY_SRC);
            device.queue.writeBuffer(byName[name], 0, new Uint8Array(size).fill(0xff));
          }
        }
        const bind = device.createBindGroup({
          label: kernel.name,
          layout,
          entries: kernel.bindings.map((b) => ({ binding: b.binding, resource: { buffer: byName[b.name] } })),
        });
        read = make('readback', p.outBytes, MAP_READ | COPY_DST);
        const enc = device.createCommandEncoder({ label: kernel.name });
        passes.forEach(({ pipeline: pipe, entry }, i) => {
          const pass = enc.beginComputePass({ label: entry });
          pass.setPipeline(pipe);
          pass.setBindGroup(0, bind);
          pass.dispatchWorkgroups(...counts[i]);
          pass.end();
        });
        let o = 0;
        for (const name of p.outputs) {
          enc.copyBufferToBuffer(byName[name], 0, read, o, p.sizes[name]);
          o += p.sizes[name];
        }
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
  }

  return {
    describe,
    features: requiredFeatures,
    stats,
    async run(p) {
      if (lost) throw new Error(lost);
      const { kernel } = p;
      const missing = (kernel.features ?? []).filter((f) => !device.features.has(f));
      if (missing.length) return { skip: `missing feature ${missing.join(', ')}` };
      if (p.kv) return runKv(p);
      const entry = entryOf(kernel, p.n, p.k);
      const pipe = await pipeline(kernel, entry.entryPoint);
      const counts = workgroups(kernel, entry, { M: p.m, N: p.n, K: p.k });
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
        const kernel = kernels.get(c.kernel);
        if (KV_OPS.includes(c.op) && kernel && !isKv(kernel)) throw new Error(`the case's op is ${c.op} but kernel ${kernel.name} is ${kernel.op}`);
        const p = isKv(kernel) ? prepareKv(caseDir, kernel, c) : prepare(caseDir, kernels, c);
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
