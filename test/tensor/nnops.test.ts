/**
 * softmax, logSoftmax, logsumexp. (crossEntropy, layerNorm, rmsNorm, dropout and embedding are not
 * on Tensor yet and are not tested here.)
 *
 * Tolerances:
 *  - forward vs float64 reference (max-shifted in float64): atol 1e-6, rtol 1e-5 for softmax
 *    (values in [0,1]); atol 2e-6, rtol 1e-5 for logSoftmax/logsumexp (|values| up to ~1e3 in the
 *    stability cases are compared with rtol 1e-6 against exact hand values).
 *  - gradients vs float64 central differences (eps 1e-3) of a plain-JS reference, through a
 *    weighted sum with fixed non-uniform weights (a plain sum of softmax has zero gradient):
 *    atol 1e-3, rtol 1e-3.
 */
import { describe, expect, it } from 'vitest';
import { DimError, gatherRows, lastRealizeStats, tensor, type Tensor } from '../../src/index.js';
import { checkGrad, expectClose, expectEqual, weights, wsum, type Tol } from '../helpers/check.js';
import { dot, logsumexpRef, numel, randArray, softmaxRef, sumRef, type Shape } from '../helpers/ref.js';

const FWD: Tol = { atol: 1e-6, rtol: 1e-5 };
const FWD_LOG: Tol = { atol: 2e-6, rtol: 1e-5 };
const GRAD: Tol = { atol: 1e-3, rtol: 1e-3 };
const T = (data: ArrayLike<number>, shape: Shape) => tensor(Float32Array.from(data), { shape, dtype: 'f32' });

const logSoftmaxRef = (x: ArrayLike<number>, shape: Shape, dim: number) =>
  softmaxRef(x, shape, dim).map(Math.log);

describe('hand-computed values', () => {
  const x = () => tensor([1, 2, 3], { dtype: 'f32' });
  it('softmax([1,2,3])', () => {
    expectClose(
      x().softmax().dataSync(),
      [0.09003057317038046, 0.24472847105479767, 0.6652409557748219],
      FWD,
    );
  });
  it('logSoftmax([1,2,3])', () => {
    expectClose(
      x().logSoftmax().dataSync(),
      [-2.4076059644443806, -1.4076059644443806, -0.4076059644443806],
      FWD_LOG,
    );
  });
  it('logsumexp([1,2,3])', () => {
    expectClose([x().logsumexp(0).itemSync()], [3.4076059644443806], FWD_LOG);
  });
  it('large inputs are stable (max-shifted)', () => {
    const big = tensor([1000, 1001, 1002], { dtype: 'f32' });
    expectClose(
      big.softmax().dataSync(),
      [0.09003057317038046, 0.24472847105479767, 0.6652409557748219],
      FWD,
    );
    expectClose(
      big.logSoftmax().dataSync(),
      [-2.4076059644443806, -1.4076059644443806, -0.4076059644443806],
      FWD_LOG,
    );
    expectClose([big.logsumexp(0).itemSync()], [1002.4076059644444], { atol: 0, rtol: 1e-6 });
    const small = tensor([-1000, -1001], { dtype: 'f32' });
    expectClose(small.softmax().dataSync(), [1 / (1 + Math.exp(-1)), Math.exp(-1) / (1 + Math.exp(-1))], FWD);
    expectClose([small.logsumexp(0).itemSync()], [-1000 + Math.log(1 + Math.exp(-1))], {
      atol: 0,
      rtol: 1e-6,
    });
  });
  it('-inf entries get probability 0 (masking)', () => {
    const m = tensor([0, -Infinity, 0], { dtype: 'f32' });
    expectEqual(m.softmax().dataSync(), [0.5, 0, 0.5]);
    expectClose(m.logSoftmax().dataSync(), [-Math.LN2, -Infinity, -Math.LN2], FWD);
    expectClose([m.logsumexp(0).itemSync()], [Math.LN2], FWD);
  });
  it('a size-1 softmax dim gives ones; integer input gives f32', () => {
    expectEqual(T([3, -7], [2, 1]).softmax(1).dataSync(), [1, 1]);
    const s = tensor([0, 0]).softmax();
    expect(s.dtype).toBe('f32');
    expectEqual(s.dataSync(), [0.5, 0.5]);
  });
  it('dim out of range throws DimError', () => {
    expect(() => T([1, 2], [2]).softmax(1)).toThrow(DimError);
    expect(() => T([1, 2], [2]).logsumexp(-2)).toThrow(DimError);
  });
  it('logsumexp of an all -inf row is -inf', () => {
    expectEqual([tensor([-Infinity, -Infinity], { dtype: 'f32' }).logsumexp(0).itemSync()], [-Infinity]);
  });
  it('logsumexp with a +inf entry is +inf', () => {
    expectEqual([tensor([Infinity, 1], { dtype: 'f32' }).logsumexp(0).itemSync()], [Infinity]);
  });
});

