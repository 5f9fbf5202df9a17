// GradientAccumulator: k micro-batches of size b (mean losses) give the gradients and the update of one
// batch of size k·b (|Δ| <= 1e-5 + 1e-5·|x|, f32 summation order differs), eagerly and with jitted
// micro/last steps as in the TSDoc example; reset() zeroes the buffers between updates; device memory
// after each micro-step is constant (buffers allocated once, nothing grows with k); misuse errors.
// Small and device-agnostic (interp, cpu and webgpu projects).
import { describe, expect, it } from 'vitest';
import { getDefaultDevice, memory, tensor, ValueError, type Tensor } from '../../src/index.js';
import { jit } from '../../src/jit/jit.js';
import * as F from '../../src/nn/functional.js';
import { Linear } from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import { AdamW, GradientAccumulator, SGD, type Optimizer } from '../../src/optim/index.js';
import { expectClose } from '../helpers/check.js';
import { randArray } from '../helpers/ref.js';

const IN = 6;
const HID = 8;
const OUT = 3;
const K = 4;
const MB = 3; // micro-batch rows
const TOL = { atol: 1e-5, rtol: 1e-5 };

class MLP extends Module {
  readonly l1: Linear;
  readonly l2: Linear;
  constructor() {
    super();
    this.l1 = this.registerModule('l1', new Linear(IN, HID));
    this.l2 = this.registerModule('l2', new Linear(HID, OUT));
    this.parameters().forEach((p, i) => p.assign(tensor(Float32Array.from(randArray(p.numel, 100 + i, -0.6, 0.6)), { shape: p.shape, dtype: 'f32' })).realize());
  }
  forward(x: Tensor): Tensor {
    return this.l2.forward(this.l1.forward(x).tanh());
  }
}

/** Rows [from, from + n) of update `u`'s data (each update has its own k·b rows). */
function rows(u: number, from: number, n: number): [Tensor, Tensor] {
  const all = K * MB;
  const x = randArray(all * IN, 1000 + u).subarray(from * IN, (from + n) * IN);
  const y = randArray(all * OUT, 2000 + u).subarray(from * OUT, (from + n) * OUT);
  return [tensor(Float32Array.from(x), { shape: [n, IN], dtype: 'f32' }), tensor(Float32Array.from(y), { shape: [n, OUT], dtype: 'f32' })];
}
const microBatch = (u: number, i: number) => rows(u, i * MB, MB);
const bigBatch = (u: number) => rows(u, 0, K * MB);
const lossOf = (m: MLP, x: Tensor, y: Tensor) => F.mseLoss(m.forward(x), y);

const makeOpt = (kind: 'SGD' | 'AdamW', m: MLP): Optimizer => (kind === 'SGD' ? new SGD(m.parameters(), { lr: 0.2, momentum: 0.9 }) : new AdamW(m.parameters(), { lr: 0.02 }));

const values = (m: MLP) => m.parameters().map((p) => Float32Array.from(p.dataSync()));

