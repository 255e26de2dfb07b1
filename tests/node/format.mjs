// An independent JS implementation of docs/FORMAT.md (version 1), written from the text
// alone: f16 conversion, block/plane packing, dequantization and the reference product;
// the KV cache of §11 (layout, kv-append's bytes and the comparison of a cache's words
// with them, kv-attend's f64 reference) and §12's int8 activations below. Used by make-sample-cases.mjs and
// check-sample.mjs (the self-test of run-cases.mjs) and by shadergen-mjs.test.mjs.

/** f16 bits (0..0xffff) to a number, exactly (§1). */
export function f16ToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/** Element `i` of an f16 array stored two per word (§1). */
export function f16At(words, i) {
  const w = words[i >> 1];
  return f16ToNumber(i & 1 ? w >>> 16 : w & 0xffff);
}

/** Packs f16 bit patterns two per word (§1): the last word's high half is zero if odd. */
export function packF16(halves) {
  const words = new Uint32Array(Math.ceil(halves.length / 2));
  for (let i = 0; i < halves.length; i++) words[i >> 1] |= (halves[i] & 0xffff) << (i & 1 ? 16 : 0);
  return words;
}

/** The planes of a block, low bits first (§4). */
export function planes(bits) {
  const p = { 2: [2], 3: [2, 1], 4: [4], 8: [8] }[bits];
  if (!p) throw new Error(`no block layout for ${bits} bits`);
  return p;
}

/** Word and bit position of element e (0..31) in a plane of width p (§4 rule). */
function place(p, e) {
  const byte = e % (4 * p);
  const offset = p * Math.floor(e / (4 * p));
  return { word: Math.floor(byte / 4), bit: 8 * (byte % 4) + offset };
}

/** Packs one block of 32 codes into `bits` words (§3, §4). */
export function packBlock(codes, bits) {
  const out = new Uint32Array(bits);
  let wordBase = 0;
  let shift = 0;
  for (const p of planes(bits)) {
    for (let e = 0; e < 32; e++) {
      const { word, bit } = place(p, e);
      const part = (codes[e] >>> shift) & ((1 << p) - 1);
      out[wordBase + word] = (out[wordBase + word] | (part << bit)) >>> 0;
    }
    wordBase += p;
    shift += p;
  }
  return out;
}

/** Code of element e (0..31) of the block whose first word is words[base] (§4 read-back). */
export function codeAt(words, base, e, bits) {
  let code = 0;
  let wordBase = 0;
  let shift = 0;
  for (const p of planes(bits)) {
    const { word, bit } = place(p, e);
    code |= ((words[base + wordBase + word] >>> bit) & ((1 << p) - 1)) << shift;
    wordBase += p;
    shift += p;
  }
  return code;
}

/** Packs row-major codes q[n*K + k] of an N x K matrix (§3). */
export function packMatrix(codes, n, k, bits) {
  const blocks = k / 32;
  const words = new Uint32Array((n * k * bits) / 32);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * k + 32 * b;
      words.set(packBlock(codes.subarray(start, start + 32), bits), (r * blocks + b) * bits);
    }
  }
  return words;
}

/**
 * The reference `Y[M x N] = X[M x K] · Wᵀ` in f64, with per-output magnitudes Σ|term|
 * (terms split as the kernels add them: s·(q−z), or s·q and min). `fmt` is
 * {bits, group_size, scheme}; `weights`, `scales`, `mins` are Uint32Arrays (scales/mins
 * unused for bits 16; mins only for asym); `x` a Float32Array.
 */