const shapes: [Shape, number][] = [
  [[3, 4], -1],
  [[3, 4], 0],
  [[2, 3, 4], 1],
  [[5], 0],
];

describe('softmax', () => {
  shapes.forEach(([shape, dim], k) => {
    const d = randArray(numel(shape), 1000 + k, -3, 3);
    it(`[${shape}] dim ${dim}: forward, rows sum to 1`, () => {
      const y = T(d, shape).softmax(dim);
      expect(y.shape).toEqual([...shape]);
      const vals = y.dataSync();
      expectClose(vals, softmaxRef(d, shape, dim), FWD);
      const sums = sumRef(vals, shape, dim);
      expectClose(sums.data, new Float64Array(sums.data.length).fill(1), { atol: 1e-6, rtol: 0 });
    });
    it(`[${shape}] dim ${dim}: gradient`, () => {
      const w = weights(numel(shape), 1100 + k);
      checkGrad(
        ([x]) => wsum(x!.softmax(dim), w),
        ([x]) => dot(softmaxRef(x!, shape, dim), w),
        [{ shape, data: d }],
        GRAD,
      );
    });
  });
  it('gradient through softmax composed with other ops (attention-like)', () => {
    const q = randArray(6, 1200, -1, 1);
    const kk = randArray(6, 1201, -1, 1);
    const w = weights(9, 1202);
    const ref = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      const s = new Float64Array(9);
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 3; j++)
          s[i * 3 + j] = (a[i * 2]! * b[j * 2]! + a[i * 2 + 1]! * b[j * 2 + 1]!) * 0.5;
      return softmaxRef(s, [3, 3], -1);
    };
    checkGrad(
      ([a, b]) => wsum(a!.matmul(b!.T).mul(0.5).softmax(-1), w),
      ([a, b]) => dot(ref(a!, b!), w),
      [
        { shape: [3, 2], data: q },
        { shape: [3, 2], data: kk },
      ],
      GRAD,
    );
  });
});

describe('composite normalisation built from primitives (exercises fusion of reductions)', () => {
  it('manual layer norm (x - mean) / sqrt(var + eps) · g + b: forward and gradient', () => {
    const shape = [3, 5];
    const d = randArray(15, 1250, -2, 2);
    const dg = randArray(5, 1251, 0.5, 1.5);
    const db = randArray(5, 1252, -0.5, 0.5);
    const ref = (x: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>) => {
      const out = new Float64Array(15);
      for (let r = 0; r < 3; r++) {
        let m = 0;
        for (let c = 0; c < 5; c++) m += x[r * 5 + c]! / 5;
        let v = 0;
        for (let c = 0; c < 5; c++) v += (x[r * 5 + c]! - m) ** 2 / 5;
        for (let c = 0; c < 5; c++)
          out[r * 5 + c] = ((x[r * 5 + c]! - m) / Math.sqrt(v + 1e-5)) * g[c]! + b[c]!;
      }
      return out;
    };
    const op = (x: Tensor, g: Tensor, b: Tensor) =>
      x
        .sub(x.mean(-1, true))
        .div(x.var(-1, { keepdim: true, correction: 0 }).add(1e-5).sqrt())
        .mul(g)
        .add(b);
    expectClose(op(T(d, shape), T(dg, [5]), T(db, [5])).dataSync(), ref(d, dg, db), {
      atol: 1e-5,
      rtol: 1e-5,
    });
    const w = weights(15, 1253);
    checkGrad(
      ([x, g, b]) => wsum(op(x!, g!, b!), w),
      ([x, g, b]) => dot(ref(x!, g!, b!), w),
      [
        { shape, data: d },
        { shape: [5], data: dg },
        { shape: [5], data: db },
      ],
      GRAD,
    );
  });
});

