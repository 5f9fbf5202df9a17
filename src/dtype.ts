import { DTypeError } from './errors.js';

/** The element types Tessera tensors can hold. */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i8' | 'u8' | 'bool';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'i8', 'u8', 'bool'];

/** Bytes per element. */
export const itemsize: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, i8: 1, u8: 1, bool: 1 };

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}
export function isInt(d: DType): boolean {
  return d === 'i32' || d === 'i8' || d === 'u8';
}

export function checkDType(d: unknown, what = 'dtype'): DType {
  if (typeof d === 'string' && (DTYPES as readonly string[]).includes(d)) return d as DType;
  throw new DTypeError(`${what}: expected one of ${DTYPES.join(', ')}, got ${JSON.stringify(d)}`);
}

/** Order used by PyTorch-like promotion among the integer and bool types. */
const rank: Record<DType, number> = { bool: 0, u8: 1, i8: 2, i32: 3, f16: 4, bf16: 4, f32: 5 };

/**
 * Result dtype of a binary op between two tensors, as PyTorch promotes: bool < integers < floats;
 * u8 with i8 widens to i32 (Tessera has no i16); f16 with bf16 widens to f32.
 */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  if ((a === 'f16' && b === 'bf16') || (a === 'bf16' && b === 'f16')) return 'f32';
  if ((a === 'u8' && b === 'i8') || (a === 'i8' && b === 'u8')) return 'i32';
  return rank[a] >= rank[b] ? a : b;
}

/**
 * Result dtype of an op between a tensor and a JavaScript number: the tensor's dtype wins unless the
 * number is fractional and the tensor is not floating point (then f32), or the tensor is bool.
 */
export function promoteWithScalar(t: DType, value: number | boolean): DType {
  if (typeof value === 'boolean') return t;
  if (!Number.isInteger(value) || !Number.isFinite(value)) return isFloat(t) ? t : 'f32';
  return t === 'bool' ? 'i32' : t;
}

export type TypedArrayFor<D extends DType> = D extends 'f32'
  ? Float32Array
  : D extends 'f16' | 'bf16'
    ? Uint16Array
    : D extends 'i32'
      ? Int32Array
      : D extends 'i8'
        ? Int8Array
        : Uint8Array;

export type AnyTypedArray = Float32Array | Uint16Array | Int32Array | Int8Array | Uint8Array;

/** Allocate backing storage for `n` elements of dtype `d` (half types are stored as raw 16-bit words). */
export function allocStorage(d: DType, n: number): AnyTypedArray {
  switch (d) {
    case 'f32':
      return new Float32Array(n);
    case 'f16':
    case 'bf16':
      return new Uint16Array(n);
    case 'i32':
      return new Int32Array(n);
    case 'i8':
      return new Int8Array(n);
    case 'u8':
    case 'bool':
      return new Uint8Array(n);
  }
}

// ---- half-precision conversion (round-to-nearest-even), shared by every host-side path ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounded = b + 0x7fff + ((b >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  e = half >>> 10;
  return sign | half;
}
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Round a JavaScript number to the nearest value representable in dtype `d` (C cast semantics for ints). */
export function roundTo(d: DType, x: number): number {
  switch (d) {
    case 'f32':
      return Math.fround(x);
    case 'f16':
      return f16BitsToF32(f32ToF16Bits(x));
    case 'bf16':
      return bf16BitsToF32(f32ToBf16Bits(x));
    case 'i32':
      return Number.isFinite(x) ? Math.trunc(x) | 0 : 0;
    case 'i8':
      return Number.isFinite(x) ? (Math.trunc(x) << 24) >> 24 : 0;
    case 'u8':
      return Number.isFinite(x) ? Math.trunc(x) & 255 : 0;
    case 'bool':
      return x !== 0 ? 1 : 0;
  }
}

/** Read element `i` of a storage array as a number. */
export function readElement(d: DType, s: AnyTypedArray, i: number): number {
  if (d === 'f16') return f16BitsToF32(s[i]!);
  if (d === 'bf16') return bf16BitsToF32(s[i]!);
  return s[i]!;
}
/** Write a number into element `i` of a storage array, rounding it to the dtype. */
export function writeElement(d: DType, s: AnyTypedArray, i: number, x: number): void {
  if (d === 'f16') s[i] = f32ToF16Bits(x);
  else if (d === 'bf16') s[i] = f32ToBf16Bits(x);
  else if (d === 'bool') s[i] = x !== 0 ? 1 : 0;
  else if (d === 'f32') s[i] = x;
  else s[i] = roundTo(d, x);
}
