// GradScaler: dynamic loss scaling run on the device. A step whose gradients overflow (an injected
// infinity in the loss) leaves parameters and optimizer state bit-for-bit unchanged, backs the scale
// off and counts the skip; clean steps update again and grow the scale every `growthInterval` steps;
// the scale never drops below `minScale`; a scaled-then-unscaled update equals the plain update
// (|Δ| <= 1e-6 + 1e-6·|p|, power-of-two scales are exact in f32); it works inside `jit` and with
// unscale → clipGradNorm → step. Small and device-agnostic (interp, cpu and webgpu projects).
import { describe, expect, it } from 'vitest';
import { realize, tensor, ValueError, type Tensor } from '../../src/index.js';
import { jit } from '../../src/jit/jit.js';
import * as F from '../../src/nn/functional.js';
import { Linear } from '../../src/nn/layers.js';
import { AdamW, clipGradNorm, GradScaler, SGD, type Optimizer } from '../../src/optim/index.js';
import { expectClose } from '../helpers/check.js';
import { randArray } from '../helpers/ref.js';

const IN = 4;
const OUT = 3;
const N = 5;
const X = Float32Array.from(randArray(N * IN, 11));
const Y = Float32Array.from(randArray(N * OUT, 12));

/** A Linear layer with fixed weights (the same for every call). */
function model(): Linear {
  const m = new Linear(IN, OUT);
  m.weight.assign(tensor(Float32Array.from(randArray(OUT * IN, 13, -0.5, 0.5)), { shape: [OUT, IN], dtype: 'f32' })).realize();
  m.bias!.assign(tensor(Float32Array.from(randArray(OUT, 14, -0.1, 0.1)), { shape: [OUT], dtype: 'f32' })).realize();
  return m;
}

const xT = () => tensor(X, { shape: [N, IN], dtype: 'f32' });
const yT = () => tensor(Y, { shape: [N, OUT], dtype: 'f32' });
const lossOf = (m: Linear, mult?: Tensor): Tensor => {
  const l = F.mseLoss(m.forward(xT()), yT());
  return mult ? l.mul(mult) : l;
};

/** Copies of every parameter and optimizer state value (including the device step counts). */
function snapshot(m: Linear, opt: Optimizer): number[][] {
  const sd = opt.stateDict();
  return [...m.parameters(), ...Object.keys(sd).sort().map((k) => sd[k]!)].map((t) => Array.from(t.dataSync()));
}

/** One scaled step; `inf` multiplies the loss by +Infinity (every gradient becomes inf or NaN). */
function scaledStep(m: Linear, opt: Optimizer, scaler: GradScaler, inf = false): number {
  const loss = lossOf(m, inf ? tensor(Infinity, { dtype: 'f32' }) : undefined);
  scaler.scale(loss).backward();
  scaler.step(opt, { realize: [loss] });
  return loss.itemSync();
}

