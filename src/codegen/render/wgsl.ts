import type { DType } from '../../dtype.js';
import type { GemmPlan } from '../gemm_plan.js';
import { extentOf, flatten, globalNest, planGemm, substStmts } from '../gemm_plan.js';
import type { Expr, KernelIR, Operand, Stmt } from '../ir.js';
import type { ICond, IExpr, IVar } from '../symbolic.js';
import { canBeNegative } from '../symbolic.js';

/**
 * The WGSL renderer: kernel IR to one compute shader per kernel. Semantics match the interpreter (every
 * result rounded to its dtype, floor `//` and `%`, masked loads read 0), whatever the GPU's own math
 * library does: exp, log, tanh, sin, cos and erf are the same range-reduced polynomials as the C
 * renderer's, NaN tests work on bit patterns (fast-math compilers may drop `x != x`), and half types
 * are rounded with integer code, never by the driver's conversions.
 *
 * Storage: f32 and i32 natively; f16 natively when the device has `shader-f16`; bf16, f16 without the
 * extension, and the 8-bit types (i8, u8, bool) packed into u32 words. Packed outputs are written with
 * `atomicAnd`/`atomicOr` on their own bits, so neighbouring threads never clobber each other's elements.
 *
 * Every storage binding is `read_write`: a kernel reads and writes regions of one arena buffer, and
 * WebGPU forbids mixing read-only and writable usage of one buffer within a dispatch.
 *
 * Three kernel shapes:
 *  - loop kernels: one invocation per output element, reductions as sequential loops;
 *  - workgroup reductions: one workgroup per output element when the reduction is long, partial
 *    results combined in workgroup memory;
 *  - contractions through a tiled GEMM template (workgroup tiles staged in workgroup memory, a
 *    register block per invocation) with the prologue fused into the tile loads and the epilogue into
 *    the stores.
 */

/** Bump when generated code changes meaning (part of pipeline cache keys). */
export const WGSL_RENDERER_VERSION = 3;

/** What the device allows and offers, and tuning parameters. */
export interface WgslOptions {
  /** The device has `shader-f16`: f16 tensors are stored as `array<f16>`. */
  readonly f16: boolean;
  /** `maxComputeWorkgroupsPerDimension`: larger grids are folded into a second dimension. */
  readonly maxWorkgroupsPerDimension: number;
  /**
   * Input parameters bound to the same bytes as an earlier parameter (the output, for in-place updates,
   * or another input), mapped to that parameter: they are read through its binding, because WebGPU
   * rejects a dispatch whose writable bindings overlap.
   */
  readonly aliasOf?: ReadonlyMap<number, number>;
  /** Invocations per workgroup of loop kernels (default 64). */
  readonly workgroupSize?: number;
  /** Invocations per workgroup of workgroup reductions (power of two, default 64). */
  readonly reduceWorkgroupSize?: number;
  /** Shortest reduction handed to a whole workgroup (default 256). */
  readonly workgroupReduceMin?: number;
  /** GEMM tile: rows and columns per workgroup, k step, rows and columns per invocation. */
  readonly gemm?: GemmTile;
}

export interface GemmTile {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  readonly tm: number;
  readonly tn: number;
}

// 8x8 outputs per invocation, 64 invocations: the best of a sweep on SwiftShader (see docs/notes.md);
// a per-adapter tuner is future work (TESSERA_WGSL_GEMM_TILE overrides it).
export const DEFAULT_GEMM_TILE: GemmTile = { bm: 64, bn: 64, bk: 8, tm: 8, tn: 8 };

/** A rendered kernel: the shader, its dispatch grid and what to bind. */
export interface WgslKernel {
  readonly code: string;
  /** Workgroups to dispatch in x, y, z. */
  readonly grid: readonly [number, number, number];
  /** Kernel parameter bound at binding i (aliased inputs are not bound). */
  readonly bindings: readonly number[];
  /** Number of u32 launch scalars, bound as a uniform after the storage buffers (0: none). */
  readonly scalarCount: number;
  readonly shape: 'loop' | 'workgroup-reduce' | 'gemm';
}

type Repr = 'native' | 'packed8' | 'packed16';

/** How a dtype is held in storage. */
function reprOf(d: DType, f16: boolean): Repr {
  if (d === 'f32' || d === 'i32' || (d === 'f16' && f16)) return 'native';
  if (d === 'f16' || d === 'bf16') return 'packed16';
  return 'packed8';
}

const isF = (d: DType) => d === 'f32' || d === 'f16' || d === 'bf16';
/** WGSL type of a value in registers: floats compute in f32, small integers and bool in i32. */
const vtype = (d: DType) => (isF(d) ? 'f32' : 'i32');

