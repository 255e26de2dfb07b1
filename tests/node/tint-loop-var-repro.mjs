#!/usr/bin/env node
// Minimal repro: Dawn/Tint (npm webgpu@0.6.2) does not re-zero a `var` declared without an
// initializer inside a loop body. WGSL says the variable is created, and zero-initialized,
// each time its declaration executes; Tint hoists it to an OpVariable with an OpConstantNull
// initializer at function entry and stores nothing at the declaration, so it keeps its value
// across iterations. templates/matmul.wgsl's `var part: array<vec4<T>, 4>;` hits this.
// Writing `var part = array<vec4<T>, 4>();` is zeroed each iteration.
//
//   node tests/node/tint-loop-var-repro.mjs      (prints acc; WGSL requires 3 for every line)
//   WEBGPU_FLAGS=enable-dawn-features=dump_shaders,disable_symbol_renaming node ...   (shows SPIR-V)

import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
const gpu = create((process.env.WEBGPU_FLAGS ?? '').split(' ').filter(Boolean));
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.log('no WebGPU adapter');
  process.exit(0);
}
const device = await adapter.requestDevice();
const variants = [
  ['var part: array<vec4<f32>, 4>;', 'part[0] += vec4<f32>(1.0); acc += part[0].x;'],
  ['var part = array<vec4<f32>, 4>();', 'part[0] += vec4<f32>(1.0); acc += part[0].x;'],
  ['var part: f32;', 'part += 1.0; acc += part;'],
  ['var part = f32();', 'part += 1.0; acc += part;'],
];
let bad = 0;
for (const [decl, use] of variants) {
  const code = `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(1) fn main() {
  var acc = 0.0;
  for (var blk = 0u; blk < 3u; blk++) {
    ${decl}
    ${use}
  }
  y[0] = acc;
}`;
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const y = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: y } }] }));
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(y, 0, read, 0, 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const acc = new Float32Array(read.getMappedRange())[0];
  if (acc !== 3) bad++;
  console.log(`${decl.padEnd(36)} acc = ${acc} ${acc === 3 ? 'ok' : '(WGSL requires 3)'}`);
}
process.exit(bad ? 1 : 0);
