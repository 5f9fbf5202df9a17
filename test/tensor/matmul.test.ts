/**
 * matmul (2-d, batched with broadcast batch dims, 1-d operands) and linear.
 *
 * Tolerances:
 *  - forward vs float64 reference: atol 1e-5, rtol 1e-5 for inner sizes ≤ 8 with |x| ≤ 2
 *    (f32 accumulation error ≈ K·2⁻²⁴·Σ|ab|); atol 1e-4, rtol 1e-4 for the K = 32 case.
 *  - integer matmul: exact.
 *  - gradients vs float64 central differences (eps 1e-3) of a plain-JS matmul: atol 1e-3, rtol 1e-3.
 */
import { describe, expect, it } from 'vitest';
import { ShapeError, tensor, type Tensor } from '../../src/index.js';
import { checkGrad, expectClose, expectEqual, weights, wsum, type Tol } from '../helpers/check.js';
import { dot, mapN, matmulRef, numel, permuteRef, randArray, type Shape } from '../helpers/ref.js';

const FWD: Tol = { atol: 1e-5, rtol: 1e-5 };
const FWD_LARGE: Tol = { atol: 1e-4, rtol: 1e-4 };
const GRAD: Tol = { atol: 1e-3, rtol: 1e-3 };
const T = (data: ArrayLike<number>, shape: Shape) => tensor(Float32Array.from(data), { shape, dtype: 'f32' });

describe('matmul', () => {
  it('hand example 2x2', () => {
    const y = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { dtype: 'f32' },
    ).matmul(
      tensor(
        [
          [5, 6],
          [7, 8],
        ],
        { dtype: 'f32' },
      ),
    );
    expect(y.shape).toEqual([2, 2]);
    expectEqual(y.dataSync(), [19, 22, 43, 50]);
  });
  it('hand example: vector-vector, matrix-vector, vector-matrix', () => {
    const v = tensor([1, 2, 3], { dtype: 'f32' });
    const m = tensor(
      [
        [1, 0, 2],
        [0, 1, -1],
      ],
      { dtype: 'f32' },
    );
    const vv = v.matmul(v);
    expect(vv.shape).toEqual([]);
    expect(vv.itemSync()).toBe(14);
    const mv = m.matmul(v);
    expect(mv.shape).toEqual([2]);
    expectEqual(mv.dataSync(), [7, -1]);
    const vm = tensor([1, -1], { dtype: 'f32' }).matmul(m);
    expect(vm.shape).toEqual([3]);
    expectEqual(vm.dataSync(), [1, -1, 3]);
  });
  it('integer matmul is exact and stays i32', () => {
    const y = tensor([[1, 2, 3]]).matmul(tensor([[4], [5], [6]]));
    expect(y.dtype).toBe('i32');
    expectEqual(y.dataSync(), [32]);
  });

  const cases: [Shape, Shape][] = [
    [
      [3, 4],
      [4, 5],
    ],
    [
      [2, 3, 4],
      [4, 2],
    ],
    [
      [3, 4],
      [2, 4, 2],
    ],
    [
      [2, 3, 4],
      [2, 4, 5],
    ],
    [
      [2, 1, 3, 4],
      [5, 4, 2],
    ],
    [
      [1, 3, 4],
      [2, 4, 2],
    ],
    [[4], [4, 3]],
    [[3, 4], [4]],
    [[4], [4]],
    [[4], [2, 4, 3]],
    [[2, 3, 4], [4]],
  ];
  cases.forEach(([sa, sb], k) => {
    const da = randArray(numel(sa), 500 + k, -2, 2);
    const db = randArray(numel(sb), 600 + k, -2, 2);
    it(`[${sa}] @ [${sb}]: forward`, () => {
      const y = T(da, sa).matmul(T(db, sb));
      const r = matmulRef(da, sa, db, sb);
      expect(y.shape).toEqual(r.shape);
      expectClose(y.dataSync(), r.data, FWD, 'matmul');
    });
    it(`[${sa}] @ [${sb}]: gradient`, () => {
      const r = matmulRef(da, sa, db, sb);
      const w = weights(r.data.length, 700 + k);
      checkGrad(
        ([a, b]) => wsum(a!.matmul(b!), w),
        ([a, b]) => dot(matmulRef(a!, sa, b!, sb).data, w),
        [
          { shape: sa, data: da },
          { shape: sb, data: db },
        ],
        GRAD,
      );
    });
  });

  it('larger product [16,32] @ [32,8]', () => {
    const da = randArray(16 * 32, 801, -2, 2);
    const db = randArray(32 * 8, 802, -2, 2);
    expectClose(
      T(da, [16, 32])
        .matmul(T(db, [32, 8]))
        .dataSync(),
      matmulRef(da, [16, 32], db, [32, 8]).data,
      FWD_LARGE,
    );
  });

  it('transposed operands and a fused prologue/epilogue: relu(exp(a)·2 @ bᵀ + c)', () => {
    const da = randArray(6, 810, -1, 1);
    const db = randArray(8, 811, -1, 1);
    const dc = randArray(4, 812, -1, 1);
    const pre = (a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number>) => {
      const ea = Float64Array.from(a, (v) => 2 * Math.exp(v));
      const bt = permuteRef(b, [4, 2], [1, 0]);
      const m = matmulRef(ea, [3, 2], bt.data, [2, 4]);
      return mapN(
        [
          { data: m.data, shape: m.shape },
          { data: c, shape: [4] },
        ],
        (x, y) => x + y - 2,
      ).data;
    };
    const ref = (a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number>) =>
      pre(a, b, c).map((v) => Math.max(v, 0));
    const op = (a: Tensor, b: Tensor, c: Tensor) => a.exp().mul(2).matmul(b.T).add(c).sub(2).relu();
    const r = ref(da, db, dc);
    expectClose(op(T(da, [3, 2]), T(db, [4, 2]), T(dc, [4])).dataSync(), r, FWD);
    // keep the relu away from its kink for the FD check
    const p = pre(da, db, dc);
    for (const v of p) expect(Math.abs(v)).toBeGreaterThan(1e-2);
    expect(p.some((v) => v < 0) && p.some((v) => v > 0)).toBe(true);
    const w = weights(12, 813);
    checkGrad(
      ([a, b, c]) => wsum(op(a!, b!, c!), w),
      ([a, b, c]) => dot(ref(a!, b!, c!), w),
      [
        { shape: [3, 2], data: da },
        { shape: [4, 2], data: db },
        { shape: [4], data: dc },
      ],
      GRAD,
    );
  });

  it('errors name both shapes', () => {
    const a = T(randArray(6, 1), [2, 3]);
    expect(() => a.matmul(T(randArray(8, 1), [4, 2]))).toThrow(ShapeError);
    expect(() => a.matmul(T(randArray(8, 1), [4, 2]))).toThrow(/\[2,3\].*\[4,2\]/);
    expect(() => T(randArray(24, 1), [2, 3, 4]).matmul(T(randArray(24, 1), [3, 4, 2]))).toThrow(ShapeError);
    expect(() => a.matmul(T([1], []))).toThrow(ShapeError);
  });
});

