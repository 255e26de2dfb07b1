#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian bookworm machine:
#   - Mesa lavapipe (CPU Vulkan) from bookworm-backports: Dawn needs Mesa 25, wgpu runs on it too.
#   - vulkan-tools, for `vulkaninfo --summary` as a sanity check.
#   - Debian's chromium and firefox-esr (from the system's own suites, bookworm-security
#     carries the current ones: 156 and 153 ESR here) for tests/browser/: WebGPU on
#     SwiftShader (Chromium) and on lavapipe (Firefox), and WASM SIMD, in real engines.
#   - Node modules from the committed lockfile (Dawn for Node: npm `webgpu`).
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=0
if ! vulkaninfo --summary 2>/dev/null | grep -q llvmpipe; then need_apt=1; fi
if [ "$need_apt" = 1 ]; then
  echo "==> installing Mesa lavapipe from bookworm-backports"
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if [ ! -f "$src" ]; then
    # First stanza of the system's debian.sources, with the suite swapped: no host is named here.
    awk 'BEGIN{RS="";ORS="\n\n"} NR==1{print; exit}' /etc/apt/sources.list.d/debian.sources \
      | sed -E 's/^Suites:.*/Suites: bookworm-backports/' > "$src"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  apt-get install -y -qq vulkan-tools >/dev/null
fi
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverInfo' | head -4

browsers=()
command -v chromium >/dev/null 2>&1 || browsers+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || browsers+=(firefox-esr)
if [ "${#browsers[@]}" -gt 0 ]; then
  echo "==> installing ${browsers[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${browsers[@]}" >/dev/null
fi
echo "browsers: $(chromium --version 2>/dev/null | head -1); $(firefox-esr --version 2>/dev/null | head -1)"

if [ ! -d node_modules/webgpu ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing Node modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
