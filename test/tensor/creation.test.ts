/**
 * Creation functions: zeros, ones, full, arange, linspace, eye, rand, randn, randint, manualSeed.
 *
 * Tolerances:
 *  - deterministic creators: exact, except fractional arange/linspace steps, compared with the
 *    float64 value rounded to f32 (atol 1e-7, rtol 1e-6).
 *  - random statistics on n = 10 000 samples, bounds at about 5 standard errors so a correct
 *    generator fails with probability < 1e-6 per check (and the streams are seeded, so the
 *    outcome is deterministic anyway):
 *      rand:  mean 0.5 ± 0.015 (σ/√n = 0.0029), variance 1/12 ± 0.004 (s.e. 0.00075),
 *             each of 10 histogram bins 1000 ± 150 (s.e. 30);
 *      randn: mean 0 ± 0.05 (s.e. 0.01), std 1 ± 0.035 (s.e. 0.0071),
 *             P(|z| < 1) = 0.6827 ± 0.025 (s.e. 0.0047).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import {
  arange,
  eye,
  full,
  linspace,
  manualSeed,
  ones,
  rand,
  randint,
  randn,
  ShapeError,
  ValueError,
  zeros,
} from '../../src/index.js';
import { expectClose, expectEqual } from '../helpers/check.js';

const mean = (a: ArrayLike<number>) => Array.from(a).reduce((p, v) => p + v, 0) / a.length;
const variance = (a: ArrayLike<number>) => {
  const m = mean(a);
  return Array.from(a).reduce((p, v) => p + (v - m) ** 2, 0) / (a.length - 1);
};

describe('zeros / ones / full', () => {
  it('shapes, default dtype f32 and values', () => {
    const z = zeros([2, 3]);
    expect(z.shape).toEqual([2, 3]);
    expect(z.dtype).toBe('f32');
    expectEqual(z.dataSync(), [0, 0, 0, 0, 0, 0]);
    const o = ones([3]);
    expect(o.dtype).toBe('f32');
    expectEqual(o.dataSync(), [1, 1, 1]);
    const s = zeros([]);
    expect(s.shape).toEqual([]);
    expect(s.numel).toBe(1);
    expect(s.itemSync()).toBe(0);
    expect(zeros([2, 0]).numel).toBe(0);
    expect(zeros([2, 0]).dataSync().length).toBe(0);
  });
  it('full with value and dtype', () => {
    expectEqual(full([2, 2], 2.5).dataSync(), [2.5, 2.5, 2.5, 2.5]);
    const i = full([3], 7, { dtype: 'i32' });
    expect(i.dtype).toBe('i32');
    expect(i.dataSync()).toBeInstanceOf(Int32Array);
    expectEqual(i.dataSync(), [7, 7, 7]);
    const b = full([2], true);
    expect(b.dtype).toBe('bool');
    expectEqual(b.dataSync(), [1, 1]);
    expectEqual(ones([2], { dtype: 'u8' }).dataSync(), [1, 1]);
    expectEqual(full([1], -Infinity).dataSync(), [-Infinity]);
  });
  it('requiresGrad option', () => {
    const z = zeros([2], { requiresGrad: true });
    expect(z.requiresGrad).toBe(true);
    z.mul(3).sum().backward();
    expectEqual(z.grad!.dataSync(), [3, 3]);
  });
  it('invalid shapes throw ShapeError', () => {
    expect(() => zeros([2, -1])).toThrow(ShapeError);
    expect(() => full([1.5], 0)).toThrow(ShapeError);
  });
});

describe('arange', () => {
  it('integer forms give i32', () => {
    const a = arange(5);
    expect(a.dtype).toBe('i32');
    expect(a.shape).toEqual([5]);
    expectEqual(a.dataSync(), [0, 1, 2, 3, 4]);
    expectEqual(arange(2, 8, 2).dataSync(), [2, 4, 6]);
    expectEqual(arange(2, 9, 2).dataSync(), [2, 4, 6, 8]);
    expectEqual(arange(5, 0, -1).dataSync(), [5, 4, 3, 2, 1]);
    expectEqual(arange(-3, 3, 4).dataSync(), [-3, 1]);
  });
  it('empty ranges', () => {
    expect(arange(3, 3).shape).toEqual([0]);
    expect(arange(0, 5, -1).shape).toEqual([0]);
    expect(arange(0).shape).toEqual([0]);
  });
  it('fractional forms give f32', () => {
    const a = arange(0, 1, 0.25);
    expect(a.dtype).toBe('f32');
    expectEqual(a.dataSync(), [0, 0.25, 0.5, 0.75]);
    expectEqual(arange(1, 2.5, 0.5).dataSync(), [1, 1.5, 2]);
    const t = arange(0, 1, 0.1);
    expect(t.shape).toEqual([10]);
    expectClose(
      t.dataSync(),
      Array.from({ length: 10 }, (_, i) => Math.fround(i * 0.1)),
      { atol: 1e-7, rtol: 1e-6 },
    );
    expectEqual(arange(0.5, 3).dataSync(), [0.5, 1.5, 2.5]);
  });
  it('dtype option', () => {
    const a = arange(3, undefined, 1, { dtype: 'f32' });
    expect(a.dtype).toBe('f32');
    expectEqual(a.dataSync(), [0, 1, 2]);
  });
  it('step 0 throws ValueError', () => {
    expect(() => arange(0, 3, 0)).toThrow(ValueError);
  });
});

describe('linspace', () => {
  it('endpoints included, f32', () => {
    const l = linspace(0, 1, 5);
    expect(l.dtype).toBe('f32');
    expectEqual(l.dataSync(), [0, 0.25, 0.5, 0.75, 1]);
    expectEqual(linspace(-1, 1, 3).dataSync(), [-1, 0, 1]);
    expectEqual(linspace(1, 0, 3).dataSync(), [1, 0.5, 0]);
    const s = linspace(0, 1, 7).dataSync();
    expect(s[6]).toBe(1);
    expectClose(
      s,
      Array.from({ length: 7 }, (_, i) => Math.fround(i / 6)),
      { atol: 1e-7, rtol: 1e-6 },
    );
    expectClose(linspace(0.1, 0.7, 4).dataSync(), [0.1, 0.3, 0.5, 0.7].map(Math.fround), {
      atol: 1e-7,
      rtol: 1e-6,
    });
  });
  it('one and zero steps', () => {
    expectEqual(linspace(2, 5, 1).dataSync(), [2]);
    expect(linspace(2, 5, 0).shape).toEqual([0]);
    expect(() => linspace(0, 1, -1)).toThrow(ValueError);
    expect(() => linspace(0, 1, 2.5)).toThrow(ValueError);
  });
});

describe('eye', () => {
  it('square, rectangular and dtype', () => {
    const e = eye(3);
    expect(e.shape).toEqual([3, 3]);
    expect(e.dtype).toBe('f32');
    expectEqual(e.dataSync(), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expectEqual(eye(2, 3).dataSync(), [1, 0, 0, 0, 1, 0]);
    const i = eye(3, 2, { dtype: 'i32' });
    expect(i.dtype).toBe('i32');
    expect(i.shape).toEqual([3, 2]);
    expectEqual(i.dataSync(), [1, 0, 0, 1, 0, 0]);
  });
});

describe('rand', () => {
  beforeEach(() => manualSeed(1234));
  it('shape, dtype and range [0, 1)', () => {
    const r = rand([4, 5]);
    expect(r.shape).toEqual([4, 5]);
    expect(r.dtype).toBe('f32');
    const v = rand([10_000]).dataSync();
    for (const x of v) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
  });
  it('reproducible with manualSeed; successive draws and seeds differ', () => {
    manualSeed(42);
    const a = Array.from(rand([100]).dataSync());
    const a2 = Array.from(rand([100]).dataSync());
    manualSeed(42);
    const b = Array.from(rand([100]).dataSync());
    const b2 = Array.from(rand([100]).dataSync());
    expect(b).toEqual(a);
    expect(b2).toEqual(a2);
    expect(a2).not.toEqual(a);
    manualSeed(43);
    expect(Array.from(rand([100]).dataSync())).not.toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(95);
  });
  it('the value does not depend on when the tensor is realized', () => {
    manualSeed(7);
    const x = rand([50]);
    const y = rand([50]);
    const yv = Array.from(y.dataSync());
    const xv = Array.from(x.dataSync());
    manualSeed(7);
    expect(Array.from(rand([50]).dataSync())).toEqual(xv);
    expect(Array.from(rand([50]).dataSync())).toEqual(yv);
  });
  it('mean ≈ 0.5, variance ≈ 1/12, flat histogram (n = 10 000)', () => {
    const v = rand([100, 100]).dataSync();
    expect(Math.abs(mean(v) - 0.5)).toBeLessThan(0.015);
    expect(Math.abs(variance(v) - 1 / 12)).toBeLessThan(0.004);
    const bins = new Array(10).fill(0);
    for (const x of v) bins[Math.floor(x * 10)]++;
    for (const b of bins) expect(Math.abs(b - 1000)).toBeLessThan(150);
  });
  it('dtype option', () => {
    const h = rand([8], { dtype: 'f16' });
    expect(h.dtype).toBe('f16');
    for (const x of h.dataSync()) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(1); // rounding to f16 may reach 1
    }
  });
});

describe('randn', () => {
  beforeEach(() => manualSeed(99));
  it('mean ≈ 0, std ≈ 1, P(|z|<1) ≈ 0.6827 (n = 10 000)', () => {
    const v = randn([10_000]).dataSync();
    for (const x of v) expect(Number.isFinite(x)).toBe(true);
    expect(Math.abs(mean(v))).toBeLessThan(0.05);
    expect(Math.abs(Math.sqrt(variance(v)) - 1)).toBeLessThan(0.035);
    const inside = Array.from(v).filter((x) => Math.abs(x) < 1).length / v.length;
    expect(Math.abs(inside - 0.6827)).toBeLessThan(0.025);
  });
  it('reproducible with manualSeed', () => {
    manualSeed(5);
    const a = Array.from(randn([2, 3]).dataSync());
    manualSeed(5);
    const b = Array.from(randn([2, 3]).dataSync());
    expect(b).toEqual(a);
    expect(randn([2, 3]).shape).toEqual([2, 3]);
  });
  it('requiresGrad option makes a leaf', () => {
    const w = randn([3], { requiresGrad: true });
    expect(w.requiresGrad).toBe(true);
    w.mul(2).sum().backward();
    expectEqual(w.grad!.dataSync(), [2, 2, 2]);
  });
});

describe('randint', () => {
  beforeEach(() => manualSeed(2024));
  it('i32 values in [low, high), every value reached', () => {
    const r = randint(-3, 4, [2000]);
    expect(r.dtype).toBe('i32');
    expect(r.shape).toEqual([2000]);
    const v = Array.from(r.dataSync());
    for (const x of v) {
      expect(Number.isInteger(x)).toBe(true);
      expect(x).toBeGreaterThanOrEqual(-3);
      expect(x).toBeLessThan(4);
    }
    expect(new Set(v)).toEqual(new Set([-3, -2, -1, 0, 1, 2, 3]));
    // each of 7 values ≈ 2000/7 ≈ 286 (s.e. ≈ 16); allow ± 90
    for (let k = -3; k < 4; k++)
      expect(Math.abs(v.filter((x) => x === k).length - 2000 / 7)).toBeLessThan(90);
  });
  it('a one-value range and reproducibility', () => {
    expectEqual(randint(5, 6, [4]).dataSync(), [5, 5, 5, 5]);
    manualSeed(11);
    const a = Array.from(randint(0, 100, [20]).dataSync());
    manualSeed(11);
    expect(Array.from(randint(0, 100, [20]).dataSync())).toEqual(a);
  });
  it('invalid bounds throw ValueError', () => {
    expect(() => randint(3, 3, [2])).toThrow(ValueError);
    expect(() => randint(0, 2.5, [2])).toThrow(ValueError);
  });
});
