// Mixed precision (`autocast`): products read operands rounded to bf16/f16, accumulate in f32 and store
// the low type; softmax, normalisations and losses compute in f32. References are float64 plain JS on
// operands rounded with an independent round-to-nearest-even (8 significand bits for bf16, 11 for f16).
// Tolerances: products within one rounding of the output type (relative 2^-8 for bf16, 2^-11 for f16,
// plus f32 accumulation slack); f32 reductions on low-precision inputs within 1e-5.
// Small and device-agnostic (interp, cpu and webgpu projects).
import { describe, expect, it } from 'vitest';
import { autocast, autocastDType, tensor, ValueError, type Tensor } from '../../src/index.js';
import * as F from '../../src/nn/functional.js';
import { expectClose } from '../helpers/check.js';
import { matmulRef, randArray, softmaxRef } from '../helpers/ref.js';

/** Round to `p` significand bits, ties to even, with gradual underflow below 2^minExp (float64 maths). */
function roundBits(x: number, p: number, minExp: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, minExp) - (p - 1));
  const q = a / ulp;
  let r = Math.round(q);
  if (Math.abs(q - Math.trunc(q) - 0.5) === 0 && r % 2 !== 0) r--; // tie: to even
  return Math.sign(x) * r * ulp;
}
const ROUND = { bf16: (x: number) => roundBits(x, 8, -126), f16: (x: number) => roundBits(x, 11, -14) } as const;
const UNIT = { bf16: 2 ** -8, f16: 2 ** -11 } as const;

function f32(data: ArrayLike<number>, shape: number[], requiresGrad = false): Tensor {
  return tensor(Float32Array.from(data), { shape, dtype: 'f32', requiresGrad });
}

