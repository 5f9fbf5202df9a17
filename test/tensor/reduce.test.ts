/**
 * Reductions: sum, mean, max, min, argmax, argmin, var, std.
 *
 * Tolerances:
 *  - forward, f32 result vs float64 reference: atol 1e-5, rtol 1e-5 (sums of ≤ 24 terms of size ≤ 2).
 *  - gradients vs float64 central differences (eps 1e-3) of a plain-JS reference: atol 1e-3, rtol 1e-3.
 *    max/min are FD-checked only on inputs without ties (values ≥ 0.06 apart, FD step 1e-3); ties are
 *    checked against hand-computed gradients (split evenly among the tied elements).
 *  - integer results (argmax, integer sums) and small exactly representable values: equality.
 */
import { describe, expect, it } from 'vitest';
import { ShapeError, tensor, zeros, type Tensor } from '../../src/index.js';
import { checkGrad, expectClose, expectEqual, weights, wsum, type Tol } from '../helpers/check.js';
import {
  distinctArray,
  dot,
  maxRef,
  meanRef,
  minRef,
  numel,
  randArray,
  sumRef,
  varRef,
  type Arr,
  type Shape,
} from '../helpers/ref.js';

const FWD: Tol = { atol: 1e-5, rtol: 1e-5 };
const GRAD: Tol = { atol: 1e-3, rtol: 1e-3 };

const T = (data: ArrayLike<number>, shape: Shape) => tensor(Float32Array.from(data), { shape, dtype: 'f32' });

const SHAPE = [2, 3, 4];
type Dims = number | number[] | undefined;
const dimCases: Dims[] = [undefined, 0, 1, -1, [0, 2], [-1, -2]];

interface ReduceCase {
  name: string;
  t: (x: Tensor, dim: Dims, keepdim: boolean) => Tensor;
  ref: (x: ArrayLike<number>, shape: Shape, dim: Dims, keepdim: boolean) => Arr;
  /** Data generator: distinct values for max/min. */
  data: (n: number, seed: number) => Float64Array;
}

const cases: ReduceCase[] = [
  {
    name: 'sum',
    t: (x, d, k) => x.sum(d, k),
    ref: (x, s, d, k) => sumRef(x, s, d, k),
    data: (n, s) => randArray(n, s, -2, 2),
  },
  {
    name: 'mean',
    t: (x, d, k) => x.mean(d, k),
    ref: (x, s, d, k) => meanRef(x, s, d, k),
    data: (n, s) => randArray(n, s, -2, 2),
  },
  {
    name: 'max',
    t: (x, d, k) => x.max(d, k),
    ref: (x, s, d, k) => maxRef(x, s, d, k),
    data: (n, s) => distinctArray(n, s, 0.1),
  },
  {
    name: 'min',
    t: (x, d, k) => x.min(d, k),
    ref: (x, s, d, k) => minRef(x, s, d, k),
    data: (n, s) => distinctArray(n, s, 0.1),
  },
  {
    name: 'var',
    t: (x, d, k) => x.var(d, { keepdim: k }),
    ref: (x, s, d, k) => varRef(x, s, d, k, 1),
    data: (n, s) => randArray(n, s, -2, 2),
  },
  {
    name: 'var (correction 0)',
    t: (x, d, k) => x.var(d, { keepdim: k, correction: 0 }),
    ref: (x, s, d, k) => varRef(x, s, d, k, 0),
    data: (n, s) => randArray(n, s, -2, 2),
  },
  {
    name: 'std',
    t: (x, d, k) => x.std(d, { keepdim: k }),
    ref: (x, s, d, k) => {
      const v = varRef(x, s, d, k, 1);
      return { data: v.data.map(Math.sqrt), shape: v.shape };
    },
    data: (n, s) => randArray(n, s, -2, 2),
  },
];

