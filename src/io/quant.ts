/**
 * Host-side conversions between f32 and the storage formats of ggml/GGUF weights: IEEE half (F16),
 * bfloat16 (BF16) and ggml's Q8_0 blocks.
 *
 * Q8_0 must match ggml bit for bit, so a file quantized here loads in llama.cpp with the same weights as
 * one quantized by `llama-quantize`, and a file quantized there reads back here exactly. Half arrays are
 * `Uint16Array`s of raw bits in host order, the same convention as Tessera's f16/bf16 tensor storage.
 */
import { f32ToBf16Bits, f32ToF16Bits } from '../dtype.js';
import { ValueError } from '../errors.js';

/** Elements per Q8_0 block (ggml's `QK8_0`). */
export const Q8_0_BLOCK_SIZE = 32;
/** Bytes per Q8_0 block: an f16 scale `d` followed by 32 int8 quants (`sizeof(block_q8_0)`). */
export const Q8_0_BLOCK_BYTES = 34;

// ---- f16 ----

/** f32 bit pattern of an f16 bit pattern: exact, NaN payload moved to the top of the mantissa. */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal half: shift the mantissa up until its leading 1 becomes the implicit bit of a normal f32.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/**
 * f16 -> f32 for all 65536 bit patterns, built on first use. ggml decodes through the same kind of table
 * (`ggml_table_f32_f16`); a lookup beats branching on subnormals/NaN for every element of a big tensor.
 */
let f16Table: Uint32Array | undefined;
function f16ToF32Table(): Uint32Array {
  if (f16Table === undefined) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/**
 * Convert f32 values to f16 bits with round-to-nearest-even (what ggml's `GGML_FP32_TO_FP16` does, in
 * hardware via F16C or in its portable fallback): overflow goes to ±Inf, NaN stays NaN.
 */
export function f32ToF16Array(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

/**
 * Convert f16 bits to f32 values. Exact: every f16 value is an f32 value. A NaN keeps its payload and
 * stays signalling if it was (x86's F16C conversion, which ggml uses where available, quiets it).
 */
export function f16ToF32Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  decodeF16Into(bits, new Uint32Array(out.buffer), 0);
  return out;
}

/** Decode f16 bits into `out` (f32 bit patterns) starting at element `at`. */
export function decodeF16Into(bits: Uint16Array, out: Uint32Array, at: number): void {
  const table = f16ToF32Table();
  for (let i = 0; i < bits.length; i++) out[at + i] = table[bits[i]!]!;
}

// ---- bf16 ----

/**
 * Convert f32 values to bf16 bits with round-to-nearest-even, NaN kept quiet (ggml's
 * `ggml_compute_fp32_to_bf16`; PyTorch rounds the same way).
 */
export function f32ToBf16Array(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]!);
  return out;
}

/** Convert bf16 bits to f32 values. Exact: bf16 is the top half of an f32. */
export function bf16ToF32Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  decodeBf16Into(bits, new Uint32Array(out.buffer), 0);
  return out;
}

/** Decode bf16 bits into `out` (f32 bit patterns) starting at element `at`. */
export function decodeBf16Into(bits: Uint16Array, out: Uint32Array, at: number): void {
  for (let i = 0; i < bits.length; i++) out[at + i] = bits[i]! << 16;
}

// ---- Q8_0 ----

/** C's `roundf`: halfway cases away from zero (`Math.round` sends -2.5 to -2, roundf to -3). */
function roundf(x: number): number {
  // x is an f32 value of magnitude < 2^24 here, so x ± 0.5 is exact in a double.
  return x < 0 ? -Math.floor(0.5 - x) : Math.floor(x + 0.5);
}

