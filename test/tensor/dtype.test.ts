/**
 * dtypes: promotion (tensor-tensor and tensor-scalar), casts (truncation, wrap-around, half-precision
 * rounding, bool), comparison and reduction result types, host array types.
 *
 * Tolerances: every expected value here is exactly representable in the result dtype and was worked
 * out by hand (half-precision values double-checked with numpy.float16 and a bit-level bf16 rounding
 * in Python), so all comparisons are exact; f32 results of inexact arithmetic use atol 1e-6, rtol 1e-6.
 */
import { describe, expect, it } from 'vitest';
import { DTYPES, full, ones, promoteTypes, tensor, where, type DType } from '../../src/index.js';
import { expectClose, expectEqual } from '../helpers/check.js';

const t = (data: number[] | boolean[], dtype: DType) => tensor(data, { dtype });

describe('promotion between tensors', () => {
  const cases: [DType, DType, DType][] = [
    ['i32', 'f32', 'f32'],
    ['bool', 'i32', 'i32'],
    ['u8', 'i8', 'i32'],
    ['f16', 'bf16', 'f32'],
    ['f16', 'f32', 'f32'],
    ['bf16', 'f32', 'f32'],
    ['i8', 'f16', 'f16'],
    ['i32', 'bf16', 'bf16'],
    ['bool', 'u8', 'u8'],
    ['i8', 'i32', 'i32'],
    ['bool', 'f16', 'f16'],
    ['u8', 'u8', 'u8'],
  ];
  for (const [a, b, r] of cases) {
    it(`${a} + ${b} -> ${r} (both orders, promoteTypes and add)`, () => {
      expect(promoteTypes(a, b)).toBe(r);
      expect(promoteTypes(b, a)).toBe(r);
      expect(t([1], a).add(t([1], b)).dtype).toBe(r);
      expect(t([1], b).mul(t([1], a)).dtype).toBe(r);
    });
  }
  it('values after promotion', () => {
    expectEqual(
      t([1, 2], 'i32')
        .add(t([0.5, 0.25], 'f32'))
        .dataSync(),
      [1.5, 2.25],
    );
    const bi = t([true, false], 'bool').add(t([5, 5], 'i32'));
    expectEqual(bi.dataSync(), [6, 5]);
    const ui = t([200, 3], 'u8').add(t([-100, -5], 'i8'));
    expect(ui.dtype).toBe('i32');
    expectEqual(ui.dataSync(), [100, -2]);
    const hb = t([1.5, 0.1], 'f16').add(t([2, 0.1], 'bf16'));
    expect(hb.dtype).toBe('f32');
    // f16(0.1) = 0.0999755859375, bf16(0.1) = 0.10009765625, summed in f32
    expectEqual(hb.dataSync(), [3.5, Math.fround(0.0999755859375 + 0.10009765625)]);
  });
  it('u8 arithmetic wraps modulo 256', () => {
    expectEqual(
      t([200, 10], 'u8')
        .add(t([100, 5], 'u8'))
        .dataSync(),
      [44, 15],
    );
    expectEqual(
      t([20], 'u8')
        .mul(t([13], 'u8'))
        .dataSync(),
      [4],
    );
  });
  it('maximum / where / cat promote too', () => {
    expect(t([1], 'i32').maximum(t([0.5], 'f32')).dtype).toBe('f32');
    const w = where(t([true, false], 'bool'), t([1, 2], 'i32'), t([0.5, 0.5], 'f32'));
    expect(w.dtype).toBe('f32');
    expectEqual(w.dataSync(), [1, 0.5]);
    expect(where(t([true], 'bool'), t([1], 'i32'), 2.5).dtype).toBe('f32');
    expect(where(t([true], 'bool'), t([1], 'i8'), 2).dtype).toBe('i8');
  });
});

