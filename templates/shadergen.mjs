// shadergen.mjs: the JavaScript runtime of a shadergen kernel package.
//
// Emitted beside manifest.json by `shadergen emit` (the manifest's "runtime" field names it).
// Plain ES module, no dependencies, no build step; runs in browsers (a <script type="module">
// served over http) and in Node (files read with node:fs, WebGPU from the npm `webgpu`
// package passed as `gpu`). Everything about a kernel comes from the manifest: bindings,
// params layout, dispatch expressions, host-value rules, the WebAssembly ABI.
//
//   const sg = await ShaderGen.load('./pkg/', { allowF16: false, allowInt8: false, prefer: 'auto' });
//   sg.caps                      // the capabilities report (docs/CAPS.md §1)
//   sg.select()                  // one choice per kernel family (docs/CAPS.md §3)
//   const w = sg.upload({ format: { bits: 4, group_size: 32, scheme: 'sym' }, n, k, weights, scales });
//   const y = await sg.matvec(w, x);             // Float32Array(n)
//   const Y = await sg.matmul(w, X, m);          // Float32Array(m * n)
//   const c = sg.kvCache({ bits: 4, group_size: 32, head_dim: 64, kv_heads: 2, max_seq: 256, window: 16 });
//   await sg.kvAppend(c, k, v);                  // k, v: Float32Array [n][kv_heads][head_dim]
//   const o = await sg.kvAttend(c, q, n_heads);  // Float32Array [n_heads][head_dim]
//
// Byte layouts: docs/FORMAT.md of the shadergen repository (the manifest's "format_doc").
// Selection: docs/CAPS.md. WebGPU calls, and all calls of one ShaderGen, run one at a time in
// the order they were made.

/** WebGPU constants (fixed by the spec; not read from globals, which Node lacks). */
const BUFFER = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 };
const MAP_READ = 1;
const COMPUTE_STAGE = 4;

/** Tiers in the order of docs/CAPS.md §3 (poorest first). */
export const TIERS = Object.freeze(['base', 'f16', 'subgroups', 'f16-subgroups', 'dot4', 'dot4-subgroups']);
const TIER_F16 = new Set(['f16', 'f16-subgroups']);
const TIER_SUBGROUPS = new Set(['subgroups', 'f16-subgroups', 'dot4-subgroups']);
/**
 * Tiers whose matvec quantizes x to int8 per 32-block and sums with `dot4I8Packed` (WGSL
 * language feature `packed_4x8_integer_dot_product`): never chosen unless the host opts in
 * (`allowInt8`), as int8 activations change the result.
 */
const TIER_DOT4 = new Set(['dot4', 'dot4-subgroups']);
const DOT4_LANGUAGE_FEATURE = 'packed_4x8_integer_dot_product';

/** Backends a call can run on. */
export const BACKENDS = Object.freeze(['webgpu', 'wasm-simd', 'wasm-scalar']);
const PREFER = ['auto', 'webgpu', 'wasm-simd', 'wasm-scalar'];

/** The limits docs/CAPS.md §1 requires in a report (more are copied when the adapter has them). */
const REPORT_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
];
const EXTRA_LIMITS = ['maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxUniformBufferBindingSize', 'maxBindGroups'];
/** WebGPU's default limits: a device gets these unless it asks for more. */
const DEFAULT_LIMITS = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxStorageBuffersPerShaderStage: 8,
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
};

const KV_PARAM_FIELDS = ['kv_heads', 'max_seq', 'window', 'len', 'n_new', 'n_heads', 'split_len', 'n_splits'];
const MAX_F16_INPUT = 65520; // §11.3: |v| ≥ 65520 rounds to an infinite f16

// ---------------------------------------------------------------------------------------
// Errors

/**
 * Every error this module throws. `code` says what kind; `value` is the offending value
 * (when there is one) and the message names it and what is allowed.
 *
 * Codes: `invalid-argument` (a wrong type, length or value), `not-in-package` (a format or
 * op the package has no kernel for), `load-failed` (manifest or kernel file unreadable),
 * `gpu-error` (WebGPU reported an error), `wasm-error` (a WebAssembly module failed),
 * `device-lost` (the GPU went away and the data lived only there), `destroyed` (used after
 * `destroy()`).
 */
export class ShaderGenError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ value?: unknown, cause?: unknown }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'ShaderGenError';
    this.code = code;
    if ('value' in extra) this.value = extra.value;
  }
}

