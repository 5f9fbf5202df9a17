/**
 * Elementwise operators: forward values and gradients.
 *
 * Tolerances:
 *  - forward, f32 result vs float64 closed form / hand values: atol 1e-6, rtol 1e-5 (a few f32 ulps);
 *    composite activations (gelu, silu, sigmoid): atol 2e-6, rtol 2e-5.
 *  - gradients, Tessera f32 autodiff vs float64 central differences (eps 1e-3) of an independent
 *    plain-JS reference: atol 1e-3, rtol 1e-3. Inputs for non-smooth ops stay ≥ 0.05 away from kinks.
 *  - exact (integer, bool, hand-picked exactly representable) results: equality.
 */
import { describe, expect, it } from 'vitest';
import { noGrad, ones, tensor, where, type Tensor, ValueError } from '../../src/index.js';
import { checkGrad, expectClose, expectEqual, weights, wsum, type Tol } from '../helpers/check.js';
import {
  dot,
  erfRef,
  geluRef,
  geluTanhRef,
  map1,
  mapN,
  randArray,
  randAway,
  sigmoidRef,
  type Shape,
} from '../helpers/ref.js';

const FWD: Tol = { atol: 1e-6, rtol: 1e-5 };
const FWD_COMPOSITE: Tol = { atol: 2e-6, rtol: 2e-5 };
const GRAD: Tol = { atol: 1e-3, rtol: 1e-3 };

const f32 = (x: ArrayLike<number>) => Float32Array.from(x);
const T = (data: ArrayLike<number>, shape: Shape) => tensor(f32(data), { shape, dtype: 'f32' });

interface UnaryCase {
  name: string;
  t: (x: Tensor) => Tensor;
  /** Loss for the gradient check when `t` alone has no gradient path (sign: a comparison). */
  gradT?: (x: Tensor) => Tensor;
  gradF?: (x: number) => number;
  f: (x: number) => number;
  data: Float64Array;
  /** Hand-computed points: [input, expected output]. */
  points: [number, number][];
  tol?: Tol;
}

