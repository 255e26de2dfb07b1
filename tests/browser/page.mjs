// The browser test page: loads the emitted package's shadergen.mjs and runs every case of
// /cases/cases.json once per run of /cases/plan.json (WebGPU, WebAssembly, navigator.gpu
// hidden), then reports to the server: POST /result with the caps report, the selection and
// every op's raw output (base64 of the little-endian f32 / u32 bytes). It checks nothing:
// the Node test (browser.test.mjs) compares the outputs with the reference, which never
// reaches the page. Progress and errors go to POST /log (page.html installs the handlers).

const report = (level, message) => window.__report?.(level, message);
const status = (text) => {
  document.getElementById('status').textContent = text;
};

async function get(url, as) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return as === 'json' ? response.json() : response.arrayBuffer();
}

function base64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const describeError = (e) => {
  const code = e?.code ? ` [${e.code}]` : '';
  const cause = e?.cause ? ` (cause: ${e.cause?.message ?? e.cause})` : '';
  // Firefox puts a SyntaxError's place in fileName / lineNumber, not in the message.
  const where = e?.fileName ? ` at ${e.fileName}:${e.lineNumber}:${e.columnNumber}` : '';
  return `${e?.name ?? 'Error'}${code}: ${e?.message ?? e}${cause}${where}`;
};

/** The inputs of every case, as typed arrays. */
async function loadCases(cases) {
  const file = async (name, Type) => new Type(await get(`/cases/${name}`));
  for (const c of cases) {
    if (c.op === 'kv') {
      for (const s of c.steps) {
        s.kvNewData = await file(s.kv_new, Float32Array);
        s.qData = await file(s.q, Float32Array);
      }
    } else {
      c.data = {};
      for (const [name, f] of Object.entries(c.files)) c.data[name] = await file(f, name === 'x' ? Float32Array : Uint32Array);
    }
  }
}

/** Runs one op, timing it; the backend that ran it comes from backendFor() right after. */
async function timed(sg, op, format, fn) {
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  const { backend, kernel, tier, reason } = sg.backendFor(op, format);
  return { value, ms, backend, kernel, tier, reason };
}

async function runMatrix(sg, c) {
  const format = { bits: c.bits, group_size: c.group_size, scheme: c.scheme };
  const rec = { case: c.id, op: c.op };
  let w = null;
  try {
    w = sg.upload({ format, n: c.n, k: c.k, weights: c.data.weights, scales: c.data.scales, mins: c.data.mins });
    const r = await timed(sg, c.op, format, () => (c.op === 'matvec' ? sg.matvec(w, c.data.x) : sg.matmul(w, c.data.x, c.m)));
    Object.assign(rec, { kernel: r.kernel, backend: r.backend, tier: r.tier, reason: r.reason, ms: r.ms, output: base64(r.value) });
  } catch (e) {
    rec.error = describeError(e);
  } finally {
    if (w) sg.release(w);
  }
  return [rec];
}

async function runKv(sg, c) {
  const format = { bits: c.bits, group_size: c.group_size, head_dim: c.head_dim };
  const out = [];
  let cache = null;
  try {
    // mirror: false, so a WebGPU run's cache lives on the GPU only (kvRead reads it from there).
    cache = sg.kvCache({ ...format, kv_heads: c.kv_heads, max_seq: c.max_seq, window: c.window, mirror: false });
  } catch (e) {
    return [{ case: c.id, op: 'kv-append', step: 0, error: `kvCache: ${describeError(e)}` }];
  }
  try {
    for (const [step, s] of c.steps.entries()) {
      const per = s.n_new * c.kv_heads * c.head_dim;
      const k = s.kvNewData.subarray(0, per);
      const v = s.kvNewData.subarray(per);
      const append = { case: c.id, op: 'kv-append', step };
      out.push(append);
      try {
        const r = await timed(sg, 'kv-append', format, () => sg.kvAppend(cache, k, v));
        const bytes = await sg.kvRead(cache);
        Object.assign(append, { kernel: r.kernel, backend: r.backend, tier: r.tier, reason: r.reason, ms: r.ms, len: bytes.len });
        append.cache = Object.fromEntries(['codes', 'scales', 'mins', 'window'].map((n) => [n, base64(bytes[n])]));
      } catch (e) {
        append.error = describeError(e);
        break;
      }
      const attend = { case: c.id, op: 'kv-attend', step };
      out.push(attend);
      try {
        const r = await timed(sg, 'kv-attend', format, () => sg.kvAttend(cache, s.qData, c.n_heads));
        Object.assign(attend, { kernel: r.kernel, backend: r.backend, tier: r.tier, reason: r.reason, ms: r.ms, len: cache.len, output: base64(r.value) });
      } catch (e) {
        attend.error = describeError(e);
      }
    }
  } finally {
    sg.releaseKv(cache);
  }
  return out;
}

async function runOne(ShaderGen, plan, cases, run) {
  const rec = { name: run.name, options: run.options, hide_gpu: run.hide_gpu, ops: [] };
  const saved = Object.getOwnPropertyDescriptor(navigator, 'gpu');
  if (run.hide_gpu) {
    // As a browser without WebGPU: navigator.gpu reads undefined (shadows the prototype's getter).
    Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true, writable: true });
  }
  rec.has_navigator_gpu = !!navigator.gpu;
  let sg = null;
  try {
    const t0 = performance.now();
    sg = await ShaderGen.load(plan.package, run.options);
    rec.load_ms = performance.now() - t0;
    rec.caps = sg.caps;
    rec.selection = sg.select();
    rec.device_features = sg.device ? [...sg.device.features].sort() : null;
    for (const c of cases.filter((x) => !run.cases || run.cases.includes(x.id))) {
      report('progress', `${run.name}: case ${c.id} (${c.op})`);
      rec.ops.push(...(await (c.op === 'kv' ? runKv(sg, c) : runMatrix(sg, c))));
    }
  } catch (e) {
    rec.error = describeError(e);
    report('error', `${run.name}: ${rec.error}\n${e?.stack ?? ''}`);
  } finally {
    try {
      sg?.destroy();
    } catch (e) {
      report('error', `${run.name}: destroy(): ${describeError(e)}`);
    }
    if (run.hide_gpu) {
      delete navigator.gpu;
      if (saved) Object.defineProperty(navigator, 'gpu', saved);
    }
  }
  return rec;
}

async function main() {
  const t0 = performance.now();
  const result = { user_agent: navigator.userAgent, runs: [] };
  try {
    const plan = await get('/cases/plan.json', 'json');
    const { cases } = await get('/cases/cases.json', 'json');
    await loadCases(cases);
    const mod = await import(`${plan.package}shadergen.mjs`);
    const ShaderGen = mod.ShaderGen ?? mod.default;
    if (typeof ShaderGen?.load !== 'function') throw new Error(`${plan.package}shadergen.mjs exports no ShaderGen.load`);
    for (const run of plan.runs) {
      status(`running ${run.name}…`);
      report('progress', `${run.name}: start`);
      result.runs.push(await runOne(ShaderGen, plan, cases, run));
    }
  } catch (e) {
    result.error = describeError(e);
    report('error', `${result.error}\n${e?.stack ?? ''}`);
  }
  result.total_ms = performance.now() - t0;
  status(result.error ? `failed: ${result.error}` : 'done');
  await fetch('/result', { method: 'POST', body: JSON.stringify(result) });
}

main();
