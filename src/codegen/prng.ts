/**
 * The counter-based random number generator every backend implements bit for bit: uniform [0,1) from
 * a 32-bit integer hash of (seed key, counter + element index). Only 32-bit wrapping multiply, add, xor
 * and shifts are used, which C, WGSL and JavaScript (`Math.imul`, `>>> 0`) all do identically.
 */

/** A 32-bit avalanche hash ("lowbias32", by Chris Wellons). */
export function hash32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The per-seed key passed to kernels, so kernels hash only once per element. */
export function seedKey(seed: number): number {
  return hash32((seed ^ 0x9e3779b9) >>> 0);
}

/** Uniform float in [0, 1) with 24 random bits: exactly representable in f32. */
export function uniform(key: number, counter: number, index: number): number {
  const x = hash32(((counter + index) >>> 0) ^ key);
  const y = hash32((x + key) >>> 0);
  return (y >>> 8) / 16777216;
}
