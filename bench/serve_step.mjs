#!/usr/bin/env node
/**
 * One batched decode step of the serving engine's model (`PagedLlama` over a paged KV cache), timed at
 * 1, 4 and 16 sequences of one token each with a past of 100 tokens, and 16 of them with an 8-token
 * prefill chunk (the common step under load): what continuous batching can gain per step before
 * scheduling and HTTP enter (bench/serve_load.mjs measures those).
 *
 *   TESSERA_THREADS=2 node bench/serve_step.mjs [--profile]
 *
 * Model: the 56.4M random-weight Llama of bench/llm_decode.mjs (dim 512, 8 layers, 8 heads, 4 KV heads,
 * SwiGLU 1408, vocab 32000), device cpu. Four untimed steps per batch size (jit trace, capture, first
 * replays), then the mean of 10. --profile times every kernel (slower) and prints the top ones.
 */
import { importTessera } from './lib/common.mjs';

const profile = process.argv.includes('--profile');
const T = await importTessera();
const { Llama } = await importTessera('nn/index.js');
const { PagedLlama } = await importTessera('serve/engine/index.js');
T.setDefaultDevice('cpu');
T.manualSeed(0);
const model = new Llama({ vocabSize: 32000, dim: 512, nLayer: 8, nHead: 8, nKVHead: 4, hiddenDim: 1408, maxSeqLen: 512 });
const paged = new PagedLlama(model, { numBlocks: 512, blockSize: 16 });
const REPS = 10;
let single;
const decodes = (S) => Array.from({ length: S }, (_, i) => ({ tokens: [5], start: 100, blockTable: Array.from({ length: 8 }, (_, b) => i * 8 + b), wantLogits: true }));
// A step of continuous batching under load: 16 decodes and an 8-token chunk of a 48-token prompt.
const chunk = { tokens: Array.from({ length: 8 }, (_, i) => 7 + i), start: 16, blockTable: [200, 201, 202], wantLogits: false };
const cases = [
  ['1 sequence', decodes(1), 1],
  ['4 sequences', decodes(4), 4],
  ['16 sequences', decodes(16), 16],
  ['16 + 8-token chunk', [...decodes(16), chunk], 16],
];
for (const [label, seqs, S] of cases) {
  for (let i = 0; i < 4; i++) paged.run(seqs);
  const times = new Map();
  let off;
  if (profile) {
    T.memory.setKernelProfiling(true);
    off = T.memory.subscribe((e) => e.type === 'kernel' && times.set(e.name, (times.get(e.name) ?? 0) + e.dur));
  }
  const t0 = performance.now();
  for (let i = 0; i < REPS; i++) paged.run(seqs);
  const ms = (performance.now() - t0) / REPS;
  single ??= ms;
  console.log(`${label.padStart(18)}: ${ms.toFixed(1)} ms/step, ${((S * 1000) / ms).toFixed(0)} tok/s, ${((S * single) / ms).toFixed(2)}x one sequence's throughput`);
  if (profile) {
    T.memory.setKernelProfiling(false);
    off();
    for (const [name, t] of [...times].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 8))) console.log(`    ${(t / REPS).toFixed(2)} ms  ${name}`);
  }
}
paged.dispose();
