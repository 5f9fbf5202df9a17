/**
 * Numeric assertions for the operator tests: element-wise closeness with a readable failure message,
 * float64 central-difference gradients of an independent plain-JS reference, and `checkGrad`, which
 * compares Tessera's autodiff (f32) against those finite differences.
 */
import { tensor, type Tensor } from '../../src/index.js';
import { makeRng } from './ref.js';

export interface Tol {
  atol: number;
  rtol: number;
}

function fmt(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(9))) : String(v);
}

/**
 * Assert `|actual[i] - expected[i]| <= atol + rtol * |expected[i]|` for every i. NaN only matches NaN,
 * infinities only match the same infinity. The message names the first offending indices and values.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Partial<Tol> = {},
  label = 'values',
): void {
  const atol = tol.atol ?? 1e-6;
  const rtol = tol.rtol ?? 1e-5;
  if (actual.length !== expected.length) {
    throw new Error(
      `${label}: length ${actual.length} differs from expected length ${expected.length}\n  actual:   [${Array.from(actual).slice(0, 16).map(fmt).join(', ')}]\n  expected: [${Array.from(expected).slice(0, 16).map(fmt).join(', ')}]`,
    );
  }
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    let ok: boolean;
    let allowed = atol + rtol * Math.abs(e);
    if (Number.isNaN(e)) ok = Number.isNaN(a);
    else if (!Number.isFinite(e)) ok = a === e;
    else ok = Math.abs(a - e) <= allowed;
    if (!ok) {
      count++;
      if (bad.length < 6) {
        if (!Number.isFinite(allowed)) allowed = 0;
        bad.push(
          `  [${i}] actual=${fmt(a)} expected=${fmt(e)} |diff|=${fmt(Math.abs(a - e))} allowed=${fmt(allowed)}`,
        );
      }
    }
  }
  if (count > 0) {
    throw new Error(
      `${label}: ${count} of ${expected.length} elements differ (atol=${atol}, rtol=${rtol})\n${bad.join('\n')}${count > bad.length ? '\n  ...' : ''}`,
    );
  }
}

/** Exact equality of two numeric arrays (for integer and bool results), with the same kind of message. */
export function expectEqual(actual: ArrayLike<number>, expected: ArrayLike<number>, label = 'values'): void {
  expectClose(actual, expected, { atol: 0, rtol: 0 }, label);
}

/**
 * Central-difference gradient of a float64 function: d f / d inputs[k][i] ≈ (f(x+eps) - f(x-eps)) / 2eps.
 * `f` must be a plain-JS implementation (not Tessera). Inputs are not modified.
 */
export function numericGrad(
  f: (xs: Float64Array[]) => number,
  inputs: Float64Array[],
  eps = 1e-3,
): Float64Array[] {
  const xs = inputs.map((x) => Float64Array.from(x));
  return xs.map((x) => {
    const g = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const orig = x[i]!;
      x[i] = orig + eps;
      const fp = f(xs);
      x[i] = orig - eps;
      const fm = f(xs);
      x[i] = orig;
      g[i] = (fp - fm) / (2 * eps);
    }
    return g;
  });
}

export interface GradInput {
  shape: readonly number[];
  data: ArrayLike<number>;
}

export interface CheckGradOptions {
  /** Finite-difference step in the float64 reference (default 1e-3). */
  eps?: number;
  /** Tolerance for the forward value (default: the gradient tolerance). */
  forwardTol?: Tol;
}

/**
 * Build f32 leaf tensors with `requiresGrad`, evaluate `tesseraFn` (must return a one-element tensor),
 * compare its value to `jsFn` on the same (f32-rounded) inputs in float64, run `backward()`, and compare
 * each leaf's `.grad` with the central differences of `jsFn`.
 */
export function checkGrad(
  tesseraFn: (ts: Tensor[]) => Tensor,
  jsFn: (xs: Float64Array[]) => number,
  inputs: readonly GradInput[],
  tol: Tol,
  opts: CheckGradOptions = {},
): void {
  const xs = inputs.map((inp) => Float64Array.from(Float32Array.from(inp.data)));
  const leaves = inputs.map((inp, k) =>
    tensor(Float32Array.from(xs[k]!), { shape: inp.shape, dtype: 'f32', requiresGrad: true }),
  );
  const out = tesseraFn(leaves);
  if (out.numel !== 1)
    throw new Error(`checkGrad: tesseraFn must return a one-element tensor, got shape [${out.shape}]`);
  // backward() before reading the value: realizing `out` first must not matter, but that is tested
  // separately (see elementwise.test.ts, "autograd basics") so that it does not mask every gradient.
  out.backward();
  const expectedValue = jsFn(xs.map((x) => Float64Array.from(x)));
  expectClose([out.itemSync()], [expectedValue], opts.forwardTol ?? tol, 'forward value');
  const fd = numericGrad(jsFn, xs, opts.eps ?? 1e-3);
  leaves.forEach((leaf, k) => {
    const g = leaf.grad;
    if (!g) throw new Error(`grad of input ${k}: is null after backward()`);
    if (g.shape.join(',') !== [...inputs[k]!.shape].join(',')) {
      throw new Error(
        `grad of input ${k}: shape [${g.shape}] differs from input shape [${inputs[k]!.shape}]`,
      );
    }
    expectClose(g.dataSync(), fd[k]!, tol, `grad of input ${k} (shape [${inputs[k]!.shape}])`);
  });
}

/** Fixed pseudo-random weights in [-1, -0.25] ∪ [0.25, 1], rounded to f32 (exact in both paths). */
export function weights(n: number, seed = 7): Float64Array {
  const r = makeRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const m = 0.25 + 0.75 * r();
    out[i] = Math.fround(r() < 0.5 ? -m : m);
  }
  return out;
}

/** Tessera side of a weighted sum Σ w·t, used to reduce a non-scalar output to a scalar loss. */
export function wsum(t: Tensor, w: ArrayLike<number>): Tensor {
  return t.mul(tensor(Float32Array.from(w), { shape: t.shape, dtype: 'f32' })).sum();
}

/** Read a tensor's shape and values as plain arrays. */
export function read(t: Tensor): { shape: number[]; data: number[] } {
  return { shape: t.shape, data: Array.from(t.dataSync()) };
}