describe('hand-computed reductions', () => {
  const x = () =>
    tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { dtype: 'f32' },
    );
  it('sum', () => {
    const s = x().sum();
    expect(s.shape).toEqual([]);
    expect(s.itemSync()).toBe(21);
    expectEqual(x().sum(0).dataSync(), [5, 7, 9]);
    const k = x().sum(1, true);
    expect(k.shape).toEqual([2, 1]);
    expectEqual(k.dataSync(), [6, 15]);
    expectEqual(x().sum([0, 1]).dataSync(), [21]);
    expectEqual(x().sum(-1).dataSync(), [6, 15]);
  });
  it('mean', () => {
    expect(x().mean().itemSync()).toBe(3.5);
    expectEqual(x().mean(0).dataSync(), [2.5, 3.5, 4.5]);
    expectEqual(x().mean(1).dataSync(), [2, 5]);
  });
  it('max / min', () => {
    expect(x().max().itemSync()).toBe(6);
    expectEqual(x().max(0).dataSync(), [4, 5, 6]);
    expectEqual(x().min(1, true).dataSync(), [1, 4]);
    expect(x().min(1, true).shape).toEqual([2, 1]);
    expectEqual(tensor([-Infinity, -5, -7], { dtype: 'f32' }).max().dataSync(), [-5]);
  });
  it('var / std with Bessel correction by default', () => {
    const v = tensor([1, 2, 3, 4], { dtype: 'f32' });
    expectClose([v.var().itemSync()], [5 / 3], FWD);
    expectClose([v.var(undefined, { correction: 0 }).itemSync()], [1.25], FWD);
    expectClose([v.std().itemSync()], [Math.sqrt(5 / 3)], FWD);
    expectClose(x().var(1).dataSync(), [1, 1], FWD);
    expectClose(x().var(0).dataSync(), [4.5, 4.5, 4.5], FWD);
    const kd = x().std(0, { keepdim: true });
    expect(kd.shape).toEqual([1, 3]);
    expectClose(kd.dataSync(), [Math.sqrt(4.5), Math.sqrt(4.5), Math.sqrt(4.5)], FWD);
  });
  it('var of one element with correction 1 is NaN (PyTorch)', () => {
    expectEqual([tensor([3], { dtype: 'f32' }).var().itemSync()], [NaN]);
  });
  it('size-1 and empty dimensions', () => {
    const c = tensor([[1], [2], [3]], { dtype: 'f32' });
    expect(c.sum(1).shape).toEqual([3]);
    expectEqual(c.sum(1).dataSync(), [1, 2, 3]);
    expect(c.sum(1, true).shape).toEqual([3, 1]);
    expect(c.max(1).shape).toEqual([3]);
    const e = zeros([0, 3]);
    expectEqual(e.sum(0).dataSync(), [0, 0, 0]);
    expect(() => e.max(0)).toThrow(ShapeError);
  });
  it('integer reductions', () => {
    const i = tensor([
      [1, 2],
      [3, 4],
    ]);
    expect(i.sum().dtype).toBe('i32');
    expect(i.sum().itemSync()).toBe(10);
    expect(i.mean().dtype).toBe('f32');
    expect(i.mean().itemSync()).toBe(2.5);
    expect(i.max().dtype).toBe('i32');
    expectEqual(i.max(0).dataSync(), [3, 4]);
    expectEqual(i.min(1).dataSync(), [1, 3]);
  });
});

for (const c of cases) {
  describe(`${c.name} over dims`, () => {
    const n = numel(SHAPE);
    const data = c.data(n, 300 + c.name.length);
    for (const dim of dimCases) {
      for (const keepdim of [false, true]) {
        const label = `dim=${JSON.stringify(dim)} keepdim=${keepdim}`;
        it(`forward ${label}`, () => {
          const y = c.t(T(data, SHAPE), dim, keepdim);
          const r = c.ref(data, SHAPE, dim, keepdim);
          expect(y.shape).toEqual(r.shape);
          expectClose(y.dataSync(), r.data, FWD, `${c.name} ${label}`);
        });
      }
      for (const keepdim of [false, true]) {
        it(`gradient dim=${JSON.stringify(dim)} keepdim=${keepdim}`, () => {
          const outN = numel(c.ref(data, SHAPE, dim, keepdim).shape);
          const w = weights(outN, 400);
          checkGrad(
            ([x]) => wsum(c.t(x!, dim, keepdim), w),
            ([x]) => dot(c.ref(x!, SHAPE, dim, keepdim).data, w),
            [{ shape: SHAPE, data }],
            GRAD,
          );
        });
      }
    }
  });
}

