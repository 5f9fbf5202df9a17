/**
 * Movement ops: reshape/view, permute/transpose/T/movedim, expand, unsqueeze/squeeze/flatten, pad,
 * slice, narrow, split/chunk, flip, gather, indexSelect, triu/tril, cat, stack.
 *
 * Tolerances: movement ops only copy values, so forward results must equal the reference exactly
 * (inputs are f32-representable). Gradients vs float64 central differences (eps 1e-3) of a plain-JS
 * reference (index maps computed independently, slicing by Python's slice rules): atol 1e-3, rtol 1e-3.
 */
import { describe, expect, it } from 'vitest';
import {
  arange,
  cat,
  DimError,
  ShapeError,
  stack,
  tensor,
  type SliceSpec,
  type Tensor,
} from '../../src/index.js';
import { checkGrad, expectClose, expectEqual, weights, wsum, type Tol } from '../helpers/check.js';
import {
  catRef,
  dot,
  flipRef,
  gatherRef,
  indexSelectRef,
  numel,
  padRef,
  permuteRef,
  pySliceIndices,
  randArray,
  sliceRef,
  stackRef,
  take,
  triRef,
  type Arr,
  type RefSpec,
  type Shape,
} from '../helpers/ref.js';

const GRAD: Tol = { atol: 1e-3, rtol: 1e-3 };
const T = (data: ArrayLike<number>, shape: Shape) => tensor(Float32Array.from(data), { shape, dtype: 'f32' });

/** Forward (exact) and gradient checks of a one-input movement op against a JS reference. */
function checkOp(
  name: string,
  shape: Shape,
  op: (x: Tensor) => Tensor,
  ref: (x: ArrayLike<number>) => Arr,
  seed: number,
): void {
  const data = randArray(numel(shape), seed, -2, 2);
  it(`${name}: forward`, () => {
    const y = op(T(data, shape));
    const r = ref(data);
    expect(y.shape).toEqual(r.shape);
    expectEqual(y.dataSync(), r.data, name);
  });
  it(`${name}: gradient`, () => {
    const r = ref(data);
    if (r.data.length === 0) return;
    const w = weights(r.data.length, seed + 1);
    checkGrad(
      ([x]) => wsum(op(x!), w),
      ([x]) => dot(ref(x!).data, w),
      [{ shape, data }],
      GRAD,
    );
  });
}

describe('reshape family', () => {
  checkOp(
    'reshape [2,3,4] -> [4,-1]',
    [2, 3, 4],
    (x) => x.reshape(4, -1),
    (x) => ({ data: Float64Array.from(x), shape: [4, 6] }),
    1,
  );
  checkOp(
    'view [2,3,4] -> [24]',
    [2, 3, 4],
    (x) => x.view([24]),
    (x) => ({ data: Float64Array.from(x), shape: [24] }),
    2,
  );
  checkOp(
    'flatten(1)',
    [2, 3, 4],
    (x) => x.flatten(1),
    (x) => ({ data: Float64Array.from(x), shape: [2, 12] }),
    3,
  );
  checkOp(
    'flatten(0, 1)',
    [2, 3, 4],
    (x) => x.flatten(0, 1),
    (x) => ({ data: Float64Array.from(x), shape: [6, 4] }),
    4,
  );
  checkOp(
    'unsqueeze(1).unsqueeze(-1)',
    [2, 3],
    (x) => x.unsqueeze(1).unsqueeze(-1),
    (x) => ({ data: Float64Array.from(x), shape: [2, 1, 3, 1] }),
    5,
  );
  checkOp(
    'squeeze()',
    [1, 3, 1, 2],
    (x) => x.squeeze(),
    (x) => ({ data: Float64Array.from(x), shape: [3, 2] }),
    6,
  );
  checkOp(
    'squeeze(2) keeps other size-1 dims',
    [1, 3, 1, 2],
    (x) => x.squeeze(2),
    (x) => ({ data: Float64Array.from(x), shape: [1, 3, 2] }),
    7,
  );
  it('squeeze of a non-1 dim is a no-op; flatten of a scalar is [1]', () => {
    expect(T([1, 2, 3], [3]).squeeze(0).shape).toEqual([3]);
    expect(T([5], []).flatten().shape).toEqual([1]);
  });
  it('reshape errors', () => {
    expect(() => T(randArray(6, 1), [2, 3]).reshape(4, 2)).toThrow(ShapeError);
    expect(() => T(randArray(6, 1), [2, 3]).reshape(-1, -1)).toThrow(ShapeError);
    expect(() => T(randArray(6, 1), [2, 3]).reshape(4, -1)).toThrow(ShapeError);
  });
});