/** Helpers every shader carries (unused functions cost nothing after compilation). */
const PRELUDE = `
fn tinf() -> f32 { var u = 0x7f800000u; return bitcast<f32>(u); }
fn tnan() -> f32 { var u = 0x7fc00000u; return bitcast<f32>(u); }
fn tisnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn tmaxf(a: f32, b: f32) -> f32 { return select(b, a, a > b || tisnan(a)); }
fn tfdiv(a: i32, d: i32) -> i32 { let q = a / d; return select(q, q - 1, (a % d != 0) && (a < 0)); }
fn tfmod(a: i32, d: i32) -> i32 { let r = a % d; return select(r, r + d, r < 0); }
fn h2f(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { return bitcast<f32>(s | bitcast<u32>(f32(m) * 5.9604644775390625e-8)); }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
fn f2h(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let ex = i32((b >> 23u) & 0xffu);
  var mant = b & 0x7fffffu;
  if (ex == 255) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = ex - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let sh = u32(14 - e);
    var half = mant >> sh;
    let rem = mant & ((1u << sh) - 1u);
    let mid = 1u << (sh - 1u);
    if (rem > mid || (rem == mid && (half & 1u) != 0u)) { half = half + 1u; }
    return sign | half;
  }
  var half = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u) != 0u)) { half = half + 1u; }
  return sign | half;
}
fn rf16(x: f32) -> f32 { return h2f(f2h(x)); }
fn bf2f(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn f2bf(x: f32) -> u32 {
  let u = bitcast<u32>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u >> 16u) | 0x40u) & 0xffffu; }
  return ((u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn rbf16(x: f32) -> f32 { return bf2f(f2bf(x)); }
fn f2i(x: f32) -> i32 {
  let u = bitcast<u32>(x);
  let e = i32((u >> 23u) & 0xffu) - 127;
  if (e == 128) { return 0; }
  if (e < 31) { return i32(trunc(x)); }
  let sh = e - 23;
  if (sh >= 32) { return 0; }
  let w = ((u & 0x7fffffu) | 0x800000u) << u32(sh);
  return select(bitcast<i32>(w), bitcast<i32>(0u - w), (u >> 31u) != 0u);
}
fn tas(u: u32) -> f32 { return bitcast<f32>(u); }
fn texp(x: f32) -> f32 {
  let xc = clamp(x, -103.97208, 88.72283);
  let n = round(xc * 1.44269504088896341);
  let ni = i32(n);
  let r = xc - n * 0.693359375 + n * 2.12194440e-4;
  var p = 1.9875691500e-4;
  p = p * r + 1.3981999507e-3;
  p = p * r + 8.3334519073e-3;
  p = p * r + 4.1665795894e-2;
  p = p * r + 1.6666665459e-1;
  p = p * r + 5.0000001201e-1;
  p = p * r * r + r + 1.0;
  let n1 = ni >> 1u;
  var y = p * tas(u32(n1 + 127) << 23u) * tas(u32(ni - n1 + 127) << 23u);
  y = select(y, tinf(), x > 88.72283);
  y = select(y, 0.0, x < -103.97208);
  return select(y, x, tisnan(x));
}
fn tlog(x: f32) -> f32 {
  let u0 = bitcast<u32>(x);
  let sub = (u0 & 0x7f800000u) == 0u;
  let xs = select(x, x * 8388608.0, sub);
  let u = bitcast<u32>(xs);
  let e = i32((u >> 23u) & 0xffu) - 127 - select(0, 23, sub);
  var m = tas((u & 0x007fffffu) | 0x3f800000u);
  let big = m > 1.41421356;
  m = select(m, m * 0.5, big);
  let fe = f32(e + select(0, 1, big));
  let z = m - 1.0;
  let zz = z * z;
  var p = 7.0376836292e-2;
  p = p * z - 1.1514610310e-1;
  p = p * z + 1.1676998740e-1;
  p = p * z - 1.2420140846e-1;
  p = p * z + 1.4249322787e-1;
  p = p * z - 1.6668057665e-1;
  p = p * z + 2.0000714765e-1;
  p = p * z - 2.4999993993e-1;
  p = p * z + 3.3333331174e-1;
  var y = p * z * zz + fe * -2.12194440e-4 - 0.5 * zz;
  y = z + y + fe * 0.693359375;
  y = select(y, tinf(), u0 == 0x7f800000u);
  y = select(y, -tinf(), (u0 & 0x7fffffffu) == 0u);
  y = select(y, tnan(), (u0 >> 31u) != 0u && (u0 & 0x7fffffffu) != 0u);
  return select(y, x, tisnan(x));
}
fn ttanh(x: f32) -> f32 {
  let a = abs(x);
  let z = x * x;
  var p = -5.70498872745e-3;
  p = p * z + 2.06390887954e-2;
  p = p * z - 5.37397155531e-2;
  p = p * z + 1.33314422036e-1;
  p = p * z - 3.33332819422e-1;
  let small = x + x * z * p;
  var big = 1.0 - 2.0 / (texp(2.0 * a) + 1.0);
  big = select(big, -big, x < 0.0);
  return select(select(big, small, a < 0.625), x, tisnan(x));
}
fn terf(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let q = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * texp(q);
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
// sin and cos with Cody-Waite reduction by pi/2 (three-part constant) and minimax polynomials on
// [-pi/4, pi/4]: accurate to a few ulp for |x| < 8192*pi, unlike many GPUs' native sin.
fn tsincos(x: f32, cosine: bool) -> f32 {
  if (tisnan(x) || abs(x) == tinf()) { return tnan(); }
  let j = round(x * 0.636619772367581343);
  let r = ((x - j * 1.5703125) - j * 4.83751296997e-4) - j * 7.54978995489e-8;
  var q = i32(j) & 3;
  if (cosine) { q = (q + 1) & 3; }
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  var y = select(s, c, (q & 1) == 1);
  return select(y, -y, q >= 2);
}
fn thash(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u); x = x * 0x7feb352du; x = x ^ (x >> 15u); x = x * 0x846ca68bu; x = x ^ (x >> 16u);
  return x;
}
fn tuniform(key: u32, counter: u32, index: i32) -> f32 {
  let x = thash((counter + u32(index)) ^ key);
  let y = thash(x + key);
  return f32(y >> 8u) / 16777216.0;
}
`;