const N = 12;
const unaryCases: UnaryCase[] = [
  {
    name: 'neg',
    t: (x) => x.neg(),
    f: (x) => -x,
    data: randArray(N, 1, -2, 2),
    points: [
      [1.5, -1.5],
      [0, -0],
      [-3, 3],
    ],
  },
  {
    name: 'exp',
    t: (x) => x.exp(),
    f: Math.exp,
    data: randArray(N, 2, -2, 2),
    points: [
      [0, 1],
      [1, Math.E],
      [-1, 1 / Math.E],
    ],
  },
  {
    name: 'log',
    t: (x) => x.log(),
    f: Math.log,
    data: randArray(N, 3, 0.2, 3),
    points: [
      [1, 0],
      [Math.E, 1],
      [0, -Infinity],
      [-1, NaN],
    ],
  },
  {
    name: 'sqrt',
    t: (x) => x.sqrt(),
    f: Math.sqrt,
    data: randArray(N, 4, 0.2, 3),
    points: [
      [4, 2],
      [0, 0],
      [2.25, 1.5],
      [-1, NaN],
    ],
  },
  {
    name: 'rsqrt',
    t: (x) => x.rsqrt(),
    f: (x) => 1 / Math.sqrt(x),
    data: randArray(N, 5, 0.2, 3),
    points: [
      [4, 0.5],
      [0.25, 2],
      [0, Infinity],
    ],
  },
  {
    name: 'reciprocal',
    t: (x) => x.reciprocal(),
    f: (x) => 1 / x,
    data: randAway(N, 6, -3, 3, [0], 0.3),
    points: [
      [4, 0.25],
      [-0.5, -2],
      [0, Infinity],
    ],
  },
  {
    name: 'sin',
    t: (x) => x.sin(),
    f: Math.sin,
    data: randArray(N, 7, -3, 3),
    points: [
      [0, 0],
      [Math.PI / 2, 1],
      [Math.PI / 6, 0.5],
    ],
  },
  {
    name: 'cos',
    t: (x) => x.cos(),
    f: Math.cos,
    data: randArray(N, 8, -3, 3),
    points: [
      [0, 1],
      [Math.PI, -1],
      [Math.PI / 3, 0.5],
    ],
  },
  {
    name: 'tanh',
    t: (x) => x.tanh(),
    f: Math.tanh,
    data: randArray(N, 9, -3, 3),
    points: [
      [0, 0],
      [1, 0.7615941559557649],
      [20, 1],
      [-20, -1],
    ],
  },
  {
    name: 'erf',
    t: (x) => x.erf(),
    f: erfRef,
    data: randArray(N, 10, -2.5, 2.5),
    points: [
      [0, 0],
      [1, 0.8427007929497149],
      [-1, -0.8427007929497149],
      [6, 1],
    ],
  },
  {
    name: 'sigmoid',
    t: (x) => x.sigmoid(),
    f: sigmoidRef,
    data: randArray(N, 11, -4, 4),
    points: [
      [0, 0.5],
      [1, 0.7310585786300049],
      [-100, 0],
      [100, 1],
    ],
    tol: FWD_COMPOSITE,
  },
  {
    name: 'relu',
    t: (x) => x.relu(),
    f: (x) => Math.max(x, 0),
    data: randAway(N, 12, -2, 2, [0]),
    points: [
      [-1, 0],
      [0, 0],
      [2.5, 2.5],
    ],
  },
  {
    name: 'gelu (erf)',
    t: (x) => x.gelu(),
    f: geluRef,
    data: randArray(N, 13, -3, 3),
    points: [
      [0, 0],
      [1, 0.8413447460685429],
      [-1, -0.15865525393145707],
    ],
    tol: FWD_COMPOSITE,
  },
  {
    name: 'gelu (tanh)',
    t: (x) => x.gelu({ approximate: 'tanh' }),
    f: geluTanhRef,
    data: randArray(N, 14, -3, 3),
    points: [
      [0, 0],
      [1, 0.8411919906082768],
    ],
    tol: FWD_COMPOSITE,
  },
  {
    name: 'silu',
    t: (x) => x.silu(),
    f: (x) => x * sigmoidRef(x),
    data: randArray(N, 15, -4, 4),
    points: [
      [0, 0],
      [1, 0.7310585786300049],
    ],
    tol: FWD_COMPOSITE,
  },
  {
    name: 'abs',
    t: (x) => x.abs(),
    f: Math.abs,
    data: randAway(N, 16, -2, 2, [0]),
    points: [
      [-3, 3],
      [0, 0],
      [2.5, 2.5],
    ],
  },
  {
    name: 'sign',
    t: (x) => x.sign(),
    f: Math.sign,
    // sign() is built from comparisons, so its result does not require grad (PyTorch: zero gradient);
    // check that its contribution to a loss is zero.
    gradT: (x) => x.sign().add(x),
    gradF: (x) => Math.sign(x) + x,
    data: randAway(N, 17, -2, 2, [0]),
    points: [
      [-3, -1],
      [0, 0],
      [0.25, 1],
    ],
  },
  {
    name: 'square',
    t: (x) => x.square(),
    f: (x) => x * x,
    data: randArray(N, 18, -2, 2),
    points: [
      [-3, 9],
      [1.5, 2.25],
    ],
  },
];