describe('GradScaler', () => {
  for (const kind of ['AdamW', 'SGD'] as const) {
    it(`${kind}: an overflowing step is skipped (parameters and state unchanged), the scale halves, later steps update again`, () => {
      const m = model();
      const opt = kind === 'AdamW' ? new AdamW(m.parameters(), { lr: 0.05 }) : new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
      const scaler = new GradScaler({ initScale: 1024, growthInterval: 100 });
      // (With an explicit device: `state()` before the first step would create the scaler's tensors on
      // 'cpu' whatever the default device; see the report.)
      expect(scaler.state(m.weight.device).scale).toBe(1024);
      scaledStep(m, opt, scaler);
      expect(scaler.state()).toEqual({ scale: 1024, skippedSteps: 0, growthTracker: 1 });
      const before = snapshot(m, opt);
      const bad = scaledStep(m, opt, scaler, true);
      expect(bad).toBe(Infinity);
      expect(m.parameters().every((p) => p.grad === null)).toBe(true);
      expect(snapshot(m, opt)).toEqual(before);
      expect(scaler.state()).toEqual({ scale: 512, skippedSteps: 1, growthTracker: 0 });
      // Normal steps update again, and the device step count advances from where it was.
      scaledStep(m, opt, scaler);
      const after = snapshot(m, opt);
      expect(after[0]).not.toEqual(before[0]);
      expect(opt.stateDict()['0.step']!.itemSync()).toBe(2);
      expect(scaler.state()).toEqual({ scale: 512, skippedSteps: 1, growthTracker: 1 });
      // Two overflows in a row: two more skips, scale 128.
      scaledStep(m, opt, scaler, true);
      scaledStep(m, opt, scaler, true);
      expect(snapshot(m, opt)).toEqual(after);
      expect(scaler.state()).toEqual({ scale: 128, skippedSteps: 3, growthTracker: 0 });
    });
  }

  it('a NaN gradient is also an overflow', () => {
    const m = model();
    const opt = new SGD(m.parameters(), { lr: 0.1 });
    const scaler = new GradScaler({ initScale: 8 });
    const before = snapshot(m, opt);
    const loss = lossOf(m, tensor(NaN, { dtype: 'f32' }));
    scaler.scale(loss).backward();
    scaler.step(opt);
    expect(snapshot(m, opt)).toEqual(before);
    expect(scaler.state()).toMatchObject({ scale: 4, skippedSteps: 1 });
  });

  it('the scale grows by growthFactor after growthInterval clean steps, and backs off to no lower than minScale', () => {
    const m = model();
    const opt = new SGD(m.parameters(), { lr: 0.01 });
    const scaler = new GradScaler({ initScale: 16, growthInterval: 3, growthFactor: 4, backoffFactor: 0.25, minScale: 2 });
    const seen: [number, number][] = [];
    for (let i = 0; i < 7; i++) {
      scaledStep(m, opt, scaler);
      const s = scaler.state();
      seen.push([s.scale, s.growthTracker]);
    }
    expect(seen).toEqual([
      [16, 1],
      [16, 2],
      [64, 0],
      [64, 1],
      [64, 2],
      [256, 0],
      [256, 1],
    ]);
    // Backoff ×0.25: 256 → 64 → 16 → 4 → 2 (floor) → 2.
    const scales: number[] = [];
    for (let i = 0; i < 5; i++) {
      scaledStep(m, opt, scaler, true);
      scales.push(scaler.state().scale);
    }
    expect(scales).toEqual([64, 16, 4, 2, 2]);
    expect(scaler.state()).toEqual({ scale: 2, skippedSteps: 5, growthTracker: 0 });
  });

  it('scale() multiplies the loss by the current scale', () => {
    const m = model();
    const scaler = new GradScaler({ initScale: 256 });
    const loss = lossOf(m);
    const scaled = scaler.scale(loss);
    expectClose([scaled.itemSync()], [loss.itemSync() * 256], { atol: 0, rtol: 1e-7 }, 'scaled loss');
  });

  for (const kind of ['AdamW', 'SGD'] as const) {
    it(`${kind}: scaled + unscaled updates equal the plain updates`, () => {
      const make = (m: Linear) => (kind === 'AdamW' ? new AdamW(m.parameters(), { lr: 0.05 }) : new SGD(m.parameters(), { lr: 0.05, momentum: 0.5 }));
      const plain = model();
      const plainOpt = make(plain);
      const scaled = model();
      const scaledOpt = make(scaled);
      const scaler = new GradScaler({ initScale: 2 ** 14, growthInterval: 2 });
      const a: number[] = [];
      const b: number[] = [];
      for (let i = 0; i < 4; i++) {
        const loss = lossOf(plain);
        loss.backward();
        plainOpt.step({ realize: [loss] });
        a.push(loss.itemSync());
        b.push(scaledStep(scaled, scaledOpt, scaler));
      }
      expect(scaler.state().scale).toBe(2 ** 16); // grew twice; the update is unchanged by it
      expectClose(b, a, { atol: 1e-7, rtol: 1e-6 }, 'losses');
      plain.parameters().forEach((p, i) => expectClose(scaled.parameters()[i]!.dataSync(), p.dataSync(), { atol: 1e-6, rtol: 1e-6 }, `param ${i}`));
      // The parameters did move (the comparison is not between two untouched models).
      expect(Array.from(plain.weight.dataSync())).not.toEqual(Array.from(model().weight.dataSync()));
    });
  }

  it('unscale() → clipGradNorm → step(): the clipped update and norm equal the unscaled ones', () => {
    const plain = model();
    const plainOpt = new SGD(plain.parameters(), { lr: 0.1 });
    const scaled = model();
    const scaledOpt = new SGD(scaled.parameters(), { lr: 0.1 });
    const scaler = new GradScaler({ initScale: 4096 });
    for (let i = 0; i < 3; i++) {
      const l1 = lossOf(plain);
      l1.backward();
      const n1 = clipGradNorm(plain.parameters(), 0.1);
      plainOpt.step({ realize: [l1, n1] });

      const l2 = lossOf(scaled);
      scaler.scale(l2).backward();
      scaler.unscale(scaledOpt);
      expect(() => scaler.unscale(scaledOpt)).toThrow(ValueError);
      const n2 = clipGradNorm(scaled.parameters(), 0.1);
      scaler.step(scaledOpt, { realize: [l2, n2] });
      // Without the unscale the norm would be 4096 times larger.
      expectClose([n2.itemSync()], [n1.itemSync()], { atol: 1e-7, rtol: 1e-6 }, `norm at step ${i}`);
      expect(n1.itemSync()).toBeGreaterThan(0.1); // clipping is active
    }
    plain.parameters().forEach((p, i) => expectClose(scaled.parameters()[i]!.dataSync(), p.dataSync(), { atol: 1e-6, rtol: 1e-6 }, `param ${i}`));
    // An overflow after unscale + clip (norm = inf, clipped gradients NaN) is still skipped.
    const before = snapshot(scaled, scaledOpt);
    const l = lossOf(scaled, tensor(Infinity, { dtype: 'f32' }));
    scaler.scale(l).backward();
    scaler.unscale(scaledOpt);
    const n = clipGradNorm(scaled.parameters(), 0.1);
    scaler.step(scaledOpt, { realize: [n] });
    expect(snapshot(scaled, scaledOpt)).toEqual(before);
    expect(scaler.state()).toMatchObject({ scale: 2048, skippedSteps: 1 });
  });

  it('inside jit: replayed steps still skip on overflow, the scale changes on the device, and match the non-jitted run', () => {
    const run = (useJit: boolean) => {
      const m = model();
      const opt = new AdamW(m.parameters(), { lr: 0.05 });
      const scaler = new GradScaler({ initScale: 1024, growthInterval: 3 });
      const body = (x: Tensor, y: Tensor, mult: Tensor): Tensor => {
        const loss = F.mseLoss(m.forward(x), y).mul(mult);
        scaler.scale(loss).backward();
        scaler.step(opt, { realize: [loss] });
        return loss;
      };
      const step = useJit ? jit(body) : body;
      const pattern = [1, 1, 1, Infinity, 1, 1, Infinity, Infinity, 1, 1, 1, 1];
      const trace: { scale: number; skipped: number; w: number[] }[] = [];
      for (const mult of pattern) {
        const before = Array.from(m.weight.dataSync());
        step(xT(), yT(), tensor(mult, { dtype: 'f32' }));
        const s = scaler.state();
        const w = Array.from(m.weight.dataSync());
        if (mult === Infinity) expect(w).toEqual(before);
        else expect(w).not.toEqual(before);
        trace.push({ scale: s.scale, skipped: s.skippedSteps, w });
      }
      return { trace, stats: useJit ? (step as ReturnType<typeof jit>).stats : undefined };
    };
    const eager = run(false);
    const jitted = run(true);
    expect(jitted.stats).toMatchObject({ traced: 2, replayed: 10 });
    expect(jitted.trace.map((t) => [t.scale, t.skipped])).toEqual([
      [1024, 0],
      [1024, 0],
      [2048, 0],
      [1024, 1],
      [1024, 1],
      [1024, 1],
      [512, 2],
      [256, 3],
      [256, 3],
      [256, 3],
      [512, 3],
      [512, 3],
    ]);
    expect(jitted.trace.map((t) => [t.scale, t.skipped])).toEqual(eager.trace.map((t) => [t.scale, t.skipped]));
    jitted.trace.forEach((t, i) => expectClose(t.w, eager.trace[i]!.w, { atol: 1e-6, rtol: 1e-6 }, `weights after step ${i}`));
  });

  it('enabled: false is a pass-through', () => {
    const m = model();
    const opt = new SGD(m.parameters(), { lr: 0.1 });
    const scaler = new GradScaler({ enabled: false });
    const loss = lossOf(m);
    expect(scaler.scale(loss)).toBe(loss);
    loss.backward();
    scaler.unscale(opt);
    const g = Array.from(m.weight.grad!.dataSync());
    const w = Array.from(m.weight.dataSync());
    scaler.step(opt);
    realize(...m.parameters());
    expectClose(m.weight.dataSync(), w.map((v, i) => v - 0.1 * g[i]!), { atol: 1e-7, rtol: 1e-6 }, 'plain SGD step');
    expect(scaler.state()).toEqual({ scale: 1, skippedSteps: 0, growthTracker: 0 });
  });

  it('option validation', () => {
    const bad: object[] = [
      { initScale: 0 },
      { initScale: -1 },
      { initScale: Infinity },
      { initScale: NaN },
      { growthFactor: 1 },
      { growthFactor: 0.5 },
      { backoffFactor: 0 },
      { backoffFactor: 1 },
      { backoffFactor: 1.5 },
      { growthInterval: 0 },
      { growthInterval: 1.5 },
      { growthInterval: -2 },
      { minScale: 0 },
      { minScale: -1 },
      { initScale: 4, minScale: 8 },
    ];
    for (const o of bad) expect(() => new GradScaler(o), JSON.stringify(o)).toThrow(ValueError);
    expect(() => new GradScaler({ initScale: 8, minScale: 8, growthInterval: 1, backoffFactor: 0.9, growthFactor: 1.5 })).not.toThrow();
  });
});