function idx(e: IExpr): string {
  switch (e.k) {
    case 'c':
      return intLit(e.v);
    case 'v':
      return e.name;
    case 'sum': {
      const parts = e.terms.map(([a, k]) => (k === 1 ? idx(a) : `${idx(a)} * ${intLit(k)}`));
      if (e.c) parts.push(intLit(e.c));
      return `(${parts.join(' + ')})`;
    }
    case 'div':
      return canBeNegative(e.a) ? `tfdiv(${idx(e.a)}, ${e.d})` : `(${idx(e.a)} / ${e.d})`;
    case 'mod':
      return canBeNegative(e.a) ? `tfmod(${idx(e.a)}, ${e.d})` : `(${idx(e.a)} % ${e.d})`;
  }
}

function intLit(v: number): string {
  if (v === -2147483648) return '(-2147483647 - 1)';
  if (v < 0) return `(${v})`;
  return `${v}`;
}

function condsText(cs: readonly ICond[]): string {
  return cs.map((c) => `(${c.lo} <= ${idx(c.e)} && ${idx(c.e)} < ${c.hi})`).join(' && ');
}

function floatLit(v: number): string {
  if (Number.isNaN(v)) return 'tnan()';
  if (v === Infinity) return 'tinf()';
  if (v === -Infinity) return '(-tinf())';
  if (Object.is(v, -0)) return '(-0.0)';
  // The exact value of the f32 (shortest round-trip of the double): a 9-digit rounding can land above
  // FLT_MAX, which WGSL rejects as unrepresentable instead of rounding.
  const s = String(Math.fround(v));
  const lit = s.includes('e') || s.includes('.') ? s : s + '.0';
  return lit.startsWith('-') ? `(${lit})` : lit;
}

function literal(v: number, d: DType): string {
  if (isF(d)) return floatLit(v);
  return Number.isFinite(v) ? intLit(Math.trunc(v) | 0) : '0';
}

/** Round a value computed in its register type to dtype d, as the interpreter does. */
function round(d: DType, x: string): string {
  switch (d) {
    case 'f32':
    case 'i32':
      return x;
    case 'f16':
      return `rf16(${x})`;
    case 'bf16':
      return `rbf16(${x})`;
    case 'i8':
      return `((${x} << 24u) >> 24u)`;
    case 'u8':
      return `(${x} & 255)`;
    case 'bool':
      return `select(0, 1, (${x}) != 0)`;
  }
}

interface Ctx {
  readonly ir: KernelIR;
  readonly opts: WgslOptions;
  readonly lines: string[];
}

function operand(o: Operand, d: DType): string {
  return o.k === 'ref' ? `v${o.id}` : literal(o.v, d);
}

