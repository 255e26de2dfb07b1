// An independent JS implementation of docs/FORMAT.md (version 1), written from the text
// alone: f16 conversion, block/plane packing, dequantization and the reference product.
// Used by make-sample-cases.mjs and check-sample.mjs (the self-test of run-cases.mjs).

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