describe('unary ops', () => {
  for (const c of unaryCases) {
    describe(c.name, () => {
      it('matches hand-computed values', () => {
        const x = T(
          c.points.map(([v]) => v),
          [c.points.length],
        );
        expectClose(
          c.t(x).dataSync(),
          c.points.map(([, e]) => e),
          c.tol ?? FWD,
          `${c.name} at hand points`,
        );
      });

      it('matches the float64 reference on a [3,4] tensor', () => {
        const x = T(c.data, [3, 4]);
        const y = c.t(x);
        expect(y.shape).toEqual([3, 4]);
        expect(y.dtype).toBe('f32');
        expectClose(y.dataSync(), map1(c.data, c.f), c.tol ?? FWD, c.name);
      });

      it('gradient matches finite differences', () => {
        const w = weights(N, 100);
        checkGrad(
          ([x]) => wsum((c.gradT ?? c.t)(x!), w),
          ([x]) => dot(map1(x!, c.gradF ?? c.f), w),
          [{ shape: [3, 4], data: c.data }],
          GRAD,
        );
      });
    });
  }

  it('relu and abs pass zero gradient at exactly 0 (relu) / a subgradient in [-1,1] (abs)', () => {
    const x = tensor([-1, 0, 2], { dtype: 'f32', requiresGrad: true });
    x.relu().sum().backward();
    expectEqual(x.grad!.dataSync(), [0, 0, 1], 'relu grad');
    const y = tensor([-1, 0, 2], { dtype: 'f32', requiresGrad: true });
    y.abs().sum().backward();
    const g = y.grad!.dataSync();
    expect(g[0]).toBe(-1);
    expect(g[2]).toBe(1);
    expect(Math.abs(g[1]!)).toBeLessThanOrEqual(1);
  });

  it('integer inputs to float functions are promoted to f32', () => {
    const x = tensor([1, 4, 9]);
    expect(x.dtype).toBe('i32');
    const y = x.sqrt();
    expect(y.dtype).toBe('f32');
    expectClose(y.dataSync(), [1, 2, 3], FWD);
    expect(x.exp().dtype).toBe('f32');
    // neg and abs keep integer dtypes
    expect(x.neg().dtype).toBe('i32');
    expectEqual(x.neg().dataSync(), [-1, -4, -9]);
    expectEqual(tensor([-3, 0, 5]).abs().dataSync(), [3, 0, 5]);
  });
});

// ---------------------------------------------------------------------------------------------
// Binary arithmetic with broadcasting
// ---------------------------------------------------------------------------------------------

interface BinaryCase {
  name: string;
  t: (a: Tensor, b: Tensor) => Tensor;
  f: (a: number, b: number) => number;
  /** Keep the second operand away from 0 (division). */
  awayFromZero?: boolean;
}
const binaryCases: BinaryCase[] = [
  { name: 'add', t: (a, b) => a.add(b), f: (a, b) => a + b },
  { name: 'sub', t: (a, b) => a.sub(b), f: (a, b) => a - b },
  { name: 'mul', t: (a, b) => a.mul(b), f: (a, b) => a * b },
  { name: 'div', t: (a, b) => a.div(b), f: (a, b) => a / b, awayFromZero: true },
];
const shapePairs: [Shape, Shape][] = [
  [
    [2, 3],
    [2, 3],
  ],
  [
    [3, 1],
    [1, 4],
  ],
  [[2, 3], [3]],
  [[4], [2, 3, 1]],
  [
    [2, 1, 3],
    [4, 1],
  ],
  [[2, 3], []],
];

