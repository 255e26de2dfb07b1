// An independent implementation of docs/FORMAT.md (format.mjs, in JS) builds random cases
// and their expected outputs; the emitted package runs them on V8 (SIMD and scalar WASM)
// and on Dawn, through the manifest only (run-cases.mjs); check-sample.mjs compares.
// This is the "someone implements the format from the document" check: matvec and matmul
// (§2-8) and the KV cache (§11: kv-append bit-exact, kv-attend within the tolerance).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const node = (script, ...args) =>
  execFileSync(process.execPath, [join(here, script), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('kernels agree with an independent implementation of FORMAT.md on V8 and Dawn', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shadergen-sample-'));
  try {
    node('make-sample-cases.mjs', dir);
    for (const engine of ['v8-simd', 'v8-scalar', 'dawn']) {
      const summary = node('run-cases.mjs', dir, engine);
      assert.match(summary, new RegExp(`${engine}: ran [1-9]`), summary);
    }
    // Fails (non-zero exit, so execFileSync throws) on any mismatch; skips are failures.
    let report;
    try {
      report = node('check-sample.mjs', dir, '--no-skip');
    } catch (e) {
      assert.fail(`check-sample.mjs failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
    for (const engine of ['v8-simd', 'v8-scalar', 'dawn']) {
      assert.match(report, new RegExp(`${engine}: [1-9]\\d* passed, 0 skipped, 0 failed \\(of \\d+ cases, [1-9]\\d* KV;`), report);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
