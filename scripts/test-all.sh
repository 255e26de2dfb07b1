#!/usr/bin/env bash
# Sets up every test engine (Mesa lavapipe, Dawn for Node) and runs all tests:
# the Rust workspace (codec, golden snapshots, naga validation, execution on wgpu/lavapipe,
# the six-engine differential harness, the macro's compile-fail tests, CLI), the downstream
# example, and the Node suite (Tint compiles every emitted kernel through Dawn on lavapipe),
# then writes the browser compatibility matrix (shadergen matrix) from their results.
# With CI=true a missing engine fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
echo "==> cargo test (workspace)"
cargo test --workspace --locked
echo "==> downstream example (a user's crate: #[kernel] on the GPU and in WASM)"
cargo run -q -p shadergen-downstream-example --locked
echo "==> node --test (Dawn / Tint)"
cargo build -q -p shadergen --locked
# The browser tests write chromium.json and firefox.json beside tint.json, for the matrix
# (this run's results only: a test that is skipped leaves none).
rm -f target/test-results/tint.json target/test-results/chromium.json target/test-results/firefox.json
status=0
SHADERGEN_BROWSER_RESULTS=target/test-results npm test || status=$?
echo "==> shadergen matrix (browser compatibility, from target/test-results)"
target/debug/shadergen matrix --results target/test-results --out target/matrix
echo "browser compatibility matrix: target/matrix/matrix.md and target/matrix/matrix.html"
exit "$status"