describe('permute / transpose / T / movedim', () => {
  checkOp(
    'permute(2,0,1)',
    [2, 3, 4],
    (x) => x.permute(2, 0, 1),
    (x) => permuteRef(x, [2, 3, 4], [2, 0, 1]),
    10,
  );
  checkOp(
    'permute([1,2,0])',
    [2, 3, 4],
    (x) => x.permute([1, 2, 0]),
    (x) => permuteRef(x, [2, 3, 4], [1, 2, 0]),
    11,
  );
  checkOp(
    'transpose(0, 2)',
    [2, 3, 4],
    (x) => x.transpose(0, 2),
    (x) => permuteRef(x, [2, 3, 4], [2, 1, 0]),
    12,
  );
  checkOp(
    'transpose() (last two)',
    [2, 3, 4],
    (x) => x.transpose(),
    (x) => permuteRef(x, [2, 3, 4], [0, 2, 1]),
    13,
  );
  checkOp(
    'T of a matrix',
    [3, 5],
    (x) => x.T,
    (x) => permuteRef(x, [3, 5], [1, 0]),
    14,
  );
  checkOp(
    'movedim(0, -1)',
    [2, 3, 4],
    (x) => x.movedim(0, -1),
    (x) => permuteRef(x, [2, 3, 4], [1, 2, 0]),
    15,
  );
  checkOp(
    'movedim(2, 0)',
    [2, 3, 4],
    (x) => x.movedim(2, 0),
    (x) => permuteRef(x, [2, 3, 4], [2, 0, 1]),
    16,
  );
  checkOp(
    'permute then reshape (non-contiguous view)',
    [2, 3, 4],
    (x) => x.permute(1, 0, 2).reshape(3, 8),
    (x) => {
      const p = permuteRef(x, [2, 3, 4], [1, 0, 2]);
      return { data: p.data, shape: [3, 8] };
    },
    17,
  );
  it('hand example', () => {
    const x = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { dtype: 'f32' },
    );
    expectEqual(x.T.dataSync(), [1, 4, 2, 5, 3, 6]);
    expect(x.T.shape).toEqual([3, 2]);
    expect(T([1, 2], [2]).T.shape).toEqual([2]);
  });
  it('permute with a wrong number of axes throws', () => {
    expect(() => T(randArray(6, 1), [2, 3]).permute(0)).toThrow(ShapeError);
  });
});

describe('expand', () => {
  checkOp(
    'expand [3,1] -> [2,3,4]',
    [3, 1],
    (x) => x.expand(2, 3, 4),
    (x) => take(x, [3, 1], [2, 3, 4], (o) => [o[1]!, 0]),
    20,
  );
  checkOp(
    'expand [1,4] -> [3,-1]',
    [1, 4],
    (x) => x.expand([3, -1]),
    (x) => take(x, [1, 4], [3, 4], (o) => [0, o[1]!]),
    21,
  );
  checkOp(
    'expand scalar -> [2,2]',
    [],
    (x) => x.expand(2, 2),
    (x) => take(x, [], [2, 2], () => []),
    22,
  );
  it('expanding a non-1 dim throws', () => {
    expect(() => T(randArray(6, 1), [2, 3]).expand(4, 3)).toThrow(ShapeError);
  });
});

