import { describe, expect, it } from 'vitest';
import {
  DTypeError,
  ShapeError,
  ValueError,
  manualSeed,
  ones,
  tensor,
  type Tensor,
} from '../../src/index.js';
import { crossEntropy, dropout, embedding, layerNorm, linear, mseLoss, rmsNorm } from '../../src/nn/index.js';
import {
  crossEntropyRef,
  finiteDiff,
  layerNormRef,
  maxAbsDiff,
  pseudoRandom,
  rmsNormRef,
  rows,
} from './reference.js';

// Tessera computes in f32; references are float64. Forward values are compared with an absolute
// tolerance of 2e-6 (values are O(1)); analytic gradients against float64 finite differences with 2e-5.
const FWD_TOL = 2e-6;
const GRAD_TOL = 2e-5;

const N = 5;
const C = 7;
const logitsData = pseudoRandom(N * C, 3).map((v) => 3 * v);
const targets = [2, 0, 6, 3, 1];
const targetsIgnored = [2, -100, 6, -100, 1];

function leaf(data: number[], shape: number[]): Tensor {
  return tensor(data, { shape, dtype: 'f32', requiresGrad: true });
}

describe('crossEntropy', () => {
  const cases: {
    name: string;
    target: number[];
    opts: { ignoreIndex?: number; labelSmoothing?: number; reduction?: 'mean' | 'sum' | 'none' };
  }[] = [
    { name: 'mean', target: targets, opts: {} },
    { name: 'sum', target: targets, opts: { reduction: 'sum' } },
    { name: 'ignoreIndex (default -100)', target: targetsIgnored, opts: {} },
    { name: 'custom ignoreIndex', target: [2, 5, 6, 5, 1], opts: { ignoreIndex: 5 } },
    { name: 'label smoothing', target: targets, opts: { labelSmoothing: 0.1 } },
    { name: 'label smoothing + ignoreIndex', target: targetsIgnored, opts: { labelSmoothing: 0.25 } },
    {
      name: 'label smoothing + ignoreIndex + sum',
      target: targetsIgnored,
      opts: { labelSmoothing: 0.25, reduction: 'sum' },
    },
  ];

  for (const { name, target, opts } of cases) {
    it(`matches the float64 reference and its finite-difference gradient: ${name}`, () => {
      const x = leaf(logitsData, [N, C]);
      const loss = crossEntropy(x, tensor(target, { dtype: 'i32' }), opts);
      expect(loss.shape).toEqual([]);
      loss.backward(); // before reading: realizing the loss first would drop its graph (see report)
      const ref = crossEntropyRef(rows(logitsData, C), target, opts) as number;
      expect(Math.abs(loss.itemSync() - ref)).toBeLessThan(FWD_TOL * Math.max(1, Math.abs(ref)));
      const fd = finiteDiff((v) => crossEntropyRef(rows(v, C), target, opts) as number, logitsData);
      expect(maxAbsDiff(x.grad!.dataSync(), fd)).toBeLessThan(GRAD_TOL);
    });
  }

  it('hand-computed value for a 2-class example', () => {
    // logits [0, ln 3] -> p = [1/4, 3/4]; target 1 -> -ln(3/4); with ε=0.2: 0.8·(-ln .75) + 0.2·½(-ln .25 - ln .75)
    const x = tensor([[0, Math.log(3)]], { dtype: 'f32' });
    const t = tensor([1], { dtype: 'i32' });
    expect(crossEntropy(x, t).itemSync()).toBeCloseTo(-Math.log(0.75), 6);
    const smoothed = 0.8 * -Math.log(0.75) + 0.2 * 0.5 * (-Math.log(0.25) - Math.log(0.75));
    expect(crossEntropy(x, t, { labelSmoothing: 0.2 }).itemSync()).toBeCloseTo(smoothed, 6);
  });

  it("reduction 'none' gives per-element losses with 0 at ignored positions", () => {
    const x = tensor(logitsData, { shape: [N, C], dtype: 'f32' });
    const out = crossEntropy(x, tensor(targetsIgnored, { dtype: 'i32' }), {
      reduction: 'none',
      labelSmoothing: 0.1,
    });
    expect(out.shape).toEqual([N]);
    const ref = crossEntropyRef(rows(logitsData, C), targetsIgnored, {
      reduction: 'none',
      labelSmoothing: 0.1,
    }) as number[];
    expect(maxAbsDiff(out.dataSync(), ref)).toBeLessThan(FWD_TOL * 5);
    expect(out.dataSync()[1]).toBe(0);
  });

  it('accepts leading batch dimensions [B, T, C] with targets [B, T]', () => {
    const x = tensor(logitsData.slice(0, 4 * C), { shape: [2, 2, C], dtype: 'f32' });
    const loss = crossEntropy(
      x,
      tensor(
        [
          [1, 2],
          [3, -100],
        ],
        { dtype: 'i32' },
      ),
    );
    const ref = crossEntropyRef(rows(logitsData.slice(0, 4 * C), C), [1, 2, 3, -100]) as number;
    expect(Math.abs(loss.itemSync() - ref)).toBeLessThan(FWD_TOL * 5);
  });

  it('all targets ignored gives NaN for mean (as PyTorch) and 0 for sum', () => {
    const x = tensor(logitsData.slice(0, 2 * C), { shape: [2, C], dtype: 'f32' });
    const t = tensor([-100, -100], { dtype: 'i32' });
    expect(Number.isNaN(crossEntropy(x, t).itemSync())).toBe(true);
    expect(crossEntropy(x, t, { reduction: 'sum' }).itemSync()).toBe(0);
  });

  it('rejects bad inputs with typed errors naming shapes and dtypes', () => {
    const x = tensor(logitsData, { shape: [N, C], dtype: 'f32' });
    expect(() => crossEntropy(x, tensor([1, 2, 3], { dtype: 'i32' }))).toThrow(ShapeError);
    expect(() => crossEntropy(x, tensor([1, 2, 3], { dtype: 'i32' }))).toThrow(/\[3\].*\[5,7\]/);
    expect(() => crossEntropy(x, tensor(targets, { dtype: 'f32' }))).toThrow(DTypeError);
    expect(() =>
      crossEntropy(tensor(targets, { dtype: 'i32' }).reshape([N, 1]), tensor(targets, { dtype: 'i32' })),
    ).toThrow(DTypeError);
    expect(() => crossEntropy(x, tensor(targets, { dtype: 'i32' }), { labelSmoothing: 1.5 })).toThrow(
      ValueError,
    );
    expect(() => crossEntropy(x, tensor(targets, { dtype: 'i32' }), { reduction: 'avg' as 'mean' })).toThrow(
      ValueError,
    );
  });
});

