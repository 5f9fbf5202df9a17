#!/usr/bin/env node
/**
 * Tessera side of bench/train_memory.mjs: peak memory of a few nanoGPT training steps, one configuration
 * per process (the PyTorch side is bench/peers/torch_train_memory.py; same model, tokens and step).
 *
 *   TESSERA_THREADS=2 node bench/peers/tessera_train_memory.mjs --layers 6 --heads 6 --embd 384 \
 *       --block 256 --batch 64 [--steps 3] [--precision f32|bf16] [--checkpointing] [--accum k] [--no-jit]
 *
 * Model: `GPT` from dist/nn ({ vocabSize, blockSize, nLayer, nHead, nEmbd, dropout: 0, bias: true }). A step
 * (as bench/gpt_step.mjs and `tessera train`): forward with targets, backward, clipGradNorm(1.0),
 * `opt.step({ realize: [loss, norm] })` (AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1), jitted
 * (`jit(step)(x, y)`: call 1 traces, call 2 captures, call 3 is the first replay), so --steps is at least 3
 * when jitted: the peak includes a replay, the steady state of training (--no-jit: plain calls).
 *
 * Features (a feature missing from dist/ makes the run fail with an error saying so, shown as "n/a" in
 * the tables, never a silent fallback):
 *   --precision bf16  forward and loss inside `autocast({ dtype: 'bf16' }, ...)` (dist/index.js)
 *   --checkpointing   `model.checkpointing = true` on the GPT (every block through `checkpoint()`)
 *   --accum k         k micro-batches of batch/k. With `GradientAccumulator` in dist/optim: a jitted
 *                     micro-step (`acc.accumulate(loss)`) k - 1 times, a jitted last micro-step
 *                     (`acc.finish(loss)`, clip, `opt.step`), then `acc.reset()`. Without it, by hand
 *                     inside the one jitted step: `loss.div(k).backward()` per micro-batch, the running
 *                     gradient sums realized between micro-batches (so one micro-batch's activations are
 *                     live at a time) and p.grad cleared (backward's own accumulation into a realized
 *                     p.grad fails: it disposes the old gradient the lazy sum still reads).
 *
 * Memory figures (bytes): baseline_rss = VmRSS after Tessera is loaded and the device chosen, before the
 * model is created; peak_rss = VmHWM (the process's peak resident set) at the end; tessera_stats =
 * Tessera's own `memory.stats()` per device { current, peak, byOwner, peakByOwner }.
 *
 * Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { importTessera, parseArgs, pickDevice } from '../lib/common.mjs';
import { makeStepTokens } from '../lib/tokens.mjs';

const args = parseArgs();

function procStatus() {
  const out = {};
  for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmHWM|VmPeak|VmSize):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
}

const makeTokens = makeStepTokens;

async function run() {
  const num = (k, d) => (args[k] === undefined ? d : Number(args[k]));
  const cfgArgs = {
    layers: num('layers', 6),
    heads: num('heads', 6),
    embd: num('embd', 384),
    block: num('block', 256),
    vocab: num('vocab', 65),
  };
  const batch = num('batch', 8);
  const k = num('accum', 1);
  const precision = args.precision ?? 'f32';
  const checkpointing = !!args.checkpointing;
  const useJit = !args['no-jit'];
  const steps = useJit ? Math.max(3, num('steps', 3)) : num('steps', 3);
  if (batch % k) throw new Error(`--batch ${batch} is not a multiple of --accum ${k}`);
  if (!['f32', 'bf16'].includes(precision)) throw new Error(`--precision ${precision}: expected f32 or bf16`);

  const T = await importTessera();
  const { GPT } = await importTessera('nn/index.js');
  const optim = await importTessera('optim/index.js');
  const { AdamW, clipGradNorm } = optim;
  const GradientAccumulator = optim.GradientAccumulator ?? T.GradientAccumulator;
  const { device, runtime, note } = pickDevice(T);
  T.setDefaultDevice(device);
  const rt = T.getRuntime(device);
  const features = {
    autocast: typeof T.autocast === 'function',
    checkpoint: typeof T.checkpoint === 'function',
    GradientAccumulator: typeof GradientAccumulator === 'function',
    memory_stats: typeof T.memory?.stats === 'function',
  };
  if (precision === 'bf16' && !features.autocast)
    throw new Error('--precision bf16: dist/index.js exports no autocast (not implemented in this build)');
  const base = procStatus();
  const t0 = performance.now();

  T.manualSeed(1337);
  const config = {
    vocabSize: cfgArgs.vocab,
    blockSize: cfgArgs.block,
    nLayer: cfgArgs.layers,
    nHead: cfgArgs.heads,
    nEmbd: cfgArgs.embd,
    dropout: 0,
    bias: true,
    ...(checkpointing ? { checkpointing: true } : {}),
  };
  const model = new GPT(config);
  features.gpt_checkpointing = 'checkpointing' in model;
  if (checkpointing) {
    if (!features.gpt_checkpointing)
      throw new Error('--checkpointing: GPT has no `checkpointing` switch in this build (activation checkpointing not implemented)');
    model.checkpointing = true; // every block through checkpoint()
  }
  model.train?.();
  const params = model.parameters();
  const nParams = params.reduce((a, p) => a + p.numel, 0);
  const opt = new AdamW(params, { lr: 1e-3, betas: [0.9, 0.99], weightDecay: 0.1 });
  const afterModel = procStatus();
  const mb = batch / k;
  const Tn = cfgArgs.block;

  const forwardLoss = (x, y) => {
    const run = () => model.forward(x, y);
    return precision === 'bf16' ? T.autocast({ dtype: 'bf16' }, run) : run();
  };
  let jit = null;
  if (useJit) jit = (await importTessera('jit/index.js')).jit;
  const J = (fn) => (useJit ? jit(fn) : fn);
  const read = (t) => (rt.synchronous ? t.itemSync() : t.item());
  const data = makeTokens(steps, batch * Tn, cfgArgs.vocab, num('data-seed', 1337));
  const micro = (s, m) => {
    const a = (h) => T.tensor(h.subarray(m * mb * Tn, (m + 1) * mb * Tn), { dtype: 'i32', shape: [mb, Tn], device });
    return [a(data.steps[s].x), a(data.steps[s].y)];
  };

  let trainStep; // (s) => mean loss of step s
  let accumulation = null;
  let jitted = [];
  if (k > 1 && GradientAccumulator) {
    // Tessera's own accumulation: k - 1 micro-steps into fixed f32 buffers, then the last one and the update.
    accumulation = 'GradientAccumulator (accumulate k - 1 micro-batches, finish + step on the last, reset)';
    const acc = new GradientAccumulator(params, k);
    const microStep = J((x, y) => {
      const { logits, loss } = forwardLoss(x, y);
      acc.accumulate(loss, { realize: [loss] });
      logits.dispose();
      return loss;
    });
    const lastStep = J((x, y) => {
      const { logits, loss } = forwardLoss(x, y);
      const sums = acc.finish(loss);
      const norm = clipGradNorm(model.parameters(), 1.0);
      opt.step({ realize: [loss, norm, ...sums] });
      norm.dispose();
      logits.dispose();
      return loss;
    });
    jitted = [microStep, lastStep];
    trainStep = async (s) => {
      let total = 0;
      for (let m = 0; m < k; m++) {
        const [x, y] = micro(s, m);
        const loss = (m < k - 1 ? microStep : lastStep)(x, y);
        total += (await read(loss)) / k;
        x.dispose();
        y.dispose();
        loss.dispose();
      }
      acc.reset();
      return total;
    };
  } else {
    if (k > 1) accumulation = 'by hand (no GradientAccumulator in dist): loss.div(k).backward() per micro-batch, gradient sums realized between micro-batches';
    // One training step; under jit only its launches are replayed.
    const stepFn = (x, y) => {
      let total = null;
      let acc = null; // gradients of the micro-batches so far (realized), kept off p.grad (see below)
      for (let m = 0; m < k; m++) {
        const xm = k === 1 ? x : x.narrow(0, m * mb, mb);
        const ym = k === 1 ? y : y.narrow(0, m * mb, mb);
        const { logits, loss } = forwardLoss(xm, ym);
        const scaled = k === 1 ? loss : loss.div(k);
        scaled.backward();
        const part = scaled.detach();
        total = total ? total.add(part) : part;
        if (k > 1) {
          // backward() adds into an existing p.grad but disposes the old gradient while the lazy sum still
          // reads it, which fails once that gradient was realized (DisposedError); so the running sum is
          // kept here and p.grad cleared before the next micro-batch.
          const sum = params.map((p, i) => (acc && acc[i] ? (p.grad ? acc[i].add(p.grad) : acc[i]) : p.grad));
          if (m < k - 1) {
            // finish this micro-batch (gradient sums, loss) before the next one's activations exist
            T.realize(total, ...sum.filter(Boolean));
            params.forEach((p, i) => {
              if (p.grad && p.grad !== sum[i]) p.grad.dispose();
              p.grad = null;
            });
            if (acc) acc.forEach((g, i) => g && g !== sum[i] && g.dispose());
            acc = sum;
          } else {
            params.forEach((p, i) => {
              p.grad = sum[i];
            });
          }
        }
        logits.dispose();
      }
      const norm = clipGradNorm(model.parameters(), 1.0);
      opt.step({ realize: [total, norm] });
      norm.dispose();
      return total;
    };
    const step = J(stepFn);
    jitted = [step];
    trainStep = async (s) => {
      const x = T.tensor(data.steps[s].x, { dtype: 'i32', shape: [batch, Tn], device });
      const y = T.tensor(data.steps[s].y, { dtype: 'i32', shape: [batch, Tn], device });
      const loss = step(x, y);
      const v = await read(loss);
      x.dispose();
      y.dispose();
      loss.dispose();
      return v;
    };
  }

  const losses = [];
  const times = [];
  for (let s = 0; s < steps; s++) {
    const ts = performance.now();
    losses.push(await trainStep(s));
    times.push(performance.now() - ts);
  }
  const end = procStatus();
  const stats = features.memory_stats ? T.memory.stats() : null;
  const last = T.lastRealizeStats?.();
  return {
    side: 'tessera',
    device,
    runtime,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    features_in_dist: features,
    config,
    batch,
    accum: k,
    micro_batch: mb,
    accumulation,
    precision,
    checkpointing,
    jit: useJit,
    jit_stats: useJit ? jitted.map((f) => ({ ...f.stats })) : null,
    params: nParams,
    steps,
    baseline_rss: base.VmRSS,
    after_model_rss: afterModel.VmRSS,
    peak_rss: end.VmHWM,
    end_rss: end.VmRSS,
    tessera_stats: stats,
    last_realize_arena_bytes: last?.arenaBytes ?? null,
    ms_steps: times,
    wall_s: (performance.now() - t0) / 1e3,
    losses,
    data_checksum: data.checksum,
  };
}

try {
  console.log(JSON.stringify(await run()));
} catch (e) {
  console.log(JSON.stringify({ side: 'tessera', error: String(e?.stack ?? e) }));
  process.exitCode = 1;
}