describe('linear', () => {
  const dx = randArray(2 * 3, 900, -2, 2);
  const dw = randArray(4 * 3, 901, -1, 1);
  const db = randArray(4, 902, -1, 1);
  const ref = (x: ArrayLike<number>, w: ArrayLike<number>, b?: ArrayLike<number>) => {
    const wt = permuteRef(w, [4, 3], [1, 0]);
    const y = matmulRef(x, [2, 3], wt.data, [3, 4]);
    return b ? y.data.map((v, i) => v + b[i % 4]!) : y.data;
  };
  it('forward with and without bias', () => {
    const y = T(dx, [2, 3]).linear(T(dw, [4, 3]), T(db, [4]));
    expect(y.shape).toEqual([2, 4]);
    expectClose(y.dataSync(), ref(dx, dw, db), FWD);
    expectClose(
      T(dx, [2, 3])
        .linear(T(dw, [4, 3]))
        .dataSync(),
      ref(dx, dw),
      FWD,
    );
  });
  it('gradient to input, weight and bias', () => {
    const w8 = weights(8, 903);
    checkGrad(
      ([x, w, b]) => wsum(x!.linear(w!, b!), w8),
      ([x, w, b]) => dot(ref(x!, w!, b!), w8),
      [
        { shape: [2, 3], data: dx },
        { shape: [4, 3], data: dw },
        { shape: [4], data: db },
      ],
      GRAD,
    );
  });
});