describe('logSoftmax', () => {
  shapes.forEach(([shape, dim], k) => {
    const d = randArray(numel(shape), 1300 + k, -3, 3);
    it(`[${shape}] dim ${dim}: forward equals log(softmax)`, () => {
      const y = T(d, shape).logSoftmax(dim);
      expect(y.shape).toEqual([...shape]);
      expectClose(y.dataSync(), logSoftmaxRef(d, shape, dim), FWD_LOG);
    });
    it(`[${shape}] dim ${dim}: gradient`, () => {
      const w = weights(numel(shape), 1400 + k);
      checkGrad(
        ([x]) => wsum(x!.logSoftmax(dim), w),
        ([x]) => dot(logSoftmaxRef(x!, shape, dim), w),
        [{ shape, data: d }],
        GRAD,
      );
    });
  });
  it('negative log-likelihood via logSoftmax + gather (cross-entropy by hand)', () => {
    const d = randArray(12, 1500, -2, 2);
    const target = [3, 0, 2];
    const ref = (x: ArrayLike<number>) => {
      const ls = logSoftmaxRef(x, [3, 4], -1);
      return -(ls[0 * 4 + 3]! + ls[1 * 4 + 0]! + ls[2 * 4 + 2]!) / 3;
    };
    const tgt = () => tensor(target, { shape: [3, 1] });
    checkGrad(
      ([x]) => x!.logSoftmax(-1).gather(1, tgt()).mean().neg(),
      ([x]) => ref(x!),
      [{ shape: [3, 4], data: d }],
      GRAD,
    );
  });
});

describe('logsumexp', () => {
  for (const keepdim of [false, true]) {
    shapes.forEach(([shape, dim], k) => {
      const d = randArray(numel(shape), 1600 + k, -3, 3);
      it(`[${shape}] dim ${dim} keepdim ${keepdim}: forward`, () => {
        const y = T(d, shape).logsumexp(dim, keepdim);
        const r = logsumexpRef(d, shape, dim, keepdim);
        expect(y.shape).toEqual(r.shape);
        expectClose(y.dataSync(), r.data, FWD_LOG);
      });
      it(`[${shape}] dim ${dim} keepdim ${keepdim}: gradient`, () => {
        const r = logsumexpRef(d, shape, dim, keepdim);
        const w = weights(r.data.length, 1700 + k);
        checkGrad(
          ([x]) => wsum(x!.logsumexp(dim, keepdim), w),
          ([x]) => dot(logsumexpRef(x!, shape, dim, keepdim).data, w),
          [{ shape, data: d }],
          GRAD,
        );
      });
    });
  }
  it('gradient of logsumexp is softmax (large inputs, no overflow)', () => {
    const x = tensor([1000, 1001, 1002], { dtype: 'f32', requiresGrad: true });
    x.logsumexp(0).backward();
    expectClose(x.grad!.dataSync(), [0.09003057317038046, 0.24472847105479767, 0.6652409557748219], FWD);
  });
  it('softmax gradient with large inputs stays finite', () => {
    const x = tensor([1000, 1001, 1002], { dtype: 'f32', requiresGrad: true });
    const w = tensor([1, 0, 0], { dtype: 'f32' });
    x.softmax().mul(w).sum().backward();
    // d p0 / d x_j = p0 (δ0j - p_j)
    const p = [0.09003057317038046, 0.24472847105479767, 0.6652409557748219];
    expectClose(x.grad!.dataSync(), [p[0]! * (1 - p[0]!), -p[0]! * p[1]!, -p[0]! * p[2]!], FWD);
  });
});

describe('gatherRows', () => {
  it('reads rows at integer indices of any shape; out-of-range rows are zero; the gradient counts occurrences', () => {
    const table = tensor([1, 2, 3, 4, 5, 6, 7, 8], { shape: [4, 2], dtype: 'f32', requiresGrad: true });
    const idx = tensor([[3, 0, 3], [1, 9, -1]], { dtype: 'i32' });
    const y = gatherRows(table, idx);
    expect(y.shape).toEqual([2, 3, 2]);
    expectEqual(y.dataSync(), [7, 8, 1, 2, 7, 8, 3, 4, 0, 0, 0, 0]);
    // Weighted sum so each gathered element has its own coefficient: d/d table[v, c] = Σ_{s: idx[s]=v} w[s, c].
    const w = tensor(Array.from({ length: 12 }, (_, i) => i + 1), { shape: [2, 3, 2], dtype: 'f32' });
    y.mul(w).sum().backward();
    // rows: 0 <- s=(0,1): w 3,4; 1 <- (1,0): 7,8; 2 <- none; 3 <- (0,0),(0,2): 1+5, 2+6
    expectEqual(table.grad!.dataSync(), [3, 4, 7, 8, 0, 0, 6, 8]);
  });

  it('fuses into its consumer and reads only the selected rows (one kernel, no one-hot)', () => {
    const table = tensor(Array.from({ length: 1000 * 8 }, (_, i) => i), { shape: [1000, 8], dtype: 'f32' });
    const y = gatherRows(table, tensor([5, 999], { dtype: 'i32' })).mul(2);
    y.realize();
    expect(lastRealizeStats().kernels).toBe(1);
    expectEqual(y.dataSync(), [...Array.from({ length: 8 }, (_, c) => 2 * (40 + c)), ...Array.from({ length: 8 }, (_, c) => 2 * (7992 + c))]);
  });
});