/** Name of the storage array parameter p is read from. */
function arrayOf(ctx: Ctx, p: number): string {
  const q = ctx.opts.aliasOf?.get(p) ?? p;
  return q === 0 ? 'out' : `in${q}`;
}

/** An element of parameter p at flat index `at` (i32 expression), as its register type. */
function loadText(ctx: Ctx, p: number, at: string): string {
  const d = ctx.ir.params[p]!.dtype;
  const repr = reprOf(d, ctx.opts.f16);
  const arr = arrayOf(ctx, p);
  const atomic = arr === 'out' && repr !== 'native';
  const word = (w: string) => (atomic ? `atomicLoad(&out[${w}])` : `${arr}[${w}]`);
  if (repr === 'native') return d === 'f16' ? `f32(${arr}[${at}])` : `${arr}[${at}]`;
  if (repr === 'packed16') {
    const bits = `extractBits(${word(`(${at}) >> 1u`)}, u32((${at}) & 1) * 16u, 16u)`;
    return d === 'bf16' ? `bf2f(${bits})` : `h2f(${bits})`;
  }
  const w = word(`(${at}) >> 2u`);
  if (d === 'i8') return `extractBits(bitcast<i32>(${w}), u32((${at}) & 3) * 8u, 8u)`;
  return `i32(extractBits(${w}, u32((${at}) & 3) * 8u, 8u))`;
}

/** Store statement of value v (register type of the output dtype) at flat index `at`. */
function storeText(ctx: Ctx, at: string, v: string): string {
  const d = ctx.ir.params[0]!.dtype;
  const repr = reprOf(d, ctx.opts.f16);
  if (repr === 'native') return d === 'f16' ? `out[${at}] = f16(rf16(${v}));` : `out[${at}] = ${v};`;
  if (repr === 'packed16') return `tstore16(${at}, ${d === 'bf16' ? `f2bf(${v})` : `f2h(${v})`});`;
  return `tstore8(${at}, u32(${v}));`;
}

function exprText(ctx: Ctx, d: DType, e: Expr): string {
  const types = ctx.ir.valueTypes;
  const typeOf = (o: Operand): DType => (o.k === 'ref' ? types[o.id]! : d);
  switch (e.k) {
    case 'load': {
      const l = loadText(ctx, e.param, idx(e.idx));
      return e.valid.length ? `select(${isF(d) ? '0.0' : '0'}, ${l}, ${condsText(e.valid)})` : l;
    }
    case 'gather': {
      const r = operand(e.row, 'i32');
      const l = loadText(ctx, e.param, `clamp(${r}, 0, ${e.rows - 1}) * ${e.cols} + ${idx(e.col)}`);
      return `select(${isF(d) ? '0.0' : '0'}, ${l}, ${e.valid.length ? `${condsText(e.valid)} && ` : ''}${r} >= 0 && ${r} < ${e.rows})`;
    }
    case 'cast': {
      const src = operand(e.src, e.from);
      // NaN is true: test the bits (fast-math compilers may fold NaN != 0 to false).
      if (d === 'bool') return isF(e.from) ? `select(0, 1, (bitcast<u32>(${src}) & 0x7fffffffu) != 0u)` : `select(0, 1, ${src} != 0)`;
      if (isF(d)) return round(d, isF(e.from) ? src : `f32(${src})`);
      if (isF(e.from)) return round(d, `f2i(${src})`);
      return round(d, src);
    }
    case 'index': {
      if (isF(d)) return round(d, `f32(${floatLit(e.start)} + f32(${idx(e.idx)}) * ${floatLit(e.step)})`);
      return round(d, `(${intLit(Math.trunc(e.start))} + ${idx(e.idx)} * ${intLit(Math.trunc(e.step))})`);
    }
    case 'rand':
      return `tuniform(${scalarRef(e.scalar)}, ${scalarRef(e.scalar + 1)}, ${idx(e.idx)})`;
    case 'valid':
      return `select(0, 1, ${condsText(e.conds)})`;
    case 'alu': {
      const refType = e.src.find((o, i) => o.k === 'ref' && !(e.op === 'WHERE' && i === 0));
      const opType = (o: Operand, i: number): DType =>
        e.op === 'WHERE' && i === 0 ? 'bool' : o.k === 'ref' ? types[o.id]! : e.op === 'WHERE' ? d : refType ? typeOf(refType) : d;
      const src = e.src.map((o, i) => operand(o, opType(o, i)));
      const [a, b, c] = src as [string, string, string];
      const f = isF(d);
      const cmpFloat = isF(opType(e.src[0]!, 0));
      switch (e.op) {
        case 'WHERE':
          return `select(${c}, ${b}, ${a} != 0)`;
        case 'ADD':
          return round(d, `(${a} + ${b})`);
        case 'MUL':
          return round(d, `(${a} * ${b})`);
        case 'MAX':
          return f ? `tmaxf(${a}, ${b})` : `max(${a}, ${b})`;
        case 'CMPLT':
          return `select(0, 1, ${a} < ${b})`;
        case 'CMPEQ':
          return cmpFloat ? `select(0, 1, ${a} == ${b})` : `select(0, 1, ${a} == ${b})`;
        case 'NEG':
          return round(d, `(-${a})`);
        case 'RECIP':
          return round(d, `(1.0 / ${a})`);
        case 'EXP':
          return round(d, `texp(${a})`);
        case 'LOG':
          return round(d, `tlog(${a})`);
        case 'SQRT':
          return round(d, `sqrt(${a})`);
        case 'SIN':
          return round(d, `tsincos(${a}, false)`);
        case 'COS':
          return round(d, `tsincos(${a}, true)`);
        case 'TANH':
          return round(d, `ttanh(${a})`);
        case 'ERF':
          return round(d, `terf(${a})`);
      }
    }
  }
  throw new Error(`WGSL renderer: unhandled expression ${JSON.stringify(e)}`);
}

