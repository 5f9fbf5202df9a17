/**
 * Typed errors: ShapeError (broadcasting, matmul, reshape), DimError (dims out of range), GradError
 * (backward misuse), DisposedError (use after dispose), DTypeError (unknown or unsupported dtypes).
 *
 * Tolerances: none (no float comparisons beyond exact small integers).
 */
import { describe, expect, it } from 'vitest';
import {
  cat,
  DimError,
  DisposedError,
  DTypeError,
  GradError,
  oneHot,
  ShapeError,
  tensor,
  TesseraError,
  tidy,
  zeros,
  type DType,
  type Tensor,
} from '../../src/index.js';

/** Run `fn`, expect it to throw an instance of `cls`, and return the error. */
function thrown<E extends Error>(cls: abstract new (...args: never[]) => E, fn: () => unknown): E {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error to be thrown').toBeInstanceOf(cls);
  expect(err).toBeInstanceOf(TesseraError);
  return err as E;
}

const f = (shape: number[]) => zeros(shape);

describe('ShapeError', () => {
  it('broadcasting mismatch names both shapes', () => {
    const e = thrown(ShapeError, () => f([2, 3]).add(f([4, 3])));
    expect(e.message).toContain('[2,3]');
    expect(e.message).toContain('[4,3]');
    expect(e.name).toBe('ShapeError');
    for (const op of [
      (a: Tensor, b: Tensor) => a.mul(b),
      (a: Tensor, b: Tensor) => a.sub(b),
      (a: Tensor, b: Tensor) => a.lt(b),
      (a: Tensor, b: Tensor) => a.maximum(b),
      (a: Tensor, b: Tensor) => a.div(b),
    ]) {
      const m = thrown(ShapeError, () => op(f([3]), f([2, 4])));
      expect(m.message).toContain('[3]');
      expect(m.message).toContain('[2,4]');
    }
  });
  it('matmul inner-dimension mismatch names both shapes', () => {
    const e = thrown(ShapeError, () => f([2, 3]).matmul(f([4, 5])));
    expect(e.message).toContain('[2,3]');
    expect(e.message).toContain('[4,5]');
    const v = thrown(ShapeError, () => f([3]).matmul(f([4])));
    expect(v.message).toContain('[3]');
    expect(v.message).toContain('[4]');
  });
  it('matmul batch-dimension mismatch names both shapes', () => {
    const e = thrown(ShapeError, () => f([2, 3, 4]).matmul(f([3, 4, 5])));
    expect(e.message).toContain('[2,3,4]');
    expect(e.message).toContain('[3,4,5]');
  });
  it('reshape, expand, cat, stack, tensor(), item()', () => {
    const r = thrown(ShapeError, () => f([2, 3]).reshape(4, 2));
    expect(r.message).toContain('[2,3]');
    expect(r.message).toContain('[4,2]');
    thrown(ShapeError, () => f([2, 3]).expand(2, 4));
    thrown(ShapeError, () => cat([f([2, 3]), f([2, 4])], 0));
    thrown(ShapeError, () => tensor([[1, 2], [3]]));
    thrown(ShapeError, () => tensor([1, 2, 3], { shape: [2, 2] }));
    const i = thrown(ShapeError, () => f([2]).itemSync());
    expect(i.message).toContain('[2]');
  });
  it('backward(gradient) with the wrong shape', () => {
    const x = tensor([1, 2], { dtype: 'f32', requiresGrad: true });
    thrown(ShapeError, () => x.mul(2).backward(zeros([3])));
  });
});

describe('DimError', () => {
  it('dims out of range', () => {
    const x = f([2, 3]);
    const e = thrown(DimError, () => x.sum(2));
    expect(e.message).toContain('2');
    thrown(DimError, () => x.sum(-3));
    thrown(DimError, () => x.softmax(5));
    thrown(DimError, () => x.transpose(0, 3));
    thrown(DimError, () => x.unsqueeze(4));
    thrown(DimError, () => x.max(2));
    thrown(DimError, () => x.argmax(-3));
    thrown(DimError, () => x.flip(2));
    thrown(DimError, () => x.size(2));
    thrown(DimError, () => x.flatten(1, 0));
  });
  it('index and narrow ranges', () => {
    const x = f([2, 3]);
    thrown(DimError, () => x.slice(2));
    thrown(DimError, () => x.slice(null, -4));
    thrown(DimError, () => x.narrow(1, 2, 2));
  });
  it('non-integer dims', () => {
    thrown(DimError, () => f([2, 3]).sum(0.5));
  });
});

describe('GradError', () => {
  it('backward on a non-scalar without a gradient', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
    const e = thrown(GradError, () => x.mul(2).backward());
    expect(e.message).toContain('[3]');
    expect(e.name).toBe('GradError');
  });
  it('backward on a tensor that does not require grad', () => {
    thrown(GradError, () => tensor([1], { dtype: 'f32' }).sum().backward());
  });
});

describe('DisposedError', () => {
  it('reading after dispose', () => {
    const x = tensor([1, 2], { dtype: 'f32' });
    x.dispose();
    expect(x.isDisposed).toBe(true);
    const e = thrown(DisposedError, () => x.dataSync());
    expect(e.name).toBe('DisposedError');
    const s = tensor([5], { dtype: 'f32' });
    s.dispose();
    thrown(DisposedError, () => s.itemSync());
    thrown(DisposedError, () => x.add(1));
    expect(() => x.dispose()).not.toThrow();
    expect(x.toString()).toContain('disposed');
  });
  it('async reads reject', async () => {
    const x = tensor([1, 2], { dtype: 'f32' });
    x.dispose();
    await expect(x.data()).rejects.toBeInstanceOf(DisposedError);
  });
  it('computing a lazy result from a disposed input', () => {
    const x = tensor([1, 2], { dtype: 'f32' });
    const y = x.add(1);
    x.dispose();
    thrown(DisposedError, () => y.dataSync());
  });
  it('tidy disposes what it does not return', () => {
    let inner: Tensor | undefined;
    const kept = tidy(() => {
      inner = tensor([1, 2], { dtype: 'f32' }).mul(2).realize();
      return inner.add(1).realize();
    });
    expect(Array.from(kept.dataSync())).toEqual([3, 5]);
    expect(inner!.isDisposed).toBe(true);
    thrown(DisposedError, () => inner!.dataSync());
  });
});

describe('DTypeError', () => {
  it('unknown dtype names list the valid ones', () => {
    const e = thrown(DTypeError, () => f([2]).cast('f64' as DType));
    expect(e.message).toContain('f64');
    expect(e.message).toContain('f32');
    expect(e.name).toBe('DTypeError');
    thrown(DTypeError, () => tensor([1], { dtype: 'float32' as DType }));
    thrown(DTypeError, () => zeros([2], { dtype: 'x' as DType }));
  });
  it('unsupported dtypes for an operation', () => {
    thrown(DTypeError, () => tensor([1, 2]).requiresGrad_(true));
    thrown(DTypeError, () => tensor([true]).neg());
    thrown(DTypeError, () => oneHot(tensor([0.5], { dtype: 'f32' }), 3));
  });
});

describe('oneHot (used by gather / indexSelect)', () => {
  it('encodes integer indices as bool', () => {
    const o = oneHot(tensor([2, 0]), 3);
    expect(o.dtype).toBe('bool');
    expect(o.shape).toEqual([2, 3]);
    expect(Array.from(o.dataSync())).toEqual([0, 0, 1, 1, 0, 0]);
  });
});