describe('pad', () => {
  const S = [2, 3];
  checkOp(
    'pad last dim [1,2]',
    S,
    (x) => x.pad([1, 2]),
    (x) => padRef(x, S, [1, 2]),
    30,
  );
  checkOp(
    'pad both dims [1,0,0,2]',
    S,
    (x) => x.pad([1, 0, 0, 2]),
    (x) => padRef(x, S, [1, 0, 0, 2]),
    31,
  );
  checkOp(
    'pad with value 1.5',
    S,
    (x) => x.pad([2, 1, 1, 1], 1.5),
    (x) => padRef(x, S, [2, 1, 1, 1], 1.5),
    32,
  );
  checkOp(
    'negative pad crops',
    [3, 4],
    (x) => x.pad([-1, 1, 0, -2]),
    (x) => padRef(x, [3, 4], [-1, 1, 0, -2]),
    33,
  );
  checkOp(
    'pad 3-d middle dim',
    [2, 2, 3],
    (x) => x.pad([0, 0, 2, 1]),
    (x) => padRef(x, [2, 2, 3], [0, 0, 2, 1]),
    34,
  );
  it('hand example', () => {
    const y = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { dtype: 'f32' },
    ).pad([1, 0, 0, 1], 9);
    expect(y.shape).toEqual([3, 3]);
    expectEqual(y.dataSync(), [9, 1, 2, 9, 3, 4, 9, 9, 9]);
  });
  it('odd number of pads throws', () => {
    expect(() => T(randArray(6, 1), S).pad([1])).toThrow(ShapeError);
  });
});

describe('slice', () => {
  const S = [4, 6];
  const specs: RefSpec[][] = [
    [null, [1, undefined, 2]],
    [[undefined, undefined, -1]],
    [
      [3, 0, -2],
      [5, 1, -2],
    ],
    [1],
    [-1, [undefined, undefined, -3]],
    [
      [-3, undefined],
      [2, 100],
    ],
    [
      [-100, 2, 1],
      [undefined, -7, -1],
    ],
    [null, [4, -5, -1]],
    [
      [1, 3],
      [-2, undefined, -1],
    ],
    [null, [undefined, undefined, 4]],
  ];
  specs.forEach((sp, k) => {
    checkOp(
      `x[${sp.map((s) => JSON.stringify(s)).join(', ')}]`,
      S,
      (x) => x.slice(...(sp as SliceSpec[])),
      (x) => sliceRef(x, S, sp),
      40 + k,
    );
  });
  const S3 = [3, 4, 5];
  checkOp(
    '3-d x[::2, -2, 4:0:-3]',
    S3,
    (x) => x.slice([undefined, undefined, 2], -2, [4, 0, -3]),
    (x) => sliceRef(x, S3, [[undefined, undefined, 2], -2, [4, 0, -3]]),
    60,
  );
  it('empty slices', () => {
    const x = T(randArray(24, 61), S);
    expect(x.slice([5, 1]).shape).toEqual([0, 6]);
    expect(x.slice(null, [4, 2]).shape).toEqual([4, 0]);
    expect(x.slice(null, [-20, undefined, -1]).shape).toEqual([4, 0]);
  });
  it('hand example: arange(10)[8:2:-2] == [8, 6, 4]; [5::-2] == [5, 3, 1]', () => {
    const a = arange(10);
    expectEqual(a.slice([8, 2, -2]).dataSync(), [8, 6, 4]);
    expectEqual(a.slice([5, undefined, -2]).dataSync(), [5, 3, 1]);
    expectEqual(a.slice([-1, -4, -1]).dataSync(), [9, 8, 7]);
    expectEqual(a.slice([1, undefined, 3]).dataSync(), [1, 4, 7]);
  });
  it('reference self-check: Python slice indices', () => {
    expect(pySliceIndices(10, 8, 2, -2)).toEqual([8, 6, 4]);
    expect(pySliceIndices(10, undefined, undefined, -3)).toEqual([9, 6, 3, 0]);
    expect(pySliceIndices(6, -100, 2)).toEqual([0, 1]);
    expect(pySliceIndices(6, undefined, -7, -1)).toEqual([5, 4, 3, 2, 1, 0]);
    expect(pySliceIndices(6, 5, -1, -1)).toEqual([]);
  });
  it('errors: index out of range, too many specs, zero step', () => {
    const x = T(randArray(24, 62), S);
    expect(() => x.slice(4)).toThrow(DimError);
    expect(() => x.slice(null, null, null)).toThrow(DimError);
    expect(() => x.slice([0, 2, 0])).toThrow();
  });
});

