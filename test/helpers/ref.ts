/**
 * Plain-JavaScript float64 reference implementations of tensor semantics (NumPy/PyTorch rules), used
 * as independent oracles by the operator tests. Nothing here imports Tessera.
 *
 * Arrays are flat, row-major; every function takes the shape explicitly.
 */

export type Shape = readonly number[];

export interface Arr {
  data: Float64Array;
  shape: number[];
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function strides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i]!;
  }
  return st;
}

export function unravel(flat: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    const s = shape[i]!;
    idx[i] = flat % s;
    flat = Math.floor(flat / s);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: Shape): number {
  let flat = 0;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i]! + idx[i]!;
  return flat;
}

/** NumPy broadcast of two shapes; throws on mismatch. */
export function broadcastShape(a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[i - (n - a.length)] ?? 1;
    const y = b[i - (n - b.length)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`ref: cannot broadcast [${a}] and [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Materialise `x` (of `shape`) broadcast to `outShape`. */
export function broadcastTo(x: ArrayLike<number>, shape: Shape, outShape: Shape): Float64Array {
  const out = new Float64Array(numel(outShape));
  const lead = outShape.length - shape.length;
  for (let i = 0; i < out.length; i++) {
    const oi = unravel(i, outShape);
    const si = shape.map((s, d) => (s === 1 ? 0 : oi[d + lead]!));
    out[i] = x[ravel(si, shape)]!;
  }
  return out;
}

/** Elementwise function of any number of broadcast operands. */
export function mapN(
  inputs: { data: ArrayLike<number>; shape: Shape }[],
  f: (...v: number[]) => number,
): Arr {
  const shape = inputs.reduce<number[]>((s, x) => broadcastShape(s, x.shape), []);
  const bs = inputs.map((x) => broadcastTo(x.data, x.shape, shape));
  const data = new Float64Array(numel(shape));
  const args = new Array<number>(inputs.length);
  for (let i = 0; i < data.length; i++) {
    for (let j = 0; j < bs.length; j++) args[j] = bs[j]![i]!;
    data[i] = f(...args);
  }
  return { data, shape };
}

export function map1(x: ArrayLike<number>, f: (v: number) => number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
  return out;
}

/** Fold over `axes` (negative allowed; all when undefined). */
export function reduce(
  x: ArrayLike<number>,
  shape: Shape,
  axes: number | readonly number[] | undefined,
  keepdim: boolean,
  init: number,
  f: (acc: number, v: number) => number,
): Arr {
  const nd = shape.length;
  const ax =
    axes === undefined
      ? shape.map((_, i) => i)
      : (typeof axes === 'number' ? [axes] : [...axes]).map((a) => (a < 0 ? a + nd : a));
  const keptShape = shape.map((s, i) => (ax.includes(i) ? 1 : s));
  const acc = new Float64Array(numel(keptShape)).fill(init);
  for (let i = 0; i < numel(shape); i++) {
    const idx = unravel(i, shape).map((v, d) => (ax.includes(d) ? 0 : v));
    const o = ravel(idx, keptShape);
    acc[o] = f(acc[o]!, x[i]!);
  }
  return { data: acc, shape: keepdim ? keptShape : shape.filter((_, i) => !ax.includes(i)) };
}

export const sumRef = (
  x: ArrayLike<number>,
  shape: Shape,
  axes?: number | readonly number[],
  keepdim = false,
): Arr => reduce(x, shape, axes, keepdim, 0, (a, v) => a + v);
export const maxRef = (
  x: ArrayLike<number>,
  shape: Shape,
  axes?: number | readonly number[],
  keepdim = false,
): Arr => reduce(x, shape, axes, keepdim, -Infinity, (a, v) => Math.max(a, v));
export const minRef = (
  x: ArrayLike<number>,
  shape: Shape,
  axes?: number | readonly number[],
  keepdim = false,
): Arr => reduce(x, shape, axes, keepdim, Infinity, (a, v) => Math.min(a, v));

export function countOf(shape: Shape, axes?: number | readonly number[]): number {
  if (axes === undefined) return numel(shape);
  const ax = (typeof axes === 'number' ? [axes] : [...axes]).map((a) => (a < 0 ? a + shape.length : a));
  return [...new Set(ax)].reduce((p, a) => p * shape[a]!, 1);
}

export function meanRef(
  x: ArrayLike<number>,
  shape: Shape,
  axes?: number | readonly number[],
  keepdim = false,
): Arr {
  const s = sumRef(x, shape, axes, keepdim);
  const n = countOf(shape, axes);
  return { data: map1(s.data, (v) => v / n), shape: s.shape };
}

/** Variance with `correction` (1: Bessel). Two-pass in float64. */
export function varRef(
  x: ArrayLike<number>,
  shape: Shape,
  axes?: number | readonly number[],
  keepdim = false,
  correction = 1,
): Arr {
  const m = meanRef(x, shape, axes, true);
  const dev2 = new Float64Array(x.length);
  const mb = broadcastTo(m.data, m.shape, shape);
  for (let i = 0; i < x.length; i++) dev2[i] = (x[i]! - mb[i]!) ** 2;
  const s = sumRef(dev2, shape, axes, keepdim);
  const n = countOf(shape, axes);
  return { data: map1(s.data, (v) => v / (n - correction)), shape: s.shape };
}

/** Generic gather: out[o] = x[src(o)] or `fill` where `src` returns null. */
export function take(
  x: ArrayLike<number>,
  shape: Shape,
  outShape: Shape,
  src: (o: number[]) => number[] | null,
  fill = 0,
): Arr {
  const data = new Float64Array(numel(outShape));
  for (let i = 0; i < data.length; i++) {
    const s = src(unravel(i, outShape));
    data[i] = s === null ? fill : x[ravel(s, shape)]!;
  }
  return { data, shape: [...outShape] };
}

export function permuteRef(x: ArrayLike<number>, shape: Shape, order: readonly number[]): Arr {
  const outShape = order.map((o) => shape[o]!);
  return take(x, shape, outShape, (o) => {
    const s = new Array<number>(shape.length);
    order.forEach((src, i) => (s[src] = o[i]!));
    return s;
  });
}

/** Python's slice.indices(): the list of positions a[start:stop:step] visits on an axis of `length`. */
export function pySliceIndices(length: number, start?: number, stop?: number, step = 1): number[] {
  if (step === 0) throw new Error('step 0');
  const adjust = (v: number | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    if (v < 0) {
      v += length;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= length) {
      v = step < 0 ? length - 1 : length;
    }
    return v;
  };
  const s = adjust(start, step < 0 ? length - 1 : 0);
  const e = adjust(stop, step < 0 ? -1 : length);
  const out: number[] = [];
  if (step > 0) for (let i = s; i < e; i += step) out.push(i);
  else for (let i = s; i > e; i += step) out.push(i);
  return out;
}

export type RefSpec = number | null | readonly [number?, number?, number?];

/** NumPy basic indexing with one spec per leading axis (ints drop the axis). */
export function sliceRef(x: ArrayLike<number>, shape: Shape, specs: readonly RefSpec[]): Arr {
  const lists: number[][] = [];
  const keep: boolean[] = [];
  shape.forEach((n, i) => {
    const sp = specs[i];
    if (sp === undefined || sp === null) {
      lists.push([...Array(n).keys()]);
      keep.push(true);
    } else if (typeof sp === 'number') {
      lists.push([sp < 0 ? sp + n : sp]);
      keep.push(false);
    } else {
      lists.push(pySliceIndices(n, sp[0], sp[1], sp[2] ?? 1));
      keep.push(true);
    }
  });
  const fullShape = lists.map((l) => l.length);
  const r = take(x, shape, fullShape, (o) => o.map((v, d) => lists[d]![v]!));
  return { data: r.data, shape: fullShape.filter((_, i) => keep[i]) };
}

/** F.pad order: [left, right] of the last axis first. Negative values crop. */
export function padRef(x: ArrayLike<number>, shape: Shape, pads: readonly number[], value = 0): Arr {
  const before = shape.map(() => 0);
  const after = shape.map(() => 0);
  for (let i = 0; i < pads.length / 2; i++) {
    before[shape.length - 1 - i] = pads[2 * i]!;
    after[shape.length - 1 - i] = pads[2 * i + 1]!;
  }
  const outShape = shape.map((s, i) => s + before[i]! + after[i]!);
  return take(
    x,
    shape,
    outShape,
    (o) => {
      const s = o.map((v, d) => v - before[d]!);
      return s.every((v, d) => v >= 0 && v < shape[d]!) ? s : null;
    },
    value,
  );
}

export function flipRef(x: ArrayLike<number>, shape: Shape, dims: readonly number[]): Arr {
  const ds = dims.map((d) => (d < 0 ? d + shape.length : d));
  return take(x, shape, shape, (o) => o.map((v, d) => (ds.includes(d) ? shape[d]! - 1 - v : v)));
}

export function catRef(parts: { data: ArrayLike<number>; shape: Shape }[], dim: number): Arr {
  const nd = parts[0]!.shape.length;
  const d = dim < 0 ? dim + nd : dim;
  const outShape = [...parts[0]!.shape];
  outShape[d] = parts.reduce((p, t) => p + t.shape[d]!, 0);
  const data = new Float64Array(numel(outShape));
  for (let i = 0; i < data.length; i++) {
    const o = unravel(i, outShape);
    let k = o[d]!;
    for (const p of parts) {
      if (k < p.shape[d]!) {
        const s = [...o];
        s[d] = k;
        data[i] = p.data[ravel(s, p.shape)]!;
        break;
      }
      k -= p.shape[d]!;
    }
  }
  return { data, shape: outShape };
}

export function stackRef(parts: { data: ArrayLike<number>; shape: Shape }[], dim: number): Arr {
  const nd = parts[0]!.shape.length + 1;
  const d = dim < 0 ? dim + nd : dim;
  return catRef(
    parts.map((p) => {
      const s = [...p.shape];
      s.splice(d, 0, 1);
      return { data: p.data, shape: s };
    }),
    d,
  );
}

/** torch.gather: out[...i...] = x[... index[...i...] at dim ...]. */
export function gatherRef(
  x: ArrayLike<number>,
  shape: Shape,
  dim: number,
  index: ArrayLike<number>,
  indexShape: Shape,
): Arr {
  const d = dim < 0 ? dim + shape.length : dim;
  return take(x, shape, indexShape, (o) => {
    const s = [...o];
    s[d] = index[ravel(o, indexShape)]!;
    return s;
  });
}

export function indexSelectRef(
  x: ArrayLike<number>,
  shape: Shape,
  dim: number,
  index: readonly number[],
): Arr {
  const d = dim < 0 ? dim + shape.length : dim;
  const outShape = [...shape];
  outShape[d] = index.length;
  return take(x, shape, outShape, (o) => {
    const s = [...o];
    s[d] = index[o[d]!]!;
    return s;
  });
}

/** triu (upper=true) / tril over the last two axes. */
export function triRef(x: ArrayLike<number>, shape: Shape, diagonal: number, upper: boolean): Arr {
  const nd = shape.length;
  const data = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const idx = unravel(i, shape);
    const r = idx[nd - 2]!;
    const c = idx[nd - 1]!;
    const keep = upper ? c - r >= diagonal : c - r <= diagonal;
    data[i] = keep ? x[i]! : 0;
  }
  return { data, shape: [...shape] };
}

/** NumPy matmul: 1-d operands promoted then squeezed, batch dims broadcast. */
export function matmulRef(a: ArrayLike<number>, sa: Shape, b: ArrayLike<number>, sb: Shape): Arr {
  const A = sa.length === 1 ? [1, sa[0]!] : [...sa];
  const B = sb.length === 1 ? [sb[0]!, 1] : [...sb];
  const M = A[A.length - 2]!;
  const K = A[A.length - 1]!;
  const N = B[B.length - 1]!;
  if (B[B.length - 2] !== K) throw new Error('ref matmul: inner mismatch');
  const batch = broadcastShape(A.slice(0, -2), B.slice(0, -2));
  const outFull = [...batch, M, N];
  const data = new Float64Array(numel(outFull));
  const nb = numel(batch);
  const aB = A.slice(0, -2);
  const bB = B.slice(0, -2);
  for (let bi = 0; bi < nb; bi++) {
    const bidx = unravel(bi, batch);
    const ai = ravel(
      aB.map((s, d) => (s === 1 ? 0 : bidx[d + batch.length - aB.length]!)),
      aB,
    );
    const bj = ravel(
      bB.map((s, d) => (s === 1 ? 0 : bidx[d + batch.length - bB.length]!)),
      bB,
    );
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += a[ai * M * K + m * K + k]! * b[bj * K * N + k * N + n]!;
        data[bi * M * N + m * N + n] = acc;
      }
  }
  let shape = outFull;
  if (sa.length === 1) shape = [...shape.slice(0, -2), shape[shape.length - 1]!];
  if (sb.length === 1) shape = shape.slice(0, -1);
  return { data, shape };
}

/** Softmax over `dim` in float64 (max-shifted). */
export function softmaxRef(x: ArrayLike<number>, shape: Shape, dim: number): Float64Array {
  const m = maxRef(x, shape, dim, true);
  const mb = broadcastTo(m.data, m.shape, shape);
  const e = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) e[i] = Math.exp(x[i]! - mb[i]!);
  const s = sumRef(e, shape, dim, true);
  const sb = broadcastTo(s.data, s.shape, shape);
  return e.map((v, i) => v / sb[i]!);
}

export function logsumexpRef(x: ArrayLike<number>, shape: Shape, dim: number, keepdim = false): Arr {
  const m = maxRef(x, shape, dim, true);
  const mb = broadcastTo(m.data, m.shape, shape);
  const e = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) e[i] = Math.exp(x[i]! - mb[i]!);
  const s = sumRef(e, shape, dim, true);
  const data = s.data.map((v, i) => Math.log(v) + m.data[i]!);
  return {
    data,
    shape: keepdim ? s.shape : shape.filter((_, i) => i !== (dim < 0 ? dim + shape.length : dim)),
  };
}

/**
 * erf in float64 from its Maclaurin series (|x| < 5, where the alternating terms lose at most ~6
 * digits) and 1 beyond; accurate to ~1e-10, far below f32 resolution.
 */
export function erfRef(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (Math.abs(x) >= 5) return Math.sign(x);
  let term = x; // x^(2n+1) (-1)^n / n!
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const t = term / (2 * n + 1);
    sum += t;
    if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export const sigmoidRef = (x: number): number => 1 / (1 + Math.exp(-x));
export const geluRef = (x: number): number => 0.5 * x * (1 + erfRef(x / Math.SQRT2));
export const geluTanhRef = (x: number): number =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** Deterministic uniform stream (mulberry32) for test data. */
export function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` values uniform in [lo, hi), rounded to f32 so they are exact Tessera inputs. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = makeRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

/** Like `randArray`, but every value is at least `margin` away from each of `kinks` (for FD checks). */
export function randAway(
  n: number,
  seed: number,
  lo: number,
  hi: number,
  kinks: readonly number[],
  margin = 0.05,
): Float64Array {
  const r = makeRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    do v = Math.fround(lo + (hi - lo) * r());
    while (kinks.some((k) => Math.abs(v - k) < margin));
    out[i] = v;
  }
  return out;
}

/** Distinct values (a shuffled grid with jitter), so max/min/argmax have no ties. */
export function distinctArray(n: number, seed: number, spacing = 0.1): Float64Array {
  const r = makeRng(seed);
  const vals = [...Array(n).keys()].map((i) => (i - n / 2) * spacing);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [vals[i], vals[j]] = [vals[j]!, vals[i]!];
  }
  return Float64Array.from(vals, (v) => Math.fround(v + spacing * 0.2 * (r() - 0.5)));
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`dot: lengths ${a.length} and ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
