import { describe, expect, it } from 'vitest';
import { cat, lastRealizeStats, realize, realizeTotals, tensor, ValueError, type Tensor } from '../../src/index.js';
import {
  AdamW,
  clipGradNorm,
  cosineWithWarmup,
  linearWarmup,
  LRScheduler,
  SGD,
  type Optimizer,
} from '../../src/optim/index.js';

// ---------------------------------------------------------------------------------------------
// Float64 reimplementations of PyTorch's update equations (torch/optim/sgd.py, adamw.py), written
// independently of Tessera. The objective is L(p) = Σ a·(p - t)², so grad = 2a(p - t).
// ---------------------------------------------------------------------------------------------

const P0 = [0.5, -1.25, 2.0, 0.75, -0.3, 1.1];
const T = [1.0, 0.5, -1.0, 0.0, 0.2, 1.0];
const A = [1.0, 2.0, 0.5, 3.0, 1.5, 0.25];

const gradAt = (p: number[]) => p.map((v, i) => 2 * A[i]! * (v - T[i]!));
const lossAt = (p: number[]) => p.reduce((s, v, i) => s + A[i]! * (v - T[i]!) ** 2, 0);

interface SgdCfg {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

function sgdRef(cfg: SgdCfg, steps: number, lrs?: number[]): number[][] {
  const p = [...P0];
  let buf: number[] | null = null;
  const out: number[][] = [];
  const mom = cfg.momentum ?? 0;
  const damp = cfg.dampening ?? 0;
  const wd = cfg.weightDecay ?? 0;
  for (let s = 0; s < steps; s++) {
    const lr = lrs ? lrs[s]! : cfg.lr;
    let g = gradAt(p);
    if (wd !== 0) g = g.map((gi, i) => gi + wd * p[i]!);
    if (mom !== 0) {
      if (buf === null) buf = [...g];
      else buf = buf.map((b, i) => mom * b + (1 - damp) * g[i]!);
      g = cfg.nesterov ? g.map((gi, i) => gi + mom * buf![i]!) : [...buf];
    }
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - lr * g[i]!;
    out.push([...p]);
  }
  return out;
}

interface AdamCfg {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

function adamwRef(cfg: AdamCfg, steps: number, lrs?: number[]): number[][] {
  const p = [...P0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const [b1, b2] = cfg.betas ?? [0.9, 0.999];
  const eps = cfg.eps ?? 1e-8;
  const wd = cfg.weightDecay ?? 1e-2;
  const out: number[][] = [];
  for (let t = 1; t <= steps; t++) {
    const lr = lrs ? lrs[t - 1]! : cfg.lr;
    const g = gradAt(p);
    for (let i = 0; i < p.length; i++) {
      p[i] = p[i]! * (1 - lr * wd);
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
      const bc1 = 1 - b1 ** t;
      const bc2 = 1 - b2 ** t;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(bc2) + eps;
      p[i] = p[i]! - (lr / bc1) * (m[i]! / denom);
    }
    out.push([...p]);
  }
  return out;
}

/** Run `steps` steps in Tessera on the same objective; returns the parameter values after each step. */
function runTessera(
  make: (params: Tensor[]) => Optimizer,
  steps: number,
  lrs?: number[],
): { values: number[][]; losses: number[] } {
  // Two parameters (a matrix and a vector) exercise per-parameter state.
  const p1 = tensor(P0.slice(0, 4), { shape: [2, 2], dtype: 'f32', requiresGrad: true });
  const p2 = tensor(P0.slice(4), { dtype: 'f32', requiresGrad: true });
  const tt = tensor(T, { dtype: 'f32' });
  const aa = tensor(A, { dtype: 'f32' });
  const opt = make([p1, p2]);
  const values: number[][] = [];
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    if (lrs) opt.setLr(lrs[s]!);
    opt.zeroGrad();
    const flat = cat([p1.reshape([4]), p2]);
    const loss = flat.sub(tt).square().mul(aa).sum();
    loss.backward();
    opt.step({ realize: [loss] });
    expect(loss.isRealized).toBe(true);
    losses.push(loss.itemSync());
    values.push([...p1.dataSync(), ...p2.dataSync()]);
  }
  return { values, losses };
}

/** f32 arithmetic against float64: 5 steps of O(1) updates stay within 2e-5 absolute. */
const TOL = 2e-5;

function expectClose(actual: number[][], expected: number[][], tol = TOL): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, s) =>
    row.forEach((v, i) =>
      expect(Math.abs(v - expected[s]![i]!), `step ${s + 1}, element ${i}`).toBeLessThan(tol),
    ),
  );
}