describe('layerNorm and rmsNorm', () => {
  const R = 3;
  const D = 6;
  const xData = pseudoRandom(R * D, 11).map((v) => 2 * v + 0.5);
  const wData = pseudoRandom(D, 12).map((v) => 1 + 0.5 * v);
  const bData = pseudoRandom(D, 13);
  // A fixed random projection makes the scalar loss sensitive to every output element.
  const proj = pseudoRandom(R * D, 14);
  const dot = (y: number[][]) => y.flat().reduce((s, v, i) => s + v * proj[i]!, 0);

  it('layerNorm forward matches float64 (biased variance), with and without affine', () => {
    const x = tensor(xData, { shape: [R, D], dtype: 'f32' });
    const y = layerNorm(x, [D], tensor(wData, { dtype: 'f32' }), tensor(bData, { dtype: 'f32' }));
    expect(maxAbsDiff(y.dataSync(), layerNormRef(rows(xData, D), wData, bData, 1e-5).flat())).toBeLessThan(
      1e-5,
    );
    const plain = layerNorm(x, D);
    expect(
      maxAbsDiff(plain.dataSync(), layerNormRef(rows(xData, D), undefined, undefined, 1e-5).flat()),
    ).toBeLessThan(1e-5);
  });

  it('layerNorm gradients (input, weight, bias) match finite differences', () => {
    const x = leaf(xData, [R, D]);
    const w = leaf(wData, [D]);
    const b = leaf(bData, [D]);
    const loss = layerNorm(x, [D], w, b, 1e-5)
      .mul(tensor(proj, { shape: [R, D], dtype: 'f32' }))
      .sum();
    loss.backward();
    const f = (xv: number[], wv: number[], bv: number[]) => dot(layerNormRef(rows(xv, D), wv, bv, 1e-5));
    expect(
      maxAbsDiff(
        x.grad!.dataSync(),
        finiteDiff((v) => f(v, wData, bData), xData),
      ),
    ).toBeLessThan(GRAD_TOL);
    expect(
      maxAbsDiff(
        w.grad!.dataSync(),
        finiteDiff((v) => f(xData, v, bData), wData),
      ),
    ).toBeLessThan(GRAD_TOL);
    expect(
      maxAbsDiff(
        b.grad!.dataSync(),
        finiteDiff((v) => f(xData, wData, v), bData),
      ),
    ).toBeLessThan(GRAD_TOL);
  });

  it('layerNorm normalizes over several trailing axes', () => {
    const x = tensor(xData, { shape: [R, 2, 3], dtype: 'f32' });
    const y = layerNorm(x, [2, 3]);
    expect(
      maxAbsDiff(y.dataSync(), layerNormRef(rows(xData, D), undefined, undefined, 1e-5).flat()),
    ).toBeLessThan(1e-5);
  });

  it('rmsNorm forward and gradients match float64', () => {
    const x = leaf(xData, [R, D]);
    const w = leaf(wData, [D]);
    const y = rmsNorm(x, D, w);
    y.mul(tensor(proj, { shape: [R, D], dtype: 'f32' }))
      .sum()
      .backward();
    expect(maxAbsDiff(y.dataSync(), rmsNormRef(rows(xData, D), wData, 1e-6).flat())).toBeLessThan(1e-5);
    const f = (xv: number[], wv: number[]) => dot(rmsNormRef(rows(xv, D), wv, 1e-6));
    expect(
      maxAbsDiff(
        x.grad!.dataSync(),
        finiteDiff((v) => f(v, wData), xData),
      ),
    ).toBeLessThan(GRAD_TOL);
    expect(
      maxAbsDiff(
        w.grad!.dataSync(),
        finiteDiff((v) => f(xData, v), wData),
      ),
    ).toBeLessThan(GRAD_TOL);
  });

  it('rejects mismatched shapes and dtypes', () => {
    const x = tensor(xData, { shape: [R, D], dtype: 'f32' });
    expect(() => layerNorm(x, [5])).toThrow(ShapeError);
    expect(() => layerNorm(x, [D], ones([5]))).toThrow(/weight has shape \[5\]/);
    expect(() => rmsNorm(x, [R, D, 1])).toThrow(ShapeError);
    expect(() => layerNorm(tensor([[1, 2]], { dtype: 'i32' }), 2)).toThrow(DTypeError);
  });
});

