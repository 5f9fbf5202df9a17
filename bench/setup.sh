#!/usr/bin/env bash
# Set up (idempotently) and check the peers of Tessera's benchmarks. Nothing here becomes a dependency
# of Tessera itself: the peers live in Debian packages and in bench/'s own npm project.
#
#   bash bench/setup.sh            install what is missing, then check
#   bash bench/setup.sh --check    check only (no apt-get, no npm)
#
# - PyTorch: Debian's python3-torch (1.13) with the OpenMP build of OpenBLAS. It MUST run as
#   /usr/bin/python3 (not a pyenv/venv python) with OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines, or
#   OpenBLAS may pick slow kernels; the check fails below 50 GFLOP/s at n=1024 on 1 thread. The
#   harness also sets ATEN_CPU_CAPABILITY=avx512 on AVX-512 CPUs (torch's own kernels; default AVX2).
# - bench/package.json + bench/package-lock.json: onnxruntime-node (CPU binary inside the package;
#   ONNXRUNTIME_NODE_INSTALL=skip stops its install script from downloading GPU binaries),
#   @tensorflow/tfjs-core and @tensorflow/tfjs-backend-wasm, exact versions.
# - a C compiler for bench/peak.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1
PY=/usr/bin/python3
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
# as bench/lib/common.mjs torchEnv(): ATen's own kernels at AVX-512 where the CPU has it
if [[ -z "${ATEN_CPU_CAPABILITY:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export ATEN_CPU_CAPABILITY=avx512; fi
MIN_GFLOPS="${BENCH_MIN_TORCH_GFLOPS:-50}"

say() { printf '\n== %s\n' "$*"; }

# ---- Debian packages -------------------------------------------------------------------------------
APT_PKGS=(python3-torch libopenblas0-openmp)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v cc >/dev/null 2>&1 || missing+=(gcc)
if ((${#missing[@]})); then
  if ((CHECK_ONLY)); then
    echo "setup: missing Debian packages: ${missing[*]} (run bash bench/setup.sh)" >&2
    exit 1
  fi
  say "apt-get install ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  # update the package lists only when they are absent (a fresh container)
  if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then $SUDO apt-get update; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
say "Debian packages"
dpkg-query -W -f='${Package} ${Version}\n' "${APT_PKGS[@]}"
echo "libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo '?')"
cc --version | head -1

# ---- npm peers (bench/'s own project) ---------------------------------------------------------------
cd "$BENCH"
need_npm=0
for m in onnxruntime-node @tensorflow/tfjs-core @tensorflow/tfjs-backend-wasm; do
  [[ -f "node_modules/$m/package.json" ]] || need_npm=1
done
if [[ -f package-lock.json && -f node_modules/.package-lock.json && package-lock.json -nt node_modules/.package-lock.json ]]; then need_npm=1; fi
if ((need_npm)); then
  if ((CHECK_ONLY)); then
    echo "setup: bench/node_modules is missing or stale (run bash bench/setup.sh)" >&2
    exit 1
  fi
  say "npm ci (bench/)"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi

say "npm peers"
node --input-type=module -e "
import { createRequire } from 'node:module';
const require = createRequire('$BENCH/package.json');
const v = (m) => require(m + '/package.json').version;
const ort = require('onnxruntime-node');
console.log('onnxruntime-node', v('onnxruntime-node'), 'backends:', ort.listSupportedBackends().map((b) => b.name).join(','));
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-wasm');
if (!(await tf.setBackend('wasm'))) throw new Error('tfjs wasm backend failed to initialize');
console.log('@tensorflow/tfjs-core', v('@tensorflow/tfjs-core'), '@tensorflow/tfjs-backend-wasm', v('@tensorflow/tfjs-backend-wasm'),
  'simd:', await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'), 'multithread:', await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
"

# ---- PyTorch -------------------------------------------------------------------------------------
say "PyTorch ($PY, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-default})"
"$PY" "$BENCH/peers/torch_check.py" --min-gflops "$MIN_GFLOPS"

# ---- Tessera build -----------------------------------------------------------------------------------
say "Tessera"
if [[ -f "$ROOT/dist/index.js" ]]; then
  echo "dist/index.js present (built $(date -r "$ROOT/dist/index.js" '+%F %T'))"
else
  echo "dist/index.js missing: run npm run build at the repository root (bench/run-all.sh does)"
fi
say "setup ok"
