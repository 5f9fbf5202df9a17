#!/usr/bin/env node
/**
 * nanoGPT's "baby GPT on CPU" training step, Tessera side by side with PyTorch eager, in one run:
 *
 *   node bench/gpt_step.mjs [--threads 2] [--warmup 3] [--steps 20] [--peers tessera,tessera-nojit,pytorch,pytorch-foreach]
 *                           [--precision f32|bf16] [--interp-warmup 3] [--interp-steps 5] [--retries 2] [--busy-threshold 0.25]
 *
 * Configuration (nanoGPT README, "baby GPT" on a CPU): 4 layers, 4 heads, n_embd 128, block 64, batch
 * 12, vocab 65 (shakespeare_char), bias, no dropout, weight tying, pre-norm, causal self-attention, tanh
 * GELU, GPT-2 init. Step: forward with targets, backward, clip the global gradient norm at 1.0 (nanoGPT's
 * default grad_clip), AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on every parameter), read the
 * loss.
 *
 * Data and timing boundaries, identical on every side: the input and target tokens of every step are made
 * BEFORE timing, as host integer arrays, by the same xorshift generator and seed on both sides (so every
 * peer trains on the very same tokens; a checksum is recorded). One timed step is: copy that step's host
 * arrays into fresh x and y tensors, run the step, read the loss to the host. Releasing x, y and the loss is
 * timed on both sides too: Tessera disposes them at the end of the step, PyTorch frees them when the names
 * are rebound in the next step (nanoGPT's loop; see torch_gpt.py on why not an explicit `del`).
 *
 *   tessera          jit(step)(x, y): `jit` from dist/jit (call 1 traces, call 2 captures, later calls
 *                    replay the captured kernels in one native call); at least 3 warm-up calls (trace,
 *                    capture, first replay), so every measured step is a replay
 *   tessera-nojit    the same step function called directly: graph building, scheduling and one
 *                    `opt.step({ realize: [loss, norm] })` realize per step
 *   pytorch          bench/peers/torch_gpt.py, eager, torch.set_num_threads(threads), AdamW default (for-loop)
 *   pytorch-foreach  the same with AdamW(foreach=True)
 *
 * Tessera: TESSERA_THREADS=threads; device 'cpu' when registered, else 'interp' (capped to --interp-steps).
 * --warmup and --interp-warmup are at least 3 on every row (jit's trace, capture and first replay), the
 * same on every row so that all train on the same tokens.
 * Reports ms/step (median and best over the measured steps, after the warm-up steps) and tokens/s (from
 * the median), and for Tessera the kernel launches (kernels + buffer copies), runtime calls (on 'cpu' each is one native call), realizes and
 * newly compiled kernels per step (counted on the runtime object: rt.compile / launchMany / launch / copy).
 * Writes bench/results/gpt_step.json.
 *
 * --precision bf16 (default f32): the same step in bf16 mixed precision on every side. Tessera runs the
 * forward (model.forward(x, y): logits and loss) inside `autocast({ dtype: 'bf16' }, ...)` (products read
 * bf16-rounded operands, accumulate in f32, store bf16; norms, softmax and the loss in f32; the backward
 * follows the same casts), jitted or not; PyTorch runs forward + loss inside
 * `torch.autocast(device_type='cpu', dtype=torch.bfloat16)` (its own CPU autocast policy). On both sides
 * the parameters, gradients, clipping and AdamW stay f32 (master weights), exactly as in the f32 step.
 * Writes bench/results/gpt_step_bf16.json instead (the f32 results are left alone); the JSON records
 * `precision` (and the f32 run's JSON says 'f32').
 */