describe('dropout', () => {
  it('is the identity in eval mode or with p = 0', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32' });
    expect(dropout(x, 0.5, false)).toBe(x);
    expect(dropout(x, 0, true)).toBe(x);
  });

  it('zeroes about p of the elements and scales survivors by 1/(1-p) (inverted dropout)', () => {
    manualSeed(42);
    const n = 4000;
    const y = Array.from(dropout(ones([n]), 0.25, true).dataSync());
    const zeros = y.filter((v) => v === 0).length;
    // Binomial(4000, 0.25): sd ≈ 27; allow 5 sd.
    expect(Math.abs(zeros - 1000)).toBeLessThan(140);
    for (const v of y) if (v !== 0) expect(v).toBeCloseTo(1 / 0.75, 6);
  });

  it('gradient is the same mask times 1/(1-p)', () => {
    manualSeed(7);
    const x = leaf(Array(64).fill(2), [64]);
    const y = dropout(x, 0.5, true);
    y.sum().backward();
    const yv = y.dataSync();
    const g = x.grad!.dataSync();
    for (let i = 0; i < 64; i++) expect(g[i]).toBeCloseTo(yv[i] === 0 ? 0 : 2, 6);
  });

  it('rejects p outside [0, 1)', () => {
    const x = tensor([1], { dtype: 'f32' });
    expect(() => dropout(x, 1, true)).toThrow(ValueError);
    expect(() => dropout(x, -0.1, true)).toThrow(ValueError);
    expect(() => dropout(x, NaN, true)).toThrow(/\[0, 1\)/);
  });
});

describe('embedding and linear', () => {
  it('embedding picks rows and its weight gradient counts occurrences', () => {
    const w = leaf([0, 1, 10, 11, 20, 21, 30, 31], [4, 2]);
    const idx = tensor(
      [
        [3, 0],
        [3, 2],
      ],
      { dtype: 'i32' },
    );
    const y = embedding(idx, w);
    expect(y.shape).toEqual([2, 2, 2]);
    y.sum().backward();
    expect(Array.from(y.dataSync())).toEqual([30, 31, 0, 1, 30, 31, 20, 21]);
    expect(Array.from(w.grad!.dataSync())).toEqual([1, 1, 0, 0, 1, 1, 2, 2]);
  });

  it('embedding validates dtypes and rank', () => {
    const w = tensor([[1, 2]], { dtype: 'f32' });
    expect(() => embedding(tensor([0], { dtype: 'f32' }), w)).toThrow(DTypeError);
    expect(() => embedding(tensor([0], { dtype: 'i32' }), tensor([1, 2], { dtype: 'f32' }))).toThrow(
      ShapeError,
    );
  });

  it('linear computes x·Wᵀ + b and validates shapes', () => {
    const x = tensor([[1, 2, 3]], { dtype: 'f32' });
    const w = tensor(
      [
        [1, 0, 0],
        [0, 1, 1],
      ],
      { dtype: 'f32' },
    );
    const b = tensor([10, 20], { dtype: 'f32' });
    expect(Array.from(linear(x, w, b).dataSync())).toEqual([11, 25]);
    expect(() => linear(tensor([[1, 2]], { dtype: 'f32' }), w)).toThrow(/in_features 3/);
    expect(() => linear(x, w, tensor([1, 2, 3], { dtype: 'f32' }))).toThrow(ShapeError);
  });

  it('mseLoss matches the mean of squared differences', () => {
    const a = tensor([1, 2, 3], { dtype: 'f32' });
    const b = tensor([1, 0, 0], { dtype: 'f32' });
    expect(mseLoss(a, b).itemSync()).toBeCloseTo(13 / 3, 6);
    expect(mseLoss(a, b, { reduction: 'sum' }).itemSync()).toBeCloseTo(13, 6);
  });
});