describe('autocast', () => {
  it('the reference rounding is right on known values', () => {
    expect(ROUND.bf16(1 + 2 ** -8)).toBe(1); // tie → even
    expect(ROUND.bf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    expect(ROUND.bf16(Math.PI)).toBe(3.140625);
    expect(ROUND.f16(1 + 2 ** -11)).toBe(1);
    expect(ROUND.f16(Math.PI)).toBe(3.140625);
    expect(ROUND.f16(2 ** -20)).toBe(2 ** -20); // subnormal, exact
  });

  for (const dtype of ['bf16', 'f16'] as const) {
    it(`matmul under ${dtype}: ${dtype} result = float64 product of ${dtype}-rounded operands, within ${dtype} output rounding`, () => {
      const M = 6;
      const K = 24;
      const N = 5;
      const a = Float32Array.from(randArray(M * K, 1, -2, 2));
      const b = Float32Array.from(randArray(K * N, 2, -2, 2));
      const y = autocast({ dtype }, () => f32(a, [M, K]).matmul(f32(b, [K, N])));
      expect(y.dtype).toBe(dtype);
      expect(y.shape).toEqual([M, N]);
      const ref = matmulRef(Array.from(a, ROUND[dtype]), [M, K], Array.from(b, ROUND[dtype]), [K, N]).data;
      // Output rounding (u·|ref|) plus f32 accumulation error (≈ K·2^-24·Σ|a||b| ≤ 1e-4 here).
      expectClose(y.dataSync(), ref, { atol: 1e-4, rtol: UNIT[dtype] }, `${dtype} matmul`);
      // The same product without autocast is f32 and differs (the rounding is real).
      const full = f32(a, [M, K]).matmul(f32(b, [K, N]));
      expect(full.dtype).toBe('f32');
      const exact = matmulRef(a, [M, K], b, [K, N]).data;
      expectClose(full.dataSync(), exact, { atol: 1e-5, rtol: 1e-5 }, 'f32 matmul');
    });

    it(`matmul under ${dtype} rounds the operands before multiplying (not only the result)`, () => {
      // [1, -1] · [1 + 2^-12, 1]ᵀ: 2^-12 in f32, but exactly 0 once 1 + 2^-12 is rounded to bf16/f16.
      const y = autocast({ dtype }, () => f32([1, -1], [1, 2]).matmul(f32([1 + 2 ** -12, 1], [2, 1])));
      expect(Array.from(y.dataSync())).toEqual([0]);
      const full = f32([1, -1], [1, 2]).matmul(f32([1 + 2 ** -12, 1], [2, 1]));
      expect(Array.from(full.dataSync())).toEqual([2 ** -12]);
    });
  }

  it('F.linear is low precision; softmax, logSoftmax, layerNorm, rmsNorm and crossEntropy of it are f32', () => {
    const R = 4;
    const K = 8;
    const C = 6;
    const x = Float32Array.from(randArray(R * K, 3, -1.5, 1.5));
    const w = Float32Array.from(randArray(C * K, 4, -1.5, 1.5));
    const out = autocast({ dtype: 'bf16' }, () => {
      const y = F.linear(f32(x, [R, K]), f32(w, [C, K]));
      const ln = F.layerNorm(y, [C], f32(new Array(C).fill(1), [C]), f32(new Array(C).fill(0), [C]));
      const rms = F.rmsNorm(y, [C]);
      const ce = F.crossEntropy(y, tensor([0, 5, 2, 3], { dtype: 'i32' }));
      return { y, sm: y.softmax(-1), lsm: y.logSoftmax(-1), ln, rms, ce };
    });
    expect(out.y.dtype).toBe('bf16');
    for (const k of ['sm', 'lsm', 'ln', 'rms', 'ce'] as const) expect(out[k].dtype, k).toBe('f32');
    // f32 computations on the bf16 values, against float64 references on those same values.
    const yv = Float64Array.from(out.y.dataSync());
    expect(yv.every((v) => ROUND.bf16(v) === v)).toBe(true);
    const sm = softmaxRef(yv, [R, C], 1);
    expectClose(out.sm.dataSync(), sm, { atol: 1e-6, rtol: 1e-5 }, 'softmax');
    expectClose(out.lsm.dataSync(), Array.from(sm, Math.log), { atol: 1e-5, rtol: 1e-5 }, 'logSoftmax');
    const lnRef: number[] = [];
    const rmsRef: number[] = [];
    for (let r = 0; r < R; r++) {
      const row = yv.subarray(r * C, (r + 1) * C);
      const mean = row.reduce((s, v) => s + v, 0) / C;
      const vr = row.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
      const ms = row.reduce((s, v) => s + v * v, 0) / C;
      for (const v of row) {
        lnRef.push((v - mean) / Math.sqrt(vr + 1e-5));
        rmsRef.push(v / Math.sqrt(ms + 1e-6));
      }
    }
    expectClose(out.ln.dataSync(), lnRef, { atol: 1e-5, rtol: 1e-5 }, 'layerNorm');
    expectClose(out.rms.dataSync(), rmsRef, { atol: 1e-5, rtol: 1e-5 }, 'rmsNorm');
    const ce = -[0, 5, 2, 3].reduce((s, t, r) => s + Math.log(sm[r * C + t]!), 0) / R;
    expectClose([out.ce.itemSync()], [ce], { atol: 1e-5, rtol: 1e-5 }, 'crossEntropy');
    // Outside autocast a bf16 softmax stays bf16 (the upcast is autocast's doing).
    expect(out.y.softmax(-1).dtype).toBe('bf16');
  });

  it('state: restored after a throw, nesting, enabled: false, async functions', async () => {
    expect(autocastDType()).toBeUndefined();
    expect(() =>
      autocast({ dtype: 'bf16' }, () => {
        expect(autocastDType()).toBe('bf16');
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(autocastDType()).toBeUndefined();
    expect(f32([1, 2], [1, 2]).matmul(f32([3, 4], [2, 1])).dtype).toBe('f32');
    autocast({ dtype: 'bf16' }, () => {
      autocast({ dtype: 'f16' }, () => expect(f32([1], [1, 1]).matmul(f32([1], [1, 1])).dtype).toBe('f16'));
      expect(autocastDType()).toBe('bf16');
      expect(() => autocast({ dtype: 'f16' }, () => { throw new RangeError('inner'); })).toThrow(RangeError);
      expect(autocastDType()).toBe('bf16');
      autocast({ dtype: 'f16', enabled: false }, () => {
        expect(autocastDType()).toBeUndefined();
        expect(f32([1], [1, 1]).matmul(f32([1], [1, 1])).dtype).toBe('f32');
      });
      expect(autocastDType()).toBe('bf16');
    });
    expect(autocastDType()).toBeUndefined();
    const inside = await autocast({ dtype: 'f16' }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      return autocastDType();
    });
    expect(inside).toBe('f16');
    expect(autocastDType()).toBeUndefined();
    await expect(autocast({ dtype: 'bf16' }, () => Promise.reject(new Error('async boom')))).rejects.toThrow('async boom');
    expect(autocastDType()).toBeUndefined();
  });

  it('bad dtype throws ValueError', () => {
    for (const bad of [{ dtype: 'f32' }, { dtype: 'fp16' }, {}, undefined, null]) {
      expect(() => autocast(bad as never, () => 1)).toThrow(ValueError);
    }
    expect(autocastDType()).toBeUndefined();
  });

  it('gradients flow: backward works, parameter and input gradients are f32 and close to full precision', () => {
    const R = 5;
    const K = 8;
    const H = 6;
    const C = 4;
    const xv = randArray(R * K, 5, -1, 1);
    const w1v = randArray(H * K, 6, -0.5, 0.5);
    const w2v = randArray(C * H, 7, -0.5, 0.5);
    const b1v = randArray(H, 8, -0.1, 0.1);
    const tgt = [1, 3, 0, 2, 1];
    const run = (dtype?: 'bf16') => {
      const x = f32(xv, [R, K], true);
      const w1 = f32(w1v, [H, K], true);
      const b1 = f32(b1v, [H], true);
      const w2 = f32(w2v, [C, H], true);
      const body = () => F.crossEntropy(F.linear(F.linear(x, w1, b1).gelu(), w2), tensor(tgt, { dtype: 'i32' }));
      const loss = dtype ? autocast({ dtype }, body) : body();
      expect(loss.dtype).toBe('f32');
      loss.backward();
      return { loss: loss.itemSync(), grads: [x, w1, b1, w2].map((t) => t.grad!) };
    };
    const full = run();
    const low = run('bf16');
    for (const g of low.grads) expect(g.dtype).toBe('f32');
    expect(Math.abs(low.loss - full.loss)).toBeLessThan(2e-2);
    low.grads.forEach((g, i) => {
      const ref = full.grads[i]!.dataSync();
      const scale = Math.max(...Array.from(ref, Math.abs));
      expect(scale).toBeGreaterThan(0);
      // bf16 activations and operands: a few units of 2^-8 relative to the gradient's magnitude.
      expectClose(g.dataSync(), ref, { atol: 0.03 * scale, rtol: 0.03 }, `grad ${i}`);
    });
  });
});