describe('narrow / split / chunk', () => {
  const S = [5, 4];
  checkOp(
    'narrow(0, 1, 3)',
    S,
    (x) => x.narrow(0, 1, 3),
    (x) => sliceRef(x, S, [[1, 4]]),
    70,
  );
  checkOp(
    'narrow(1, -3, 2)',
    S,
    (x) => x.narrow(1, -3, 2),
    (x) => sliceRef(x, S, [null, [1, 3]]),
    71,
  );
  it('split by size (uneven last piece) and by sizes; forward', () => {
    const d = randArray(20, 72);
    const x = T(d, S);
    const parts = x.split(2);
    expect(parts.map((p) => p.shape)).toEqual([
      [2, 4],
      [2, 4],
      [1, 4],
    ]);
    expectEqual(parts[2]!.dataSync(), sliceRef(d, S, [[4, 5]]).data);
    const cols = x.split([1, 3], 1);
    expect(cols.map((p) => p.shape)).toEqual([
      [5, 1],
      [5, 3],
    ]);
    expectEqual(cols[1]!.dataSync(), sliceRef(d, S, [null, [1, 4]]).data);
    expect(() => x.split([2, 2], 0)).toThrow(ShapeError);
  });
  it('chunk: ceil-sized pieces like torch.chunk', () => {
    const x = T(randArray(6, 73), [6]);
    expect(x.chunk(4).map((p) => p.shape[0])).toEqual([2, 2, 2]);
    expect(x.chunk(3).map((p) => p.shape[0])).toEqual([2, 2, 2]);
    expect(
      T(randArray(5, 73), [5])
        .chunk(2)
        .map((p) => p.shape[0]),
    ).toEqual([3, 2]);
  });
  it('gradient through split pieces (unused piece gets zero)', () => {
    const d = randArray(20, 74);
    const w0 = weights(8, 75);
    const w2 = weights(4, 76);
    checkGrad(
      ([x]) => {
        const [p0, , p2] = x!.split(2);
        return wsum(p0!, w0).add(wsum(p2!.exp(), w2));
      },
      ([x]) =>
        dot(sliceRef(x!, S, [[0, 2]]).data, w0) + dot(sliceRef(x!, S, [[4, 5]]).data.map(Math.exp), w2),
      [{ shape: S, data: d }],
      GRAD,
    );
  });
});

describe('flip', () => {
  const S = [2, 3, 4];
  checkOp(
    'flip(0)',
    S,
    (x) => x.flip(0),
    (x) => flipRef(x, S, [0]),
    80,
  );
  checkOp(
    'flip([0, 2])',
    S,
    (x) => x.flip([0, 2]),
    (x) => flipRef(x, S, [0, 2]),
    81,
  );
  checkOp(
    'flip(-1) after permute',
    S,
    (x) => x.permute(2, 1, 0).flip(-1),
    (x) => {
      const p = permuteRef(x, S, [2, 1, 0]);
      return flipRef(p.data, p.shape, [-1]);
    },
    82,
  );
  it('hand example', () => {
    expectEqual(
      tensor([
        [1, 2, 3],
        [4, 5, 6],
      ])
        .flip(1)
        .dataSync(),
      [3, 2, 1, 6, 5, 4],
    );
  });
});