describe('SGD matches PyTorch semantics (float64 reference, 5 steps)', () => {
  const configs: [string, SgdCfg][] = [
    ['plain', { lr: 0.05 }],
    ['momentum', { lr: 0.05, momentum: 0.9 }],
    ['momentum + dampening', { lr: 0.05, momentum: 0.9, dampening: 0.3 }],
    ['nesterov', { lr: 0.05, momentum: 0.8, nesterov: true }],
    ['weight decay + momentum', { lr: 0.05, momentum: 0.5, weightDecay: 0.1 }],
    ['weight decay + nesterov', { lr: 0.03, momentum: 0.9, nesterov: true, weightDecay: 0.2 }],
  ];
  for (const [name, cfg] of configs) {
    it(name, () => {
      const { values, losses } = runTessera((ps) => new SGD(ps, cfg), 5);
      const ref = sgdRef(cfg, 5);
      expectClose(values, ref);
      // The loss realized with the step is the loss at the parameters BEFORE the update.
      expect(Math.abs(losses[0]! - lossAt(P0))).toBeLessThan(1e-5);
      expect(Math.abs(losses[3]! - lossAt(ref[2]!))).toBeLessThan(1e-4);
    });
  }

  it('follows a changing learning rate (setLr)', () => {
    const lrs = [0.01, 0.05, 0.02, 0.08, 0.04];
    const cfg = { lr: 0.01, momentum: 0.9 };
    expectClose(runTessera((ps) => new SGD(ps, cfg), 5, lrs).values, sgdRef(cfg, 5, lrs));
  });

  it('validates options like PyTorch', () => {
    const p = tensor([1], { dtype: 'f32', requiresGrad: true });
    expect(() => new SGD([p], { lr: 0.1, nesterov: true })).toThrow(ValueError);
    expect(() => new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow(
      /nesterov/,
    );
    expect(() => new SGD([p], { lr: -1 })).toThrow(ValueError);
    expect(() => new SGD([tensor([1], { dtype: 'f32' })])).toThrow(/does not require grad/);
    expect(() => new SGD([p, p])).toThrow(/more than once/);
  });
});

describe('AdamW matches PyTorch semantics (float64 reference, 5 steps)', () => {
  const configs: [string, AdamCfg][] = [
    ['defaults (wd 1e-2)', { lr: 0.1 }],
    ['no weight decay', { lr: 0.1, weightDecay: 0 }],
    ['custom betas, eps, strong decay', { lr: 0.05, betas: [0.8, 0.99], eps: 1e-3, weightDecay: 0.5 }],
  ];
  for (const [name, cfg] of configs) {
    it(name, () => {
      expectClose(runTessera((ps) => new AdamW(ps, cfg), 5).values, adamwRef(cfg, 5));
    });
  }

  it('follows a changing learning rate (bias corrections and decay as per-step tensors)', () => {
    const lrs = [0.02, 0.1, 0.05, 0.07, 0.01];
    const cfg = { lr: 0.02, weightDecay: 0.1 };
    expectClose(runTessera((ps) => new AdamW(ps, cfg), 5, lrs).values, adamwRef(cfg, 5, lrs));
  });

  it('runs each step as one schedule and compiles no new kernels after the first steps although lr changes', () => {
    const p = tensor([0.5, -0.5, 1.5], { dtype: 'f32', requiresGrad: true });
    const opt = new AdamW([p], { lr: 0.1 });
    const compiled: number[] = [];
    for (let s = 0; s < 4; s++) {
      opt.setLr(0.1 / (s + 1));
      opt.zeroGrad();
      const loss = p.square().sum();
      loss.backward();
      const before = realizeTotals().realizes;
      opt.step({ realize: [loss] });
      expect(realizeTotals().realizes - before).toBe(1); // forward + backward + update: ONE schedule
      compiled.push(lastRealizeStats().compiled);
    }
    expect(compiled[2]).toBe(0);
    expect(compiled[3]).toBe(0);
  });

  it('skips parameters without a gradient (their step count does not advance)', () => {
    const a = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    const b = tensor([3, 4], { dtype: 'f32', requiresGrad: true });
    const opt = new AdamW([a, b], { lr: 0.1, weightDecay: 0 });
    const loss = a.sum();
    loss.backward();
    opt.step();
    expect(Array.from(b.dataSync())).toEqual([3, 4]);
    // Adam's first step moves each element by lr·sign(g) (up to eps).
    expect(Array.from(a.dataSync()).map((v) => Number(v.toFixed(5)))).toEqual([0.9, 1.9]);
    expect(a.grad).toBeNull(); // consumed by the step
    const sd = opt.stateDict();
    expect(sd['0.step']!.itemSync()).toBe(1);
    expect(sd['1.step']!.itemSync()).toBe(0);
  });

  it('keepGrads realizes gradients in the same schedule and keeps them', () => {
    const a = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    const opt = new SGD([a], { lr: 0.5 });
    a.square().sum().backward();
    opt.step({ keepGrads: true });
    expect(a.grad!.isRealized).toBe(true);
    expect(Array.from(a.grad!.dataSync())).toEqual([2, 4]);
    expect(Array.from(a.dataSync())).toEqual([0, 0]);
  });

  it('prepareStep exposes the update for a caller-managed realize', () => {
    const a = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    const opt = new SGD([a], { lr: 0.25 });
    const loss = a.square().sum();
    loss.backward();
    const pending = opt.prepareStep();
    // The parameter and its step counter, assigned lazily in place: realizing them applies the update.
    expect(pending.tensors).toHaveLength(2);
    expect(pending.tensors).toContain(a);
    expect(a.isRealized).toBe(false);
    realize(loss, ...pending.tensors);
    expect(loss.itemSync()).toBe(5); // computed from the parameters before the update
    pending.commit();
    expect(Array.from(a.dataSync())).toEqual([0.5, 1]);
    expect(() => pending.commit()).toThrow(/already committed/);
  });

  it('optimizer state round-trips through stateDict/loadStateDict', () => {
    const cfg = { lr: 0.1 };
    const mk = () => tensor([1, -2, 3], { dtype: 'f32', requiresGrad: true });
    const run = (p: Tensor, opt: AdamW, n: number) => {
      for (let i = 0; i < n; i++) {
        opt.zeroGrad();
        p.square().sum().backward();
        opt.step();
      }
    };
    const p1 = mk();
    const o1 = new AdamW([p1], cfg);
    run(p1, o1, 4);
    const p2 = mk();
    const o2 = new AdamW([p2], cfg);
    run(p2, o2, 2);
    const p3 = mk();
    p3.assign(p2.detach()).realize();
    const o3 = new AdamW([p3], cfg);
    o3.loadStateDict(o2.stateDict());
    run(p3, o3, 2);
    expect(Array.from(p3.dataSync())).toEqual(Array.from(p1.dataSync()));
  });
});

describe('clipGradNorm', () => {
  it('scales by maxNorm/(norm + 1e-6) when the norm is larger, returns the total norm', () => {
    const a = tensor([3, 0], { dtype: 'f32', requiresGrad: true });
    const b = tensor([[0, 4]], { dtype: 'f32', requiresGrad: true });
    a.grad = tensor([3, 0], { dtype: 'f32' });
    b.grad = tensor([[0, 4]], { dtype: 'f32' });
    const norm = clipGradNorm([a, b], 1);
    expect(norm.itemSync()).toBeCloseTo(5, 6);
    const s = 1 / (5 + 1e-6);
    expect(Array.from(a.grad!.dataSync()).map((v) => v / s)).toEqual([expect.closeTo(3, 5), 0]);
    expect(b.grad!.dataSync()[1]! / s).toBeCloseTo(4, 5);
  });

  it('leaves gradients unchanged when the norm is below maxNorm', () => {
    const a = tensor([1, 1], { dtype: 'f32', requiresGrad: true });
    a.grad = tensor([0.3, 0.4], { dtype: 'f32' });
    expect(clipGradNorm([a], 10).itemSync()).toBeCloseTo(0.5, 6);
    expect(Array.from(a.grad!.dataSync())).toEqual([expect.closeTo(0.3, 7), expect.closeTo(0.4, 7)]);
  });

  it('supports the infinity norm and runs inside the training step schedule', () => {
    const a = tensor([1, -2, 0.5], { dtype: 'f32', requiresGrad: true });
    a.grad = tensor([1, -8, 2], { dtype: 'f32' });
    expect(clipGradNorm([a], 4, Infinity).itemSync()).toBeCloseTo(8, 6);

    const p = tensor([3, 4], { dtype: 'f32', requiresGrad: true });
    const opt = new SGD([p], { lr: 1 });
    const loss = p.square().sum().mul(0.5); // grad = p, norm 5
    loss.backward();
    const norm = clipGradNorm([p], 1);
    expect(norm.isRealized).toBe(false);
    opt.step({ realize: [loss, norm] });
    expect(norm.itemSync()).toBeCloseTo(5, 5);
    expect(Array.from(p.dataSync())).toEqual([expect.closeTo(3 - 0.6, 5), expect.closeTo(4 - 0.8, 5)]);
    expect(() => clipGradNorm([p], -1)).toThrow(ValueError);
  });
});

describe('learning-rate schedules', () => {
  it('cosineWithWarmup at specific steps', () => {
    const f = cosineWithWarmup({ warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 });
    expect(f(0)).toBe(0);
    expect(f(5)).toBeCloseTo(0.5, 12);
    expect(f(10)).toBeCloseTo(1, 12);
    expect(f(35)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)), 12);
    expect(f(60)).toBeCloseTo(0.55, 12);
    expect(f(110)).toBeCloseTo(0.1, 12);
    expect(f(500)).toBeCloseTo(0.1, 12);
    expect(cosineWithWarmup({ warmupSteps: 0, totalSteps: 4 })(2)).toBeCloseTo(0.5, 12);
    expect(() => cosineWithWarmup({ warmupSteps: 10, totalSteps: 5 })).toThrow(ValueError);
  });

  it('linearWarmup at specific steps, constant or with linear decay', () => {
    const c = linearWarmup({ warmupSteps: 4 });
    expect([0, 1, 2, 4, 100].map(c)).toEqual([0, 0.25, 0.5, 1, 1]);
    const d = linearWarmup({ warmupSteps: 4, totalSteps: 10 });
    expect(d(2)).toBeCloseTo(0.5, 12);
    expect(d(7)).toBeCloseTo(0.5, 12);
    expect(d(10)).toBe(0);
    expect(d(20)).toBe(0);
  });

  it('LRScheduler sets optimizer.lr = baseLr · schedule(step) (LambdaLR)', () => {
    const p = tensor([1], { dtype: 'f32', requiresGrad: true });
    const opt = new SGD([p], { lr: 0.2 });
    const sched = new LRScheduler(opt, linearWarmup({ warmupSteps: 2 }));
    expect(opt.lr).toBe(0);
    expect(sched.step()).toBeCloseTo(0.1, 12);
    sched.step();
    expect(sched.lastLr).toBeCloseTo(0.2, 12);
  });
});