describe('binary arithmetic', () => {
  it('hand-computed broadcasting [3,1] op [1,4]', () => {
    const a = tensor([[1], [2], [3]], { dtype: 'f32' });
    const b = tensor([[10, 20, 30, 40]], { dtype: 'f32' });
    const sum = a.add(b);
    expect(sum.shape).toEqual([3, 4]);
    expectEqual(sum.dataSync(), [11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43]);
    expectEqual(a.sub(b).dataSync(), [-9, -19, -29, -39, -8, -18, -28, -38, -7, -17, -27, -37]);
    expectEqual(a.mul(b).dataSync(), [10, 20, 30, 40, 20, 40, 60, 80, 30, 60, 90, 120]);
    expectClose(b.div(a).dataSync(), [10, 20, 30, 40, 5, 10, 15, 20, 10 / 3, 20 / 3, 10, 40 / 3], FWD);
  });

  it('scalar operands on either side', () => {
    const a = tensor([1, 2, 4], { dtype: 'f32' });
    expectEqual(a.add(1).dataSync(), [2, 3, 5]);
    expectEqual(a.sub(1).dataSync(), [0, 1, 3]);
    expectEqual(a.mul(-2).dataSync(), [-2, -4, -8]);
    expectEqual(a.div(4).dataSync(), [0.25, 0.5, 1]);
    expectEqual(a.div(0).dataSync(), [Infinity, Infinity, Infinity]);
    expectEqual(tensor([0], { dtype: 'f32' }).div(0).dataSync(), [NaN]);
  });

  it('integer true division gives f32', () => {
    const q = tensor([7, -7, 6]).div(tensor([2, 2, 3]));
    expect(q.dtype).toBe('f32');
    expectClose(q.dataSync(), [3.5, -3.5, 2], FWD);
    expectClose(tensor([1, 2]).div(4).dataSync(), [0.25, 0.5], FWD);
  });

  for (const c of binaryCases) {
    describe(c.name, () => {
      shapePairs.forEach(([sa, sb], k) => {
        const na = sa.reduce((p, s) => p * s, 1);
        const nb = sb.reduce((p, s) => p * s, 1);
        const da = randArray(na, 20 + k, -2, 2);
        const db = c.awayFromZero ? randAway(nb, 40 + k, -2, 2, [0], 0.4) : randArray(nb, 40 + k, -2, 2);
        const ref = () =>
          mapN(
            [
              { data: da, shape: sa },
              { data: db, shape: sb },
            ],
            c.f,
          );
        it(`forward [${sa}] ${c.name} [${sb}]`, () => {
          const y = c.t(T(da, sa), T(db, sb));
          const r = ref();
          expect(y.shape).toEqual(r.shape);
          expectClose(y.dataSync(), r.data, FWD, c.name);
        });
        it(`gradient [${sa}] ${c.name} [${sb}]`, () => {
          const r = ref();
          const w = weights(r.data.length, 200 + k);
          checkGrad(
            ([a, b]) => wsum(c.t(a!, b!), w),
            ([a, b]) =>
              dot(
                mapN(
                  [
                    { data: a!, shape: sa },
                    { data: b!, shape: sb },
                  ],
                  c.f,
                ).data,
                w,
              ),
            [
              { shape: sa, data: da },
              { shape: sb, data: db },
            ],
            GRAD,
          );
        });
      });
      it(`gradient with a scalar number operand`, () => {
        const d = c.awayFromZero ? randAway(6, 60, -2, 2, [0], 0.4) : randArray(6, 60, -2, 2);
        const w = weights(6, 61);
        checkGrad(
          ([a]) => wsum(c.t(a!, tensor([1.75], { dtype: 'f32' }).reshape([])).add(0), w),
          ([a]) =>
            dot(
              map1(a!, (v) => c.f(v, 1.75)),
              w,
            ),
          [{ shape: [2, 3], data: d }],
          GRAD,
        );
      });
    });
  }

  it('x * x accumulates both uses into the gradient (2x)', () => {
    const x = tensor([1.5, -2, 3], { dtype: 'f32', requiresGrad: true });
    x.mul(x).sum().backward();
    expectEqual(x.grad!.dataSync(), [3, -4, 6]);
  });
});

// ---------------------------------------------------------------------------------------------
// pow
// ---------------------------------------------------------------------------------------------