describe('max / min gradients at ties (by hand)', () => {
  it('max over a dim splits the gradient evenly among tied maxima', () => {
    const x = tensor(
      [
        [1, 3, 3],
        [2, 2, 2],
        [0, 5, -1],
      ],
      { dtype: 'f32', requiresGrad: true },
    );
    const m = x.max(1);
    m.backward(tensor([1, 1, 2], { dtype: 'f32' }));
    expectEqual(m.dataSync(), [3, 2, 5]);
    expectClose(x.grad!.dataSync(), [0, 0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 0, 2, 0], { atol: 1e-7, rtol: 1e-6 });
  });
  it('max over all elements with a three-way tie', () => {
    const x = tensor([1, 5, 5, 5], { dtype: 'f32', requiresGrad: true });
    x.max().mul(3).backward();
    expectClose(x.grad!.dataSync(), [0, 1, 1, 1], { atol: 1e-6, rtol: 1e-6 });
  });
  it('min over a dim with ties, keepdim', () => {
    const x = tensor(
      [
        [4, 1, 1, 7],
        [0, 2, 0, 0],
      ],
      { dtype: 'f32', requiresGrad: true },
    );
    const m = x.min(1, true);
    expect(m.shape).toEqual([2, 1]);
    m.sum().backward();
    expectClose(x.grad!.dataSync(), [0, 0.5, 0.5, 0, 1 / 3, 0, 1 / 3, 1 / 3], { atol: 1e-7, rtol: 1e-6 });
  });
});

describe('argmax / argmin', () => {
  const x = () =>
    tensor(
      [
        [3, 7, 7, 1],
        [9, 2, 9, 9],
        [-1, -1, -5, -1],
      ],
      { dtype: 'f32' },
    );
  it('along a dim returns the first index of the extreme value as i32', () => {
    const a = x().argmax(1);
    expect(a.dtype).toBe('i32');
    expect(a.shape).toEqual([3]);
    expectEqual(a.dataSync(), [1, 0, 0]);
    expectEqual(x().argmin(1).dataSync(), [3, 1, 2]);
    expectEqual(x().argmax(0).dataSync(), [1, 0, 1, 1]);
    expectEqual(x().argmin(0).dataSync(), [2, 2, 2, 2]);
    expectEqual(x().argmax(-1).dataSync(), [1, 0, 0]);
  });
  it('keepdim', () => {
    const a = x().argmax(0, true);
    expect(a.shape).toEqual([1, 4]);
    expectEqual(a.dataSync(), [1, 0, 1, 1]);
  });
  it('without dim: index into the flattened tensor', () => {
    const a = x().argmax();
    expect(a.shape).toEqual([]);
    expect(a.itemSync()).toBe(4);
    expect(x().argmin().itemSync()).toBe(10);
  });
  it('matches a reference on distinct random data', () => {
    const d = distinctArray(24, 500);
    const t = T(d, SHAPE);
    for (const dim of [0, 1, 2]) {
      const ref = maxRef(d, SHAPE, dim, false);
      const am = t.argmax(dim).dataSync();
      // the value at the returned index is the maximum
      const got = Array.from(am, (idx, o) => {
        const outShape = SHAPE.filter((_, i) => i !== dim);
        const oi: number[] = [];
        let r = o;
        for (let i = outShape.length - 1; i >= 0; i--) {
          oi.unshift(r % outShape[i]!);
          r = Math.floor(r / outShape[i]!);
        }
        oi.splice(dim, 0, idx);
        return d[(oi[0]! * 3 + oi[1]!) * 4 + oi[2]!]!;
      });
      expectEqual(got, ref.data, `argmax dim ${dim}`);
    }
  });
  it('integer input', () => {
    expectEqual(
      tensor([
        [5, 9, 1],
        [2, 2, 8],
      ])
        .argmax(1)
        .dataSync(),
      [1, 2],
    );
    expectEqual(
      tensor([
        [5, 9, 1],
        [2, 2, 8],
      ])
        .argmin(1)
        .dataSync(),
      [2, 0],
    );
  });
  it('argmax with NaN returns the index of the NaN', () => {
    expect(tensor([1, NaN, 3], { dtype: 'f32' }).argmax().itemSync()).toBe(1);
  });
});

describe('unsigned reductions', () => {
  it('u8 min with a zero', () => {
    expectEqual(tensor([0, 5], { dtype: 'u8' }).min().dataSync(), [0]);
  });
  it('u8 argmin', () => {
    expect(tensor([4, 0, 5], { dtype: 'u8' }).argmin().itemSync()).toBe(1);
  });
  it('u8 max and sum', () => {
    const u = tensor([0, 200, 5], { dtype: 'u8' });
    expectEqual(u.max().dataSync(), [200]);
    expect(u.sum().dtype).toBe('i32');
    expect(u.sum().itemSync()).toBe(205);
  });
});