export function reference(fmt, { weights, scales, mins }, x, m, n, k) {
  const { bits, group_size: g, scheme } = fmt;
  const w = new Float64Array(n * k); // W[n,k]
  const mag = new Float64Array(n * k); // |term| per element
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const i = r * k + c;
      if (bits === 16) {
        w[i] = f16At(weights, i);
        mag[i] = Math.abs(w[i]);
        continue;
      }
      const q = codeAt(weights, (r * (k / 32) + (c >> 5)) * bits, c & 31, bits);
      const gi = r * (k / g) + Math.floor(c / g);
      const s = f16At(scales, gi);
      if (scheme === 'sym') {
        const z = 2 ** (bits - 1);
        w[i] = s * (q - z);
        mag[i] = Math.abs(w[i]);
      } else {
        const mn = f16At(mins, gi);
        w[i] = Math.fround(s * q + mn); // "s·q rounded once after adding m" (§5)
        mag[i] = Math.abs(s * q) + Math.abs(mn);
      }
    }
  }
  const want = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let row = 0; row < m; row++) {
    for (let r = 0; r < n; r++) {
      let acc = 0;
      let a = 0;
      for (let c = 0; c < k; c++) {
        const xv = x[row * k + c];
        acc += w[r * k + c] * xv;
        a += mag[r * k + c] * Math.abs(xv);
      }
      want[row * n + r] = acc;
      magnitude[row * n + r] = a;
    }
  }
  return { want, magnitude };
}

/** §10 worked examples: throws if this implementation disagrees with the document. */
export function checkWorkedExamples() {
  const table = {
    2: [0x0055aaff, 0x0055aaff],
    3: [0x0055aaff, 0x0055aaff, 0xaaaaaaaa],
    4: [0x8811aa33, 0x44dd66ff, 0x009922bb, 0xcc55ee77],
    8: [0x18110a03, 0x342d261f, 0x5049423b, 0x6c655e57, 0x88817a73, 0xa49d968f, 0xc0b9b2ab, 0xdcd5cec7],
  };
  for (const [b, words] of Object.entries(table)) {
    const bits = Number(b);
    const codes = Uint8Array.from({ length: 32 }, (_, e) => (7 * e + 3) % 2 ** bits);
    const got = packBlock(codes, bits);
    if (got.some((v, i) => v !== words[i] >>> 0)) {
      throw new Error(`FORMAT.md §10: ${bits}-bit block packs to ${[...got].map((v) => v.toString(16))}`);
    }
    for (let e = 0; e < 32; e++) {
      if (codeAt(got, 0, e, bits) !== codes[e]) throw new Error(`FORMAT.md §10: ${bits}-bit element ${e} reads back wrong`);
    }
  }
  if (f16ToNumber(0x3800) * (3 - 8) !== -2.5) throw new Error('FORMAT.md §10: sym example');
  if (f16ToNumber(0x3c00) * 3 + f16ToNumber(0xc000) !== 1.0) throw new Error('FORMAT.md §10: asym example');
}

// ---------------------------------------------------------------------------------------
// §12: int8 activations (the dot4 tiers' matvec). Written from the rule alone: per 32-block,
// amax = max |x|; below 2^-100 the block is zeros with scale 0; else e = (the f32 exponent
// field of amax) − 133, one more when amax · 2^−e > 127; q = x · 2^−e rounded half to even;
// scale 2^e. x is f32 and every step is exact (power-of-two scaling of f32 values, far from
// f32's range limits), so f64 arithmetic here gives the f32 results.

const f32Bits = (v) => new Uint32Array(Float32Array.of(v).buffer)[0];
export const X8_TINY = 2 ** -100;

/** Rounds to the nearest integer, ties to even. */
export function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The scale exponent of a block whose largest magnitude is `amax` ≥ 2^-100 (§12). */
export function x8Exponent(amax) {
  let e = ((f32Bits(amax) >>> 23) & 0xff) - 133;
  if (amax * 2 ** -e > 127) e += 1;
  return e;
}

/**
 * Quantizes f32 activations (a multiple of 32 of them) to int8 per 32-block (§12):
 * `{ codes: Int8Array, scales: Float32Array (one per block), values: Float32Array (codes ·
 * scale, exact), sums: Int32Array (each block's code sum) }`.
 */