describe('gather / indexSelect', () => {
  const S = [3, 4];
  const idx0 = [2, 0, 1, 2, 0, 0, 2, 1]; // shape [2,4], dim 0, repeats
  const idx1 = [3, 3, 0, 1, 2, 0]; // shape [3,2], dim 1, repeats
  checkOp(
    'gather(0, [2,4] index)',
    S,
    (x) => x.gather(0, tensor(idx0, { shape: [2, 4] })),
    (x) => gatherRef(x, S, 0, idx0, [2, 4]),
    90,
  );
  checkOp(
    'gather(1, [3,2] index)',
    S,
    (x) => x.gather(1, tensor(idx1, { shape: [3, 2] })),
    (x) => gatherRef(x, S, 1, idx1, [3, 2]),
    91,
  );
  const idx2 = [1, 0, 1, 1, 0, 0];
  checkOp(
    'gather(-1) on 3-d with a smaller index',
    [2, 3, 2],
    (x) => x.gather(-1, tensor(idx2, { shape: [1, 3, 2] })),
    (x) => gatherRef(x, [2, 3, 2], -1, idx2, [1, 3, 2]),
    92,
  );
  checkOp(
    'indexSelect(0, [2,2,0])',
    S,
    (x) => x.indexSelect(0, tensor([2, 2, 0])),
    (x) => indexSelectRef(x, S, 0, [2, 2, 0]),
    93,
  );
  checkOp(
    'indexSelect(1, [3,1,1,0,2])',
    S,
    (x) => x.indexSelect(1, tensor([3, 1, 1, 0, 2])),
    (x) => indexSelectRef(x, S, 1, [3, 1, 1, 0, 2]),
    94,
  );
  checkOp(
    'indexSelect(-1) on 3-d',
    [2, 2, 3],
    (x) => x.indexSelect(-1, tensor([2, 0])),
    (x) => indexSelectRef(x, [2, 2, 3], -1, [2, 0]),
    95,
  );
  it('hand example: gather along dim 1', () => {
    const x = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { dtype: 'f32' },
    );
    const y = x.gather(
      1,
      tensor([
        [0, 0],
        [1, 0],
      ]),
    );
    expectEqual(y.dataSync(), [1, 1, 4, 3]);
  });
  it('repeated indices accumulate gradient', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    x.indexSelect(0, tensor([2, 2, 0, 2]))
      .sum()
      .backward();
    expectEqual(x.grad!.dataSync(), [1, 0, 3]);
  });
  it('index of the wrong rank throws', () => {
    expect(() => T(randArray(12, 1), S).gather(0, tensor([0, 1]))).toThrow(ShapeError);
    expect(() => T(randArray(12, 1), S).indexSelect(0, tensor([[0, 1]]))).toThrow(ShapeError);
  });
  it('indexSelect ignores non-finite values that are not selected', () => {
    expectEqual(
      tensor([1, Infinity, 3], { dtype: 'f32' })
        .indexSelect(0, tensor([0, 2]))
        .dataSync(),
      [1, 3],
    );
  });
  it('gather ignores non-finite values that are not selected', () => {
    expectEqual(
      tensor([[1, NaN, 3]], { dtype: 'f32' })
        .gather(1, tensor([[0, 2]]))
        .dataSync(),
      [1, 3],
    );
  });
});

describe('triu / tril', () => {
  const S = [3, 4];
  for (const d of [0, 1, -1]) {
    checkOp(
      `triu(${d})`,
      S,
      (x) => x.triu(d),
      (x) => triRef(x, S, d, true),
      100 + d,
    );
    checkOp(
      `tril(${d})`,
      S,
      (x) => x.tril(d),
      (x) => triRef(x, S, d, false),
      110 + d,
    );
  }
  checkOp(
    'triu batched [2,3,3]',
    [2, 3, 3],
    (x) => x.triu(),
    (x) => triRef(x, [2, 3, 3], 0, true),
    120,
  );
  checkOp(
    'tril batched [2,3,3], diagonal -1',
    [2, 3, 3],
    (x) => x.tril(-1),
    (x) => triRef(x, [2, 3, 3], -1, false),
    121,
  );
  it('hand example', () => {
    const x = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
      ],
      { dtype: 'f32' },
    );
    expectEqual(x.triu().dataSync(), [1, 2, 3, 0, 5, 6, 0, 0, 9]);
    expectEqual(x.tril(-1).dataSync(), [0, 0, 0, 4, 0, 0, 7, 8, 0]);
    expect(() => tensor([1, 2, 3]).triu()).toThrow(ShapeError);
  });
});