describe('GradientAccumulator', () => {
  for (const kind of ['SGD', 'AdamW'] as const) {
    it(`${kind}: k=${K} micro-batches of ${MB} give the gradients and parameters of one batch of ${K * MB}, update after update (reset between)`, () => {
      const big = new MLP();
      const bigOpt = makeOpt(kind, big);
      const acc = new MLP();
      const accOpt = makeOpt(kind, acc);
      const accumulator = new GradientAccumulator(acc.parameters(), K);
      for (let u = 0; u < 3; u++) {
        const [X, Y] = bigBatch(u);
        const bigLoss = lossOf(big, X, Y);
        bigLoss.backward();
        const bigGrads = big.parameters().map((p) => Float32Array.from(p.grad!.dataSync()));
        bigOpt.step({ realize: [bigLoss] });

        const micro: number[] = [];
        for (let i = 0; i < K - 1; i++) {
          const [x, y] = microBatch(u, i);
          const l = lossOf(acc, x, y);
          accumulator.accumulate(l, { realize: [l] });
          expect(acc.parameters().every((p) => p.grad === null)).toBe(true);
          micro.push(l.itemSync());
        }
        const [x, y] = microBatch(u, K - 1);
        const last = lossOf(acc, x, y);
        const sums = accumulator.finish(last);
        // p.grad is now the gradient of the mean over all k·b rows.
        acc.parameters().forEach((p, i) => expectClose(p.grad!.dataSync(), bigGrads[i]!, TOL, `update ${u}: grad ${i}`));
        accOpt.step({ realize: [last, ...sums] });
        accumulator.reset();
        micro.push(last.itemSync());
        // The mean of the micro-batch losses is the big batch's loss.
        expectClose([micro.reduce((a, b) => a + b, 0) / K], [bigLoss.itemSync()], TOL, `update ${u}: loss`);
        const vb = values(big);
        values(acc).forEach((v, i) => expectClose(v, vb[i]!, TOL, `update ${u}: param ${i}`));
      }
      // The models did train (compare against a fresh one).
      expect(Array.from(values(big)[0]!)).not.toEqual(Array.from(values(new MLP())[0]!));
    });
  }

  it('without reset() the next update double-counts the previous gradients (the buffers persist)', () => {
    const a = new MLP();
    const optA = new SGD(a.parameters(), { lr: 0.2 });
    const accA = new GradientAccumulator(a.parameters(), K);
    const b = new MLP();
    const optB = new SGD(b.parameters(), { lr: 0.2 });
    const accB = new GradientAccumulator(b.parameters(), K);
    for (let u = 0; u < 2; u++) {
      for (const [m, opt, acc, reset] of [
        [a, optA, accA, true],
        [b, optB, accB, false],
      ] as const) {
        for (let i = 0; i < K - 1; i++) acc.accumulate(lossOf(m, ...microBatch(u, i)));
        opt.step({ realize: acc.finish(lossOf(m, ...microBatch(u, K - 1))) });
        if (reset) acc.reset();
      }
    }
    const va = values(a);
    const vb = values(b);
    expect(Math.max(...va[0]!.map((v, i) => Math.abs(v - vb[0]![i]!)))).toBeGreaterThan(1e-3);
  });

  it('jitted micro and last steps (the TSDoc example) equal the big batch, replaying after two traces', () => {
    const big = new MLP();
    const bigOpt = new AdamW(big.parameters(), { lr: 0.02 });
    const model = new MLP();
    const opt = new AdamW(model.parameters(), { lr: 0.02 });
    const acc = new GradientAccumulator(model.parameters(), K);
    const micro = jit((x: Tensor, y: Tensor) => {
      const loss = lossOf(model, x, y);
      acc.accumulate(loss, { realize: [loss] });
      return loss;
    });
    const last = jit((x: Tensor, y: Tensor) => {
      const loss = lossOf(model, x, y);
      opt.step({ realize: [loss, ...acc.finish(loss)] });
      return loss;
    });
    const updates = 4;
    for (let u = 0; u < updates; u++) {
      const bigLoss = lossOf(big, ...bigBatch(u));
      bigLoss.backward();
      bigOpt.step({ realize: [bigLoss] });
      let sum = 0;
      for (let i = 0; i < K - 1; i++) sum += micro(...microBatch(u, i)).itemSync();
      sum += last(...microBatch(u, K - 1)).itemSync();
      acc.reset();
      expectClose([sum / K], [bigLoss.itemSync()], TOL, `update ${u}: loss`);
      const vb = values(big);
      values(model).forEach((v, i) => expectClose(v, vb[i]!, TOL, `update ${u}: param ${i}`));
    }
    expect(micro.stats).toMatchObject({ traced: 2, replayed: updates * (K - 1) - 2, signatures: 1 });
    expect(last.stats).toMatchObject({ traced: 2, replayed: updates - 2, signatures: 1 });
  });

  it('memory does not grow with k: device memory after every micro-step is the same', () => {
    const device = getDefaultDevice();
    const model = new MLP();
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const acc = new GradientAccumulator(model.parameters(), 12);
    const current = () => memory.stats()[device]!.current;
    const after: number[] = [];
    // Update 0 is a warm-up (the first micro-step allocates the accumulation buffers, the first step the
    // optimizer state); during updates 1 and 2 nothing may be retained per micro-step.
    for (let u = 0; u < 3; u++) {
      for (let i = 0; i < 11; i++) {
        const [x, y] = microBatch(u, i % K);
        const l = lossOf(model, x, y);
        acc.accumulate(l, { realize: [l] });
        for (const t of [x, y, l]) t.dispose();
        if (u > 0) after.push(current());
      }
      const [x, y] = microBatch(u, 0);
      const l = lossOf(model, x, y);
      opt.step({ realize: [l, ...acc.finish(l)] });
      acc.reset();
      for (const t of [x, y, l]) t.dispose();
    }
    expect(after).toHaveLength(22);
    expect(new Set(after)).toEqual(new Set([after[0]]));
    expect(memory.stats()[device]!.byOwner.gradient).toBeGreaterThanOrEqual(model.numParameters() * 4);
  });

  it('errors: a parameter that already has a gradient, bad steps, no parameters', () => {
    const model = new MLP();
    const acc = new GradientAccumulator(model.parameters(), 2);
    const [x, y] = microBatch(0, 0);
    lossOf(model, x, y).backward();
    expect(() => acc.accumulate(lossOf(model, x, y))).toThrow(ValueError);
    expect(() => acc.finish(lossOf(model, x, y))).toThrow(ValueError);
    for (const bad of [0, -1, 1.5, NaN]) expect(() => new GradientAccumulator(model.parameters(), bad)).toThrow(ValueError);
    expect(() => new GradientAccumulator([], 2)).toThrow(ValueError);
    // reset() before any accumulation is harmless.
    expect(() => new GradientAccumulator(model.parameters(), 2).reset()).not.toThrow();
  });
});
