// WASM benchmark in V8 (Node), the engine Chrome runs `.wasm` with: the SIMD and scalar
// modules of matvec 4096x4096 and matmul 64x4096x4096 at 2, 3, 4, 8 bits (group 32, sym)
// and the f16 baseline, one thread; then the dot4 tier's matvec (x quantized to int8 in the
// kernel, integer dot products) at 4096x4096 and 4096x14336 (N x K), 2, 3, 4, 8 bits, group 32,
// sym. Weights are random codes (every bit pattern is a valid code) with random finite f16
// scales: the kernels' work does not depend on the values. With --dot4 only the dot4 rows run
// and OUT's other rows are kept.
//
//   cargo build --release -p shadergen && node bench/wasm-v8.mjs [OUT.json] [--quick] [--dot4]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith('--')) ?? join(root, 'bench/wasm-v8.json');
const quick = args.includes('--quick');
const onlyDot4 = args.includes('--dot4');
// The newer of the release and debug builds.
const bin = [join(root, 'target/release/shadergen'), join(root, 'target/debug/shadergen')]
  .filter(existsSync)
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
if (!bin) throw new Error('build shadergen first: cargo build --release -p shadergen');
const pkg = mkdtempSync(join(tmpdir(), 'shadergen-v8-bench-'));
execFileSync(bin, ['emit', '--target', 'generic', '--out', pkg, '--tier', 'base', '--group', '32', '--scheme', 'sym', '--quiet']);
const manifest = JSON.parse(readFileSync(join(pkg, 'manifest.json'), 'utf8'));

const [N, K] = quick ? [1024, 1024] : [4096, 4096];
let seed = 0x12345678;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);

function place(sizes, scratch, align) {
  let next = scratch;
  return sizes.map((s) => { const at = next; next = Math.ceil((next + s) / align) * align; return at; }).concat([next]);
}

const rows = [];
console.log(`V8 ${process.versions.v8} (Node ${process.version}), one thread; N x K = ${N} x ${K}`);
console.log('op      bits          shape     simd ms   scalar ms   ratio  weight GB/s    GFLOP/s');
for (const op of onlyDot4 ? [] : ['matvec', 'matmul']) {
  const M = op === 'matvec' ? 1 : quick ? 16 : 64;
  for (const bits of [2, 3, 4, 8, 16]) {
    const kernel = manifest.kernels.find((k) => k.op === op && k.bits === bits);
    const words = (N * K * bits) / 32;
    const groups = bits === 16 ? 0 : (N * K) / kernel.group_size;
    const scaleWords = Math.ceil(groups / 2);
    const weights = new Uint32Array(words);
    for (let i = 0; i < words; i++) weights[i] = (rand() * 2 ** 32) >>> 0;
    // Finite normal halves below 1: f16 subnormals take a slow path in the f16 -> f32 conversion.
    if (bits === 16) for (let i = 0; i < words; i++) weights[i] = (weights[i] & 0x3bff3bff) | 0x04000400;
    const scales = new Uint32Array(scaleWords);
    for (let i = 0; i < scaleWords; i++) scales[i] = 0x20002000 | ((rand() * 0x3ff) >>> 0) | (((rand() * 0x3ff) >>> 0) << 16);
    const x = new Float32Array(M * K).map(() => rand() * 2 - 1);
    const times = [];
    for (const variant of ['simd', 'scalar']) {
      const mod = await WebAssembly.compile(readFileSync(join(pkg, kernel.wasm[variant])));
      const inst = await WebAssembly.instantiate(mod, {});
      const mem = inst.exports[kernel.wasm.memory];
      const [wAt, sAt, mAt, xAt, yAt, end] = place([words * 4, scaleWords * 4, 0, M * K * 4, M * N * 4], kernel.wasm.layout.scratch_bytes, kernel.wasm.layout.align);
      const pages = Math.ceil(end / 65536) - mem.buffer.byteLength / 65536;
      if (pages > 0) mem.grow(pages);
      new Uint32Array(mem.buffer, wAt, words).set(weights);
      new Uint32Array(mem.buffer, sAt, scaleWords).set(scales);
      new Float32Array(mem.buffer, xAt, M * K).set(x);
      const f = inst.exports[kernel.wasm.export];
      f(wAt, sAt, mAt, xAt, yAt, M, N, K); // warm-up: tier-up to optimized code
      const reps = op === 'matvec' ? 15 : 3;
      const samples = [];
      for (let r = 0; r < reps; r++) {
        const t = process.hrtime.bigint();
        f(wAt, sAt, mAt, xAt, yAt, M, N, K);
        samples.push(Number(process.hrtime.bigint() - t) / 1e9);
      }
      samples.sort((a, b) => a - b);
      times.push(samples[samples.length >> 1]);
    }
    const bytes = (words + 2 * scaleWords) * 4;
    const flops = 2 * M * N * K;
    const shape = `${M}x${N}x${K}`;
    console.log(`${op.padEnd(7)} ${String(bits).padStart(4)} ${shape.padStart(14)} ${(times[0] * 1e3).toFixed(3).padStart(11)} ${(times[1] * 1e3).toFixed(3).padStart(11)} ${(times[1] / times[0]).toFixed(2).padStart(7)} ${(bytes / times[0] / 1e9).toFixed(2).padStart(12)} ${(flops / times[0] / 1e9).toFixed(2).padStart(10)}`);
    rows.push({ engine: `V8 ${process.versions.v8}`, op, bits, group_size: 32, shape, simd_median_us: +(times[0] * 1e6).toFixed(1), scalar_median_us: +(times[1] * 1e6).toFixed(1), simd_over_scalar: +(times[1] / times[0]).toFixed(3), weight_bytes: bytes, simd_weight_gb_per_s: +(bytes / times[0] / 1e9).toFixed(3), simd_gflop_per_s: +(flops / times[0] / 1e9).toFixed(3) });
  }
}
rmSync(pkg, { recursive: true, force: true });