const scalarRef = (i: number) => `S[${i >> 2}][${i & 3}]`;

function updateText(ctx: Ctx, id: number, op: 'SUM' | 'RMAX', v: string): string {
  const d = ctx.ir.valueTypes[id]!;
  if (op === 'SUM') return `v${id} = ${round(d, `(v${id} + ${v})`)};`;
  return isF(d) ? `v${id} = tmaxf(${v}, v${id});` : `v${id} = max(v${id}, ${v});`;
}

function stmtsText(ctx: Ctx, stmts: readonly Stmt[], ind: string): void {
  for (const st of stmts) {
    switch (st.k) {
      case 'loop':
        ctx.lines.push(`${ind}for (var ${st.v.name}: i32 = 0; ${st.v.name} < ${st.v.max + 1}; ${st.v.name}++) {`);
        stmtsText(ctx, st.body, ind + '  ');
        ctx.lines.push(`${ind}}`);
        break;
      case 'let':
        ctx.lines.push(`${ind}let v${st.id}: ${vtype(st.dtype)} = ${exprText(ctx, st.dtype, st.expr)};`);
        break;
      case 'acc':
        ctx.lines.push(`${ind}var v${st.id}: ${vtype(st.dtype)} = ${literal(st.init, st.dtype)};`);
        break;
      case 'update':
        ctx.lines.push(ind + updateText(ctx, st.id, st.op, operand(st.value, ctx.ir.valueTypes[st.id]!)));
        break;
      case 'store':
        ctx.lines.push(ind + storeText(ctx, idx(st.idx), operand(st.value, ctx.ir.params[0]!.dtype)));
        break;
    }
  }
}

