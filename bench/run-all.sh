#!/usr/bin/env bash
# Run every benchmark and regenerate docs/benchmarks.md from the results.
#
#   bash bench/run-all.sh [--no-build] [--quick]
#
# Steps: npm run build at the root (Tessera's dist/, skipped with --no-build), bench/setup.sh --check
# (peers present and fast; run bash bench/setup.sh once first), bench/peak/run.mjs, bench/matmul.mjs,
# bench/gpt_step.mjs, bench/report.mjs. Extra arguments for each step come from PEAK_ARGS, MATMUL_ARGS,
# GPT_ARGS (e.g. MATMUL_ARGS="--sizes 256,512 --threads 1"). --quick: smaller runs to test the harness
# (matmul n <= 512 with 3 samples, 5 GPT steps); its figures are still real, just noisier.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
cd "$ROOT"
BUILD=1
QUICK=0
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    --quick) QUICK=1 ;;
    *) echo "run-all: unknown argument $a (expected --no-build, --quick)" >&2; exit 2 ;;
  esac
done
if ((QUICK)); then
  MATMUL_ARGS="${MATMUL_ARGS:---sizes 256,512 --samples 3}"
  GPT_ARGS="${GPT_ARGS:---steps 5}"
  PEAK_ARGS="${PEAK_ARGS:---reps 3}"
fi
read -r -a peak_args <<<"${PEAK_ARGS:-}"
read -r -a matmul_args <<<"${MATMUL_ARGS:-}"
read -r -a gpt_args <<<"${GPT_ARGS:-}"
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

cmd="bash bench/run-all.sh $*"
node -e '
const [file, command, started] = process.argv.slice(1);
require("fs").writeFileSync(file, JSON.stringify({ command: command.trim(), started, finished: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  env: { PEAK_ARGS: process.env.PEAK_ARGS ?? null, MATMUL_ARGS: process.env.MATMUL_ARGS ?? null, GPT_ARGS: process.env.GPT_ARGS ?? null } }, null, 2) + "\n");
' "$BENCH/results/run.json" "$cmd" "$started"
step "node bench/report.mjs"
node "$BENCH/report.mjs"