import { join } from 'node:path';
import {
  BENCH_DIR,
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
import { makeStepTokens } from './lib/tokens.mjs';

const args = parseArgs();
const SELF = join(BENCH_DIR, 'gpt_step.mjs');
export const GPT_PEERS = ['tessera', 'tessera-nojit', 'pytorch', 'pytorch-foreach'];
const CFG = { vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true };
const BATCH = 12;
const OPT = { lr: 1e-3, betas: [0.9, 0.99], weightDecay: 0.1 };
const GRAD_CLIP = 1.0;
/** Seed of the token generator; bench/peers/torch_gpt.py gets it as --data-seed and makes the same tokens. */
const DATA_SEED = 1337;
export const PRECISIONS = ['f32', 'bf16'];
/** --precision: 'f32' (default, the original step) or 'bf16' (autocast on the forward, f32 master weights). */
const PRECISION = String(args.precision ?? 'f32');
if (!PRECISIONS.includes(PRECISION))
  throw new Error(`unknown --precision ${PRECISION} (expected ${PRECISIONS.join(' or ')})`);
/** The result file: gpt_step.json for f32 (as before), gpt_step_<precision>.json otherwise. */
const RESULT_FILE = PRECISION === 'f32' ? 'gpt_step.json' : `gpt_step_${PRECISION}.json`;

/** The tokens of every step (bench/lib/tokens.mjs), from this benchmark's data seed. */
const makeTokens = (nSteps, len, vocab, seed = DATA_SEED) => makeStepTokens(nSteps, len, vocab, seed);

/**
 * Count what a runtime is asked to do, by wrapping its methods on the instance: kernels newly compiled
 * (kernel keys `compile` has not seen before, compiled or loaded from the on-disk cache), launches
 * (kernels and buffer copies; a jit replay's copies are launches inside its one `launchMany`), and
 * runtime calls (each launchMany / launch / copy; on 'cpu' each is one native call).
 */
function instrumentRuntime(rt) {
  const c = { compiled: 0, launches: 0, calls: 0 };
  const seen = new Set();
  const wrap = (name, count) => {
    const orig = rt[name];
    if (typeof orig !== 'function') return;
    rt[name] = function (...a) {
      count(...a);
      return orig.apply(this, a);
    };
  };
  wrap('compile', (irs) => {
    for (const ir of irs) {
      if (!seen.has(ir.key)) {
        seen.add(ir.key);
        c.compiled++;
      }
    }
  });
  const many = (ls) => {
    c.launches += ls.length;
    c.calls++;
  };
  wrap('launchMany', many);
  wrap('launchManyAsync', many);
  wrap('launch', () => {
    c.launches++;
    c.calls++;
  });
  wrap('copy', () => {
    c.launches++;
    c.calls++;
  });
  return c;
}

async function workerTessera(useJit) {
  const warmupArg = Number(args.warmup ?? 3);
  const steps = Number(args.steps ?? 20);
  // jit: call 1 traces, call 2 captures, call 3 is the first replay; all of them are warm-up.
  const warmup = useJit ? Math.max(3, warmupArg) : warmupArg;
  const T = await importTessera();
  const { GPT } = await importTessera('nn/index.js');
  const { AdamW, clipGradNorm } = await importTessera('optim/index.js');
  const { device, runtime, note } = pickDevice(T);
  const rt = T.getRuntime(device);
  T.setDefaultDevice(device);
  const count = instrumentRuntime(rt);

  let jit = null;
  if (useJit) {
    const mod = await importTessera('jit/index.js'); // throws (a failed row) when dist/jit is missing
    if (typeof mod.jit !== 'function') throw new Error('dist/jit/index.js exports no jit function');
    jit = mod.jit;
  }

  T.manualSeed(1337);
  const model = new GPT(CFG);
  model.train?.();
  const params = model.parameters();
  const nParams = params.reduce((a, p) => a + p.numel, 0);
  const opt = new AdamW(params, OPT);
  const [B, Tn] = [BATCH, CFG.blockSize];

  // One training step. Jitted, only its launches are replayed; the dispose calls release host handles
  // of the traced calls (the capture keeps the buffers it needs).
  let probe = null; // the dtypes the first (traced or direct) call built, and the parameters'
  // bf16: the forward (logits and loss) under autocast, as `tessera train --precision bf16`; backward,
  // clipping and AdamW outside it, on f32 parameters and gradients.
  const forward = (x, y) =>
    PRECISION === 'f32' ? model.forward(x, y) : T.autocast({ dtype: PRECISION }, () => model.forward(x, y));
  const stepFn = (x, y) => {
    const { logits, loss } = forward(x, y);
    if (probe === null) probe = { logits: logits.dtype, loss: loss.dtype, parameters: params[0].dtype };
    loss.backward();
    const norm = clipGradNorm(model.parameters(), GRAD_CLIP);
    opt.step({ realize: [loss, norm] });
    logits.dispose();
    norm.dispose();
    return loss;
  };
  const step = useJit ? jit(stepFn) : stepFn;

  const data = makeTokens(warmup + steps, B * Tn, CFG.vocabSize);
  const times = [];
  const losses = [];
  const perStep = [];
  for (let s = 0; s < warmup + steps; s++) {
    const { x: xh, y: yh } = data.steps[s];
    const c0 = { ...count };
    const r0 = T.realizeTotals();
    // ---- timed: host tokens -> tensors, step, loss to host, dispose
    const t0 = performance.now();
    const x = T.tensor(xh, { dtype: 'i32', shape: [B, Tn], device });
    const y = T.tensor(yh, { dtype: 'i32', shape: [B, Tn], device });
    const loss = step(x, y);
    const lossValue = rt.synchronous ? loss.itemSync() : await loss.item();
    x.dispose();
    y.dispose();
    loss.dispose();
    const dt = performance.now() - t0;
    // ----
    const r1 = T.realizeTotals();
    perStep.push({
      ms: dt,
      launches: count.launches - c0.launches,
      runtime_calls: count.calls - c0.calls,
      compiled: count.compiled - c0.compiled,
      realizes: r1.realizes - r0.realizes,
      scheduled_kernels: r1.kernels - r0.kernels,
      jit_replayed: useJit ? step.stats.replayed : undefined,
    });
    losses.push(lossValue);
    if (s >= warmup) times.push(dt);
  }
  const measured = perStep.slice(warmup);
  const med = median(times);
  const last = T.lastRealizeStats();
  return {
    peer: useJit ? 'tessera' : 'tessera-nojit',
    label: useJit ? 'Tessera (jit)' : 'Tessera, not jitted',
    device,
    runtime,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    jit: useJit ? 'jit(step)(x, y): measured steps are replays' : 'not jitted: step(x, y) called directly',
    jit_stats: useJit ? { ...step.stats } : null,
    precision: PRECISION,
    autocast: PRECISION === 'f32' ? null : `autocast({ dtype: '${PRECISION}' }, () => model.forward(x, y))`,
    dtypes: probe,
    gemm: rt.gemmInfo ?? null,
    config: CFG,
    batch: BATCH,
    params: nParams,
    optimizer: `AdamW(lr=${OPT.lr}, betas=(${OPT.betas}), weightDecay=${OPT.weightDecay}), clipGradNorm(${GRAD_CLIP})`,
    data: {
      generator: 'xorshift32 (13, 17, 5), token = state % vocab, x then y per step',
      seed: DATA_SEED,
      checksum: data.checksum,
    },
    timed: 'host tokens -> x, y tensors; step; loss to host; dispose x, y, loss',
    warmup,
    warmup_requested: warmupArg,
    steps,
    ms_median: med,
    ms_best: Math.min(...times),
    ms_steps: times,
    ms_warmup_steps: perStep.slice(0, warmup).map((p) => p.ms),
    ms_first_step: perStep[0].ms,
    tokens_per_s: (B * Tn) / (med / 1e3),
    launches_per_step: median(measured.map((p) => p.launches)),
    runtime_calls_per_step: median(measured.map((p) => p.runtime_calls)),
    realizes_per_step: median(measured.map((p) => p.realizes)),
    scheduled_kernels_per_step: median(measured.map((p) => p.scheduled_kernels)),
    compiled_per_step: median(measured.map((p) => p.compiled)),
    compiled_max_measured_step: Math.max(...measured.map((p) => p.compiled)),
    compiled_warmup_steps: perStep.slice(0, warmup).map((p) => p.compiled),
    launches_warmup_steps: perStep.slice(0, warmup).map((p) => p.launches),
    last_realize: { kernels: last.kernels, kinds: last.kinds, arena_bytes: last.arenaBytes },
    losses,
    loss_first: losses[0],
    loss_last: losses.at(-1),
  };
}

async function worker() {
  const peer = args.worker;
  try {
    if (peer !== 'tessera' && peer !== 'tessera-nojit') throw new Error(`unknown worker ${peer}`);
    console.log(JSON.stringify(await workerTessera(peer === 'tessera')));
  } catch (e) {
    console.log(JSON.stringify({ peer, error: String(e?.stack ?? e) }));
    process.exitCode = 1;
  }
}

async function main() {
  const buildAtStart = tesseraBuildInfo();
  const threads = Number(args.threads ?? 2);
  // At least 3 warm-up steps on every row: jit's trace, capture and first replay. The same count on every
  // row keeps the rows on the same tokens (the stream is drawn warm-up steps first).
  const warmup = Math.max(3, Number(args.warmup ?? 3));
  const steps = Number(args.steps ?? 20);
  const peers = args.peers ? String(args.peers).split(',') : GPT_PEERS;
  const quiet = { retries: Number(args.retries ?? 2), threshold: Number(args['busy-threshold'] ?? 0.25) };
  for (const p of peers)
    if (!GPT_PEERS.includes(p)) throw new Error(`unknown peer ${p} (expected ${GPT_PEERS.join(', ')})`);

  let tess = null;
  const results = [];
  for (const peer of peers) {
    let r;
    if (peer.startsWith('tessera')) {
      if (!tess) {
        const probe = probeTesseraDevice();
        if (!probe.ok) throw new Error(`cannot load Tessera: ${probe.error}\n${probe.stderr}`);
        tess = probe.result;
        console.log(`Tessera device: ${tess.device} (${tess.note})`);
      }
      const slow = tess.runtime === 'interp';
      const w = slow ? Math.max(3, Number(args['interp-warmup'] ?? 3)) : warmup;
      const s = slow ? Number(args['interp-steps'] ?? 5) : steps;
      if (slow)
        console.log(
          `  interp is the slow reference runtime: ${peer} capped at ${w} warm-up + ${s} measured steps (--interp-warmup, --interp-steps)`,
        );
      r = runJsonChildQuiet(
        process.execPath,
        [SELF, '--worker', peer, '--warmup', String(w), '--steps', String(s), '--precision', PRECISION],
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
        '--data-seed',
        String(DATA_SEED),
        '--precision',
        PRECISION,
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
      const tessNotes = x.peer.startsWith('tessera')
        ? `, ${x.launches_per_step} launches in ${x.runtime_calls_per_step} runtime call(s)/step, ${x.realizes_per_step} realize(s)/step, ${x.compiled_per_step} compiled/step (warm-up: ${x.compiled_warmup_steps.join(', ')}), ${x.jit}${x.jit_stats ? ` ${JSON.stringify(x.jit_stats)}` : ''}`
        : '';
      // bf16: what the first step built (dtypes; PyTorch: the oneDNN matmul kernels of its first step)
      const precNotes =
        PRECISION === 'f32'
          ? ''
          : `, ${x.precision ?? '?'}: dtypes ${JSON.stringify(x.dtypes)}${x.gemm ? `, gemm ${JSON.stringify(x.gemm)}` : ''}`;
      console.log(
        `  ${peer.padEnd(15)} ${fmt(x.ms_median)} ms/step median, ${fmt(x.ms_best)} best, ${fmt(x.tokens_per_s, 0)} tokens/s, loss ${fmt(x.loss_first, 3)} -> ${fmt(x.loss_last, 3)}, ${x.params} params, data checksum ${x.data?.checksum}${tessNotes}${precNotes}${busy}`,
      );
    } else {
      results.push({ peer, error: r.error, stderr: r.stderr, foreign_cores: r.foreign_cores });
      console.log(`  ${peer.padEnd(15)} FAILED: ${r.error}\n${r.stderr}`);
    }
  }
  const params = new Set(results.filter((r) => r.params).map((r) => r.params));
  if (params.size > 1)
    console.log(`WARNING: parameter counts differ between peers: ${[...params].join(' vs ')}`);
  const sums = new Set(results.filter((r) => r.data).map((r) => r.data.checksum));
  if (sums.size > 1)
    console.log(`WARNING: the peers trained on different tokens (checksums ${[...sums].join(' vs ')})`);
  const res = {
    kind: 'gpt_step',
    date: new Date().toISOString(),
    command: commandLine('gpt_step.mjs'),
    machine: machineInfo(),
    tessera: tess,
    tessera_build: { ...tesseraBuildInfo(), dist_built_at_start: buildAtStart?.dist_built ?? null },
    threads,
    precision: PRECISION,
    warmup,
    steps,
    data_seed: DATA_SEED,
    busy_threshold: quiet.threshold,
    python: PYTHON,
    results,
  };
  const buildNow = tesseraBuildInfo();
  if (buildNow.dist_built !== buildAtStart.dist_built)
    console.log(
      `WARNING: dist/ was rebuilt during this run (${buildAtStart.dist_built} -> ${buildNow.dist_built}): Tessera figures may mix two builds`,
    );
  const file = writeResult(RESULT_FILE, res);
  console.log(
    `\nnanoGPT baby-GPT training step, precision ${PRECISION}${PRECISION === 'f32' ? '' : ' mixed (autocast forward, f32 parameters and AdamW)'}, ${threads} thread(s)`,
  );
  console.log('\n' + gptTable(res, readResult('peak.json')));
  console.log(`\nwrote ${file}`);
}

if (args.worker) await worker();
else await main();
