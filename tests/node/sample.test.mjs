// An independent implementation of docs/FORMAT.md (format.mjs, in JS) builds random cases
// and their expected outputs; the emitted package runs them on V8 (SIMD and scalar WASM)
// and on Dawn, through the manifest only (run-cases.mjs); check-sample.mjs compares.
// This is the "someone implements the format from the document" check.
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
    node('check-sample.mjs', dir, '--no-skip');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