describe('promotion with JavaScript scalars', () => {
  const cases: [DType, number | boolean, DType, number[]][] = [
    // [tensor dtype (values [1, 2]), scalar, result dtype, result of add]
    ['i32', 2, 'i32', [3, 4]],
    ['i32', 2.5, 'f32', [3.5, 4.5]],
    ['f16', 2.5, 'f16', [3.5, 4.5]],
    ['bf16', 2, 'bf16', [3, 4]],
    ['u8', 1, 'u8', [2, 3]],
    ['i8', 1, 'i8', [2, 3]],
    ['u8', 0.5, 'f32', [1.5, 2.5]],
    ['f32', 1, 'f32', [2, 3]],
    ['i32', Infinity, 'f32', [Infinity, Infinity]],
  ];
  for (const [d, s, r, vals] of cases) {
    it(`${d} + ${s} -> ${r}`, () => {
      const y = t([1, 2], d).add(s);
      expect(y.dtype).toBe(r);
      expectEqual(y.dataSync(), vals);
    });
  }
  it('bool tensors: + integer -> i32, + bool -> bool, + fraction -> f32', () => {
    const b = t([true, false], 'bool');
    expect(b.add(1).dtype).toBe('i32');
    expectEqual(b.add(1).dataSync(), [2, 1]);
    expect(b.add(true).dtype).toBe('bool');
    expect(b.add(0.5).dtype).toBe('f32');
    expectEqual(b.add(0.5).dataSync(), [1.5, 0.5]);
  });
  it('integer tensors times fractions and true division give f32', () => {
    const i = t([3, 4], 'i32');
    expect(i.mul(0.5).dtype).toBe('f32');
    expectEqual(i.mul(0.5).dataSync(), [1.5, 2]);
    expect(i.div(2).dtype).toBe('f32');
    expectEqual(i.div(2).dataSync(), [1.5, 2]);
    expect(t([3], 'u8').div(t([2], 'u8')).dtype).toBe('f32');
    expect(t([3], 'f16').div(2).dtype).toBe('f16');
  });
  it('integer scalar arithmetic that stays integer', () => {
    expectEqual(t([7, -7], 'i32').mul(3).dataSync(), [21, -21]);
    expectEqual(t([7, -7], 'i32').sub(10).dataSync(), [-3, -17]);
  });
});

describe('subtraction with unsigned operands', () => {
  it('u8 - u8 wraps like PyTorch', () => {
    expectEqual(
      t([5, 3], 'u8')
        .sub(t([3, 5], 'u8'))
        .dataSync(),
      [2, 254],
    );
  });
  it('i32 - u8 promotes before subtracting', () => {
    expectEqual(
      t([5], 'i32')
        .sub(t([3], 'u8'))
        .dataSync(),
      [2],
    );
  });
  it('f32 - u8 promotes before subtracting', () => {
    expectEqual(
      t([5], 'f32')
        .sub(t([3], 'u8'))
        .dataSync(),
      [2],
    );
  });
  it('u8 minimum / clamp(max)', () => {
    expectEqual(t([3, 200], 'u8').minimum(100).dataSync(), [3, 100]);
  });
});

