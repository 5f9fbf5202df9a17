import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/dtype.js';
import { ValueError } from '../../src/errors.js';
import {
  bf16ToF32Array,
  dequantizeQ8_0,
  f16ToF32Array,
  f32ToBf16Array,
  f32ToF16Array,
  Q8_0_BLOCK_BYTES,
  quantizeQ8_0,
} from '../../src/io/quant.js';

/** Every 16-bit pattern. */
const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

function bitsOf(f: Float32Array): Uint32Array {
  return new Uint32Array(f.buffer, f.byteOffset, f.length);
}

/** Deterministic pseudo-random normal-ish values (sum of uniforms), so failures reproduce. */
function pseudoRandom(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => (next() + next() + next() - 1.5) * scale);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

describe('f16 arrays', () => {
  it('decodes every bit pattern exactly, like the scalar converter, keeping NaN payloads', () => {
    // toEqual tells -0 from 0 and treats NaN as equal to NaN.
    expect(Array.from(f16ToF32Array(ALL16))).toEqual(Array.from(ALL16, f16BitsToF32));
    // The payload of a NaN moves to the top of the f32 mantissa, as a hardware conversion does.
    expect(bitsOf(f16ToF32Array(Uint16Array.of(0x7e01, 0xfc01)))).toEqual(
      Uint32Array.of(0x7fc02000, 0xff802000),
    );
    // Smallest subnormal, largest subnormal, smallest normal, largest finite.
    expect(Array.from(f16ToF32Array(Uint16Array.of(0x0001, 0x03ff, 0x0400, 0x7bff)))).toEqual([
      2 ** -24,
      1023 * 2 ** -24,
      2 ** -14,
      65504,
    ]);
  });

  it('encodes with round-to-nearest-even and round-trips every non-NaN pattern', () => {
    const nonNaN = ALL16.filter((h) => (h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0);
    expect(f32ToF16Array(f16ToF32Array(nonNaN))).toEqual(nonNaN);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
    // 1 + 3·2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties go to 1 + 2^-9.
    const got = f32ToF16Array([
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65520,
      65519,
      2 ** -25,
      3 * 2 ** -26,
      NaN,
      -0,
    ]);
    expect(Array.from(got)).toEqual([0x3c00, 0x3c02, 0x7c00, 0x7bff, 0x0000, 0x0001, 0x7e00, 0x8000]);
    const xs = pseudoRandom(4096, 1, 1000);
    expect(Array.from(f32ToF16Array(xs))).toEqual(Array.from(xs, (x) => f32ToF16Bits(x)));
  });
});

describe('bf16 arrays', () => {
  it('decodes every pattern as the top half of an f32 and round-trips every non-NaN pattern', () => {
    const f = bf16ToF32Array(ALL16);
    expect(bitsOf(f)).toEqual(Uint32Array.from(ALL16, (h) => h << 16));
    expect(Array.from(f)).toEqual(Array.from(ALL16, bf16BitsToF32));
    const nonNaN = ALL16.filter((h) => (h & 0x7f80) !== 0x7f80 || (h & 0x7f) === 0);
    expect(f32ToBf16Array(bf16ToF32Array(nonNaN))).toEqual(nonNaN);
  });

  it('encodes with round-to-nearest-even and quiets NaN', () => {
    const got = f32ToBf16Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5]);
    expect(Array.from(got)).toEqual([0x3f80, 0x3f82, 0x3f81, 0xc020]);
    const nan = new Float32Array(new Uint32Array([0x7f800001]).buffer); // signalling NaN, payload 1
    expect(f32ToBf16Array(nan)[0]).toBe(0x7fc0);
    const xs = pseudoRandom(4096, 2, 1e5);
    expect(Array.from(f32ToBf16Array(xs))).toEqual(Array.from(xs, (x) => f32ToBf16Bits(x)));
  });
});