export function quantizeX8(x) {
  if (x.length % 32) throw new Error(`int8 activations come in 32-element blocks, got ${x.length}`);
  const blocks = x.length / 32;
  const codes = new Int8Array(x.length);
  const scales = new Float32Array(blocks);
  const values = new Float32Array(x.length);
  const sums = new Int32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 32 * b; i < 32 * b + 32; i++) amax = Math.max(amax, Math.abs(Math.fround(x[i])));
    if (!(amax >= X8_TINY)) continue; // zeros, scale 0
    const e = x8Exponent(amax);
    scales[b] = 2 ** e;
    for (let i = 32 * b; i < 32 * b + 32; i++) {
      const q = roundHalfEven(Math.fround(x[i]) * 2 ** -e);
      if (q < -127 || q > 127) throw new Error(`x[${i}] = ${x[i]} quantizes to ${q}, outside -127..127`);
      codes[i] = q;
      values[i] = q * 2 ** e;
      sums[b] += q;
    }
  }
  return { codes, scales, values, sums };
}

/** Checks of the §12 rule on values it pins down; throws on a mismatch. */
export function checkX8Examples() {
  const block = (head) => Float32Array.from({ length: 32 }, (_, i) => head[i] ?? 0);
  const cases = [
    // amax 100: e = 0 (scale 1); ties to even: 2.5 → 2, −3.5 → −4, 0.5 → 0, −0.5 → −0, 1.5 → 2.
    [block([100, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5]), 1, [100, 2, -4, 0, 0, 2, 126]],
    // amax 127: still e = 0; 127.5 needs e = 1 (scale 2): 127.5/2 = 63.75 → 64, 3 → 1.5 → 2.
    [block([127, -127, 1]), 1, [127, -127, 1]],
    [block([127.5, 3, -5]), 2, [64, 2, -2]],
    // amax 64 (exponent field 133): e = 0.
    [block([-64, 1.25]), 1, [-64, 1]],
    // amax 1: e = −6 (scale 1/64): 1 → 64, 1/128 = 0.5 → 0 (tie), 3/128 → 1.5 → 2.
    [block([1, 1 / 128, 3 / 128]), 2 ** -6, [64, 0, 2]],
    // Below 2^-100: zeros, scale 0; exactly 2^-100 is quantized.
    [block([2 ** -101, -(2 ** -101)]), 0, [0, 0]],
    [block([2 ** -100]), 2 ** -106, [64]],
    [block([]), 0, []],
  ];
  for (const [x, scale, head] of cases) {
    const q = quantizeX8(x);
    const codes = [...q.codes.slice(0, head.length)];
    if (q.scales[0] !== scale || codes.join() !== head.join() || q.codes.slice(head.length).some((c) => c !== 0)) {
      throw new Error(`§12 block ${[...x.slice(0, 4)]}: scale ${q.scales[0]} codes ${codes}, want scale ${scale} codes ${head}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// §11: the KV cache. Written from the document's text: layout (§11.1), which tokens are
// where (§11.2), the append rule (§11.3, with the quantization of §5 in f32, every operation
// rounded once: Math.fround) and attention (§11.4) in f64.

/** f16 bits of a number, rounded to nearest, ties to even (§11.3 step 1); ±Infinity beyond. */
export function f16Round(x) {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  // The quantum (distance between neighbouring f16) at a: 2^-24 below 2^-14 (subnormals),
  // else 2^(e-10) for a in [2^e, 2^(e+1)).
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const quantum = 2 ** (Math.max(e, -14) - 10);
  const n = a / quantum; // exact: a power-of-two scaling
  let r = Math.floor(n);
  const rest = n - r;
  if (rest > 0.5 || (rest === 0.5 && r % 2 === 1)) r++;
  const v = r * quantum;
  if (v > 65504) return sign | 0x7c00;
  if (v < 2 ** -14) return sign | r; // subnormal (r = 1024 would be 2^-14, caught above)
  let ev = Math.floor(Math.log2(v));
  while (2 ** ev > v) ev--;
  while (2 ** (ev + 1) <= v) ev++;
  return sign | ((ev + 15) << 10) | (v / 2 ** (ev - 10) - 1024);
}

/** The smallest f16 (bits) not below x ≥ 0. */
export function f16Up(x) {
  const h = f16Round(x);
  return f16ToNumber(h) >= x ? h : h + 1; // x ≥ 0: the next f16 up is the next bit pattern
}

/**
 * The shape of a cache (§11): {bits, group_size, head_dim, kv_heads, max_seq, window}, and
 * the word counts of its four buffers (§11.1).
 */
export function kvLayout({ bits, group_size: g, head_dim: d, kv_heads: h, max_seq: s, window: r }) {
  planes(bits);
  if (![64, 128].includes(d) || ![32, 64, 128].includes(g) || g > d) throw new Error(`no KV cache with head_dim ${d} and group ${g}`);
  if (!(h >= 1) || !(s >= 2) || s % 2 || !(r >= 0 && r <= s)) throw new Error(`no KV cache with H=${h} S=${s} R=${r}`);
  const groups = 2 * h * s * (d / g);
  return {
    bits,
    g,
    d,
    h,
    s,
    r,
    words: { codes: (2 * h * s * d * bits) / 32, scales: Math.ceil(groups / 2), mins: Math.ceil(groups / 2), window: Math.max(1, Math.ceil((2 * h * r * d) / 2)) },
  };
}

/** An empty cache (every word zero, len 0). */
export function kvEmpty(layout) {
  const w = layout.words;
  return { len: 0, codes: new Uint32Array(w.codes), scales: new Uint32Array(w.scales), mins: new Uint32Array(w.mins), window: new Uint32Array(w.window) };
}

export const kvCopy = (c) => ({ len: c.len, codes: c.codes.slice(), scales: c.scales.slice(), mins: c.mins.slice(), window: c.window.slice() });

/** Tokens in the store when `len` are held: Q = L − min(L, R) (§11.2). */
export const kvQuantizedLen = (layout, len) => len - Math.min(len, layout.r);

/** Store row of (kv, h, t) (§11.1). */
const kvRow = (l, kv, h, t) => (kv * l.h + h) * l.s + t;
/** f16 element index of (kv, h, slot, d) in the window (§11.1). */
const kvSlot = (l, kv, h, slot, d) => ((kv * l.h + h) * l.r + slot) * l.d + d;

const halfBits = (words, i) => (i & 1 ? words[i >> 1] >>> 16 : words[i >> 1] & 0xffff);
function setHalf(words, i, bits) {
  const w = i >> 1;
  words[w] = i & 1 ? ((words[w] & 0xffff) | (bits << 16)) >>> 0 : ((words[w] & 0xffff0000) | bits) >>> 0;
}

/** The element [kv, h, t, d] a kernel sees (§11.2): s·q + m in f32 (§5), or the window's f16. */
export function kvElement(l, cache, kv, h, t, d) {
  if (t < kvQuantizedLen(l, cache.len)) {
    const row = kvRow(l, kv, h, t);
    const q = codeAt(cache.codes, (row * (l.d / 32) + (d >> 5)) * l.bits, d & 31, l.bits);
    const gi = row * (l.d / l.g) + Math.floor(d / l.g);
    return Math.fround(f16At(cache.scales, gi) * q + f16At(cache.mins, gi));
  }
  return f16ToNumber(halfBits(cache.window, kvSlot(l, kv, h, t % l.r, d)));
}

// Order where −0 is below +0, so that a zero minimum has one sign (§5's "the group's minimum").
const below = (a, b) => a < b || (a === 0 && b === 0 && Object.is(a, -0) && !Object.is(b, -0));

/**
 * Quantizes one group of f16 values (bit patterns) by §5's asym rule as §11.3 makes it
 * normative: m = the group's minimum, s = the smallest f16 ≥ (max − m)·c with c = 1/(2^bits − 1)
 * rounded to f32, q = floor((v − m) / s + 0.5) clamped, q = 0 if s = 0; each step one f32
 * operation. Returns {scale, min (f16 bits), codes, near (per code: the other code a division
 * off by a few ULP could give, or -1)}.
 */
export function kvQuantizeGroup(halves, bits) {
  const vals = halves.map(f16ToNumber);
  let lo = vals[0];
  let loBits = halves[0];
  let hi = vals[0];
  vals.forEach((v, i) => {
    if (below(v, lo)) [lo, loBits] = [v, halves[i]];
    if (below(hi, v)) hi = v;
  });
  const maxq = 2 ** bits - 1;
  const c = Math.fround(1 / maxq);
  const scale = f16Up(Math.fround(Math.fround(hi - lo) * c));
  const s = f16ToNumber(scale);
  const codes = new Array(vals.length);
  const near = new Array(vals.length).fill(-1);
  const clamp = (q) => Math.min(Math.max(q, 0), maxq);
  vals.forEach((v, i) => {
    if (s === 0) {
      codes[i] = 0;
      return;
    }
    const diff = Math.fround(v - lo);
    codes[i] = clamp(Math.floor(Math.fround(Math.fround(diff / s) + 0.5)));
    // §11.3: a WGSL division may be off by 2.5 ULP, so where (v − m) / s + 0.5 lies within a
    // few ULP (here 4, of the integer's binade) of an integer n, codes n − 1 and n are both right.
    const x = diff / s + 0.5;
    const n = Math.round(x);
    if (n >= 1 && Math.abs(x - n) <= 4 * 2 ** (Math.floor(Math.log2(n)) - 23)) {
      const other = codes[i] === clamp(n) ? clamp(n - 1) : clamp(n);
      if (other !== codes[i]) near[i] = other;
    }
  });
  return { scale, min: loBits, codes, near };
}

/**
 * kv-append (§11.3): appends `n` tokens (`kvNew`: f32 keys [n][H][D] then values) to a copy
 * of `cache`. Returns {cache, near}: `near` lists the codes written where a WGSL kernel may
 * pick the neighbour, as {row, col, code, other}.
 */
export function kvAppend(l, before, kvNew, n) {
  const p = before.len;
  if (!(n >= 1) || p + n > l.s) throw new Error(`cannot append ${n} tokens at ${p} to a cache of ${l.s}`);
  if (kvNew.length !== 2 * n * l.h * l.d) throw new Error(`kv_new has ${kvNew.length} values, want ${2 * n * l.h * l.d}`);
  // 1. Every new value rounded to f16; an infinite or NaN f16 is refused.
  const fresh = Array.from(kvNew, (v, i) => {
    const b = f16Round(v);
    if ((b & 0x7c00) === 0x7c00) throw new Error(`kv_new[${i}] = ${v} is not finite in f16`);
    return b;
  });
  const source = (kv, h, t, d) =>
    t < p ? halfBits(before.window, kvSlot(l, kv, h, t % l.r, d)) : fresh[((kv * n + (t - p)) * l.h + h) * l.d + d];
  const after = kvCopy(before);
  const near = [];
  // 2. Tokens Q_old .. Q_new − 1 into their store rows, from the window (read before step 3
  //    writes it: `before`) or the new values.
  const qOld = p - Math.min(p, l.r);
  const qNew = p + n - Math.min(p + n, l.r);
  for (let t = qOld; t < qNew; t++) {
    for (let kv = 0; kv < 2; kv++) {
      for (let h = 0; h < l.h; h++) {
        const row = kvRow(l, kv, h, t);
        const codes = new Uint8Array(l.d);
        for (let g0 = 0; g0 < l.d; g0 += l.g) {
          const halves = Array.from({ length: l.g }, (_, j) => source(kv, h, t, g0 + j));
          const q = kvQuantizeGroup(halves, l.bits);
          const gi = row * (l.d / l.g) + g0 / l.g;
          setHalf(after.scales, gi, q.scale);
          setHalf(after.mins, gi, q.min);
          q.codes.forEach((code, j) => {
            codes[g0 + j] = code;
            if (q.near[j] >= 0) near.push({ row, col: g0 + j, code, other: q.near[j] });
          });
        }
        for (let b = 0; b < l.d / 32; b++) after.codes.set(packBlock(codes.subarray(32 * b, 32 * b + 32), l.bits), (row * (l.d / 32) + b) * l.bits);
      }
    }
  }
  // 3. Tokens max(Q_new, p) .. p + n − 1 to window slot t mod R.
  for (let t = Math.max(qNew, p); t < p + n; t++) {
    for (let kv = 0; kv < 2; kv++) {
      for (let h = 0; h < l.h; h++) {
        for (let d = 0; d < l.d; d++) setHalf(after.window, kvSlot(l, kv, h, t % l.r, d), source(kv, h, t, d));
      }
    }
  }
  after.len = p + n;
  return { cache: after, near };
}

/**
 * Compares a cache's words with the expected ones by §11.3's exactness rule. `got` and `want`
 * are {codes, scales, mins, window} Uint32Arrays of the layout `l`; `near` lists the near-ties
 * kvAppend returned for the store rows `want` holds ({row, col, code, other}). Every word must
 * be equal, except that with `wgsl` (a WGSL kernel wrote `got`) a code may be its listed
 * neighbour. Returns {bad: the first `limit` mismatches (texts), wrong: how many there are,
 * near: how many codes took the neighbour}.
 */
export function kvCompare(l, got, want, near = [], { wgsl = false, limit = 20 } = {}) {
  const others = new Map(near.map((n) => [`${n.row},${n.col}`, n.other]));
  const bad = [];
  let wrong = 0;
  let took = 0;
  const report = (text) => {
    wrong++;
    if (bad.length < limit) bad.push(text);
  };
  const hex = (v) => `0x${v.toString(16).padStart(8, '0')}`;
  for (const name of ['codes', 'scales', 'mins', 'window']) {
    const [g, w] = [got[name], want[name]];
    if (g.length !== w.length) {
      report(`${name} has ${g.length} words, expected ${w.length}`);
      continue;
    }
    for (let i = 0; i < w.length; i++) {
      if (g[i] === w[i]) continue;
      if (name !== 'codes') {
        report(`${name} word ${i} is ${hex(g[i])}, expected ${hex(w[i])}`);
        continue;
      }
      const block = Math.floor(i / l.bits);
      const row = Math.floor(block / (l.d / 32));
      const where = `store row ${row} (kv ${Math.floor(row / (l.h * l.s))} head ${Math.floor(row / l.s) % l.h} token ${row % l.s})`;
      for (let e = 0; e < 32; e++) {
        const [a, b] = [codeAt(g, block * l.bits, e, l.bits), codeAt(w, block * l.bits, e, l.bits)];
        if (a === b) continue;
        const col = 32 * (block % (l.d / 32)) + e;
        const other = others.get(`${row},${col}`);
        if (wgsl && other === a) {
          took++;
          continue;
        }
        const why = other === undefined ? ' (not a near-tie)' : wgsl ? '' : ' (a near-tie, but only a WGSL division may pick the neighbour)';
        report(`code of ${where} col ${col} is ${a}, expected ${b}${why}`);
      }
    }
  }
  return { bad, wrong, near: took };
}

/**
 * kv-attend (§11.4) in f64: `q` f32 [nHeads][D]. Returns {want, magnitude} per output, the
 * magnitude Σ_t p·|V|·(1 + |score − max| + Σ_d |q·K| / sqrt(D)) that the tolerance scales,
 * and per query head the largest softmax weight (maxWeight: how peaked the case is).
 */
export function kvAttention(l, cache, q, nHeads) {
  const L = cache.len;
  const gq = nHeads / l.h;
  if (!(L >= 1) || !Number.isInteger(gq) || gq < 1 || gq > 8) throw new Error(`no attention of ${nHeads} heads over ${L} tokens with H=${l.h}`);
  const D = l.d;
  const K = new Float64Array(l.h * L * D);
  const V = new Float64Array(l.h * L * D);
  for (let h = 0; h < l.h; h++) {
    for (let t = 0; t < L; t++) {
      for (let d = 0; d < D; d++) {
        K[(h * L + t) * D + d] = kvElement(l, cache, 0, h, t, d);
        V[(h * L + t) * D + d] = kvElement(l, cache, 1, h, t, d);
      }
    }
  }
  const want = new Float64Array(nHeads * D);
  const magnitude = new Float64Array(nHeads * D);
  const maxWeight = new Float64Array(nHeads);
  const root = Math.sqrt(D);
  for (let j = 0; j < nHeads; j++) {
    const h = Math.floor(j / gq);
    const score = new Float64Array(L);
    const absDot = new Float64Array(L);
    for (let t = 0; t < L; t++) {
      let acc = 0;
      let abs = 0;
      for (let d = 0; d < D; d++) {
        const term = q[j * D + d] * K[(h * L + t) * D + d];
        acc += term;
        abs += Math.abs(term);
      }
      score[t] = acc / root;
      absDot[t] = abs / root;
    }
    const max = score.reduce((a, b) => Math.max(a, b), -Infinity);
    const e = score.map((x) => Math.exp(x - max));
    const z = e.reduce((a, b) => a + b, 0);
    for (let t = 0; t < L; t++) {
      const p = e[t] / z;
      maxWeight[j] = Math.max(maxWeight[j], p);
      const weight = p * (1 + Math.abs(score[t] - max) + absDot[t]);
      for (let d = 0; d < D; d++) {
        const v = V[(h * L + t) * D + d];
        want[j * D + d] += p * v;
        magnitude[j * D + d] += weight * Math.abs(v);
      }
    }
  }
  return { want, magnitude, maxWeight };
}

/** Checks of the §11 pieces above on values the document pins down; throws on a mismatch. */
export function checkKvExamples() {
  const f16 = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [-0, 0x8000],
    [65504, 0x7bff],
    [65519.99, 0x7bff],
    [65520, 0x7c00], // the tie between 65504 and 65536 goes to the even (infinite) one
    [1 + 2 ** -11, 0x3c00], // tie: to even
    [1 + 3 * 2 ** -11, 0x3c02], // tie: to even (up)
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even
    [3 * 2 ** -26, 0x0001],
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up to the smallest normal
    [1023 * 2 ** -24, 0x03ff],
    [0.1, 0x2e66],
    [-1e-9, 0x8000],
  ];
  for (const [x, want] of f16) {
    if (f16Round(x) !== want) throw new Error(`f16Round(${x}) = 0x${f16Round(x).toString(16)}, want 0x${want.toString(16)}`);
  }
  for (let b = 0; b < 0x7c00; b += 7) {
    const v = f16ToNumber(b);
    if (f16Round(v) !== b || f16Round(-v) !== (b | 0x8000)) throw new Error(`f16 0x${b.toString(16)} does not round-trip`);
    if (f16Up(v) !== b) throw new Error(`f16Up of the f16 0x${b.toString(16)} moved`);
    if (b < 0x7bff && f16Up(v + (f16ToNumber(b + 1) - v) / 3) !== b + 1) throw new Error(`f16Up above 0x${b.toString(16)}`);
  }
  // A 2-bit group of 0, 1, 2, 3 (as f16): m = 0, s = 1, codes 0..3, dequantized exactly.
  const g = kvQuantizeGroup([0x0000, 0x3c00, 0x4000, 0x4200, ...Array(28).fill(0x3c00)], 2);
  if (g.min !== 0 || g.scale !== 0x3c00 || g.codes.slice(0, 4).join() !== '0,1,2,3') throw new Error(`2-bit group: ${JSON.stringify(g)}`);
  // A constant group: s = 0, every code 0, the value is the min.
  const k = kvQuantizeGroup(Array(32).fill(0xc500), 4);
  if (k.scale !== 0 || k.min !== 0xc500 || k.codes.some((c) => c !== 0)) throw new Error(`constant group: ${JSON.stringify(k)}`);
}
