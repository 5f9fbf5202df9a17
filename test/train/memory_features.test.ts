// The memory-saving training features end to end on a small GPT (vocab 65, block 32, width 64, batch 4,
// a fixed token stream), on the native CPU backend:
//  (a) bf16 autocast tracks the f32 loss curve (|Δloss| < 0.02 at every one of 30 AdamW steps), and so
//      does f16 autocast with a GradScaler; all three curves decrease;
//  (b) activation checkpointing gives the same losses (|Δ| <= 1e-5) and gradients (|Δ| <= 1e-6 + 1e-4·|g|)
//      over several steps, and a lower activation peak for a 4-layer model;
//  (c) gradient accumulation (k = 4 micro-batches of 4) equals the batch of 16 after 3 AdamW updates;
//  (d) no leaks: jitted and plain training steps (forward, backward, clipGradNorm, AdamW) return to the
//      same device memory after every step;
//  (e) memory owners (parameter, optimizer, activation) and `memory.snapshot(path)`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/runtime/node_devices.js';
import { autocast, manualSeed, memory, tensor, type Tensor } from '../../src/index.js';
import { jit } from '../../src/jit/jit.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { AdamW, clipGradNorm, GradientAccumulator, GradScaler, SGD } from '../../src/optim/index.js';
import { getDefaultDevice, setDefaultDevice } from '../../src/runtime/registry.js';
import { expectClose } from '../helpers/check.js';

const DEVICE = 'cpu';
const V = 65;
const T = 32;
const B = 4;
const cfg = (nLayer = 2): GPTConfig => ({ vocabSize: V, blockSize: T, nLayer, nHead: 4, nEmbd: 64 });

// A fixed token stream with structure to learn: a repeated text, one token per character.
const TEXT = `It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was
the season of Darkness, it was the spring of hope, it was the winter of despair. `.repeat(3);
const STREAM = Int32Array.from(TEXT, (c) => c.charCodeAt(0) % V);

/** Batch `i`: `rows` sequences (inputs and next-token targets) at pseudo-random offsets, deterministic. */
function batch(i: number, rows = B, first = 0): [Tensor, Tensor] {
  const x = new Int32Array(rows * T);
  const y = new Int32Array(rows * T);
  for (let r = 0; r < rows; r++) {
    let h = (Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(first + r + 1, 0x85ebca6b)) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    const start = ((h ^ (h >>> 13)) >>> 0) % (STREAM.length - T - 1);
    for (let t = 0; t < T; t++) {
      x[r * T + t] = STREAM[start + t]!;
      y[r * T + t] = STREAM[start + t + 1]!;
    }
  }
  return [tensor(x, { dtype: 'i32', shape: [rows, T] }), tensor(y, { dtype: 'i32', shape: [rows, T] })];
}

/** A GPT with the same initial weights for the same seed. */
function gpt(seed: number, nLayer = 2): GPT {
  manualSeed(seed);
  return new GPT(cfg(nLayer));
}

const cpuStats = () => memory.stats()[DEVICE]!;
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

let prevDevice = '';
beforeAll(() => {
  prevDevice = getDefaultDevice();
  setDefaultDevice(DEVICE);
});
afterAll(() => setDefaultDevice(prevDevice));