const invalid = (message, value) => new ShaderGenError('invalid-argument', message, { value });
const oneLine = (e) => String(e instanceof Error ? e.message || e : e).replace(/\s*\n\s*/g, ' | ').trim();
const describeValue = (v) => {
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${v.length})`;
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined || typeof v !== 'object') return String(v);
  return Object.prototype.toString.call(v);
};

function positiveInt(v, what, { min = 1, max = 0xffffffff } = {}) {
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw invalid(`${what} = ${describeValue(v)}: expected an integer in ${min} .. ${max}`, v);
  }
  return v;
}

function typedArray(v, Type, length, what, why) {
  if (!(v instanceof Type)) {
    throw invalid(`${what} must be a ${Type.name} of ${length} values (${why}), got ${describeValue(v)}`, v);
  }
  if (v.length !== length) throw invalid(`${what} has ${v.length} values; ${why} needs ${length}`, v);
  return v;
}

// ---------------------------------------------------------------------------------------
// Environment: Node or a browser

const IN_NODE =
  typeof process !== 'undefined' && typeof process.versions?.node === 'string' && typeof window === 'undefined' && !globalThis.Deno;

/** A Node built-in, imported only when running in Node (never at module top level). */
async function nodeModule(name) {
  const specifier = `node:${name}`; // a variable: bundlers for browsers leave it alone
  return import(specifier);
}

/**
 * The package's base URL (ending in `/`) and the manifest's URL. `source` is a URL (string
 * or URL object: http(s), file, blob...) or, in Node, a file-system path; either names the
 * package folder or its manifest.json.
 */
async function packageUrls(source) {
  let url;
  if (source instanceof URL) url = new URL(source.href);
  else if (typeof source === 'string' && source.length > 0) {
    const hasScheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(source) && !/^[a-zA-Z]:[\\/]/.test(source);
    if (hasScheme) url = new URL(source);
    else if (IN_NODE) {
      const [{ pathToFileURL }, path] = await Promise.all([nodeModule('url'), nodeModule('path')]);
      url = pathToFileURL(path.resolve(source));
      if (/[\\/]$/.test(source) && !url.pathname.endsWith('/')) url.pathname += '/';
    } else {
      const base = globalThis.document?.baseURI ?? globalThis.location?.href;
      if (!base) throw invalid(`package location ${JSON.stringify(source)} is relative and there is no page URL to resolve it against`, source);
      url = new URL(source, base);
    }
  } else {
    throw invalid(`package location must be a URL, a URL string or (in Node) a path, got ${describeValue(source)}`, source);
  }
  if (url.pathname.endsWith('.json')) return { base: new URL('./', url), manifest: url };
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { base: url, manifest: new URL('manifest.json', url) };
}

/** Reads a package file: fs for file: URLs in Node, fetch otherwise. */
async function readFile(url, as) {
  try {
    if (url.protocol === 'file:' && IN_NODE) {
      const fs = await nodeModule('fs/promises');
      const data = await fs.readFile(url);
      if (as === 'text') return data.toString('utf8');
      return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    }
    if (typeof fetch !== 'function') throw new Error('fetch is not available');
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
    return as === 'text' ? await response.text() : await response.arrayBuffer();
  } catch (e) {
    throw new ShaderGenError('load-failed', `cannot read ${url.href}: ${oneLine(e)}`, { value: url.href, cause: e });
  }
}

// ---------------------------------------------------------------------------------------
// Capabilities (docs/CAPS.md §1, §2)

/** Bytes of a module with one function `() -> ()` whose body is `body` (and a memory). */
function probeModule(body, memory = null) {
  const leb = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  const fn = [0, ...body, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 0, 0]),
    ...section(3, [1, 0]),
    ...(memory ? section(5, [1, ...memory]) : []),
    ...section(10, [1, ...leb(fn.length), ...fn]),
  ]);
}

const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)];
const WASM_PROBES = {
  // i32.const 0; i32x4.splat; drop
  simd128: probeModule([0x41, 0x00, 0xfd, 0x11, 0x1a]),
  // v128.const 0; v128.const 0; i8x16.relaxed_swizzle; drop
  relaxed_simd: probeModule([...V128_ZERO, ...V128_ZERO, 0xfd, 0x80, 0x02, 0x1a]),
  // (memory 1 1 shared); i32.const 0; i32.atomic.load; drop
  threads: probeModule([0x41, 0x00, 0xfe, 0x10, 0x02, 0x00, 0x1a], [0x03, 0x01, 0x01]),
};

/** `WebAssembly.validate` probes: `{ simd128, relaxed_simd, threads }`. */
export function detectWasm() {
  const out = {};
  for (const [name, bytes] of Object.entries(WASM_PROBES)) {
    try {
      out[name] = typeof WebAssembly === 'object' && WebAssembly.validate(bytes);
    } catch {
      out[name] = false;
    }
  }
  return out;
}

/**
 * The engine guessed from a user agent (docs/CAPS.md §1): `chromium`, `gecko`, `webkit`,
 * `wgpu-native` (Deno: wgpu) or `unknown`. Every browser on iOS is WebKit.
 */
export function engineFromUserAgent(ua) {
  if (typeof ua !== 'string' || !ua) return 'unknown';
  if (/\b(iPhone|iPad|iPod)\b|CriOS\/|FxiOS\/|EdgiOS\//.test(ua)) return 'webkit';
  if (/\bDeno\//.test(ua)) return 'wgpu-native';
  if (/\b(Edg|Chrome|Chromium|HeadlessChrome)\//.test(ua)) return 'chromium';
  if (/\bFirefox\//.test(ua)) return 'gecko';
  if (/\bAppleWebKit\//.test(ua)) return 'webkit';
  return 'unknown';
}

/** The target to load for a report (docs/CAPS.md §2). */
export function suggestTarget(caps) {
  switch (caps?.engine) {
    case 'chromium':
      return typeof caps.user_agent === 'string' && caps.user_agent.includes('Edg/') ? 'edge' : 'chrome';
    case 'gecko':
      return 'firefox';
    case 'webkit':
      return 'safari';
    case 'wgpu-native':
      return 'native';
    default:
      return 'generic';
  }
}

const str = (v) => (typeof v === 'string' ? v : null);
const sorted = (iterable) => {
  try {
    return [...(iterable ?? [])].filter((s) => typeof s === 'string').sort();
  } catch {
    return [];
  }
};

/** `navigator.gpu.wgslLanguageFeatures`, sorted; empty where it is missing or unreadable. */
function languageFeatures(gpu) {
  try {
    return sorted(gpu?.wgslLanguageFeatures);
  } catch {
    return [];
  }
}

/** The adapter part of a report; every optional field guarded (Safari 26.0: no `info`). */
async function describeAdapter(gpu, adapter) {
  let info = null;
  try {
    info = adapter.info ?? null;
    if (!info && typeof adapter.requestAdapterInfo === 'function') info = await adapter.requestAdapterInfo();
  } catch {
    info = null;
  }
  const limits = {};
  for (const name of [...REPORT_LIMITS, ...EXTRA_LIMITS]) {
    let v;
    try {
      v = adapter.limits?.[name];
    } catch {
      v = undefined;
    }
    if (typeof v === 'number') limits[name] = v;
    else if (REPORT_LIMITS.includes(name)) limits[name] = null;
  }
  let fallback = false;
  try {
    fallback = Boolean(info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false);
  } catch {
    fallback = false;
  }
  return {
    adapter: {
      vendor: str(info?.vendor),
      architecture: str(info?.architecture),
      device: str(info?.device),
      description: str(info?.description),
    },
    features: sorted(adapter.features),
    limits,
    wgsl_language_features: languageFeatures(gpu),
    is_fallback_adapter: fallback,
  };
}

/**
 * Measures a capabilities report (docs/CAPS.md §1). `gpu` is `navigator.gpu` or Dawn's
 * `create([])`; `adapter`, when given, is used instead of requesting one. Returns
 * `{ caps, adapter }` (adapter null without WebGPU).
 */
export async function detectCaps({ gpu = globalThis.navigator?.gpu, adapter = undefined, adapterOptions = undefined } = {}) {
  const userAgent = IN_NODE ? null : str(globalThis.navigator?.userAgent);
  let engine = engineFromUserAgent(userAgent);
  if (IN_NODE && engine === 'unknown' && gpu) engine = 'dawn-node';
  let webgpu = null;
  let found = adapter ?? null;
  let adapterError = null;
  if (gpu && found === null) {
    try {
      found = (await gpu.requestAdapter(adapterOptions)) ?? null;
    } catch (e) {
      adapterError = oneLine(e);
      found = null;
    }
  }
  if (found) webgpu = await describeAdapter(gpu, found);
  const caps = {
    schema: 1,
    source: 'shadergen.mjs',
    user_agent: userAgent,
    engine,
    webgpu,
    wasm: detectWasm(),
  };
  return { caps, adapter: found, why: gpu ? (found ? null : adapterError ? `requestAdapter() failed: ${adapterError}` : 'requestAdapter() gave null') : 'no navigator.gpu' };
}

// ---------------------------------------------------------------------------------------
// Selection (docs/CAPS.md §3; the same rule as codegen/src/caps.rs, held equal by tests/caps/)

const tierIndex = (t) => TIERS.indexOf(t);

/**
 * The tiers each target has (codegen/src/profile.rs `TARGETS`): the wanted tier is the
 * richest of these, so a package emitted with fewer tiers gets the same answer.
 */
export const TARGET_TIERS = Object.freeze({
  generic: ['base', 'f16'],
  chrome: TIERS,
  edge: TIERS,
  firefox: ['base', 'f16', 'dot4'],
  safari: ['base', 'f16', 'dot4'],
  native: TIERS,
});

/** The family key of a manifest kernel (§3, §4): `matvec/4/32/sym`, `kv-attend/4/32/asym/128`. */
export function familyOf(kernel) {
  const key = `${kernel.op}/${kernel.bits}/${kernel.group_size}/${kernel.scheme}`;
  return kernel.op === 'kv-append' || kernel.op === 'kv-attend' ? `${key}/${kernel.kv?.head_dim}` : key;
}

/** The manifest's kernel families, in order of first appearance; each family's kernels poorest tier first. */
export function families(manifest) {
  const byId = new Map();
  for (const k of manifest.kernels) {
    const id = familyOf(k);
    let f = byId.get(id);
    if (!f) {
      f = { id, op: k.op, bits: k.bits, group_size: k.group_size, scheme: k.scheme, head_dim: k.kv ? k.kv.head_dim : null, kernels: [] };
      byId.set(id, f);
    }
    f.kernels.push(k);
  }
  for (const f of byId.values()) f.kernels.sort((a, b) => tierIndex(a.tier) - tierIndex(b.tier));
  return [...byId.values()];
}

/** Why `kernel` cannot run on the report's adapter, or null when it can (§3 step 2). */
export function notRunnable(kernel, webgpu) {
  const features = new Set(webgpu.features);
  const lim = webgpu.limits ?? {};
  const why = [];
  for (const f of kernel.features ?? []) if (!features.has(f)) why.push(`no ${f}`);
  const languages = new Set(Array.isArray(webgpu.wgsl_language_features) ? webgpu.wgsl_language_features : []);
  for (const f of kernel.wgsl_language_features ?? []) if (!languages.has(f)) why.push(`no WGSL language feature ${f}`);
  const storage = kernel.workgroup_storage_bytes ?? 0;
  if (storage > lim.maxComputeWorkgroupStorageSize) why.push(`workgroup storage ${storage} > ${lim.maxComputeWorkgroupStorageSize}`);
  const [x, y, z] = kernel.workgroup_size;
  if (x * y * z > lim.maxComputeInvocationsPerWorkgroup) why.push(`workgroup invocations ${x * y * z} > ${lim.maxComputeInvocationsPerWorkgroup}`);
  if (x > lim.maxComputeWorkgroupSizeX) why.push(`workgroup_size[0] ${x} > maxComputeWorkgroupSizeX ${lim.maxComputeWorkgroupSizeX}`);
  return why.length ? why.join(', ') : null;
}

/**
 * `Profile::select_tier`: the richest tier of `target` whose needs are met. dot4 tiers count
 * only with `int8`: the host allows int8 activations, the adapter's WGSL has
 * packed_4x8_integer_dot_product and the family has int8-activation kernels.
 */
function wantedTier(target, hasF16, hasSubgroups, allowF16, int8 = false) {
  const tiers = TARGET_TIERS[target] ?? TIERS;
  let wanted = 'base';
  for (const t of tiers) {
    if ((!TIER_DOT4.has(t) || int8) && (!TIER_F16.has(t) || (hasF16 && allowF16)) && (!TIER_SUBGROUPS.has(t) || hasSubgroups)) wanted = t;
  }
  return wanted;
}

/** Whether a family has kernels that quantize x to int8 (the manifest's `activations`). */
const hasInt8Kernels = (family) => family.kernels.some((k) => k.activations === 'int8');

/**
 * The int8 part of a reason, for a family with int8-activation kernels when the host allows
 * them (else null): `[enables, words]`.
 */
function int8Reason(target, hasDot4) {
  const tiers = TARGET_TIERS[target] ?? TIERS;
  if (!hasDot4) return [false, `no ${DOT4_LANGUAGE_FEATURE}`];
  if (!tiers.some((t) => TIER_DOT4.has(t))) return [false, `target ${target} has no dot4 tier`];
  return [true, `adapter has ${DOT4_LANGUAGE_FEATURE}, int8 allowed`];
}

/** Why the wanted tier is what it is: what enables a richer tier first, then what holds one back. */
function wantedReason(target, hasF16, hasSubgroups, allowF16, int8 = null) {
  const tiers = TARGET_TIERS[target] ?? TIERS;
  const f16 = !hasF16
    ? [false, 'no shader-f16']
    : !allowF16
      ? [false, 'f16 not allowed']
      : tiers.some((t) => TIER_F16.has(t))
        ? [true, 'adapter has shader-f16, f16 allowed']
        : [false, `target ${target} has no f16 tier`];
  const subgroups = !hasSubgroups
    ? [false, 'no subgroups']
    : tiers.some((t) => TIER_SUBGROUPS.has(t))
      ? [true, 'adapter has subgroups']
      : [false, `target ${target} has no subgroup tier`];
  const parts = [subgroups, f16];
  if (!subgroups[0] && f16[0]) parts.reverse();
  if (int8) parts[int8[0] ? 'unshift' : 'push'](int8);
  return parts.map((p) => p[1]).join('; ');
}

/**
 * The §3 rule: one choice per family, `{ family, kernel, backend, tier, reason }`, families in
 * order of first appearance. `tier` is null for WebAssembly, whose `kernel` is the family's
 * poorest tier (every tier's twin is the same f32 module). Pure: depends only on the
 * manifest (its `target` and kernels) and the report.
 *
 * `allowInt8` (default false; docs/CAPS.md §3): let a family whose kernels include ones with
 * int8 activations (`activations: "int8"`, the dot4 tiers' matvec) choose them when the
 * report's `wgsl_language_features` has every language feature they use; they are richer
 * than every other tier, and fall back as the other tiers do. Without it, dot4 tiers are
 * never chosen.
 */
export function selectKernels(manifest, caps, { allowF16 = false, allowInt8 = false } = {}) {
  const target = manifest.target;
  const webgpu = caps?.webgpu ?? null;
  const simd = Boolean(caps?.wasm?.simd128);
  return families(manifest).map((f) => {
    const wasm = (why) => ({
      family: f.id,
      kernel: f.kernels[0].name,
      backend: simd ? 'wasm-simd' : 'wasm-scalar',
      tier: null,
      reason: simd ? why : `${why}; no wasm simd128`,
    });
    if (!webgpu) return wasm('no WebGPU');
    const features = new Set(webgpu.features);
    const hasF16 = features.has('shader-f16');
    const hasSubgroups = features.has('subgroups');
    const languages = Array.isArray(webgpu.wgsl_language_features) ? webgpu.wgsl_language_features : [];
    const int8Why = allowInt8 && hasInt8Kernels(f) ? int8Reason(target, languages.includes(DOT4_LANGUAGE_FEATURE)) : null;
    const int8 = Boolean(int8Why?.[0]);
    const wanted = tierIndex(wantedTier(target, hasF16, hasSubgroups, allowF16, int8));
    const whyWanted = wantedReason(target, hasF16, hasSubgroups, allowF16, int8Why);
    const eligible = (t) =>
      tierIndex(t) <= wanted && (!TIER_F16.has(t) || (hasF16 && allowF16)) && (!TIER_SUBGROUPS.has(t) || hasSubgroups) && (!TIER_DOT4.has(t) || int8);
    const passedOver = [];
    for (const tier of [...TIERS].reverse().filter(eligible)) {
      const k = f.kernels.find((x) => x.tier === tier);
      if (!k) {
        passedOver.push(`no ${tier} kernel in the package`);
        continue;
      }
      const why = notRunnable(k, webgpu);
      if (why) {
        passedOver.push(`${k.name}: ${why}`);
        continue;
      }
      const reason = passedOver.length ? `${whyWanted}; but ${passedOver.join('; ')}` : whyWanted;
      return { family: f.id, kernel: k.name, backend: 'webgpu', tier, reason };
    }
    return wasm(`no runnable WebGPU kernel (${whyWanted}; ${passedOver.join('; ')})`);
  });
}

// ---------------------------------------------------------------------------------------
// Integer expressions of the manifest (dispatch workgroups, host-value rules)

const expressionCache = new Map();

/**
 * Compiles an expression over named u32 values: integers, names, `+`, `-`, `*`,
 * `ceil(a / b)`, `min(a, b)`, `max(a, b)` and parentheses. Returns `env => number`.
 */
export function compileExpression(text) {
  const cached = expressionCache.get(text);
  if (cached) return cached;
  if (typeof text !== 'string') throw new ShaderGenError('load-failed', `manifest expression ${describeValue(text)} is not a string`, { value: text });
  const tokens = [];
  const re = /\s*(?:(\d+)|([A-Za-z_]\w*)|([-+*/(),]))/y;
  let pos = 0;
  const fail = (why) => {
    throw new ShaderGenError('load-failed', `manifest expression "${text}": ${why}`, { value: text });
  };
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    re.lastIndex = pos;
    const t = re.exec(text);
    if (!t) fail(`unexpected "${text.slice(pos).trim()[0]}"`);
    tokens.push(t[1] !== undefined ? { int: Number(t[1]) } : t[2] !== undefined ? { id: t[2] } : { op: t[3] });
    pos = re.lastIndex;
  }
  let i = 0;
  const expect = (op) => {
    const t = tokens[i++];
    if (t?.op !== op) fail(`expected "${op}"`);
  };
  const sum = () => {
    let f = product();
    while (tokens[i]?.op === '+' || tokens[i]?.op === '-') {
      const op = tokens[i++].op;
      const [a, b] = [f, product()];
      f = op === '+' ? (env) => a(env) + b(env) : (env) => a(env) - b(env);
    }
    return f;
  };
  const product = () => {
    let f = factor();
    while (tokens[i]?.op === '*') {
      i++;
      const [a, b] = [f, factor()];
      f = (env) => a(env) * b(env);
    }
    return f;
  };
  const call = (sep, combine) => {
    expect('(');
    const a = sum();
    expect(sep);
    const b = sum();
    expect(')');
    return (env) => combine(a(env), b(env));
  };
  const factor = () => {
    const t = tokens[i++];
    if (!t) fail('unexpected end');
    if (t.int !== undefined) return () => t.int;
    if (t.op === '(') {
      const inner = sum();
      expect(')');
      return inner;
    }
    if (t.id === 'ceil') {
      return call('/', (a, b) => {
        if (b === 0) fail('division by zero');
        return Math.ceil(a / b);
      });
    }
    if (t.id === 'min') return call(',', Math.min);
    if (t.id === 'max') return call(',', Math.max);
    if (t.id !== undefined) {
      const name = t.id;
      return (env) => {
        const v = env[name];
        if (!Number.isSafeInteger(v)) fail(`"${name}" has no value here`);
        return v;
      };
    }
    fail(`unexpected "${t.op}"`);
  };
  const f = sum();
  if (i !== tokens.length) fail('trailing tokens');
  const run = (env) => {
    const v = f(env);
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) fail(`gives ${v}, not a u32`);
    return v;
  };
  expressionCache.set(text, run);
  return run;
}

/**
 * Workgroup counts of each pass: `[{ entry_point, workgroups: [x, y, z] }]`. A matvec with
 * `dispatch.tall` uses its passes from `N >= tall.min_n` on, else one with `dispatch.wide`
 * uses those where `K >= wide.min_k` and `N <= wide.max_n` (other workgroup shapes).
 */
export function passesOf(kernel, env) {
  const d = kernel.dispatch ?? {};
  const tall = d.tall != null && env.N >= shapeOf(kernel, 'tall', ['min_n']).min_n;
  const wide = !tall && d.wide != null && (({ min_k, max_n }) => env.K >= min_k && env.N <= max_n)(shapeOf(kernel, 'wide', ['min_k', 'max_n']));
  const passes = tall ? d.tall.passes : wide ? d.wide.passes : Array.isArray(d.passes) && d.passes.length ? d.passes : [{ entry_point: kernel.entry_point, workgroups: d.workgroups }];
  return passes.map((p) => {
    if (!Array.isArray(p.workgroups) || p.workgroups.length !== 3) {
      throw new ShaderGenError('load-failed', `kernel ${kernel.name}: a dispatch pass has no three workgroup expressions`);
    }
    return { entry_point: p.entry_point ?? kernel.entry_point, workgroups: p.workgroups.map((e) => compileExpression(e)(env)) };
  });
}

/** A kernel's `dispatch.tall` or `dispatch.wide`, checked: its integer `keys` and `passes`. */
function shapeOf(kernel, which, keys) {
  const t = kernel.dispatch[which];
  if (!keys.every((key) => Number.isSafeInteger(t?.[key])) || !Array.isArray(t.passes) || !t.passes.length) {
    throw new ShaderGenError('load-failed', `kernel ${kernel.name}: dispatch.${which} has no ${keys.join(', ')} and passes`);
  }
  return t;
}

/** Evaluates `dispatch.host_values` in order, adding each to `env`. */
function hostValues(kernel, env) {
  for (const hv of kernel.dispatch?.host_values ?? []) env[hv.name] = compileExpression(hv.rule)(env);
  return env;
}

/** The params uniform: the manifest's u32 fields at their offsets. */
function paramsBytes(kernel, values) {
  const fields = kernel.params ?? [];
  const size = Math.max(16, Math.ceil(Math.max(0, ...fields.map((f) => f.offset + 4)) / 16) * 16);
  const view = new DataView(new ArrayBuffer(size));
  for (const f of fields) {
    if (f.type !== 'u32') throw new ShaderGenError('load-failed', `kernel ${kernel.name}: params field "${f.name}" has type ${f.type}; only u32 is understood`);
    const v = values[f.name];
    if (!Number.isSafeInteger(v)) throw new ShaderGenError('load-failed', `kernel ${kernel.name}: params field "${f.name}" is unknown to this runtime`);
    view.setUint32(f.offset, v, true);
  }
  return new Uint8Array(view.buffer);
}

// ---------------------------------------------------------------------------------------
// Formats (docs/FORMAT.md §2, §11)

function checkFormat(format, what) {
  if (!format || typeof format !== 'object') throw invalid(`${what} must be an object {bits, group_size, scheme}, got ${describeValue(format)}`, format);
  const { bits, group_size: g } = format;
  if (![2, 3, 4, 8, 16].includes(bits)) throw invalid(`${what}.bits = ${describeValue(bits)}: expected 2, 3, 4, 8 or 16`, bits);
  if (bits === 16) {
    if (g !== undefined && g !== 32) throw invalid(`${what}.group_size = ${describeValue(g)}: bits 16 has group_size 32`, g);
    return { bits, group_size: 32, scheme: 'sym' };
  }
  if (![32, 64, 128].includes(g)) throw invalid(`${what}.group_size = ${describeValue(g)}: expected 32, 64 or 128`, g);
  const scheme = format.scheme ?? 'sym';
  if (scheme !== 'sym' && scheme !== 'asym') throw invalid(`${what}.scheme = ${describeValue(scheme)}: expected "sym" or "asym"`, scheme);
  return { bits, group_size: g, scheme };
}

/**
 * Bytes of the `xq` scratch of an int8-activation kernel (x as int8 per 32-block, docs/FORMAT.md
 * §12): `blockBytes` per 32-block of each of the m rows of x (the WGSL binding: 48; WebAssembly:
 * the manifest's `wasm.layout.xq_block_bytes`).
 */
const xqBytes = (m, k, blockBytes = 48) => blockBytes * m * (k / 32);

const formatName = (f) => (f.bits === 16 ? 'f16' : `q${f.bits}g${f.group_size}${f.scheme === 'asym' ? 'a' : 's'}`);

/** Word counts of a KV cache's buffers (§11.1). */
function kvWords(l) {
  const groups = 2 * l.kv_heads * l.max_seq * (l.head_dim / l.group_size);
  return {
    codes: (2 * l.kv_heads * l.max_seq * l.head_dim * l.bits) / 32,
    scales: Math.ceil(groups / 2),
    mins: Math.ceil(groups / 2),
    window: Math.max(1, l.kv_heads * l.window * l.head_dim),
  };
}

// ---------------------------------------------------------------------------------------
// WebAssembly

const alignUp = (v, a) => Math.ceil(v / a) * a;

/** One instance of a kernel's module, with its memory and a bump layout from the scratch end. */
class WasmInstance {
  /** Instantiates `module` (asynchronously: browsers limit synchronous instantiation). */
  static async create(kernel, variant, module) {
    try {
      return new WasmInstance(kernel, variant, await WebAssembly.instantiate(module, {}));
    } catch (e) {
      if (e instanceof ShaderGenError) throw e;
      throw new ShaderGenError('wasm-error', `instantiating ${kernel.wasm[variant]}: ${oneLine(e)}`, { cause: e });
    }
  }

  constructor(kernel, variant, instance) {
    const abi = kernel.wasm;
    this.kernel = kernel;
    this.variant = variant;
    this.abi = abi;
    this.align = abi.layout?.align ?? 16;
    this.start = alignUp(abi.layout?.scratch_bytes ?? 1024, this.align);
    this.memory = instance.exports[abi.memory ?? 'memory'];
    this.func = instance.exports[abi.export];
    if (!(this.memory instanceof WebAssembly.Memory)) throw new ShaderGenError('wasm-error', `${abi[variant]} exports no memory "${abi.memory}"`);
    if (typeof this.func !== 'function') throw new ShaderGenError('wasm-error', `${abi[variant]} exports no function "${abi.export}"`);
    if (this.func.length !== abi.args.length) {
      throw new ShaderGenError('wasm-error', `${abi[variant]}: ${abi.export} takes ${this.func.length} arguments, the manifest lists ${abi.args.length}`);
    }
  }

  /** Byte offsets for `sizes` (name → bytes) placed from `from` on, aligned; returns {at, end}. */
  layout(sizes, from = this.start) {
    const at = {};
    let next = alignUp(from, this.align);
    for (const [name, bytes] of Object.entries(sizes)) {
      at[name] = next;
      next = alignUp(next + bytes, this.align);
    }
    return { at, end: next };
  }

  /** Grows memory to hold `end` bytes. */
  reserve(end) {
    if (end > 2 ** 32) throw invalid(`buffers need ${end} bytes, over the 4 GiB a wasm32 memory holds`, end);
    const pages = Math.ceil(end / 65536);
    const have = this.memory.buffer.byteLength / 65536;
    if (pages > have) {
      try {
        this.memory.grow(pages - have);
      } catch (e) {
        throw new ShaderGenError('wasm-error', `${this.kernel.name}: growing memory from ${have} to ${pages} pages: ${oneLine(e)}`, { cause: e });
      }
    }
  }

  write(at, data) {
    new Uint8Array(this.memory.buffer).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
  }

  words(at, n) {
    return new Uint32Array(this.memory.buffer.slice(at, at + 4 * n));
  }

  floats(at, n) {
    return new Float32Array(this.memory.buffer.slice(at, at + 4 * n));
  }

  /** Calls the kernel with the manifest's argument order: offsets from `at`, values from `values`. */
  call(at, values) {
    const args = this.abi.args.map((name) => {
      if (name in at) return at[name] | 0;
      if (name in values) return values[name] | 0;
      throw new ShaderGenError('load-failed', `kernel ${this.kernel.name}: wasm argument "${name}" is unknown to this runtime`);
    });
    try {
      this.func(...args);
    } catch (e) {
      throw new ShaderGenError('wasm-error', `${this.kernel.name} (${this.variant}): ${oneLine(e)}`, { cause: e });
    }
  }
}

// ---------------------------------------------------------------------------------------
// Handles returned to callers

/** Quantized weights returned by `ShaderGen.upload` (treat as opaque; fields are read-only). */
export class QuantWeights {
  constructor(format, n, k, host) {
    /** @type {{bits: number, group_size: number, scheme: string}} */
    this.format = Object.freeze(format);
    /** Rows (outputs). */
    this.n = n;
    /** Columns (inputs). */
    this.k = k;
    this._host = host; // { weights, scales, mins }: kept for WebAssembly and after device loss
    this._gpu = null; // { weights, scales, mins } GPUBuffers
    this._wasm = new Map(); // file → { inst, at, end }
    this._io = null; // reusable GPU buffers of the last call
    this._destroyed = false;
  }
}

/** One layer's quantized KV cache returned by `ShaderGen.kvCache`. */
export class KvCache {
  constructor(layout) {
    /** The shape: bits, group_size, head_dim, kv_heads, max_seq, window. */
    this.layout = Object.freeze(layout);
    /** Tokens held. */
    this.len = 0;
    this._words = kvWords(layout);
    this._gpu = null; // { codes, scales, mins, window } GPUBuffers
    this._gpuStale = false; // the host copy has appends the GPU buffers lack
    this._host = null; // the kv-append instance whose memory holds the canonical bytes
    this._hostAt = null;
    this._attend = null; // the kv-attend instance and how far it is synced: { inst, synced }
    this._destroyed = false;
  }
}

// ---------------------------------------------------------------------------------------
// The runtime

/**
 * A loaded package: capabilities, selection, a WebGPU device when a family runs there, and the
 * calls. Create with `await ShaderGen.load(...)`.
 */
export class ShaderGen {
  /**
   * Loads `manifest.json` from `source` (a package folder URL or path, or the manifest's own),
   * measures the capabilities, selects a backend per family and, when any family runs on
   * WebGPU, requests a device with exactly the features and limits those kernels need.
   *
   * @param {string | URL} source
   * @param {{ allowF16?: boolean, allowInt8?: boolean, prefer?: 'auto' | 'webgpu' | 'wasm-simd' | 'wasm-scalar',
   *           gpu?: GPU | null, adapter?: GPUAdapter, adapterOptions?: object }} [options]
   *   `allowF16`: let f16 tiers run (1e-2 instead of 1e-5 accuracy). `allowInt8`: let matvec
   *   over quantized weights run a dot4 tier where `navigator.gpu.wgslLanguageFeatures` has
   *   packed_4x8_integer_dot_product: x is quantized to int8 per 32-block (in the kernel on
   *   WebGPU, in a first pass on WebAssembly; the result is then W · x8, x8 the int8 values,
   *   not W · x). `prefer`: `auto` and
   *   `webgpu` follow docs/CAPS.md §3 (WebGPU wherever a kernel is runnable); `wasm-simd` /
   *   `wasm-scalar` force WebAssembly (scalar where simd128 is missing). `gpu`: the WebGPU
   *   entry point (default `navigator.gpu`; null for none).
   * @returns {Promise<ShaderGen>}
   */
  static async load(source, options = {}) {
    const { allowF16 = false, allowInt8 = false, prefer = 'auto', adapterOptions } = options;
    const gpu = options.gpu !== undefined ? options.gpu : globalThis.navigator?.gpu; // null: none
    if (typeof allowF16 !== 'boolean') throw invalid(`allowF16 = ${describeValue(allowF16)}: expected true or false`, allowF16);
    if (typeof allowInt8 !== 'boolean') throw invalid(`allowInt8 = ${describeValue(allowInt8)}: expected true or false`, allowInt8);
    if (!PREFER.includes(prefer)) throw invalid(`prefer = ${describeValue(prefer)}: expected one of ${PREFER.map((p) => `'${p}'`).join(', ')}`, prefer);
    const urls = await packageUrls(source);
    const text = await readFile(urls.manifest, 'text');
    let manifest;
    try {
      manifest = JSON.parse(text);
    } catch (e) {
      throw new ShaderGenError('load-failed', `${urls.manifest.href} is not JSON: ${oneLine(e)}`, { value: urls.manifest.href, cause: e });
    }
    if (!manifest || !Array.isArray(manifest.kernels)) {
      throw new ShaderGenError('load-failed', `${urls.manifest.href} has no "kernels" array: not a shadergen manifest`, { value: urls.manifest.href });
    }
    const sg = new ShaderGen(manifest, urls.base, { allowF16, allowInt8, prefer });
    const { caps, adapter, why } = await detectCaps({ gpu, adapter: options.adapter, adapterOptions });
    sg.caps = caps;
    sg._gpu = gpu ?? null; // held: Dawn tears the instance down if it is collected
    sg._adapter = adapter;
    sg._noGpuWhy = why;
    sg._rule = selectKernels(manifest, caps, { allowF16, allowInt8 });
    await sg._openDevice();
    return sg;
  }

  /** Use `ShaderGen.load`. */
  constructor(manifest, base, { allowF16, allowInt8 = false, prefer }) {
    /** The parsed manifest.json. */
    this.manifest = manifest;
    /** The package's base URL. */
    this.baseUrl = base.href;
    /** The options it was loaded with. */
    this.options = Object.freeze({ allowF16, allowInt8, prefer });
    /** The capabilities report (docs/CAPS.md §1). */
    this.caps = null;
    this._base = base;
    this._kernels = new Map(manifest.kernels.map((k) => [k.name, k]));
    this._families = new Map(families(manifest).map((f) => [f.id, f]));
    this._rule = [];
    this._device = null;
    this._deviceWhy = null; // why WebGPU is not used at all (request failed, lost)
    this._lost = null;
    this._uncaptured = [];
    this._files = new Map(); // url → Promise of text / ArrayBuffer
    this._modules = new Map(); // wasm file → Promise<WebAssembly.Module>
    this._shaders = new Map(); // wgsl file → GPUShaderModule
    this._pipelines = new Map(); // "kernel: entry points" → Promise<{ layout, pipelines: Map(entry → pipeline) }>
    this._tail = Promise.resolve();
    this._destroyed = false;
    /** Completed calls per backend that ran them: `{ webgpu, 'wasm-simd', 'wasm-scalar' }`. */
    this.calls = { webgpu: 0, 'wasm-simd': 0, 'wasm-scalar': 0 };
  }

  _count(backend) {
    this.calls[backend]++;
  }

  /** The suggested target for this machine (docs/CAPS.md §2). */
  get suggestedTarget() {
    return suggestTarget(this.caps);
  }

  /** The WebGPU device in use (null when none is, or after it was lost). */
  get device() {
    return this._lost ? null : this._device;
  }

  /**
   * The choice per kernel family: docs/CAPS.md §3 applied to `caps` and the manifest, then
   * `prefer` and what happened since (a device that could not be created or was lost).
   * @returns {{family: string, kernel: string, backend: string, tier: string|null, reason: string}[]}
   */
  select() {
    const key = `${this._lost}|${this._deviceWhy}`;
    if (this._choices?.key !== key) this._choices = { key, list: this._choose() };
    return this._choices.list.map((c) => ({ ...c }));
  }

  _choose() {
    const prefer = this.options.prefer;
    const simd = Boolean(this.caps?.wasm?.simd128);
    return this._rule.map((c) => {
      const f = this._families.get(c.family);
      const twin = f.kernels[0].name;
      if (prefer === 'wasm-simd' || prefer === 'wasm-scalar') {
        const backend = prefer === 'wasm-simd' && simd ? 'wasm-simd' : 'wasm-scalar';
        const reason = backend === prefer ? `prefer: ${prefer}` : `prefer: ${prefer}; no wasm simd128`;
        return { family: c.family, kernel: twin, backend, tier: null, reason };
      }
      if (c.backend === 'webgpu' && (this._lost || this._deviceWhy)) {
        const why = this._lost ?? this._deviceWhy;
        return { family: c.family, kernel: twin, backend: simd ? 'wasm-simd' : 'wasm-scalar', tier: null, reason: simd ? why : `${why}; no wasm simd128` };
      }
      return { ...c };
    });
  }

  _choice(id) {
    this.select();
    return this._choices.list.find((c) => c.family === id);
  }

  /**
   * What runs `op` for `format`: `{ backend, kernel, tier, reason }`. `format` is
   * `{bits, group_size, scheme}` (KV ops: `{bits, group_size, head_dim}`, scheme asym).
   */
  backendFor(op, format) {
    const f = this._family(op, format);
    const choice = this._choice(f.id);
    return { backend: choice.backend, kernel: choice.kernel, tier: choice.tier, reason: choice.reason };
  }

  _family(op, format) {
    if (!['matvec', 'matmul', 'kv-append', 'kv-attend'].includes(op)) {
      throw invalid(`op = ${describeValue(op)}: expected 'matvec', 'matmul', 'kv-append' or 'kv-attend'`, op);
    }
    let id;
    if (op.startsWith('kv-')) {
      const fmt = checkFormat({ ...format, scheme: format?.scheme ?? 'asym' }, 'format');
      if (fmt.scheme !== 'asym' || fmt.bits === 16) throw invalid(`a KV cache is quantized and asym, got ${formatName(fmt)}`, format);
      id = `${op}/${fmt.bits}/${fmt.group_size}/asym/${format.head_dim}`;
    } else {
      const fmt = checkFormat(format, 'format');
      id = `${op}/${fmt.bits}/${fmt.group_size}/${fmt.scheme}`;
    }
    const f = this._families.get(id);
    if (!f) {
      const have = [...this._families.values()].filter((x) => x.op === op).map((x) => x.id);
      throw new ShaderGenError(
        'not-in-package',
        `the package (target ${this.manifest.target}) has no kernel family ${id}; its ${op} families are ${have.length ? have.join(', ') : 'none'}`,
        { value: format },
      );
    }
    return f;
  }

  /** The kernel and backend for a call, after `prefer` and device state. */
  _plan(op, format) {
    const f = this._family(op, format);
    const choice = this._choice(f.id);
    const kernel = this._kernels.get(choice.kernel);
    return { family: f, kernel, backend: choice.backend, variant: choice.backend === 'wasm-simd' ? 'simd' : 'scalar' };
  }

  // -- device -----------------------------------------------------------------------

  async _openDevice() {
    const chosen = this._rule.filter((c) => c.backend === 'webgpu').map((c) => this._kernels.get(c.kernel));
    if (!chosen.length || this.options.prefer === 'wasm-simd' || this.options.prefer === 'wasm-scalar') return;
    const requiredFeatures = [...new Set(chosen.flatMap((k) => k.features ?? []))].sort();
    const adapterLimits = this.caps.webgpu.limits;
    const need = {
      maxComputeWorkgroupStorageSize: Math.max(...chosen.map((k) => k.workgroup_storage_bytes ?? 0)),
      maxComputeInvocationsPerWorkgroup: Math.max(...chosen.map((k) => k.workgroup_size[0] * k.workgroup_size[1] * k.workgroup_size[2])),
      maxComputeWorkgroupSizeX: Math.max(...chosen.map((k) => k.workgroup_size[0])),
      maxStorageBuffersPerShaderStage: Math.max(...chosen.map((k) => k.bindings.filter((b) => b.access !== 'uniform').length)),
      // Buffer sizes depend on the weights, unknown here: as much as the adapter allows.
      maxStorageBufferBindingSize: adapterLimits.maxStorageBufferBindingSize ?? 0,
      maxBufferSize: adapterLimits.maxBufferSize ?? 0,
    };
    const requiredLimits = {};
    for (const [name, v] of Object.entries(need)) {
      if (v > DEFAULT_LIMITS[name] && typeof adapterLimits[name] === 'number') requiredLimits[name] = Math.min(v, adapterLimits[name]);
    }
    try {
      this._device = await this._adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'shadergen' });
    } catch (e) {
      this._deviceWhy = `requestDevice failed: ${oneLine(e)}`;
      return;
    }
    const device = this._device;
    this.deviceDescriptor = { requiredFeatures, requiredLimits };
    device.lost.then((info) => {
      if (this._device === device && !this._destroyed) this._lost = `device lost (${info?.reason ?? 'unknown'}): ${oneLine(info?.message ?? '')}`;
    });
    const onError = (ev) => this._uncaptured.push(oneLine(ev?.error?.message ?? ev?.error ?? ev));
    if (typeof device.addEventListener === 'function') device.addEventListener('uncapturederror', onError);
    else device.onuncapturederror = onError;
  }

  /** Whether the device is gone; waits briefly for `device.lost` after a failure. */
  async _deviceGone() {
    if (this._lost) return true;
    if (!this._device) return true;
    let timer;
    const gone = await Promise.race([
      this._device.lost.then(() => true),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(false), 200);
      }),
    ]);
    clearTimeout(timer);
    if (gone && !this._lost) this._lost = 'device lost';
    return gone;
  }

  /** Runs `fn` after every earlier call (calls are serialized, in call order). */
  _exclusive(fn) {
    if (this._destroyed) return Promise.reject(new ShaderGenError('destroyed', 'this ShaderGen was destroyed'));
    const run = this._tail.then(() => keepNodeAlive(fn));
    this._tail = run.catch(() => {});
    return run;
  }

  /** Runs `fn` once the calls made so far have finished. */
  _afterPending(fn) {
    this._tail = this._tail.then(fn).catch(() => {});
  }

  _file(name, as) {
    const url = new URL(name, this._base);
    let p = this._files.get(url.href);
    if (!p) {
      p = readFile(url, as);
      this._files.set(url.href, p);
      p.catch(() => this._files.delete(url.href));
    }
    return p;
  }

  async _wasmModule(kernel, variant) {
    const file = kernel.wasm?.[variant];
    if (!file) throw new ShaderGenError('load-failed', `kernel ${kernel.name} has no wasm.${variant} module in the manifest`);
    let p = this._modules.get(file);
    if (!p) {
      p = this._file(file, 'bytes').then(async (bytes) => {
        try {
          return await WebAssembly.compile(bytes);
        } catch (e) {
          throw new ShaderGenError('wasm-error', `compiling ${file}: ${oneLine(e)}`, { cause: e });
        }
      });
      this._modules.set(file, p);
      p.catch(() => this._modules.delete(file));
    }
    return p;
  }

  /**
   * The compiled pipelines of `passes` (`passesOf`) of `kernel`, sharing one explicit layout.
   * Cached per set of entry points, so a matvec's tall entry point compiles only once a call
   * needs it.
   */
  _pipelinesOf(kernel, passes) {
    const entryPoints = [...new Set(passes.map((p) => p.entry_point))];
    const key = `${kernel.name}: ${entryPoints.join(' ')}`;
    let p = this._pipelines.get(key);
    if (!p) {
      p = this._compile(kernel, entryPoints);
      this._pipelines.set(key, p);
      p.catch(() => this._pipelines.delete(key));
    }
    return p;
  }

  async _compile(kernel, entryPoints) {
    const device = this._device;
    const code = await this._file(kernel.wgsl, 'text');
    let module = this._shaders.get(kernel.wgsl);
    if (!module) {
      module = device.createShaderModule({ label: kernel.name, code });
      this._shaders.set(kernel.wgsl, module);
    }
    const types = { uniform: 'uniform', read: 'read-only-storage', read_write: 'storage' };
    const entries = kernel.bindings.map((b) => {
      const type = types[b.access];
      if (!type) throw new ShaderGenError('load-failed', `kernel ${kernel.name}: binding "${b.name}" has access ${b.access}`);
      return { binding: b.binding, visibility: COMPUTE_STAGE, buffer: { type } };
    });
    const bindGroupLayout = device.createBindGroupLayout({ label: kernel.name, entries });
    const layout = device.createPipelineLayout({ label: kernel.name, bindGroupLayouts: [bindGroupLayout] });
    const pipelines = new Map();
    for (const entryPoint of entryPoints) {
      try {
        pipelines.set(entryPoint, await device.createComputePipelineAsync({ label: entryPoint, layout, compute: { module, entryPoint } }));
      } catch (e) {
        let detail = '';
        try {
          const messages = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
          detail = messages.map((m) => ` [${m.lineNum}:${m.linePos} ${oneLine(m.message)}]`).join('');
        } catch {}
        throw new ShaderGenError('gpu-error', `compiling ${kernel.wgsl} (${entryPoint}): ${oneLine(e)}${detail}`, { cause: e });
      }
    }
    return { bindGroupLayout, pipelines };
  }

  /**
   * Encodes every pass of `kernel` over `buffers` (binding name → GPUBuffer) in one
   * submission, optionally copying `readback` {from, bytes} out. Returns the bytes read or null.
   */
  async _dispatch(kernel, buffers, env, readback = null) {
    const device = this._device;
    const passes = passesOf(kernel, env);
    const { bindGroupLayout, pipelines } = await this._pipelinesOf(kernel, passes);
    const maxDim = device.limits.maxComputeWorkgroupsPerDimension;
    for (const p of passes) {
      if (p.workgroups.some((c) => c > maxDim)) {
        throw invalid(`${kernel.name}: dispatch ${p.workgroups.join(' x ')} exceeds maxComputeWorkgroupsPerDimension ${maxDim}`, p.workgroups);
      }
    }
    let read = null;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    let scopeErrors = [];
    try {
      const entries = kernel.bindings.map((b) => {
        const buffer = buffers[b.name];
        if (!buffer) throw new ShaderGenError('load-failed', `kernel ${kernel.name}: binding "${b.name}" is unknown to this runtime`);
        return { binding: b.binding, resource: { buffer } };
      });
      const bind = device.createBindGroup({ label: kernel.name, layout: bindGroupLayout, entries });
      const enc = device.createCommandEncoder({ label: kernel.name });
      for (const p of passes) {
        const pass = enc.beginComputePass({ label: p.entry_point });
        pass.setPipeline(pipelines.get(p.entry_point));
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(...p.workgroups);
        pass.end();
      }
      if (readback) {
        read = device.createBuffer({ label: `${kernel.name} readback`, size: readback.bytes, usage: BUFFER.MAP_READ | BUFFER.COPY_DST });
        enc.copyBufferToBuffer(readback.from, 0, read, 0, readback.bytes);
      }
      device.queue.submit([enc.finish()]);
    } finally {
      for (let i = 0; i < 2; i++) {
        const e = await device.popErrorScope().catch((x) => x);
        if (e) scopeErrors.push(oneLine(e.message ?? e));
      }
    }
    try {
      if (scopeErrors.length) throw new ShaderGenError('gpu-error', `${kernel.name}: ${scopeErrors.join(' | ')}`);
      if (!read) return null;
      await read.mapAsync(MAP_READ);
      const out = read.getMappedRange().slice(0);
      read.unmap();
      if (this._uncaptured.length) throw new ShaderGenError('gpu-error', `${kernel.name}: ${this._uncaptured.splice(0).join(' | ')}`);
      return out;
    } finally {
      read?.destroy();
    }
  }

  /** A buffer of `data` (or of `size` zero bytes when data is null), within the device's limits. */
  _storage(label, data, usage = BUFFER.STORAGE | BUFFER.COPY_DST, size = 0) {
    const device = this._device;
    const bytes = Math.max(4, alignUp(data ? data.byteLength : size, 4));
    const lim = device.limits;
    if (bytes > lim.maxStorageBufferBindingSize || bytes > lim.maxBufferSize) {
      throw invalid(`"${label}" needs ${bytes} bytes, over the device's maxStorageBufferBindingSize ${lim.maxStorageBufferBindingSize} / maxBufferSize ${lim.maxBufferSize}`, bytes);
    }
    const buffer = device.createBuffer({ label, size: bytes, usage });
    if (data && data.byteLength) {
      if (data.byteLength % 4) {
        const padded = new Uint8Array(bytes);
        padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        device.queue.writeBuffer(buffer, 0, padded);
      } else device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
    return buffer;
  }

  /**
   * Runs `gpuFn` when `backend` is webgpu; on a lost device (or one lost meanwhile) runs
   * `wasmFn` instead. Other GPU errors are thrown.
   */
  async _withFallback(plan, gpuFn, wasmFn) {
    const wasm = async (variant) => {
      const out = await wasmFn(variant);
      this._count(`wasm-${variant}`);
      return out;
    };
    if (plan.backend !== 'webgpu') return wasm(plan.variant);
    let out;
    try {
      out = await gpuFn(plan.kernel);
    } catch (e) {
      if (await this._deviceGone()) return wasm(this.caps.wasm.simd128 ? 'simd' : 'scalar');
      if (e instanceof ShaderGenError) throw e;
      throw new ShaderGenError('gpu-error', `${plan.kernel.name}: ${oneLine(e)}`, { cause: e });
    }
    this._count('webgpu');
    return out;
  }

  // -- matvec / matmul ----------------------------------------------------------------

  /**
   * Uploads quantized weights once (docs/FORMAT.md §2–6): to the GPU when matvec or matmul
   * of this format runs there, into WebAssembly memory at the first WebAssembly call. The
   * arrays are kept (not copied) for WebAssembly and for a lost device: do not modify them.
   *
   * @param {{ format: {bits: number, group_size: number, scheme?: 'sym'|'asym'}, n: number, k: number,
   *           weights: Uint32Array, scales?: Uint32Array, mins?: Uint32Array }} desc
   * @returns {QuantWeights}
   */
  upload(desc) {
    if (this._destroyed) throw new ShaderGenError('destroyed', 'this ShaderGen was destroyed');
    if (!desc || typeof desc !== 'object') throw invalid(`upload() takes {format, n, k, weights, scales, mins}, got ${describeValue(desc)}`, desc);
    const format = checkFormat(desc.format, 'format');
    const ops = ['matvec', 'matmul'].filter((op) => this._families.has(`${op}/${format.bits}/${format.group_size}/${format.scheme}`));
    if (!ops.length) this._family('matvec', format); // throws not-in-package, listing what there is
    const n = positiveInt(desc.n, 'n');
    const k = positiveInt(desc.k, 'k');
    if (k % format.group_size !== 0) throw invalid(`k = ${k} is not a multiple of the group size ${format.group_size} (docs/FORMAT.md §2)`, k);
    const shape = `N=${n} K=${k} ${formatName(format)}`;
    const groups = (n * k) / format.group_size;
    const host = {
      weights: typedArray(desc.weights, Uint32Array, format.bits === 16 ? Math.ceil((n * k) / 2) : (n * k * format.bits) / 32, 'weights', shape),
      scales: null,
      mins: null,
    };
    if (format.bits !== 16) host.scales = typedArray(desc.scales, Uint32Array, Math.ceil(groups / 2), 'scales', `${shape} (f16 pairs)`);
    else if (desc.scales != null) throw invalid('scales: the f16 baseline (bits 16) has none', desc.scales);
    if (format.scheme === 'asym') host.mins = typedArray(desc.mins, Uint32Array, Math.ceil(groups / 2), 'mins', `${shape} (f16 pairs)`);
    else if (desc.mins != null) throw invalid(`mins: a sym format has none (got ${describeValue(desc.mins)})`, desc.mins);
    const w = new QuantWeights(format, n, k, host);
    if (ops.some((op) => this._plan(op, format).backend === 'webgpu')) {
      try {
        w._gpu = {};
        for (const name of ['weights', 'scales', 'mins']) if (host[name]) w._gpu[name] = this._storage(name, host[name]);
      } catch (e) {
        if (!this._lost) throw e;
        w._gpu = null;
      }
    }
    return w;
  }

  /** `y = W·x`: x Float32Array(k) → Float32Array(n). */
  matvec(w, x) {
    return this._matmul('matvec', w, x, 1);
  }

  /** `Y = X·Wᵀ`: X Float32Array(m·k), row-major → Float32Array(m·n). */
  matmul(w, x, m) {
    return this._matmul('matmul', w, x, m);
  }

  _matmul(op, w, x, m) {
    const released = w instanceof QuantWeights && w._destroyed; // at call time: release() waits for earlier calls
    return this._exclusive(async () => {
      if (!(w instanceof QuantWeights)) throw invalid(`${op}: the first argument must be what upload() returned, got ${describeValue(w)}`, w);
      if (released) throw invalid(`${op}: these weights were released`, w);
      positiveInt(m, 'm');
      typedArray(x, Float32Array, m * w.k, 'x', op === 'matvec' ? `K=${w.k}` : `M=${m} x K=${w.k}`);
      const plan = this._plan(op, w.format);
      const values = { m, n: w.n, k: w.k, pad: 0 };
      return this._withFallback(
        plan,
        async (kernel) => {
          if (!w._gpu) throw new ShaderGenError('gpu-error', `${op}: weights were uploaded while ${op} ${formatName(w.format)} did not run on WebGPU`);
          const io = w._io?.kernel === kernel.name && w._io.m === m ? w._io : null;
          const yBytes = 4 * m * w.n;
          const device = this._device;
          let buffers;
          if (io) {
            buffers = io.buffers;
            device.queue.writeBuffer(buffers.x, 0, x.buffer, x.byteOffset, x.byteLength);
          } else {
            w._io?.destroy();
            buffers = {
              ...w._gpu,
              params: this._storage('params', paramsBytes(kernel, values), BUFFER.UNIFORM | BUFFER.COPY_DST),
              x: this._storage('x', x),
              y: device.createBuffer({ label: 'y', size: Math.max(4, yBytes), usage: BUFFER.STORAGE | BUFFER.COPY_SRC }),
            };
            const own = [buffers.params, buffers.x, buffers.y];
            // int8-activation kernels: the first pass writes x's int8 blocks here, the second reads them.
            if (kernel.bindings.some((b) => b.name === 'xq')) {
              buffers.xq = this._storage('xq', null, BUFFER.STORAGE, xqBytes(m, w.k));
              own.push(buffers.xq);
            }
            w._io = { kernel: kernel.name, m, buffers, destroy: () => own.forEach((b) => b.destroy()) };
          }
          const bytes = await this._dispatch(kernel, buffers, { M: m, N: w.n, K: w.k }, { from: buffers.y, bytes: yBytes });
          return new Float32Array(bytes);
        },
        async (variant) => {
          // The family's twin (its poorest tier's, docs/CAPS.md §3), also when a lost device
          // sends a call planned for WebGPU here.
          const kernel = plan.family.kernels[0];
          let slot = w._wasm.get(kernel.wasm[variant]);
          if (!slot) {
            const inst = await WasmInstance.create(kernel, variant, await this._wasmModule(kernel, variant));
            const sizes = {};
            for (const name of ['weights', 'scales', 'mins']) if (w._host[name]) sizes[name] = w._host[name].byteLength;
            const { at, end } = inst.layout(sizes);
            inst.reserve(end);
            for (const name of Object.keys(sizes)) inst.write(at[name], w._host[name]);
            for (const name of ['scales', 'mins']) if (!(name in at)) at[name] = 0; // never read
            slot = { inst, at, end };
            w._wasm.set(kernel.wasm[variant], slot);
          }
          const { inst } = slot;
          const scratch = kernel.wasm.args.includes('xq') ? { xq: xqBytes(m, w.k, kernel.wasm.layout?.xq_block_bytes) } : {};
          const io = inst.layout({ x: x.byteLength, y: 4 * m * w.n, ...scratch }, slot.end);
          inst.reserve(io.end);
          inst.write(io.at.x, x);
          inst.call({ ...slot.at, ...io.at }, values);
          return inst.floats(io.at.y, m * w.n);
        },
      );
    });
  }

  /** Frees the GPU buffers and WebAssembly instances of `w` once the calls made so far are done. */
  release(w) {
    if (!(w instanceof QuantWeights) || w._destroyed) return;
    w._destroyed = true;
    this._afterPending(() => {
      w._io?.destroy();
      for (const b of Object.values(w._gpu ?? {})) b.destroy();
      w._gpu = null;
      w._io = null;
      w._wasm.clear();
    });
  }

  // -- KV cache -----------------------------------------------------------------------

  /**
   * An empty KV cache (docs/FORMAT.md §11) for one layer: device buffers when kv-append or
   * kv-attend of its format runs on WebGPU, WebAssembly memory otherwise. `mirror` (default
   * true) also keeps a WebAssembly copy of a GPU cache (appends run on both; the copy's
   * bytes are §11.3's exactly), so that after a device loss the cache survives on
   * WebAssembly; `mirror: false` saves that memory and time, and a lost device loses the cache.
   *
   * @param {{ bits: number, group_size: number, head_dim: number, kv_heads: number,
   *           max_seq: number, window?: number, mirror?: boolean }} desc
   * @returns {KvCache}
   */
  kvCache(desc) {
    if (this._destroyed) throw new ShaderGenError('destroyed', 'this ShaderGen was destroyed');
    if (!desc || typeof desc !== 'object') throw invalid(`kvCache() takes {bits, group_size, head_dim, kv_heads, max_seq, window}, got ${describeValue(desc)}`, desc);
    const format = { bits: desc.bits, group_size: desc.group_size, head_dim: desc.head_dim };
    if (![64, 128].includes(desc.head_dim)) throw invalid(`head_dim = ${describeValue(desc.head_dim)}: expected 64 or 128 (docs/FORMAT.md §11)`, desc.head_dim);
    if (desc.group_size > desc.head_dim) throw invalid(`group_size = ${desc.group_size} is over head_dim = ${desc.head_dim}`, desc.group_size);
    const append = this._family('kv-append', format);
    this._family('kv-attend', format);
    const kv = append.kernels[0].kv ?? {};
    const kvHeads = positiveInt(desc.kv_heads, 'kv_heads');
    const maxSeq = positiveInt(desc.max_seq, 'max_seq', { min: 2 });
    const even = kv.max_seq_multiple_of ?? 2;
    if (maxSeq % even) throw invalid(`max_seq = ${maxSeq} is not a multiple of ${even} (docs/FORMAT.md §11)`, maxSeq);
    const window = positiveInt(desc.window ?? 0, 'window', { min: 0, max: maxSeq });
    const mirror = desc.mirror ?? true;
    if (typeof mirror !== 'boolean') throw invalid(`mirror = ${describeValue(mirror)}: expected true or false`, mirror);
    const cache = new KvCache({ bits: desc.bits, group_size: desc.group_size, head_dim: desc.head_dim, kv_heads: kvHeads, max_seq: maxSeq, window });
    cache._mirror = mirror;
    const onGpu = ['kv-append', 'kv-attend'].some((op) => this._plan(op, format).backend === 'webgpu');
    if (onGpu) {
      const usage = BUFFER.STORAGE | BUFFER.COPY_DST | BUFFER.COPY_SRC;
      const words = cache._words;
      try {
        cache._gpu = {};
        for (const name of ['codes', 'scales', 'mins', 'window']) {
          cache._gpu[name] = this._storage(`kv ${name}`, null, usage, 4 * words[name]);
        }
      } catch (e) {
        if (!this._lost) throw e;
        cache._gpu = null;
      }
    }
    return cache;
  }

  /** The kv-append instance holding the canonical bytes of `cache` (created on first use). */
  async _kvHost(cache) {
    if (cache._host) return cache._host;
    const { kernel, variant } = this._wasmPlan('kv-append', cache);
    const inst = await WasmInstance.create(kernel, variant, await this._wasmModule(kernel, variant));
    if (cache._host) return cache._host; // made meanwhile
    const w = cache._words;
    const { at, end } = inst.layout({ params: 32, codes: 4 * w.codes, scales: 4 * w.scales, mins: 4 * w.mins, window: 4 * w.window });
    inst.reserve(end);
    new Uint8Array(inst.memory.buffer, at.codes, end - at.codes).fill(0);
    cache._host = inst;
    cache._hostAt = { at, end };
    return inst;
  }

  _wasmPlan(op, cache) {
    const plan = this._plan(op, this._kvFormat(cache));
    if (plan.backend !== 'webgpu') return plan;
    const variant = this.caps.wasm.simd128 ? 'simd' : 'scalar';
    return { ...plan, backend: variant === 'simd' ? 'wasm-simd' : 'wasm-scalar', variant };
  }

  _kvFormat(cache) {
    const l = cache.layout;
    return { bits: l.bits, group_size: l.group_size, head_dim: l.head_dim };
  }

  _kvParams(cache, extra) {
    const l = cache.layout;
    return { kv_heads: l.kv_heads, max_seq: l.max_seq, window: l.window, len: cache.len, n_new: 0, n_heads: 0, split_len: 0, n_splits: 0, ...extra };
  }

  _checkCache(cache, what, released) {
    if (!(cache instanceof KvCache)) throw invalid(`${what}: the first argument must be what kvCache() returned, got ${describeValue(cache)}`, cache);
    if (released) throw invalid(`${what}: this cache was released`, cache);
    if (cache._lostWith) throw new ShaderGenError('device-lost', `${what}: the cache lived only on the GPU device that was lost (${cache._lostWith}); it was made with mirror: false`);
  }

  /** Whether `cache` keeps a WebAssembly copy (mirror, or an op of its format on WebAssembly). */
  _needsHost(cache) {
    const format = this._kvFormat(cache);
    return cache._mirror || !cache._gpu || ['kv-append', 'kv-attend'].some((op) => this._plan(op, format).backend !== 'webgpu');
  }

  /**
   * Appends `n` tokens (docs/FORMAT.md §11.3): `k` and `v` are Float32Array
   * `[n][kv_heads][head_dim]`, finite and within f16's range.
   */
  kvAppend(cache, k, v) {
    const released = cache?._destroyed === true;
    return this._exclusive(async () => {
      this._checkCache(cache, 'kvAppend', released);
      const l = cache.layout;
      const per = l.kv_heads * l.head_dim;
      if (!(k instanceof Float32Array)) throw invalid(`k must be a Float32Array [n][kv_heads ${l.kv_heads}][head_dim ${l.head_dim}], got ${describeValue(k)}`, k);
      if (k.length === 0 || k.length % per) throw invalid(`k has ${k.length} values: not a positive multiple of kv_heads ${l.kv_heads} x head_dim ${l.head_dim}`, k);
      const n = k.length / per;
      typedArray(v, Float32Array, k.length, 'v', `n=${n} tokens as k (${n} x kv_heads ${l.kv_heads} x head_dim ${l.head_dim})`);
      if (cache.len + n > l.max_seq) throw invalid(`appending ${n} tokens at len ${cache.len} overflows max_seq = ${l.max_seq}`, n);
      for (const [name, data] of [['k', k], ['v', v]]) {
        for (let i = 0; i < data.length; i++) {
          if (!(Math.abs(data[i]) < MAX_F16_INPUT)) {
            throw invalid(`${name}[${i}] = ${data[i]} (token ${cache.len + Math.floor(i / per)}, head ${Math.floor(i / l.head_dim) % l.kv_heads}) is not finite in f16: |value| must be below 65520`, data[i]);
          }
        }
      }
      const kvNew = new Float32Array(2 * k.length);
      kvNew.set(k);
      kvNew.set(v, k.length);
      const values = this._kvParams(cache, { n_new: n });
      const plan = this._plan('kv-append', this._kvFormat(cache));
      let gpuDone = false;
      if (plan.backend === 'webgpu' && cache._gpu) {
        try {
          if (cache._gpuStale) this._kvUpload(cache);
          const buffers = {
            ...cache._gpu,
            params: this._storage('params', paramsBytes(plan.kernel, values), BUFFER.UNIFORM | BUFFER.COPY_DST),
            kv_new: this._storage('kv_new', kvNew),
          };
          try {
            await this._dispatch(plan.kernel, buffers, hostValues(plan.kernel, { ...values }));
          } finally {
            buffers.params.destroy();
            buffers.kv_new.destroy();
          }
          gpuDone = true;
        } catch (e) {
          if (!(await this._deviceGone())) throw e instanceof ShaderGenError ? e : new ShaderGenError('gpu-error', `${plan.kernel.name}: ${oneLine(e)}`, { cause: e });
        }
      }
      if (!gpuDone && cache._gpu && this._lost) this._kvLost(cache);
      if (!gpuDone || this._needsHost(cache)) {
        const host = await this._kvHost(cache);
        const { at, end } = cache._hostAt;
        const io = host.layout({ kv_new: kvNew.byteLength }, end);
        host.reserve(io.end);
        host.write(at.params, paramsBytes(host.kernel, values));
        host.write(io.at.kv_new, kvNew);
        host.call({ ...at, ...io.at }, {});
        if (cache._gpu && !gpuDone) cache._gpuStale = true;
      }
      cache.len += n;
      this._count(gpuDone ? 'webgpu' : `wasm-${cache._host.variant}`);
    });
  }

  _kvLost(cache) {
    if (cache._host || cache._mirror) {
      cache._gpu = null;
      return;
    }
    cache._lostWith = this._lost;
    cache._gpu = null;
    throw new ShaderGenError('device-lost', `the KV cache lived only on the GPU device that was lost (${this._lost}); it was made with mirror: false`);
  }

  /** Re-uploads the host copy of `cache` to its GPU buffers. */
  _kvUpload(cache) {
    const { at } = cache._hostAt;
    const mem = cache._host.memory.buffer;
    for (const name of ['codes', 'scales', 'mins', 'window']) {
      this._device.queue.writeBuffer(cache._gpu[name], 0, mem, at[name], 4 * cache._words[name]);
    }
    cache._gpuStale = false;
  }

  /**
   * Decode attention (docs/FORMAT.md §11.4): `q` Float32Array `[n_heads][head_dim]`,
   * `n_heads` a multiple of kv_heads (1 to 8 query heads per KV head) → Float32Array
   * `[n_heads][head_dim]`. On WebGPU: the split and combine passes of the manifest, with
   * split_len from its host-value rule; on WebAssembly: one call.
   */
  kvAttend(cache, q, nHeads) {
    const released = cache?._destroyed === true;
    return this._exclusive(async () => {
      this._checkCache(cache, 'kvAttend', released);
      const l = cache.layout;
      const plan = this._plan('kv-attend', this._kvFormat(cache));
      const maxGqa = plan.kernel.kv?.max_gqa ?? 8;
      positiveInt(nHeads, 'n_heads');
      if (nHeads % l.kv_heads || nHeads / l.kv_heads > maxGqa) {
        throw invalid(`n_heads = ${nHeads} must be kv_heads (${l.kv_heads}) times 1 to ${maxGqa} (docs/FORMAT.md §11.4)`, nHeads);
      }
      typedArray(q, Float32Array, nHeads * l.head_dim, 'q', `n_heads ${nHeads} x head_dim ${l.head_dim}`);
      if (cache.len === 0) throw invalid('kvAttend over an empty cache (len = 0): append tokens first', cache.len);
      const d = l.head_dim;
      const gpuRun = async (kernel) => {
        if (!cache._gpu) throw new ShaderGenError('gpu-error', `${kernel.name}: the cache has no GPU buffers`);
        if (cache._gpuStale) this._kvUpload(cache);
        const env = hostValues(kernel, this._kvParams(cache, { n_heads: nHeads }));
        const chunk = kernel.kv?.chunk ?? 1;
        if (!(env.split_len > 0) || env.split_len % chunk || !(env.n_splits > 0)) {
          throw new ShaderGenError('gpu-error', `${kernel.name}: host values split_len ${env.split_len}, n_splits ${env.n_splits} break the manifest's requirements`);
        }
        const outBytes = 4 * nHeads * d;
        const buffers = {
          ...cache._gpu,
          params: this._storage('params', paramsBytes(kernel, env), BUFFER.UNIFORM | BUFFER.COPY_DST),
          q: this._storage('q', q),
          out: this._device.createBuffer({ label: 'out', size: outBytes, usage: BUFFER.STORAGE | BUFFER.COPY_SRC }),
          partials: this._device.createBuffer({ label: 'partials', size: 4 * nHeads * env.n_splits * (d + 2), usage: BUFFER.STORAGE }),
        };
        try {
          return new Float32Array(await this._dispatch(kernel, buffers, env, { from: buffers.out, bytes: outBytes }));
        } finally {
          for (const name of ['params', 'q', 'out', 'partials']) buffers[name].destroy();
        }
      };
      const wasmRun = async () => {
        if (cache._gpu && this._lost) this._kvLost(cache);
        const { kernel, variant } = this._wasmPlan('kv-attend', cache);
        await this._kvHost(cache);
        if (!cache._attend || cache._attend.inst.kernel !== kernel || cache._attend.inst.variant !== variant) {
          const inst = await WasmInstance.create(kernel, variant, await this._wasmModule(kernel, variant));
          inst.reserve(cache._hostAt.end);
          cache._attend = { inst, synced: 0 };
        }
        const { inst } = cache._attend;
        this._kvSync(cache);
        const { at, end } = cache._hostAt;
        const io = inst.layout({ q: q.byteLength, out: 4 * nHeads * d }, end);
        inst.reserve(io.end);
        inst.write(at.params, paramsBytes(kernel, this._kvParams(cache, { n_heads: nHeads })));
        inst.write(io.at.q, q);
        inst.call({ ...at, ...io.at }, {});
        this._count(`wasm-${variant}`);
        return inst.floats(io.at.out, nHeads * d);
      };
      if (plan.backend === 'webgpu' && cache._gpu) {
        try {
          const out = await gpuRun(plan.kernel);
          this._count('webgpu');
          return out;
        } catch (e) {
          if (!(await this._deviceGone())) throw e instanceof ShaderGenError ? e : new ShaderGenError('gpu-error', `${plan.kernel.name}: ${oneLine(e)}`, { cause: e });
        }
      }
      return wasmRun();
    });
  }

  /**
   * Copies what changed in the host cache since the last sync into the kv-attend instance:
   * store rows of tokens [synced, Q) per (kv, head) (§11.2: rows below Q never change again)
   * and the whole window.
   */
  _kvSync(cache) {
    const l = cache.layout;
    const { at } = cache._hostAt;
    const src = new Uint8Array(cache._host.memory.buffer);
    const dst = new Uint8Array(cache._attend.inst.memory.buffer);
    const q = cache.len - Math.min(cache.len, l.window);
    const from = cache._attend.synced;
    if (q > from) {
      const codeWords = (l.head_dim * l.bits) / 32;
      const groups = l.head_dim / l.group_size;
      for (let row0 = 0; row0 < 2 * l.kv_heads; row0++) {
        const r0 = row0 * l.max_seq + from;
        const r1 = row0 * l.max_seq + q;
        const copy = (base, w0, w1) => dst.set(src.subarray(base + 4 * w0, base + 4 * w1), base + 4 * w0);
        copy(at.codes, r0 * codeWords, r1 * codeWords);
        const h0 = Math.floor((r0 * groups) / 2);
        const h1 = Math.ceil((r1 * groups) / 2);
        copy(at.scales, h0, h1);
        copy(at.mins, h0, h1);
      }
      cache._attend.synced = q;
    }
    dst.set(src.subarray(at.window, at.window + 4 * cache._words.window), at.window);
  }

  /**
   * Reads a cache's bytes back (docs/FORMAT.md §11.1): `{ len, codes, scales, mins, window }`
   * (Uint32Arrays), from the GPU when it holds the cache, else from WebAssembly memory.
   */
  kvRead(cache) {
    const released = cache?._destroyed === true;
    return this._exclusive(async () => {
      this._checkCache(cache, 'kvRead', released);
      const out = { len: cache.len };
      if (cache._gpu && !cache._gpuStale && !this._lost) {
        try {
          const device = this._device;
          const reads = {};
          const enc = device.createCommandEncoder({ label: 'kvRead' });
          for (const name of ['codes', 'scales', 'mins', 'window']) {
            const bytes = 4 * cache._words[name];
            reads[name] = device.createBuffer({ label: `read ${name}`, size: bytes, usage: BUFFER.MAP_READ | BUFFER.COPY_DST });
            enc.copyBufferToBuffer(cache._gpu[name], 0, reads[name], 0, bytes);
          }
          device.queue.submit([enc.finish()]);
          for (const [name, b] of Object.entries(reads)) {
            await b.mapAsync(MAP_READ);
            out[name] = new Uint32Array(b.getMappedRange().slice(0));
            b.unmap();
            b.destroy();
          }
          return out;
        } catch (e) {
          if (!(await this._deviceGone())) throw new ShaderGenError('gpu-error', `kvRead: ${oneLine(e)}`, { cause: e });
          this._kvLost(cache);
        }
      }
      const host = await this._kvHost(cache);
      const { at } = cache._hostAt;
      for (const name of ['codes', 'scales', 'mins', 'window']) out[name] = host.words(at[name], cache._words[name]);
      return out;
    });
  }

  /** Frees a cache's GPU buffers and WebAssembly memory once the calls made so far are done. */
  releaseKv(cache) {
    if (!(cache instanceof KvCache) || cache._destroyed) return;
    cache._destroyed = true;
    this._afterPending(() => {
      for (const b of Object.values(cache._gpu ?? {})) b.destroy();
      cache._gpu = null;
      cache._host = null;
      cache._attend = null;
    });
  }

  /**
   * Refuses further calls and, once the calls made so far are done, destroys the device.
   * Resolves then.
   */
  destroy() {
    this._destroyed = true;
    this._afterPending(() => this._device?.destroy());
    return this._tail;
  }
}

/**
 * In Node, Dawn's pending promises do not keep the event loop alive: hold it open while a
 * call runs (a no-op elsewhere).
 */
async function keepNodeAlive(fn) {
  if (!IN_NODE) return fn();
  const timer = setInterval(() => {}, 1000);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

export default ShaderGen;