describe('casts', () => {
  it('f32 -> i32 truncates toward zero', () => {
    const y = t([-2.7, -2.5, -0.5, 0.5, 1.5, 2.7, 100000.75], 'f32').cast('i32');
    expect(y.dtype).toBe('i32');
    expectEqual(y.dataSync(), [-2, -2, 0, 0, 1, 2, 100000]);
    expectEqual(t([-1.9, 1.9], 'f32').int().dataSync(), [-1, 1]);
  });
  it('f32 -> i8 truncates; integer narrowing wraps (two’s complement)', () => {
    expectEqual(t([127.9, -128.9, -3.5], 'f32').cast('i8').dataSync(), [127, -128, -3]);
    expectEqual(t([200, -129, 127], 'i32').cast('i8').dataSync(), [-56, 127, 127]);
    expectEqual(t([257, -1, 255], 'i32').cast('u8').dataSync(), [1, 255, 255]);
    expectEqual(t([-1, 100], 'i8').cast('u8').dataSync(), [255, 100]);
    expectEqual(t([255, 128], 'u8').cast('i8').dataSync(), [-1, -128]);
  });
  it('f32 -> f16 rounds to nearest even, overflows to inf, flushes tiny values through subnormals', () => {
    const x = [
      1 / 3,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65504,
      65520,
      65519,
      1e-8,
      2 ** -25,
      3 * 2 ** -26,
      -0.1,
      2 ** -24,
      1e5,
    ];
    const expected = [
      0.333251953125,
      1,
      1.001953125,
      65504,
      Infinity,
      65504,
      0,
      0,
      2 ** -24,
      -0.0999755859375,
      2 ** -24,
      Infinity,
    ];
    const h = t(x, 'f32').cast('f16');
    expect(h.dtype).toBe('f16');
    expectEqual(h.dataSync(), expected, 'f16 values');
    expectEqual(h.cast('f32').dataSync(), expected, 'f16 -> f32');
    expectEqual(t([NaN, -Infinity], 'f32').half().dataSync(), [NaN, -Infinity]);
  });
  it('f32 -> bf16 rounds to nearest even', () => {
    const x = [1 / 3, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.14159, -0.1, 1e5, 65520];
    const expected = [0.333984375, 1, 1.015625, 3.140625, -0.10009765625, 99840, 65536];
    const b = t(x, 'f32').cast('bf16');
    expect(b.dtype).toBe('bf16');
    expectEqual(b.dataSync(), expected, 'bf16 values');
    expectEqual(b.cast('f32').dataSync(), expected, 'bf16 -> f32');
    expectEqual(t([NaN, Infinity], 'f32').bfloat16().dataSync(), [NaN, Infinity]);
  });
  it('f16-representable values round-trip exactly; tensor() with a half dtype rounds its input', () => {
    const vals = [0.5, -2, 512.5, 2 ** -14, 65504];
    expectEqual(t(vals, 'f32').half().float().dataSync(), vals);
    expectEqual(tensor([0.1, 1 / 3], { dtype: 'f16' }).dataSync(), [0.0999755859375, 0.333251953125]);
    expectEqual(tensor([0.1, 1 / 3], { dtype: 'bf16' }).dataSync(), [0.10009765625, 0.333984375]);
  });
  it('half-precision arithmetic rounds each result to its dtype', () => {
    // 1 + 2^-11 is a tie in f16: rounds to even (1); in f32 it is exact
    expectEqual(
      t([1], 'f16')
        .add(t([2 ** -11], 'f16'))
        .dataSync(),
      [1],
    );
    expectEqual(
      t([1], 'f32')
        .add(t([2 ** -11], 'f32'))
        .dataSync(),
      [1 + 2 ** -11],
    );
    expectEqual(t([256], 'bf16').add(1).dataSync(), [256]);
  });
  it('bf16 sums accumulate in f32 (513 ones -> 512 after the final rounding, not 256)', () => {
    const s = ones([513], { dtype: 'bf16' }).sum();
    expect(s.dtype).toBe('bf16');
    expect(s.itemSync()).toBe(512);
  });
  it('to and from bool', () => {
    const b = t([0, -0, 0.1, -2, NaN, Infinity], 'f32').bool();
    expect(b.dtype).toBe('bool');
    expectEqual(b.dataSync(), [0, 0, 1, 1, 1, 1]);
    expectEqual(t([0, 3, -1], 'i32').cast('bool').dataSync(), [0, 1, 1]);
    const f = t([true, false], 'bool').float();
    expect(f.dtype).toBe('f32');
    expectEqual(f.dataSync(), [1, 0]);
    expectEqual(t([true, false], 'bool').cast('i32').dataSync(), [1, 0]);
  });
  it('cast to the same dtype is the identity; gradients flow through float casts', () => {
    const x = tensor([1.5, -2], { dtype: 'f32', requiresGrad: true });
    expect(x.cast('f32')).toBe(x);
    x.cast('f16').mul(2).cast('bf16').float().sum().backward();
    expect(x.grad!.dtype).toBe('f32');
    expectEqual(x.grad!.dataSync(), [2, 2]);
    expect(x.cast('i32').requiresGrad).toBe(false);
  });
  it('an i32 constant computes with its integer value', () => {
    expectEqual(full([2], 3.7, { dtype: 'i32' }).cast('f32').dataSync(), [3, 3]);
  });
  it('an f16 constant computes with its f16 value', () => {
    expectEqual(full([1], 0.1, { dtype: 'f16' }).float().dataSync(), [0.0999755859375]);
  });
  it('stored constants are rounded (this path works)', () => {
    expectEqual(full([2], 3.7, { dtype: 'i32' }).dataSync(), [3, 3]);
    expectEqual(full([1], 0.1, { dtype: 'f16' }).dataSync(), [0.0999755859375]);
  });
});