describe('pow', () => {
  it('scalar integer exponents are exact, negative bases allowed', () => {
    const x = tensor([-2, -1.5, 0.5, 3], { dtype: 'f32' });
    expectEqual(x.pow(2).dataSync(), [4, 2.25, 0.25, 9]);
    expectEqual(x.pow(3).dataSync(), [-8, -3.375, 0.125, 27]);
    expectEqual(x.pow(1).dataSync(), [-2, -1.5, 0.5, 3]);
    expectEqual(x.pow(0).dataSync(), [1, 1, 1, 1]);
    expectClose(x.pow(-1).dataSync(), [-0.5, -1 / 1.5, 2, 1 / 3], FWD);
    expectClose(x.pow(-2).dataSync(), [0.25, 1 / 2.25, 4, 1 / 9], FWD);
    expectEqual(x.pow(5).dataSync(), [-32, -7.59375, 0.03125, 243]);
  });

  it('integer tensor to a positive integer power stays integer', () => {
    const y = tensor([2, -3, 4]).pow(3);
    expect(y.dtype).toBe('i32');
    expectEqual(y.dataSync(), [8, -27, 64]);
  });

  it('fractional exponents: closed form on positive bases, NaN on negative bases', () => {
    const x = tensor([4, 0.25, 2, 9], { dtype: 'f32' });
    expectClose(x.pow(0.5).dataSync(), [2, 0.5, Math.SQRT2, 3], FWD);
    expectClose(x.pow(1.5).dataSync(), [8, 0.125, 2 ** 1.5, 27], FWD);
    expectClose(x.pow(-0.5).dataSync(), [0.5, 2, 2 ** -0.5, 1 / 3], FWD);
    expectClose(x.pow(2.5).dataSync(), [32, 0.25 ** 2.5, 2 ** 2.5, 243], FWD);
    expectClose(x.pow(1 / 3).dataSync(), [4 ** (1 / 3), 0.25 ** (1 / 3), 2 ** (1 / 3), 9 ** (1 / 3)], FWD);
    const neg = tensor([-4, -0.5], { dtype: 'f32' });
    expectEqual(neg.pow(0.5).dataSync(), [NaN, NaN]);
    expectEqual(neg.pow(1.5).dataSync(), [NaN, NaN]);
  });

  it('integer exponent 17 on a negative base (exact product expected)', () => {
    expectEqual(tensor([-2], { dtype: 'f32' }).pow(17).dataSync(), [-131072]);
  });

  const intExps = [2, 3, -1, -2, 4];
  for (const e of intExps) {
    it(`gradient of x^${e} (negative and positive bases)`, () => {
      const d = randAway(6, 70 + e, -2, 2, [0], 0.3);
      const w = weights(6, 71);
      checkGrad(
        ([x]) => wsum(x!.pow(e), w),
        ([x]) =>
          dot(
            map1(x!, (v) => v ** e),
            w,
          ),
        [{ shape: [2, 3], data: d }],
        GRAD,
      );
    });
  }
  const fracExps = [0.5, 1.5, -0.5, 2.5, 1 / 3];
  for (const e of fracExps) {
    it(`gradient of x^${e.toFixed(3)} on positive bases`, () => {
      const d = randArray(6, 80, 0.3, 2.5);
      const w = weights(6, 81);
      checkGrad(
        ([x]) => wsum(x!.pow(e), w),
        ([x]) =>
          dot(
            map1(x!, (v) => v ** e),
            w,
          ),
        [{ shape: [2, 3], data: d }],
        GRAD,
      );
    });
  }
  it('pow(0) has zero gradient', () => {
    const x = tensor([1.5, -2], { dtype: 'f32', requiresGrad: true });
    const y = x.pow(0).add(x).sum();
    y.backward();
    expectEqual(x.grad!.dataSync(), [1, 1]);
  });
  it('tensor exponent with broadcasting: gradient to base and exponent', () => {
    const base = randArray(6, 90, 0.4, 2.5);
    const ex = randArray(3, 91, -1.5, 2);
    const w = weights(6, 92);
    checkGrad(
      ([x, y]) => wsum(x!.pow(y!), w),
      ([x, y]) =>
        dot(
          mapN(
            [
              { data: x!, shape: [2, 3] },
              { data: y!, shape: [3] },
            ],
            (a, b) => a ** b,
          ).data,
          w,
        ),
      [
        { shape: [2, 3], data: base },
        { shape: [3], data: ex },
      ],
      GRAD,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// maximum / minimum / clamp
// ---------------------------------------------------------------------------------------------

describe('maximum / minimum', () => {
  it('forward with broadcasting', () => {
    const a = tensor([[1], [5]], { dtype: 'f32' });
    const b = tensor([0, 3, 7], { dtype: 'f32' });
    expectEqual(a.maximum(b).dataSync(), [1, 3, 7, 5, 5, 7]);
    expectEqual(a.minimum(b).dataSync(), [0, 1, 1, 0, 3, 5]);
    expectEqual(b.maximum(2).dataSync(), [2, 3, 7]);
    expectEqual(b.minimum(2).dataSync(), [0, 2, 2]);
  });
  it('gradient away from ties', () => {
    const da = randArray(12, 100, -2, 2);
    const db = randArray(4, 101, -2, 2);
    const w = weights(12, 102);
    for (const [name, op, f] of [
      ['maximum', (a: Tensor, b: Tensor) => a.maximum(b), Math.max],
      ['minimum', (a: Tensor, b: Tensor) => a.minimum(b), Math.min],
    ] as const) {
      // keep every pair at least 0.01 apart so FD steps never cross a tie
      for (let i = 0; i < 12; i++) expect(Math.abs(da[i]! - db[i % 4]!)).toBeGreaterThan(0.01);
      checkGrad(
        ([a, b]) => wsum(op(a!, b!), w),
        ([a, b]) =>
          dot(
            mapN(
              [
                { data: a!, shape: [3, 4] },
                { data: b!, shape: [4] },
              ],
              f,
            ).data,
            w,
          ),
        [
          { shape: [3, 4], data: da },
          { shape: [4], data: db },
        ],
        GRAD,
      );
      void name;
    }
  });
  it('ties split the gradient evenly (checked by hand)', () => {
    const a = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    const b = tensor([3, 2, 1], { dtype: 'f32', requiresGrad: true });
    a.maximum(b).sum().backward();
    expectEqual(a.grad!.dataSync(), [0, 0.5, 1]);
    expectEqual(b.grad!.dataSync(), [1, 0.5, 0]);
    const c = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    const d = tensor([3, 2, 1], { dtype: 'f32', requiresGrad: true });
    c.minimum(d).sum().backward();
    expectEqual(c.grad!.dataSync(), [1, 0.5, 0]);
    expectEqual(d.grad!.dataSync(), [0, 0.5, 1]);
  });
});

describe('clamp', () => {
  const x = [-3, -1, -0.5, 0, 0.5, 2, 4];
  it('forward with min only, max only, both, tensor bounds', () => {
    const t = tensor(x, { dtype: 'f32' });
    expectEqual(t.clamp(-1).dataSync(), [-1, -1, -0.5, 0, 0.5, 2, 4]);
    expectEqual(t.clamp(undefined, 1).dataSync(), [-3, -1, -0.5, 0, 0.5, 1, 1]);
    expectEqual(t.clamp(-1, 1).dataSync(), [-1, -1, -0.5, 0, 0.5, 1, 1]);
    const lo = tensor([[-2], [0]], { dtype: 'f32' });
    const y = t.clamp(lo, 1);
    expect(y.shape).toEqual([2, 7]);
    expectEqual(y.dataSync(), [-2, -1, -0.5, 0, 0.5, 1, 1, 0, 0, 0, 0, 0.5, 1, 1]);
  });
  it('min > max gives max everywhere (PyTorch semantics)', () => {
    expectEqual(tensor(x, { dtype: 'f32' }).clamp(2, 1).dataSync(), [1, 1, 1, 1, 1, 1, 1]);
  });
  it('needs at least one bound', () => {
    expect(() => tensor(x, { dtype: 'f32' }).clamp()).toThrow(ValueError);
  });
  it('gradient is 1 strictly inside the range and 0 outside (FD away from the bounds)', () => {
    const d = randAway(12, 110, -2, 2, [-0.7, 0.9], 0.05);
    const w = weights(12, 111);
    checkGrad(
      ([t]) => wsum(t!.clamp(-0.7, 0.9), w),
      ([t]) =>
        dot(
          map1(t!, (v) => Math.min(Math.max(v, Math.fround(-0.7)), Math.fround(0.9))),
          w,
        ),
      [{ shape: [3, 4], data: d }],
      GRAD,
    );
    const t = tensor([-2, 0, 2], { dtype: 'f32', requiresGrad: true });
    t.clamp(-1, 1).sum().backward();
    expectEqual(t.grad!.dataSync(), [0, 1, 0]);
  });
  it('gradient to tensor bounds', () => {
    const d = randAway(8, 112, -2, 2, [-0.5, 0.5], 0.05);
    const lo = randArray(4, 113, -1.2, -0.3);
    const w = weights(8, 114);
    for (let i = 0; i < 8; i++) expect(Math.abs(d[i]! - lo[i % 4]!)).toBeGreaterThan(0.01);
    checkGrad(
      ([t, l]) => wsum(t!.clamp(l!, 0.5), w),
      ([t, l]) =>
        dot(
          mapN(
            [
              { data: t!, shape: [2, 4] },
              { data: l!, shape: [4] },
            ],
            (v, a) => Math.min(Math.max(v, a), 0.5),
          ).data,
          w,
        ),
      [
        { shape: [2, 4], data: d },
        { shape: [4], data: lo },
      ],
      GRAD,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// where and comparisons
// ---------------------------------------------------------------------------------------------

describe('where', () => {
  it('forward with broadcasting and scalar branches', () => {
    const cond = tensor([[true], [false], [true]]);
    const a = tensor([[1, 2, 3, 4]], { dtype: 'f32' });
    const y = where(cond, a, -1);
    expect(y.shape).toEqual([3, 4]);
    expectEqual(y.dataSync(), [1, 2, 3, 4, -1, -1, -1, -1, 1, 2, 3, 4]);
    const z = where(tensor([true, false, true]), 5, 7);
    expect(z.dtype).toBe('i32');
    expectEqual(z.dataSync(), [5, 7, 5]);
    // a numeric condition counts non-zero as true
    expectEqual(where(tensor([0, 2, -1]), 1, 0).dataSync(), [0, 1, 1]);
  });
  it('gradient flows to the chosen branch only, reduced over broadcast axes', () => {
    const condData = [1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0];
    const da = randArray(4, 120, -2, 2);
    const db = randArray(3, 121, -2, 2);
    const w = weights(12, 122);
    checkGrad(
      ([a, b]) =>
        wsum(
          where(tensor(condData, { shape: [3, 4], dtype: 'bool' }), a!.exp(), b!.reshape([3, 1]).mul(2)),
          w,
        ),
      ([a, b]) => {
        let s = 0;
        for (let i = 0; i < 12; i++)
          s += w[i]! * (condData[i] ? Math.exp(a![i % 4]!) : 2 * b![Math.floor(i / 4)]!);
        return s;
      },
      [
        { shape: [4], data: da },
        { shape: [3], data: db },
      ],
      GRAD,
    );
  });
});

describe('comparisons', () => {
  const a = tensor([[1, 2, 3]], { dtype: 'f32' });
  const b = tensor([[2], [3]], { dtype: 'f32' });
  const cases: [string, (x: Tensor, y: Tensor | number) => Tensor, number[], number[]][] = [
    // [name, op, a op b  (shape [2,3]), a op 2]
    ['lt', (x, y) => x.lt(y), [1, 0, 0, 1, 1, 0], [1, 0, 0]],
    ['le', (x, y) => x.le(y), [1, 1, 0, 1, 1, 1], [1, 1, 0]],
    ['gt', (x, y) => x.gt(y), [0, 0, 1, 0, 0, 0], [0, 0, 1]],
    ['ge', (x, y) => x.ge(y), [0, 1, 1, 0, 0, 1], [0, 1, 1]],
    ['eq', (x, y) => x.eq(y), [0, 1, 0, 0, 0, 1], [0, 1, 0]],
    ['ne', (x, y) => x.ne(y), [1, 0, 1, 1, 1, 0], [1, 0, 1]],
  ];
  for (const [name, op, vsB, vs2] of cases) {
    it(`${name} broadcasts, takes scalars and returns bool`, () => {
      const y = op(a, b);
      expect(y.dtype).toBe('bool');
      expect(y.shape).toEqual([2, 3]);
      expectEqual(y.dataSync(), vsB, `${name} tensor`);
      expectEqual(op(a, 2).dataSync(), vs2, `${name} scalar`);
    });
  }
  it('NaN compares unequal to everything', () => {
    const n = tensor([NaN, 1], { dtype: 'f32' });
    expectEqual(n.eq(n).dataSync(), [0, 1]);
    expectEqual(n.ne(n).dataSync(), [1, 0]);
    expectEqual(n.lt(5).dataSync(), [0, 1]);
  });
  it('comparison results do not require grad', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    expect(x.gt(1).requiresGrad).toBe(false);
  });
  it('logicalNot / logicalAnd / logicalOr', () => {
    const p = tensor([true, true, false, false]);
    const q = tensor([true, false, true, false]);
    expectEqual(p.logicalNot().dataSync(), [0, 0, 1, 1]);
    expectEqual(p.logicalAnd(q).dataSync(), [1, 0, 0, 0]);
    expectEqual(p.logicalOr(q).dataSync(), [1, 1, 1, 0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Autograd plumbing used by every gradient check above
// ---------------------------------------------------------------------------------------------

describe('autograd basics', () => {
  it('backward twice accumulates into .grad', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    x.mul(3).sum().backward();
    x.mul(3).sum().backward();
    expectEqual(x.grad!.dataSync(), [6, 6]);
  });
  it('backward(gradient) on a non-scalar output', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    x.mul(x).backward(tensor([1, 0.5, -1], { dtype: 'f32' }));
    expectEqual(x.grad!.dataSync(), [2, 2, -6]);
  });
  it('noGrad() results do not require grad and act as constants', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    const z = noGrad(() => x.mul(2));
    expect(z.requiresGrad).toBe(false);
    expect(x.mul(2).requiresGrad).toBe(true);
    expect(ones([2]).requiresGrad).toBe(false);
    x.mul(z).sum().backward(); // d/dx (x · c) = c = 2x, not 4x
    expectEqual(x.grad!.dataSync(), [2, 4]);
  });
  it('detach() of a computed tensor stops gradients', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    const e = x.mul(3);
    expect(e.detach().requiresGrad).toBe(false);
    x.mul(e.detach()).sum().backward(); // d/dx (x · c) = c = 3x
    expectEqual(x.grad!.dataSync(), [3, 6]);
  });
  it('detach() of a leaf stops gradients', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    x.mul(x.detach()).sum().backward();
    expectEqual(x.grad!.dataSync(), [1, 2]);
  });
  it('reading the loss before backward() keeps gradients', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    const loss = x.mul(x).sum();
    expect(loss.itemSync()).toBe(14);
    loss.backward();
    expectEqual(x.grad!.dataSync(), [2, 4, 6]);
  });
  it('reading an intermediate before backward() keeps gradients', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    const h = x.mul(2);
    expectEqual(h.dataSync(), [2, 4, 6]);
    h.sum().backward();
    expectEqual(x.grad!.dataSync(), [2, 2, 2]);
  });
  it('gradient of a constant-folded path is still correct (x + 0, x * 1)', () => {
    const x = tensor([1, -2], { dtype: 'f32', requiresGrad: true });
    x.add(0).mul(1).sub(0).sum().backward();
    expectEqual(x.grad!.dataSync(), [1, 1]);
  });
  it('erfRef agrees with a known value (self-check of the reference)', () => {
    expect(Math.abs(erfRef(0.5) - 0.5204998778130465)).toBeLessThan(1e-13);
    expect(Math.abs(erfRef(2.5) - 0.999593047982555)).toBeLessThan(1e-12);
  });
});