// dot4: the native target has every tier; its matvec modules take `xq` last (manifest args).
const dot4Pkg = mkdtempSync(join(tmpdir(), 'shadergen-v8-bench-'));
execFileSync(bin, ['emit', '--target', 'native', '--out', dot4Pkg, '--tier', 'dot4', '--ops', 'matvec', '--bits', '2,3,4,8', '--group', '32', '--scheme', 'sym', '--quiet']);
const dot4 = JSON.parse(readFileSync(join(dot4Pkg, 'manifest.json'), 'utf8'));
if (onlyDot4 && existsSync(out)) rows.push(...JSON.parse(readFileSync(out, 'utf8')).rows.filter((r) => r.tier !== 'dot4'));
for (const [N, K] of quick ? [[1024, 1024]] : [[4096, 4096], [4096, 14336]]) {
  for (const bits of [2, 3, 4, 8]) {
    const kernel = dot4.kernels.find((k) => k.bits === bits);
    const abi = kernel.wasm;
    const words = (N * K * bits) / 32;
    const scaleWords = (N * K) / 32 / 2;
    const weights = new Uint32Array(words);
    for (let i = 0; i < words; i++) weights[i] = (rand() * 2 ** 32) >>> 0;
    const scales = new Uint32Array(scaleWords);
    for (let i = 0; i < scaleWords; i++) scales[i] = 0x20002000 | ((rand() * 0x3ff) >>> 0) | (((rand() * 0x3ff) >>> 0) << 16);
    const x = new Float32Array(K).map(() => rand() * 2 - 1);
    const times = [];
    const mins = [];
    for (const variant of ['simd', 'scalar']) {
      const inst = await WebAssembly.instantiate(await WebAssembly.compile(readFileSync(join(dot4Pkg, abi[variant]))), {});
      const mem = inst.exports[abi.memory];
      const [wAt, sAt, mAt, xAt, yAt, xqAt, end] = place([words * 4, scaleWords * 4, 0, K * 4, N * 4, (K / 32) * abi.layout.xq_block_bytes], abi.layout.scratch_bytes, abi.layout.align);
      const pages = Math.ceil(end / 65536) - mem.buffer.byteLength / 65536;
      if (pages > 0) mem.grow(pages);
      new Uint32Array(mem.buffer, wAt, words).set(weights);
      new Uint32Array(mem.buffer, sAt, scaleWords).set(scales);
      new Float32Array(mem.buffer, xAt, K).set(x);
      const at = { weights: wAt, scales: sAt, mins: mAt, x: xAt, y: yAt, xq: xqAt, m: 1, n: N, k: K };
      const callArgs = abi.args.map((a) => at[a]);
      const f = inst.exports[abi.export];
      for (let r = 0; r < 3; r++) f(...callArgs); // warm-up: tier-up to optimized code
      const samples = [];
      for (let r = 0; r < 31; r++) {
        const t = process.hrtime.bigint();
        f(...callArgs);
        samples.push(Number(process.hrtime.bigint() - t) / 1e9);
      }
      samples.sort((a, b) => a - b);
      times.push(samples[samples.length >> 1]);
      mins.push(samples[0]);
    }
    const bytes = (words + 2 * scaleWords) * 4;
    const flops = 2 * N * K;
    const shape = `1x${N}x${K}`;
    console.log(`${'dot4'.padEnd(7)} ${String(bits).padStart(4)} ${shape.padStart(14)} ${(times[0] * 1e3).toFixed(3).padStart(11)} ${(times[1] * 1e3).toFixed(3).padStart(11)} ${(times[1] / times[0]).toFixed(2).padStart(7)} ${(bytes / times[0] / 1e9).toFixed(2).padStart(12)} ${(flops / times[0] / 1e9).toFixed(2).padStart(10)}   min ${(mins[0] * 1e3).toFixed(3)} / ${(mins[1] * 1e3).toFixed(3)} ms, load ${loadavg()[0].toFixed(2)}`);
    rows.push({ engine: `V8 ${process.versions.v8}`, op: 'matvec', tier: 'dot4', activations: 'int8', bits, group_size: 32, shape, simd_median_us: +(times[0] * 1e6).toFixed(1), scalar_median_us: +(times[1] * 1e6).toFixed(1), simd_over_scalar: +(times[1] / times[0]).toFixed(3), weight_bytes: bytes, simd_weight_gb_per_s: +(bytes / times[0] / 1e9).toFixed(3), simd_gflop_per_s: +(flops / times[0] / 1e9).toFixed(3), simd_min_us: +(mins[0] * 1e6).toFixed(1), scalar_min_us: +(mins[1] * 1e6).toFixed(1), load_average: +loadavg()[0].toFixed(2) });
  }
}
rmSync(dot4Pkg, { recursive: true, force: true });
writeFileSync(out, JSON.stringify({ machine: `${cpus()[0].model}, ${cpus().length} cores`, rows }, null, 2) + '\n');
console.log(`wrote ${out}`);
