#!/usr/bin/env bash
# The main job: build shadergen and emit the full kernel set for every browser target into
# out/<target>/ (one .wgsl per kernel plus manifest.json). Usage: scripts/emit-all.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out}"
cargo build --release -q -p shadergen
for target in generic chrome edge firefox safari native; do
  ./target/release/shadergen emit --target "$target" --out "$out/$target" --quiet
done
echo "packages in $out/: $(ls "$out" | tr '\n' ' ')"