describe('result dtypes of comparisons and reductions', () => {
  it('comparisons give bool for every operand dtype', () => {
    for (const d of DTYPES) {
      if (d === 'bool') continue;
      const x = t([1, 2], d);
      expect(x.lt(2).dtype).toBe('bool');
      expect(x.eq(t([1, 5], 'f32')).dtype).toBe('bool');
      expectEqual(x.ge(2).dataSync(), [0, 1], `${d} ge`);
    }
    expectEqual(
      t([1, 2, 3], 'i32')
        .lt(t([1.5, 1.5, 3.5], 'f32'))
        .dataSync(),
      [1, 0, 1],
    );
  });
  it('sum of bool gives i32', () => {
    const b = t([true, false, true, true], 'bool');
    const s = b.sum();
    expect(s.dtype).toBe('i32');
    expect(s.itemSync()).toBe(3);
    const m = tensor([
      [true, false],
      [true, true],
    ]);
    expectEqual(m.sum(0).dataSync(), [2, 1]);
    expect(m.sum(0).dtype).toBe('i32');
    expectClose([b.mean().itemSync()], [0.75], { atol: 1e-6, rtol: 1e-6 });
    expect(b.mean().dtype).toBe('f32');
  });
  it('sums of small integer types accumulate as i32 without wrapping', () => {
    const u = t([200, 200, 100], 'u8').sum();
    expect(u.dtype).toBe('i32');
    expect(u.itemSync()).toBe(500);
    const i = t([-100, -100, -100], 'i8').sum();
    expect(i.dtype).toBe('i32');
    expect(i.itemSync()).toBe(-300);
  });
  it('sum of a comparison counts matches', () => {
    expect(tensor([1, 5, 3, 7]).gt(2).sum().itemSync()).toBe(3);
  });
});

describe('host arrays and inference', () => {
  it('dataSync returns a typed array per dtype (halves widened to f32)', () => {
    expect(t([1], 'f32').dataSync()).toBeInstanceOf(Float32Array);
    expect(t([1], 'f16').dataSync()).toBeInstanceOf(Float32Array);
    expect(t([1], 'bf16').dataSync()).toBeInstanceOf(Float32Array);
    expect(t([1], 'i32').dataSync()).toBeInstanceOf(Int32Array);
    expect(t([1], 'i8').dataSync()).toBeInstanceOf(Int8Array);
    expect(t([1], 'u8').dataSync()).toBeInstanceOf(Uint8Array);
    expect(t([true], 'bool').dataSync()).toBeInstanceOf(Uint8Array);
  });
  it('tensor() infers i32 for integers, f32 for fractions, bool for booleans, and typed-array dtypes', () => {
    expect(tensor([1, 2]).dtype).toBe('i32');
    expect(tensor([1, 2.5]).dtype).toBe('f32');
    expect(tensor([[true], [false]]).dtype).toBe('bool');
    expect(tensor(new Float32Array([1, 2])).dtype).toBe('f32');
    expect(tensor(new Int32Array([1, 2])).dtype).toBe('i32');
    expect(tensor(new Int8Array([1, 2])).dtype).toBe('i8');
    expect(tensor(new Uint8Array([1, 2])).dtype).toBe('u8');
  });
  it('tensor() with a dtype converts values like a cast', () => {
    expectEqual(tensor([1.7, -1.7], { dtype: 'i32' }).dataSync(), [1, -1]);
    expectEqual(tensor([2, 0], { dtype: 'bool' }).dataSync(), [1, 0]);
  });
  it('tolist / item / toString', async () => {
    const x = tensor([
      [1, 2],
      [3, 4],
    ]);
    expect(await x.tolist()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(await x.sum().item()).toBe(10);
    expect(tensor([1.5, 2], { dtype: 'f32' }).toString()).toContain('1.5000');
    expect(t([1], 'f16').toString()).toContain('dtype=f16');
  });
});