/** Binding declarations and the packed-store helpers. */
function declarations(ctx: Ctx): { decls: string[]; bindings: number[] } {
  const { ir, opts } = ctx;
  const decls: string[] = [];
  const bindings: number[] = [];
  const usesF16 = opts.f16 && ir.params.some((p) => p.dtype === 'f16');
  if (usesF16) decls.push('enable f16;');
  ir.params.forEach((p, i) => {
    if (i > 0 && opts.aliasOf?.has(i)) return;
    const repr = reprOf(p.dtype, opts.f16);
    const elem = repr === 'native' ? p.dtype : p.output ? 'atomic<u32>' : 'u32';
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> ${i === 0 ? 'out' : `in${i}`}: array<${elem}>;`);
    bindings.push(i);
  });
  if (ir.scalarCount > 0) decls.push(`@group(0) @binding(${bindings.length}) var<uniform> S: array<vec4<u32>, ${Math.ceil(ir.scalarCount / 4)}>;`);
  const out = reprOf(ir.params[0]!.dtype, opts.f16);
  if (out === 'packed8') {
    decls.push(
      `fn tstore8(i: i32, v: u32) { let w = u32(i) >> 2u; let sh = u32(i & 3) * 8u; atomicAnd(&out[w], ~(0xffu << sh)); atomicOr(&out[w], (v & 0xffu) << sh); }`,
    );
  } else if (out === 'packed16') {
    decls.push(
      `fn tstore16(i: i32, v: u32) { let w = u32(i) >> 1u; let sh = u32(i & 1) * 16u; atomicAnd(&out[w], ~(0xffffu << sh)); atomicOr(&out[w], (v & 0xffffu) << sh); }`,
    );
  }
  return { decls, bindings };
}

/** Split a count of workgroups into a grid within the per-dimension limit. */
function grid2(groups: number, max: number): [number, number, number] {
  if (groups <= max) return [Math.max(groups, 1), 1, 1];
  const y = Math.ceil(groups / max);
  if (y > max) throw new Error(`WGSL renderer: ${groups} workgroups exceed the device's grid (${max} per dimension, 2 dimensions used)`);
  return [Math.ceil(groups / y), y, 1];
}

/** Declarations of the global loop variables from one linear index `t`. */
function decompose(vars: readonly IVar[], t: string, ind: string): string[] {
  const out: string[] = [];
  let stride = 1;
  for (let i = vars.length - 1; i >= 0; i--) {
    const e = vars[i]!.max + 1;
    out.unshift(`${ind}let ${vars[i]!.name}: i32 = ${i === 0 ? (stride === 1 ? t : `${t} / ${stride}`) : stride === 1 ? `${t} % ${e}` : `(${t} / ${stride}) % ${e}`};`);
    stride *= e;
  }
  return out;
}

function renderLoop(ctx: Ctx, decls: string[]): { code: string; grid: [number, number, number] } {
  const { ir, opts } = ctx;
  const wg = opts.workgroupSize ?? 64;
  const { vars, inner } = globalNest(ir.body);
  const total = extentOf(vars);
  const grid = grid2(Math.ceil(total / wg), opts.maxWorkgroupsPerDimension);
  const lines = [
    `@compute @workgroup_size(${wg})`,
    `fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {`,
    `  let t = i32(gid.x + gid.y * nwg.x * ${wg}u);`,
    `  if (t >= ${total}) { return; }`,
    ...decompose(vars, 't', '  '),
  ];
  stmtsText(ctx, inner, '  ');
  lines.push(...ctx.lines, '}');
  return { code: [...decls, PRELUDE, ...lines].join('\n'), grid };
}

/** The leading reduce-loop nest of a statement, flattened: its variables and innermost body. */
function reduceNest(st: Stmt): { vars: IVar[]; body: readonly Stmt[] } | undefined {
  if (st.k !== 'loop' || st.kind !== 'reduce') return undefined;
  const vars: IVar[] = [];
  let cur: readonly Stmt[] = [st];
  while (cur.length === 1 && cur[0]!.k === 'loop' && cur[0]!.kind === 'reduce') {
    vars.push(cur[0]!.v);
    cur = cur[0]!.body;
  }
  if (cur.some((s) => s.k === 'loop' || s.k === 'acc' || s.k === 'store')) return undefined;
  return { vars, body: cur };
}

/** Longest reduction of a kernel whose reductions can each be spread over a workgroup (else 0). */
function workgroupReduceLength(ir: KernelIR): number {
  const { inner } = globalNest(ir.body);
  let longest = 0;
  for (const s of inner) {
    if (s.k === 'loop') {
      const n = reduceNest(s);
      if (!n) return 0;
      longest = Math.max(longest, extentOf(n.vars));
    }
  }
  return longest;
}

function renderWorkgroupReduce(ctx: Ctx, decls: string[]): { code: string; grid: [number, number, number] } {
  const { ir, opts } = ctx;
  const wg = opts.reduceWorkgroupSize ?? 64;
  const { vars, inner } = globalNest(ir.body);
  const total = extentOf(vars);
  const grid = grid2(total, opts.maxWorkgroupsPerDimension);
  const accs = new Map<number, Extract<Stmt, { k: 'acc' }>>();
  const sharedTypes = new Set<string>();
  for (const s of inner) if (s.k === 'acc') accs.set(s.id, s);
  for (const a of accs.values()) sharedTypes.add(vtype(a.dtype));
  for (const t of sharedTypes) decls.push(`var<workgroup> red_${t}: array<${t}, ${wg}>;`);
  ctx.lines.push(
    `@compute @workgroup_size(${wg})`,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lidu: u32) {`,
    `  let t = i32(wid.x + wid.y * nwg.x);`,
    `  if (t >= ${total}) { return; }`,
    `  let lid = i32(lidu);`,
    ...decompose(vars, 't', '  '),
  );
  for (const s of inner) {
    if (s.k !== 'loop') {
      if (s.k === 'store') {
        ctx.lines.push('  if (lid == 0) {');
        stmtsText(ctx, [s], '    ');
        ctx.lines.push('  }');
      } else stmtsText(ctx, [s], '  ');
      continue;
    }
    const nest = reduceNest(s)!;
    const r = extentOf(nest.vars);
    ctx.lines.push(`  for (var rr: i32 = lid; rr < ${r}; rr += ${wg}) {`, ...decompose(nest.vars, 'rr', '    '));
    stmtsText(ctx, nest.body, '    ');
    ctx.lines.push('  }');
    // Combine the partial results of the workgroup (a tree in workgroup memory), then share the total.
    const updated = nest.body.filter((b) => b.k === 'update') as Extract<Stmt, { k: 'update' }>[];
    for (const u of updated) {
      const d = ir.valueTypes[u.id]!;
      const arr = `red_${vtype(d)}`;
      const combine = u.op === 'SUM' ? round(d, `(${arr}[lid] + ${arr}[lid + s])`) : isF(d) ? `tmaxf(${arr}[lid + s], ${arr}[lid])` : `max(${arr}[lid], ${arr}[lid + s])`;
      ctx.lines.push(
        `  ${arr}[lid] = v${u.id};`,
        `  workgroupBarrier();`,
        `  for (var s: i32 = ${wg / 2}; s > 0; s = s >> 1u) {`,
        `    if (lid < s) { ${arr}[lid] = ${combine}; }`,
        `    workgroupBarrier();`,
        `  }`,
        `  v${u.id} = ${arr}[0];`,
        `  workgroupBarrier();`,
      );
    }
  }
  ctx.lines.push('}');
  return { code: [...decls, PRELUDE, ...ctx.lines].join('\n'), grid };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A tile element load, with a bounds test only for the edges that can be partial. */
function guardedLoad(call: string, conds: readonly string[], dst: string): string[] {
  const c = conds.filter((x) => x).join(' && ');
  if (!c) return [`      ${dst} = ${call};`];
  return [`      var x = 0.0;`, `      if (${c}) { x = ${call}; }`, `      ${dst} = x;`];
}

function renderGemm(ctx: Ctx, decls: string[], g: GemmPlan): { code: string; grid: [number, number, number] } {
  const { ir, opts } = ctx;
  const tile = opts.gemm ?? DEFAULT_GEMM_TILE;
  const { bm, bn, bk, tm, tn } = tile;
  const tx = bn / tn;
  const ty = bm / tm;
  const threads = tx * ty;
  const M = extentOf(g.m);
  const N = extentOf(g.n);
  const K = extentOf(g.k);
  const B = extentOf(g.batch);
  const flat = new Map<string, IExpr>();
  flatten(g.m, 'mf', flat);
  flatten(g.n, 'nf', flat);
  flatten(g.k, 'kf', flat);
  flatten(g.batch, 'bf', flat);
  const operandFn = (which: 'a' | 'b') => {
    const c: Ctx = { ir, opts, lines: [] };
    stmtsText(c, substStmts(which === 'a' ? g.aStmts : g.bStmts, flat), '  ');
    const value = which === 'a' ? g.a : g.b;
    const sig = which === 'a' ? 'mf: i32, kf: i32, bf: i32' : 'kf: i32, nf: i32, bf: i32';
    return [`fn op_${which}(${sig}) -> f32 {`, ...c.lines, `  return f32(${operand(value, 'f32')});`, '}'].join('\n');
  };
  const epi: Ctx = { ir, opts, lines: [] };
  stmtsText(epi, substStmts(g.pre, flat), '        ');
  epi.lines.push(`        let v${g.accId}: f32 = acc[${'i'} * ${tn} + j];`);
  stmtsText(epi, substStmts(g.post, flat), '        ');
  decls.push(`var<workgroup> As: array<f32, ${bk * bm}>;`, `var<workgroup> Bs: array<f32, ${bk * bn}>;`);
  const lines = [
    operandFn('a'),
    operandFn('b'),
    `@compute @workgroup_size(${threads})`,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidu: u32) {`,
    `  let lid = i32(lidu);`,
    `  let bf = i32(wid.z);`,
    `  let m0 = i32(wid.y) * ${bm};`,
    `  let n0 = i32(wid.x) * ${bn};`,
    `  let tx = lid % ${tx};`,
    `  let ty = lid / ${tx};`,
    ...range(tm).flatMap((i) => range(tn).map((j) => `  var c${i}_${j} = 0.0;`)),
    `  for (var k0: i32 = 0; k0 < ${K}; k0 += ${bk}) {`,
    // A tile, k fastest (contiguous for row-major A); B tile, n fastest.
    `    for (var e: i32 = lid; e < ${bm * bk}; e += ${threads}) {`,
    `      let mm = e / ${bk}; let kk = e % ${bk};`,
    ...guardedLoad('op_a(m0 + mm, k0 + kk, bf)', [M % bm ? `m0 + mm < ${M}` : '', K % bk ? `k0 + kk < ${K}` : ''], `As[kk * ${bm} + mm]`),
    `    }`,
    `    for (var e: i32 = lid; e < ${bk * bn}; e += ${threads}) {`,
    `      let kk = e / ${bn}; let nn = e % ${bn};`,
    ...guardedLoad('op_b(k0 + kk, n0 + nn, bf)', [K % bk ? `k0 + kk < ${K}` : '', N % bn ? `n0 + nn < ${N}` : ''], `Bs[kk * ${bn} + nn]`),
    `    }`,
    `    workgroupBarrier();`,
    `    for (var kk: i32 = 0; kk < ${bk}; kk++) {`,
    // Unrolled register block: scalar accumulators stay in registers (a dynamically indexed private
    // array may live in memory on some compilers, SwiftShader's among them).
    ...range(tm).map((i) => `      let a${i} = As[kk * ${bm} + ty + ${i * ty}];`),
    ...range(tn).map((j) => `      let b${j} = Bs[kk * ${bn} + tx + ${j * tx}];`),
    ...range(tm).flatMap((i) => range(tn).map((j) => `      c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`)),
    `    }`,
    `    workgroupBarrier();`,
    `  }`,
    `  var acc: array<f32, ${tm * tn}>;`,
    ...range(tm).flatMap((i) => range(tn).map((j) => `  acc[${i * tn + j}] = c${i}_${j};`)),
    `  for (var i: i32 = 0; i < ${tm}; i++) {`,
    `    for (var j: i32 = 0; j < ${tn}; j++) {`,
    `      let mf = m0 + ty + i * ${ty};`,
    `      let nf = n0 + tx + j * ${tx};`,
    // Bounds checks only where the size is not a multiple of the tile (shapes are static).
    ...(M % bm || N % bn ? [`      if (mf < ${M} && nf < ${N}) {`, ...epi.lines, `      }`] : epi.lines),
    `    }`,
    `  }`,
    `}`,
  ];
  const grid: [number, number, number] = [Math.ceil(N / bn), Math.ceil(M / bm), B];
  return { code: [...decls, PRELUDE, ...lines].join('\n'), grid };
}

/** Whether a kernel takes the WGSL GEMM template on a device with this grid limit. */
export function wgslUsesGemm(ir: KernelIR, maxWorkgroupsPerDimension = 65535, tile: GemmTile = DEFAULT_GEMM_TILE): boolean {
  const g = planGemm(ir);
  if (!g) return false;
  const M = extentOf(g.m);
  const N = extentOf(g.n);
  const B = extentOf(g.batch);
  return B <= maxWorkgroupsPerDimension && Math.ceil(M / tile.bm) <= maxWorkgroupsPerDimension && Math.ceil(N / tile.bn) <= maxWorkgroupsPerDimension;
}

/** WGSL compute shader (entry point `main`) for one kernel. */
export function renderKernelWGSL(ir: KernelIR, opts: WgslOptions): WgslKernel {
  if (ir.params[0]!.numel === 0) {
    // An empty output: nothing to run (the runtime skips grids with no workgroups).
    return { code: `// ${ir.name}: empty\n@compute @workgroup_size(1)\nfn main() {}`, grid: [0, 1, 1], bindings: [], scalarCount: 0, shape: 'loop' };
  }
  const ctx: Ctx = { ir, opts, lines: [] };
  const { decls, bindings } = declarations(ctx);
  decls.unshift(`// ${ir.name}: ${ir.kind}`);
  const g = wgslUsesGemm(ir, opts.maxWorkgroupsPerDimension, opts.gemm) ? planGemm(ir) : undefined;
  let shape: WgslKernel['shape'];
  let r: { code: string; grid: [number, number, number] };
  if (g) {
    shape = 'gemm';
    r = renderGemm(ctx, decls, g);
  } else if (ir.kind !== 'elementwise' && workgroupReduceLength(ir) >= (opts.workgroupReduceMin ?? 256)) {
    shape = 'workgroup-reduce';
    r = renderWorkgroupReduce(ctx, decls);
  } else {
    shape = 'loop';
    r = renderLoop(ctx, decls);
  }
  return { code: r.code, grid: r.grid, bindings, scalarCount: ir.scalarCount, shape };
}