describe('Q8_0', () => {
  it('quantizes hand-made blocks to the closed-form bytes (f16 d = amax/127, q = roundf(x/d))', () => {
    const x = new Float32Array(96);
    // Block 0: amax 127, so d = 1 and q = roundf(x): halves round away from zero (C roundf, not Math.round).
    x.set([127, -2.5, 2.5, -0.5, 0.5, 1.49, -1.5, -127, 0.25, -0.75], 0);
    // Block 1: all zero, so d = 0 and the inverse scale is 0 instead of Infinity.
    // Block 2: amax 254, so d = 2: 3 -> 1.5 -> 2, -3 -> -2, 1 -> 0.5 -> 1, 0.9 -> 0.45 -> 0.
    x.set([-254, 3, -3, 1, 0.9, 100], 64);
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(3 * Q8_0_BLOCK_BYTES);
    const block = (b: number): number[] => Array.from(q.subarray(b * 34, b * 34 + 34));
    const i8 = (v: number): number => v & 0xff;
    expect(block(0)).toEqual([
      0x00,
      0x3c,
      127,
      i8(-3),
      3,
      i8(-1),
      1,
      1,
      i8(-2),
      i8(-127),
      0,
      i8(-1),
      ...new Array(22).fill(0),
    ]);
    expect(block(1)).toEqual(new Array(34).fill(0));
    expect(block(2)).toEqual([0x00, 0x40, i8(-127), 2, i8(-2), 1, 0, 50, ...new Array(26).fill(0)]);
    const y = dequantizeQ8_0(q, 96);
    expect(Array.from(y.subarray(0, 12))).toEqual([127, -3, 3, -1, 1, 1, -2, -127, 0, -1, 0, 0]);
    expect(Array.from(y.subarray(32, 64))).toEqual(new Array(32).fill(0));
    expect(Array.from(y.subarray(64, 70))).toEqual([-254, 4, -4, 2, 0, 100]);
  });

  it("matches gguf-py's bit-exact port of ggml's quantize_row_q8_0_ref on a pinned vector", () => {
    // Expected bytes produced by gguf-py's Q8_0.quantize_blocks (numpy, float32 throughout) on
    // x[i] = f32((((i * 37) % 61) - 30) / 7.3 * scale[i / 32]): four blocks spanning 10^-2 to 10^1.
    const scales = [0.01, 0.1, 1, 10];
    const x = Float32Array.from(
      { length: 128 },
      (_, i) => ((((i * 37) % 61) - 30) / 7.3) * scales[Math.floor(i / 32)]!,
    );
    expect(hex(quantizeQ8_0(x))).toBe(
      '4d0d811eb855ef8926c15df8922fc966009a37d16e08a33fda7711ab48e27f19b450a11aeb8522bc59f38e2ac561fc9633cd6a049f3bd6720da744de7b15b04ce7811eb8242855ef8926c15df8922fc966009a37d16e08a33fda7711ab48e27f19b450eb85222d35bc59f38e2ac561fc9633cd6a049f3bd6720da744de7b15b04ce7811eb855ef89',
    );
  });

  it('reconstructs every element within d/2 (plus the f16 rounding of d) over many scales', () => {
    for (const [seed, scale] of [
      [3, 1],
      [4, 1e-3],
      [5, 1e4],
      [6, 1e-8], // d is an f16 subnormal
    ] as const) {
      const x = pseudoRandom(32 * 64, seed, scale);
      const q = quantizeQ8_0(x);
      const y = dequantizeQ8_0(q, x.length);
      const d16 = f16ToF32Array(
        Uint16Array.from({ length: 64 }, (_, b) => q[b * 34]! | (q[b * 34 + 1]! << 8)),
      );
      for (let b = 0; b < 64; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
        const d = Math.fround(amax / 127);
        // q = roundf(x/d) up to f32 rounding of x·(1/d), then y = q·f16(d).
        const bound = 0.50002 * d + 127 * Math.abs(d16[b]! - d);
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          expect(Math.abs(y[i]! - x[i]!), `seed ${seed} element ${i}`).toBeLessThanOrEqual(bound);
        }
      }
    }
  });

  it('rejects lengths that are not whole blocks', () => {
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(ValueError);
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(
      /33 is not a multiple of the Q8_0 block size 32/,
    );
    expect(() => dequantizeQ8_0(new Uint8Array(34), 48)).toThrow(
      /multiple of the Q8_0 block size 32, got 48/,
    );
    expect(() => dequantizeQ8_0(new Uint8Array(35), 32)).toThrow(/32 values need 34 bytes .* got 35/);
  });
});
