/**
 * Self-tests of the test harness (test/helpers): the assertions must fail loudly on wrong values and
 * wrong gradients, or the operator suites prove nothing.
 *
 * Tolerances: numericGrad on smooth float64 functions with eps 1e-3 is accurate to ~1e-6 (checked
 * with atol 1e-6); checkGrad is run with atol/rtol 1e-3 as in the operator suites.
 */
import { describe, expect, it } from 'vitest';
import { checkGrad, expectClose, numericGrad, weights, wsum } from '../helpers/check.js';
import {
  broadcastShape,
  dot,
  matmulRef,
  pySliceIndices,
  sliceRef,
  softmaxRef,
  sumRef,
} from '../helpers/ref.js';

describe('expectClose', () => {
  it('passes within tolerance, NaN matches NaN, infinities match exactly', () => {
    expectClose([1, 2.000001, NaN, Infinity], [1, 2, NaN, Infinity], { atol: 1e-5, rtol: 0 });
  });
  it('fails with the index and both values in the message', () => {
    expect(() => expectClose([1, 2, 3], [1, 2.5, 3], { atol: 1e-3, rtol: 0 }, 'demo')).toThrow(
      /demo: 1 of 3 .*\[1\] actual=2 expected=2\.5/s,
    );
    expect(() => expectClose([1, NaN], [1, 2])).toThrow(/\[1\] actual=NaN/);
    expect(() => expectClose([Infinity], [-Infinity])).toThrow(/actual=Infinity expected=-Infinity/);
    expect(() => expectClose([1, 2], [1, 2, 3])).toThrow(/length 2 differs from expected length 3/);
  });
});

describe('numericGrad', () => {
  it('central differences of smooth functions', () => {
    const [g0, g1] = numericGrad(
      ([x, y]) => Math.sin(x![0]!) * y![0]! + x![1]! ** 3,
      [Float64Array.of(0.3, -1.2), Float64Array.of(2)],
      1e-3,
    );
    expectClose(g0!, [Math.cos(0.3) * 2, 3 * 1.44], { atol: 1e-5, rtol: 0 });
    expectClose(g1!, [Math.sin(0.3)], { atol: 1e-6, rtol: 0 });
  });
  it('does not modify its inputs', () => {
    const x = Float64Array.of(1, 2);
    numericGrad(([v]) => v![0]! * v![1]!, [x]);
    expect(Array.from(x)).toEqual([1, 2]);
  });
});

describe('checkGrad', () => {
  const data = { shape: [2, 2], data: [0.5, -1, 1.5, 2] };
  it('accepts a correct gradient', () => {
    checkGrad(
      ([x]) => x!.mul(x!).sum(),
      ([x]) => dot(x!, x!),
      [data],
      { atol: 1e-3, rtol: 1e-3 },
    );
  });
  it('rejects a wrong reference (forward value)', () => {
    expect(() =>
      checkGrad(
        ([x]) => x!.mul(x!).sum(),
        ([x]) => dot(x!, x!) + 0.1,
        [data],
        { atol: 1e-3, rtol: 1e-3 },
      ),
    ).toThrow(/forward value/);
  });
  it('rejects a gradient that differs (same value at the point, different slope)', () => {
    // x·x and x·x0 agree at x0 but differ in gradient by a factor of 2
    const x0 = data.data.slice();
    expect(() =>
      checkGrad(
        ([x]) => x!.mul(x!).sum(),
        ([x]) => dot(x!, x0),
        [data],
        { atol: 1e-3, rtol: 1e-3 },
      ),
    ).toThrow(/grad of input 0/);
  });
  it('wsum and weights are deterministic and non-uniform', () => {
    const w = weights(5, 3);
    expect(Array.from(weights(5, 3))).toEqual(Array.from(w));
    expect(new Set(Array.from(w)).size).toBe(5);
    for (const v of w) expect(Math.abs(v)).toBeGreaterThanOrEqual(0.25);
    const w4 = w.subarray(0, 4);
    checkGrad(
      ([x]) => wsum(x!, w4),
      ([x]) => dot(x!, w4),
      [data],
      { atol: 1e-3, rtol: 1e-3 },
    );
  });
});

describe('reference implementations', () => {
  it('broadcastShape / sumRef / matmulRef / softmaxRef on hand examples', () => {
    expect(broadcastShape([3, 1], [1, 4])).toEqual([3, 4]);
    expect(() => broadcastShape([2], [3])).toThrow();
    expect(Array.from(sumRef([1, 2, 3, 4, 5, 6], [2, 3], 0).data)).toEqual([5, 7, 9]);
    expect(Array.from(matmulRef([1, 2, 3, 4], [2, 2], [5, 6, 7, 8], [2, 2]).data)).toEqual([19, 22, 43, 50]);
    expectClose(
      softmaxRef([1, 2, 3], [3], 0),
      [0.09003057317038046, 0.24472847105479767, 0.6652409557748219],
      { atol: 1e-15, rtol: 0 },
    );
  });
  it('Python slicing rules', () => {
    expect(pySliceIndices(5, undefined, undefined, -2)).toEqual([4, 2, 0]);
    expect(pySliceIndices(5, 10, 0, -1)).toEqual([4, 3, 2, 1]);
    expect(pySliceIndices(5, -2)).toEqual([3, 4]);
    expect(sliceRef([0, 1, 2, 3, 4, 5], [2, 3], [-1, [undefined, undefined, -1]])).toEqual({
      data: Float64Array.of(5, 4, 3),
      shape: [3],
    });
  });
});