/**
 * Quantize f32 values to ggml Q8_0 blocks, bit-identical to ggml's `quantize_row_q8_0_ref` (which
 * `llama-quantize` and gguf-py use): for each block of 32 values, `d = amax / 127` in f32, stored as
 * f16; `q[j] = roundf(x[j] * id)` with `id = 1 / d` in f32 (0 when d is 0), stored as int8.
 *
 * Every f32 operation is reproduced exactly: a double quotient or product of two f32 values rounded
 * with `Math.fround` equals the f32 result, because a double has more than twice f32's precision.
 *
 * The quants are computed from the f32 `d` and only then is `d` rounded to f16, as in ggml, so an
 * element's reconstruction error `|q·f16(d) - x|` is at most about `d/2 + |q|·|f16(d) - d|`, which is
 * below `d/2 + amax·2^-11`.
 *
 * @param src - values; the length must be a multiple of 32.
 * @returns `src.length / 32` blocks of 34 bytes: little-endian f16 `d`, then 32 int8 quants.
 * @throws ValueError when the length is not a multiple of 32.
 */
export function quantizeQ8_0(src: Float32Array): Uint8Array {
  if (src.length % Q8_0_BLOCK_SIZE !== 0) {
    throw new ValueError(
      `quantizeQ8_0: length ${src.length} is not a multiple of the Q8_0 block size ${Q8_0_BLOCK_SIZE}`,
    );
  }
  const nb = src.length / Q8_0_BLOCK_SIZE;
  const out = new Uint8Array(nb * Q8_0_BLOCK_BYTES);
  for (let b = 0; b < nb; b++) {
    const base = b * Q8_0_BLOCK_SIZE;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK_SIZE; j++) {
      const a = Math.abs(src[base + j]!);
      // ggml's MAX(a, b) macro, `a > b ? a : b`, including what it does with NaN.
      amax = amax > a ? amax : a;
    }
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    for (let j = 0; j < Q8_0_BLOCK_SIZE; j++) {
      out[o + 2 + j] = roundf(Math.fround(src[base + j]! * id)) & 0xff;
    }
  }
  return out;
}

/** Scratch to reinterpret a block's scale bits as an f32. */
const scaleF32 = new Float32Array(1);
const scaleBits = new Uint32Array(scaleF32.buffer);

/**
 * Dequantize ggml Q8_0 blocks into `out` starting at element `at`, as ggml's `dequantize_row_q8_0`:
 * `y = q * d` in f32, with `d` the block's f16 scale.
 */
export function dequantizeQ8_0Into(bytes: Uint8Array, out: Float32Array, at: number): void {
  const table = f16ToF32Table();
  const nb = Math.floor(bytes.length / Q8_0_BLOCK_BYTES);
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_0_BLOCK_BYTES;
    scaleBits[0] = table[bytes[o]! | (bytes[o + 1]! << 8)]!;
    const d = scaleF32[0]!;
    const y = at + b * Q8_0_BLOCK_SIZE;
    for (let j = 0; j < Q8_0_BLOCK_SIZE; j++) {
      // int8 from the byte; the product of an int8 and an f16 value is exact in f32.
      out[y + j] = ((bytes[o + 2 + j]! << 24) >> 24) * d;
    }
  }
}

/**
 * Dequantize ggml Q8_0 blocks to f32 (ggml's `dequantize_row_q8_0`).
 *
 * @param bytes - `n / 32` blocks of 34 bytes, as {@link quantizeQ8_0} returns or a GGUF file stores.
 * @param n - number of values; a multiple of 32.
 * @throws ValueError when `n` is not a multiple of 32 or `bytes` does not hold exactly `n / 32` blocks.
 */
export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  if (!Number.isSafeInteger(n) || n < 0 || n % Q8_0_BLOCK_SIZE !== 0) {
    throw new ValueError(
      `dequantizeQ8_0: n must be a non-negative multiple of the Q8_0 block size ${Q8_0_BLOCK_SIZE}, got ${n}`,
    );
  }
  const expected = (n / Q8_0_BLOCK_SIZE) * Q8_0_BLOCK_BYTES;
  if (bytes.length !== expected) {
    throw new ValueError(
      `dequantizeQ8_0: ${n} values need ${expected} bytes (${n / Q8_0_BLOCK_SIZE} blocks of ${Q8_0_BLOCK_BYTES}), got ${bytes.length}`,
    );
  }
  const out = new Float32Array(n);
  dequantizeQ8_0Into(bytes, out, 0);
  return out;
}