describe('memory-saving training features on a small GPT (cpu)', () => {
  it('(e) owners: parameter bytes, AdamW moments, activations at the peak; snapshot(path) writes sorted JSON', () => {
    const before = cpuStats()?.byOwner ?? { parameter: 0, optimizer: 0 };
    const model = gpt(1);
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const paramBytes = model.numParameters() * 4;
    for (let s = 0; s < 2; s++) {
      memory.resetPeak();
      const [x, y] = batch(s);
      const { loss } = model.forward(x, y);
      loss!.backward();
      opt.step({ realize: [loss!] });
      for (const t of [x, y, loss!]) t.dispose();
    }
    const st = cpuStats();
    expect(st.byOwner.parameter - before.parameter).toBe(paramBytes);
    // exp_avg and exp_avg_sq per parameter (plus 0-d step counts and the learning rate).
    const optBytes = st.byOwner.optimizer - before.optimizer;
    expect(optBytes).toBeGreaterThanOrEqual(2 * paramBytes);
    expect(optBytes).toBeLessThan(2 * paramBytes + 4096);
    expect(st.peakByOwner.activation).toBeGreaterThan(0);
    expect(st.peak).toBeGreaterThanOrEqual(st.current);

    const dir = mkdtempSync(join(tmpdir(), 'tessera-snap-'));
    try {
      const path = join(dir, 'snap.json');
      const ret = memory.snapshot(path);
      const snap = JSON.parse(readFileSync(path, 'utf8')) as ReturnType<typeof memory.snapshot>;
      expect(snap.format).toBe('tessera-memory-snapshot');
      expect(snap.version).toBe(1);
      expect(ret.format).toBe('tessera-memory-snapshot');
      const bytes = snap.allocations.map((a) => a.bytes);
      expect(bytes).toEqual([...bytes].sort((a, b) => b - a));
      const cpu = snap.allocations.filter((a) => a.device === DEVICE);
      // The file is consistent with itself: per-owner totals are the sums of the live allocations.
      for (const owner of ['parameter', 'optimizer', 'gradient', 'activation'] as const) {
        expect(cpu.filter((a) => a.owner === owner).reduce((s, a) => s + a.bytes, 0), owner).toBe(snap.devices[DEVICE]!.byOwner[owner]);
      }
      expect(cpu.reduce((s, a) => s + a.bytes, 0)).toBe(snap.devices[DEVICE]!.current);
      // The largest parameter allocations are the MLP weights (4C × C and C × 4C, f32).
      const largestParam = cpu.find((a) => a.owner === 'parameter')!;
      expect(largestParam.bytes).toBe(256 * 64 * 4);
      expect(largestParam.dtype).toBe('f32');
      expect(largestParam.shape.reduce((a, b) => a * b, 1)).toBe(256 * 64);
      expect(largestParam.label).toMatch(/weight$/);
      // AdamW's moments are labelled optimizer allocations of the parameters' sizes.
      expect(cpu.filter((a) => a.owner === 'optimizer' && a.bytes === 256 * 64 * 4).length).toBeGreaterThanOrEqual(2 * 2 * 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    opt.dispose();
    model.dispose();
  });

  it('(a) bf16 autocast and f16 autocast + GradScaler track the f32 loss curve over 30 AdamW steps', () => {
    const STEPS = 30;
    const run = (mode: 'f32' | 'bf16' | 'f16') => {
      const model = gpt(2);
      const opt = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0 });
      const scaler = mode === 'f16' ? new GradScaler({ initScale: 2 ** 12, growthInterval: 10 }) : undefined;
      const losses: number[] = [];
      for (let s = 0; s < STEPS; s++) {
        const [x, y] = batch(s);
        const fwd = () => model.forward(x, y).loss!;
        const loss = mode === 'f32' ? fwd() : autocast({ dtype: mode }, fwd);
        expect(loss.dtype).toBe('f32');
        if (scaler) {
          scaler.scale(loss).backward();
          scaler.step(opt, { realize: [loss] });
        } else {
          loss.backward();
          opt.step({ realize: [loss] });
        }
        losses.push(loss.itemSync());
        for (const t of [x, y, loss]) t.dispose();
      }
      const state = scaler?.state(DEVICE);
      scaler?.dispose();
      opt.dispose();
      model.dispose();
      return { losses, state };
    };
    const f32 = run('f32').losses;
    const bf16 = run('bf16').losses;
    const f16 = run('f16');
    const dB = Math.max(...bf16.map((l, i) => Math.abs(l - f32[i]!)));
    const dH = Math.max(...f16.losses.map((l, i) => Math.abs(l - f32[i]!)));
    console.log(`f32 ${f32[0]!.toFixed(4)} → ${f32.at(-1)!.toFixed(4)}; max |Δ| bf16 ${dB.toFixed(5)}, f16 ${dH.toFixed(5)}; scaler ${JSON.stringify(f16.state)}`);
    expect(dB).toBeLessThan(0.02);
    expect(dH).toBeLessThan(0.02);
    for (const curve of [f32, bf16, f16.losses]) {
      expect(curve.every(Number.isFinite)).toBe(true);
      const head = curve.slice(0, 3).reduce((a, b) => a + b) / 3;
      const tail = curve.slice(-3).reduce((a, b) => a + b) / 3;
      expect(tail).toBeLessThan(head - 0.3);
    }
    // The low-precision runs are not secretly f32: their curves are not identical to f32's.
    expect(dB).toBeGreaterThan(0);
    expect(f16.state!.skippedSteps).toBe(0);
    expect(f16.state!.scale).toBe(2 ** 12 * 2 ** 3); // grew after steps 10, 20, 30
  });

  it('(b) checkpointing: equal losses and gradients over several steps, lower activation peak (4 layers)', () => {
    const plain = gpt(3);
    const ck = gpt(3);
    ck.checkpointing = true;
    // SGD keeps the two runs' parameters as close as their gradients (AdamW's first steps move every
    // weight by ±lr whatever the gradient's size, which would amplify f32 rounding differences).
    const optP = new SGD(plain.parameters(), { lr: 0.5, momentum: 0.9 });
    const optC = new SGD(ck.parameters(), { lr: 0.5, momentum: 0.9 });
    let worstLoss = 0;
    let worstGrad = 0;
    for (let s = 0; s < 4; s++) {
      const [x, y] = batch(s);
      const lp = plain.forward(x, y).loss!;
      lp.backward();
      optP.step({ realize: [lp], keepGrads: true });
      const lc = ck.forward(x, y).loss!;
      lc.backward();
      optC.step({ realize: [lc], keepGrads: true });
      worstLoss = Math.max(worstLoss, Math.abs(lp.itemSync() - lc.itemSync()));
      expectClose([lc.itemSync()], [lp.itemSync()], { atol: 1e-5, rtol: 0 }, `loss at step ${s}`);
      plain.parameters().forEach((p, i) => {
        const gp = p.grad!.dataSync();
        const gc = ck.parameters()[i]!.grad!.dataSync();
        worstGrad = Math.max(worstGrad, maxAbs(gc, gp));
        expectClose(gc, gp, { atol: 1e-6, rtol: 1e-4 }, `step ${s}: grad of ${plain.namedParameters()[i]![0]}`);
      });
      optP.zeroGrad();
      optC.zeroGrad();
    }
    for (const o of [optP, optC]) o.dispose();
    for (const m of [plain, ck]) m.dispose();

    // Activation peak of one training step of a 4-layer model (after a warm-up step).
    const peak = (checkpointing: boolean): number => {
      const model = gpt(4, 4);
      model.checkpointing = checkpointing;
      const opt = new AdamW(model.parameters(), { lr: 1e-3 });
      let result = 0;
      for (let s = 0; s < 2; s++) {
        const [x, y] = batch(s);
        memory.resetPeak();
        const loss = model.forward(x, y).loss!;
        loss.backward();
        opt.step({ realize: [loss] });
        result = cpuStats().peakByOwner.activation;
        for (const t of [x, y, loss]) t.dispose();
      }
      opt.dispose();
      model.dispose();
      return result;
    };
    const without = peak(false);
    const withCk = peak(true);
    console.log(`max |Δloss| ${worstLoss}, max |Δgrad| ${worstGrad}; activation peak (4 layers): ${without} B plain, ${withCk} B checkpointed (${((100 * withCk) / without).toFixed(1)}%)`);
    expect(withCk).toBeGreaterThan(0);
    expect(withCk).toBeLessThan(without * 0.8);
  });

  it('(c) accumulation over k=4 micro-batches of 4 equals the batch of 16 after 3 AdamW updates', () => {
    const K = 4;
    const big = gpt(5);
    const acc = gpt(5);
    const optBig = new AdamW(big.parameters(), { lr: 3e-3 });
    const optAcc = new AdamW(acc.parameters(), { lr: 3e-3 });
    const accumulator = new GradientAccumulator(acc.parameters(), K);
    for (let u = 0; u < 3; u++) {
      const [X, Y] = batch(u, K * B);
      const lb = big.forward(X, Y).loss!;
      lb.backward();
      optBig.step({ realize: [lb] });
      let sum = 0;
      for (let i = 0; i < K; i++) {
        const [x, y] = batch(u, B, i * B);
        const l = acc.forward(x, y).loss!;
        if (i < K - 1) accumulator.accumulate(l, { realize: [l] });
        else {
          optAcc.step({ realize: [l, ...accumulator.finish(l)] });
          accumulator.reset();
        }
        sum += l.itemSync();
      }
      expectClose([sum / K], [lb.itemSync()], { atol: 1e-5, rtol: 1e-5 }, `update ${u}: mean loss`);
    }
    let worst = 0;
    big.parameters().forEach((p, i) => {
      const a = acc.parameters()[i]!.dataSync();
      worst = Math.max(worst, maxAbs(a, p.dataSync()));
      // AdamW moves each weight by up to ~lr per update; agreement to 1e-5 is far below one update.
      expectClose(a, p.dataSync(), { atol: 1e-5, rtol: 1e-4 }, `param ${big.namedParameters()[i]![0]}`);
    });
    console.log(`accumulation vs big batch: max |Δparam| ${worst}`);
    accumulator.dispose();
    for (const o of [optBig, optAcc]) o.dispose();
    for (const m of [big, acc]) m.dispose();
  });

  it('(d) no leaks: jitted and plain training steps return to the same device memory after every step', () => {
    for (const useJit of [true, false]) {
      const model = gpt(6);
      const opt = new AdamW(model.parameters(), { lr: 1e-3 });
      const body = (x: Tensor, y: Tensor): Tensor[] => {
        const loss = model.forward(x, y).loss!;
        loss.backward();
        const norm = clipGradNorm(model.parameters(), 1.0);
        opt.step({ realize: [loss, norm] });
        return [loss, norm];
      };
      const step = useJit ? jit(body) : body;
      const after: number[] = [];
      for (let s = 0; s < 8; s++) {
        const [x, y] = batch(s);
        const [loss, norm] = step(x, y) as [Tensor, Tensor];
        expect(Number.isFinite(loss.itemSync())).toBe(true);
        expect(norm.itemSync()).toBeGreaterThan(0);
        for (const t of [x, y, loss, norm]) t.dispose();
        after.push(cpuStats().current);
      }
      if (useJit) expect((step as ReturnType<typeof jit>).stats).toMatchObject({ traced: 2, replayed: 6 });
      // Step 1 creates the optimizer state; the jit captures on step 2. From step 3 on: one level.
      expect(after.slice(2), `${useJit ? 'jit' : 'plain'}: ${after.join(', ')}`).toEqual(new Array(6).fill(after[2]));
      if (useJit) (step as ReturnType<typeof jit>).reset();
      opt.dispose();
      model.dispose();
    }
  });
});