describe('cat / stack', () => {
  const A = { shape: [2, 3], data: randArray(6, 130) };
  const B = { shape: [1, 3], data: randArray(3, 131) };
  const C = { shape: [2, 2], data: randArray(4, 132) };
  it('cat hand example and dtype promotion', () => {
    const y = cat(
      [
        tensor([[1, 2]]),
        tensor([
          [3, 4],
          [5, 6],
        ]),
      ],
      0,
    );
    expect(y.shape).toEqual([3, 2]);
    expectEqual(y.dataSync(), [1, 2, 3, 4, 5, 6]);
    const z = cat([tensor([1, 2]), tensor([0.5], { dtype: 'f32' })]);
    expect(z.dtype).toBe('f32');
    expectEqual(z.dataSync(), [1, 2, 0.5]);
    expectEqual(cat([tensor([true]), tensor([false, true])]).dataSync(), [1, 0, 1]);
  });
  it('cat forward along 0 and -1', () => {
    const y0 = cat([T(A.data, A.shape), T(B.data, B.shape)], 0);
    expectEqual(y0.dataSync(), catRef([A, B], 0).data);
    const y1 = cat([T(A.data, A.shape), T(C.data, C.shape), T(A.data, A.shape)], -1);
    const r1 = catRef([A, C, A], -1);
    expect(y1.shape).toEqual(r1.shape);
    expectEqual(y1.dataSync(), r1.data);
  });
  it('cat gradient (dim 0)', () => {
    const w = weights(9, 133);
    checkGrad(
      ([a, b]) => wsum(cat([a!, b!], 0), w),
      ([a, b]) =>
        dot(
          catRef(
            [
              { data: a!, shape: A.shape },
              { data: b!, shape: B.shape },
            ],
            0,
          ).data,
          w,
        ),
      [A, B],
      GRAD,
    );
  });
  it('cat gradient (dim 1, the same tensor twice, plus a constant)', () => {
    const w = weights(2 * 10, 134);
    const K = T([1, 2, 3, 4], [2, 2]);
    checkGrad(
      ([a, c]) => wsum(cat([a!, c!, K, a!], 1), w),
      ([a, c]) =>
        dot(
          catRef(
            [
              { data: a!, shape: A.shape },
              { data: c!, shape: C.shape },
              { data: [1, 2, 3, 4], shape: [2, 2] },
              { data: a!, shape: A.shape },
            ],
            1,
          ).data,
          w,
        ),
      [A, C],
      GRAD,
    );
  });
  for (const dim of [0, 1, -1]) {
    it(`stack dim ${dim}: forward and gradient`, () => {
      const P = { shape: [2, 3], data: randArray(6, 135) };
      const Q = { shape: [2, 3], data: randArray(6, 136) };
      const y = stack([T(P.data, P.shape), T(Q.data, Q.shape)], dim);
      const r = stackRef([P, Q], dim);
      expect(y.shape).toEqual(r.shape);
      expectEqual(y.dataSync(), r.data);
      const w = weights(12, 137);
      checkGrad(
        ([p, q]) => wsum(stack([p!, q!], dim), w),
        ([p, q]) =>
          dot(
            stackRef(
              [
                { data: p!, shape: P.shape },
                { data: q!, shape: Q.shape },
              ],
              dim,
            ).data,
            w,
          ),
        [P, Q],
        GRAD,
      );
    });
  }
  it('shape mismatches throw ShapeError', () => {
    expect(() => cat([T(A.data, A.shape), T(C.data, C.shape)], 0)).toThrow(ShapeError);
    expect(() => stack([T(A.data, A.shape), T(B.data, B.shape)])).toThrow(ShapeError);
  });
});

describe('composed views', () => {
  it('slice of a flipped, padded, permuted tensor; gradient', () => {
    const S = [3, 4];
    const d = randArray(12, 140);
    const ref = (x: ArrayLike<number>): Arr => {
      const p = permuteRef(x, S, [1, 0]); // [4,3]
      const q = padRef(p.data, p.shape, [1, 1], 0.5); // [4,5]
      const f = flipRef(q.data, q.shape, [0]);
      return sliceRef(f.data, f.shape, [
        [undefined, undefined, 2],
        [4, undefined, -2],
      ]);
    };
    const op = (x: Tensor) =>
      x.permute(1, 0).pad([1, 1], 0.5).flip(0).slice([undefined, undefined, 2], [4, undefined, -2]);
    const y = op(T(d, S));
    const r = ref(d);
    expect(y.shape).toEqual(r.shape);
    expectEqual(y.dataSync(), r.data);
    const w = weights(r.data.length, 141);
    checkGrad(
      ([x]) => wsum(op(x!).mul(op(x!)), w),
      ([x]) =>
        dot(
          ref(x!).data.map((v) => v * v),
          w,
        ),
      [{ shape: S, data: d }],
      GRAD,
    );
  });
  it('contiguous() keeps values and gradients', () => {
    const d = randArray(6, 142);
    const w = weights(6, 143);
    checkGrad(
      ([x]) => wsum(x!.T.contiguous().exp(), w),
      ([x]) => dot(permuteRef(x!, [2, 3], [1, 0]).data.map(Math.exp), w),
      [{ shape: [2, 3], data: d }],
      GRAD,
    );
    expectClose(T(d, [2, 3]).T.contiguous().dataSync(), permuteRef(d, [2, 3], [1, 0]).data, {
      atol: 0,
      rtol: 0,
    });
  });
});
