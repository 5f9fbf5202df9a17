#!/usr/bin/env bash
# Run every benchmark and regenerate docs/benchmarks.md from the results.
#
#   bash bench/run-all.sh [--no-build] [--quick] [--no-webgpu]
#
# Steps: npm run build at the root (Tessera's dist/, skipped with --no-build), bench/setup.sh --check
# (peers present and fast; run bash bench/setup.sh once first), bench/peak/run.mjs, bench/matmul.mjs,
# bench/gpt_step.mjs, bench/webgpu_matmul.mjs (skipped with --no-webgpu), bench/llm_decode.mjs (LLM_ARGS;
# a failure is reported and does not stop the run), bench/train_memory.mjs (TRAIN_MEMORY_ARGS, --quick under
# --quick; a failure is reported and does not stop the run), bench/serve_load.mjs (SERVE_ARGS, --quick under
# --quick; serving under load, about 15 minutes in full; a failure is reported and does not stop the run),
# bench/report.mjs. Extra
# arguments for each step come from PEAK_ARGS, MATMUL_ARGS, GPT_ARGS, WEBGPU_ARGS (e.g.
# MATMUL_ARGS="--sizes 256,512 --threads 1"). --quick: smaller runs to test the harness (matmul
# n <= 512 with 3 samples, 5 GPT steps, WebGPU n <= 256 with 3 samples); its figures are still real,
# just noisier. A failure of the WebGPU step (no adapter, Tessera's webgpu device missing, a failed
# measurement) is reported and does not stop the run: the CPU benchmarks still report, and the
# report says when the WebGPU results are older than this run.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
cd "$ROOT"
BUILD=1
QUICK=0
WEBGPU=1
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    --quick) QUICK=1 ;;
    --no-webgpu) WEBGPU=0 ;;
    *) echo "run-all: unknown argument $a (expected --no-build, --quick, --no-webgpu)" >&2; exit 2 ;;
  esac
done
if ((QUICK)); then
  MATMUL_ARGS="${MATMUL_ARGS:---sizes 256,512 --samples 3}"
  GPT_ARGS="${GPT_ARGS:---steps 5}"
  PEAK_ARGS="${PEAK_ARGS:---reps 3}"
  WEBGPU_ARGS="${WEBGPU_ARGS:---sizes 128,256 --samples 3}"
  LLM_ARGS="${LLM_ARGS:---quick}"
  TRAIN_MEMORY_ARGS="${TRAIN_MEMORY_ARGS:---quick}"
  SERVE_ARGS="${SERVE_ARGS:---quick}"
fi
read -r -a peak_args <<<"${PEAK_ARGS:-}"
read -r -a matmul_args <<<"${MATMUL_ARGS:-}"
read -r -a gpt_args <<<"${GPT_ARGS:-}"
read -r -a webgpu_args <<<"${WEBGPU_ARGS:-}"
read -r -a llm_args <<<"${LLM_ARGS:-}"
read -r -a train_memory_args <<<"${TRAIN_MEMORY_ARGS:-}"
read -r -a serve_args <<<"${SERVE_ARGS:-}"
mkdir -p "$BENCH/results"
started="$(date -u +%FT%TZ)"
step() { printf '\n######## %s\n' "$*"; }

if ((BUILD)); then
  step "npm run build (Tessera dist/)"
  npm run build
fi
step "bash bench/setup.sh --check"
bash "$BENCH/setup.sh" --check 2>&1 | tee "$BENCH/results/setup.log"
step "node bench/peak/run.mjs ${peak_args[*]}"
node "$BENCH/peak/run.mjs" "${peak_args[@]}"
step "node bench/matmul.mjs ${matmul_args[*]}"
node "$BENCH/matmul.mjs" "${matmul_args[@]}"
step "node bench/gpt_step.mjs ${gpt_args[*]}"
node "$BENCH/gpt_step.mjs" "${gpt_args[@]}"
if ((WEBGPU)); then
  step "node bench/webgpu_matmul.mjs ${webgpu_args[*]}"
  if node "$BENCH/webgpu_matmul.mjs" "${webgpu_args[@]}"; then
    :
  else
    rc=$?
    printf '\nrun-all: WARNING: the WebGPU matmul step failed or is incomplete (exit code %s, see above);\n' "$rc" >&2
    printf 'run-all: continuing: the CPU benchmarks still report, and docs/benchmarks.md shows what bench/results/webgpu_matmul.json holds.\n' >&2
  fi
fi
step "node bench/llm_decode.mjs ${llm_args[*]}"
if node "$BENCH/llm_decode.mjs" "${llm_args[@]}"; then
  :
else
  rc=$?
  printf '\nrun-all: WARNING: the LLM decode step (Tessera vs llama.cpp) failed or is incomplete (exit code %s, see above); continuing.\n' "$rc" >&2
fi
# Training peak memory vs PyTorch (features off/on, largest GPT within 2 GiB): about 40 minutes in full.
step "node bench/train_memory.mjs ${train_memory_args[*]}"
if node "$BENCH/train_memory.mjs" "${train_memory_args[@]}"; then
  :
else
  rc=$?
  printf '\nrun-all: WARNING: the training-memory step failed (exit code %s, see above); continuing.\n' "$rc" >&2
fi
# Serving under load: Tessera continuous batching vs --max-batch 1 vs llama.cpp, 1-64 streams.
step "node bench/serve_load.mjs ${serve_args[*]}"
if node "$BENCH/serve_load.mjs" "${serve_args[@]}"; then
  :
else
  rc=$?
  printf '\nrun-all: WARNING: the serving-load step failed or had failed requests (exit code %s, see above); continuing.\n' "$rc" >&2
fi

cmd="bash bench/run-all.sh $*"
node -e '
const [file, command, started] = process.argv.slice(1);
require("fs").writeFileSync(file, JSON.stringify({ command: command.trim(), started, finished: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  env: { PEAK_ARGS: process.env.PEAK_ARGS ?? null, MATMUL_ARGS: process.env.MATMUL_ARGS ?? null, GPT_ARGS: process.env.GPT_ARGS ?? null, WEBGPU_ARGS: process.env.WEBGPU_ARGS ?? null, LLM_ARGS: process.env.LLM_ARGS ?? null, TRAIN_MEMORY_ARGS: process.env.TRAIN_MEMORY_ARGS ?? null, SERVE_ARGS: process.env.SERVE_ARGS ?? null } }, null, 2) + "\n");
' "$BENCH/results/run.json" "$cmd" "$started"
step "node bench/report.mjs"
node "$BENCH/report.mjs"
