#!/usr/bin/env node
/**
 * nanoGPT's "baby GPT on CPU" training step, Tessera side by side with PyTorch eager, in one run:
 *
 *   node bench/gpt_step.mjs [--threads 2] [--warmup 3] [--steps 20] [--peers tessera,pytorch,pytorch-foreach]
 *                           [--interp-warmup 2] [--interp-steps 5] [--retries 2] [--busy-threshold 0.25]
 *
 * Configuration (nanoGPT README, "baby GPT" on a CPU): 4 layers, 4 heads, n_embd 128, block 64, batch
 * 12, vocab 65 (shakespeare_char), bias, no dropout, weight tying, pre-norm, causal self-attention, tanh
 * GELU, GPT-2 init. Step: forward with targets, backward, clip the global gradient norm at 1.0 (nanoGPT's
 * default grad_clip), AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on every parameter), read the
 * loss. Inputs and targets are fresh random tokens each step (time spent making them is included on
 * both sides; it is negligible).
 *
 *   tessera          GPT (dist/nn) + AdamW (dist/optim), one `opt.step({ realize: [loss, norm] })` per step;
 *                    `jit` from dist/jit when it exists, else "not jitted"; TESSERA_THREADS=threads;
 *                    device 'cpu' when registered, else 'interp' (capped to --interp-steps)
 *   pytorch          bench/peers/torch_gpt.py, eager, torch.set_num_threads(threads), AdamW default (for-loop)
 *   pytorch-foreach  the same with AdamW(foreach=True)
 *
 * Reports ms/step (median and best over the measured steps, after the warm-up steps) and tokens/s (from
 * the median), and for Tessera the kernel launches, realizes and newly compiled kernels per step.
 * Writes bench/results/gpt_step.json.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  BENCH_DIR,
  DIST_DIR,
  PYTHON,
  commandLine,
  fmt,
  importTessera,
  machineInfo,
  median,
  parseArgs,
  pickDevice,
  readResult,
  probeTesseraDevice,
  runJsonChildQuiet,
  tesseraBuildInfo,
  torchEnv,
  writeResult,
} from './lib/common.mjs';
import { gptTable } from './lib/tables.mjs';

const args = parseArgs();
const SELF = join(BENCH_DIR, 'gpt_step.mjs');
export const GPT_PEERS = ['tessera', 'pytorch', 'pytorch-foreach'];
const CFG = { vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true };
const BATCH = 12;
const OPT = { lr: 1e-3, betas: [0.9, 0.99], weightDecay: 0.1 };
const GRAD_CLIP = 1.0;

function randomTokens(len, vocab, state) {
  const out = new Int32Array(len);
  for (let i = 0; i < len; i++) {
    state.x ^= state.x << 13;
    state.x >>>= 0;
    state.x ^= state.x >>> 17;
    state.x ^= state.x << 5;
    state.x >>>= 0;
    out[i] = state.x % vocab;
  }
  return out;
}

async function workerTessera() {
  const warmup = Number(args.warmup ?? 3);
  const steps = Number(args.steps ?? 20);
  const T = await importTessera();
  const { GPT } = await importTessera('nn/index.js');
  const { AdamW, clipGradNorm } = await importTessera('optim/index.js');
  const { device, runtime, note } = pickDevice(T);
  const rt = T.getRuntime(device);
  T.setDefaultDevice(device);

  let jit = null;
  let jitNote = 'not jitted (dist/jit/index.js does not exist)';
  const jitFile = join(DIST_DIR, 'jit', 'index.js');
  if (existsSync(jitFile)) {
    const mod = await importTessera('jit/index.js');
    if (typeof mod.jit === 'function') {
      jit = mod.jit;
      jitNote = 'jitted: jit(step)(x, y)';
    } else jitNote = 'not jitted (dist/jit/index.js exports no jit function)';
  }

  T.manualSeed(1337);
  const model = new GPT(CFG);
  model.train?.();
  const params = model.parameters();
  const nParams = params.reduce((a, p) => a + p.numel, 0);
  const opt = new AdamW(params, OPT);
  const [B, Tn] = [BATCH, CFG.blockSize];

  // One training step; returns the loss tensor (realized).
  const stepFn = (x, y) => {
    const { logits, loss } = model.forward(x, y);
    loss.backward();
    const norm = clipGradNorm(model.parameters(), GRAD_CLIP);
    opt.step({ realize: [loss, norm] });
    logits.dispose();
    norm.dispose();
    return loss;
  };
  let step = stepFn;
  if (jit) {
    try {
      step = jit(stepFn);
    } catch (e) {
      jitNote = `not jitted (jit(step) threw: ${String(e?.message ?? e)})`;
      step = stepFn;
    }
  }

  const rng = { x: 1337 };
  const times = [];
  const losses = [];
  const perStep = [];
  for (let s = 0; s < warmup + steps; s++) {
    const t0 = performance.now();
    const k0 = T.realizeTotals();
    const x = T.tensor(randomTokens(B * Tn, CFG.vocabSize, rng), { dtype: 'i32', shape: [B, Tn], device });
    const y = T.tensor(randomTokens(B * Tn, CFG.vocabSize, rng), { dtype: 'i32', shape: [B, Tn], device });
    let loss;
    try {
      loss = step(x, y);
    } catch (e) {
      if (step === stepFn || s > 0) throw e;
      jitNote = `not jitted (the jitted step threw: ${String(e?.message ?? e)})`;
      step = stepFn;
      loss = step(x, y);
    }
    const lossValue = rt.synchronous ? loss.itemSync() : await loss.item();
    const dt = performance.now() - t0;
    const k1 = T.realizeTotals();
    const last = T.lastRealizeStats();
    perStep.push({
      ms: dt,
      kernels: k1.kernels - k0.kernels,
      realizes: k1.realizes - k0.realizes,
      compiled_last_realize: last.compiled,
      arena_bytes: last.arenaBytes,
      kinds: last.kinds,
    });
    losses.push(lossValue);
    for (const t of [x, y, loss]) t.dispose?.();
    if (s >= warmup) times.push(dt);
  }
  const measured = perStep.slice(warmup);
  const med = median(times);
  return {
    peer: 'tessera',
    device,
    runtime,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    jit: jitNote,
    config: CFG,
    batch: BATCH,
    params: nParams,
    optimizer: `AdamW(lr=${OPT.lr}, betas=(${OPT.betas}), weightDecay=${OPT.weightDecay}), clipGradNorm(${GRAD_CLIP})`,
    warmup,
    steps,
    ms_median: med,
    ms_best: Math.min(...times),
    ms_steps: times,
    ms_first_step: perStep[0].ms,
    tokens_per_s: (B * Tn) / (med / 1e3),
    kernels_per_step: median(measured.map((p) => p.kernels)),
    realizes_per_step: median(measured.map((p) => p.realizes)),
    compiled_per_step: median(measured.map((p) => p.compiled_last_realize)),
    compiled_first_steps: perStep.slice(0, warmup).map((p) => p.compiled_last_realize),
    kinds: measured.at(-1)?.kinds,
    arena_bytes: measured.at(-1)?.arena_bytes,
    loss_first: losses[0],
    loss_last: losses.at(-1),
  };
}

async function worker() {
  try {
    if (args.worker !== 'tessera') throw new Error(`unknown worker ${args.worker}`);
    console.log(JSON.stringify(await workerTessera()));
  } catch (e) {
    console.log(JSON.stringify({ peer: args.worker, error: String(e?.stack ?? e) }));
    process.exitCode = 1;
  }
}

async function main() {
  const buildAtStart = tesseraBuildInfo();
  const threads = Number(args.threads ?? 2);
  const warmup = Number(args.warmup ?? 3);
  const steps = Number(args.steps ?? 20);
  const peers = args.peers ? String(args.peers).split(',') : GPT_PEERS;
  const quiet = { retries: Number(args.retries ?? 2), threshold: Number(args['busy-threshold'] ?? 0.25) };
  for (const p of peers)
    if (!GPT_PEERS.includes(p)) throw new Error(`unknown peer ${p} (expected ${GPT_PEERS.join(', ')})`);

  let tess = null;
  const results = [];
  for (const peer of peers) {
    let r;
    if (peer === 'tessera') {
      const probe = probeTesseraDevice();
      if (!probe.ok) throw new Error(`cannot load Tessera: ${probe.error}\n${probe.stderr}`);
      tess = probe.result;
      const slow = tess.runtime === 'interp';
      const w = slow ? Number(args['interp-warmup'] ?? 2) : warmup;
      const s = slow ? Number(args['interp-steps'] ?? 5) : steps;
      console.log(`Tessera device: ${tess.device} (${tess.note})`);
      if (slow)
        console.log(
          `  interp is the slow reference runtime: Tessera capped at ${w} warm-up + ${s} measured steps (--interp-warmup, --interp-steps)`,
        );
      r = runJsonChildQuiet(
        process.execPath,
        [SELF, '--worker', 'tessera', '--warmup', String(w), '--steps', String(s)],
        { env: { ...process.env, TESSERA_THREADS: String(threads) } },
        quiet,
      );
      if (r.ok) r.result.threads = threads;
    } else {
      const py = [
        join(BENCH_DIR, 'peers', 'torch_gpt.py'),
        '--threads',
        String(threads),
        '--warmup',
        String(warmup),
        '--steps',
        String(steps),
      ];
      if (peer === 'pytorch-foreach') py.push('--foreach');
      r = runJsonChildQuiet(PYTHON, py, { env: torchEnv(threads) }, quiet);
    }
    const busy =
      r.foreign_cores == null
        ? ''
        : `  [other processes: ${r.foreign_cores.toFixed(2)} cores${r.attempts > 1 ? `, ${r.attempts} attempts` : ''}]`;
    if (r.ok) {
      results.push({ ...r.result, foreign_cores: r.foreign_cores, attempts: r.attempts });
      const x = r.result;
      console.log(
        `  ${peer.padEnd(15)} ${fmt(x.ms_median)} ms/step median, ${fmt(x.ms_best)} best, ${fmt(x.tokens_per_s, 0)} tokens/s, loss ${fmt(x.loss_first, 3)} -> ${fmt(x.loss_last, 3)}, ${x.params} params${x.peer === 'tessera' ? `, ${x.kernels_per_step} kernels/step, ${x.compiled_per_step} compiled/step, ${x.jit}` : ''}${busy}`,
      );
    } else {
      results.push({ peer, error: r.error, stderr: r.stderr, foreign_cores: r.foreign_cores });
      console.log(`  ${peer.padEnd(15)} FAILED: ${r.error}\n${r.stderr}`);
    }
  }
  const params = new Set(results.filter((r) => r.params).map((r) => r.params));
  if (params.size > 1)
    console.log(`WARNING: parameter counts differ between peers: ${[...params].join(' vs ')}`);
  const res = {
    kind: 'gpt_step',
    date: new Date().toISOString(),
    command: commandLine('gpt_step.mjs'),
    machine: machineInfo(),
    tessera: tess,
    tessera_build: { ...tesseraBuildInfo(), dist_built_at_start: buildAtStart?.dist_built ?? null },
    threads,
    warmup,
    steps,
    busy_threshold: quiet.threshold,
    python: PYTHON,
    results,
  };
  const buildNow = tesseraBuildInfo();
  if (buildNow.dist_built !== buildAtStart.dist_built)
    console.log(
      `WARNING: dist/ was rebuilt during this run (${buildAtStart.dist_built} -> ${buildNow.dist_built}): Tessera figures may mix two builds`,
    );
  const file = writeResult('gpt_step.json', res);
  console.log('\n' + gptTable(res, readResult('peak.json')));
  console.log(`\nwrote ${file}`);
}

if (args.worker) await worker();
else await main();
