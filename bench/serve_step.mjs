#!/usr/bin/env node
/**
 * One batched decode step of the serving engine's model (`PagedLlama` over a paged KV cache), timed at
 * 1, 4 and 16 sequences of one token each with a past of 100 tokens, and 16 of them with an 8-token
 * prefill chunk (the common step under load): what continuous batching can gain per step before
 * scheduling and HTTP enter (bench/serve_load.mjs measures those).
 *
 *   TESSERA_THREADS=2 node bench/serve_step.mjs [--profile]
 *   TESSERA_THREADS=2 node bench/serve_step.mjs --engine [--rounds 4]
 *
 * --engine instead drives the whole engine on this thread (scheduler, sampling, KV writes; no HTTP): 16
 * closed-loop streams each sending two requests (48-token prompts, 64 greedy tokens), per round, and
 * prints tokens/s per round and the garbage collections (count, total and longest pause) after the
 * first round, which compiles.
 *
 * Model: the 56.4M random-weight Llama of bench/llm_decode.mjs (dim 512, 8 layers, 8 heads, 4 KV heads,
 * SwiGLU 1408, vocab 32000), device cpu. Four untimed steps per batch size (jit trace, capture, first
 * replays), then the mean of 10. --profile times every kernel (slower) and prints the top ones.
 */
import { importTessera } from './lib/common.mjs';

const profile = process.argv.includes('--profile');
const engineMode = process.argv.includes('--engine');
const roundsArg = process.argv.indexOf('--rounds');
const T = await importTessera();
const { Llama } = await importTessera('nn/index.js');
const { PagedLlama } = await importTessera('serve/engine/index.js');
T.setDefaultDevice('cpu');
T.manualSeed(0);
const model = new Llama({ vocabSize: 32000, dim: 512, nLayer: 8, nHead: 8, nKVHead: 4, hiddenDim: 1408, maxSeqLen: 512 });
if (engineMode) {
  await runEngine(roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 4);
  process.exit(0);
}
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

async function runEngine(rounds) {
  const { PerformanceObserver } = await import('node:perf_hooks');
  const { createInProcessEngine } = await importTessera('serve/engine/in_process.js');
  const engine = createInProcessEngine({ model, kvCacheBytes: 256 * 2 ** 20 });
  const gcs = [];
  const obs = new PerformanceObserver((list) => gcs.push(...list.getEntries().map((e) => e.duration)));
  let id = 0;
  const request = (k) =>
    new Promise((resolve) =>
      engine.submit(
        { id: String(id++), promptTokens: Array.from({ length: 48 }, (_, i) => 300 + ((k * 97 + i * 13) % 31000)), maxTokens: 64, sampling: { temperature: 0, topP: 1, seed: 0 }, stopTokenIds: [] },
        { onToken() {}, onDone: resolve },
      ),
    );
  for (let round = 0; round < rounds; round++) {
    if (round === 1) obs.observe({ entryTypes: ['gc'] });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, async (_, s) => {
      for (let j = 0; j < 2; j++) await request(round * 1000 + s * 10 + j);
    }));
    console.log(`engine, 16 streams, round ${round}${round === 0 ? ' (compiles)' : ''}: ${((32 * 64 * 1000) / (performance.now() - t0)).toFixed(0)} tok/s`);
  }
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  const total = gcs.reduce((a, b) => a + b, 0);
  console.log(`garbage collections after round 0: ${gcs.length}, ${total.toFixed(0)} ms in all, longest ${gcs.length ? Math.max(...gcs).toFixed(1) : 0} ms`);
  await engine.close();
}
