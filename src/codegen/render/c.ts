import type { DType } from '../../dtype.js';
import type { Expr, KernelIR, Operand, Stmt } from '../ir.js';
import type { ICond, IExpr, IVar } from '../symbolic.js';
import { canBeNegative, iconst, substitute, vars } from '../symbolic.js';
import type { GemmPlan } from '../gemm_plan.js';
import { coefOf, extentOf, flatten, globalNest, planGemm, substStmts } from '../gemm_plan.js';

/**
 * The C renderer: kernel IR to C99 with GCC vector-friendly loops, compiled by the system compiler.
 * Elementwise and reduce kernels become a loop nest whose leading global loops are split across the
 * thread pool; contractions become calls to the packed GEMM driver with generated packing (prologue)
 * and tile (epilogue) callbacks. Semantics match the interpreter: every result is rounded to its
 * dtype, `//` and `%` are floor operations, loads outside a validity mask read 0.
 */

/** Bump when the generated code changes meaning: part of the on-disk cache key. */
export const C_RENDERER_VERSION = 13;

const CTYPE: Record<DType, string> = {
  f32: 'float',
  f16: 'uint16_t',
  bf16: 'uint16_t',
  i32: 'int32_t',
  i8: 'int8_t',
  u8: 'uint8_t',
  bool: 'uint8_t',
};

/** Type of a computed value in registers: half types compute in float. */
const VTYPE: Record<DType, string> = {
  f32: 'float',
  f16: 'float',
  bf16: 'float',
  i32: 'int32_t',
  i8: 'int32_t',
  u8: 'int32_t',
  bool: 'int32_t',
};

/** Helpers shared by every kernel library (prepended once per compiled batch). */
export const C_PRELUDE = `#include <stdint.h>
#include <math.h>
#include <string.h>
#include "tessera_api.h"
#include "gemm.h"

static const struct tessera_api *T;
int tessera_init(const struct tessera_api *api) { if (api->abi != TESSERA_API_ABI) return 1; T = api; return 0; }

static inline int64_t tfdiv(int64_t a, int64_t d) { int64_t q = a / d; return (a % d != 0 && a < 0) ? q - 1 : q; }
static inline int64_t tfmod(int64_t a, int64_t d) { int64_t r = a % d; return r < 0 ? r + d : r; }
static inline float tmaxf(float a, float b) { return (a > b || a != a) ? a : b; }
static inline int32_t tmaxi(int32_t a, int32_t b) { return a > b ? a : b; }
static inline float h2f(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f2h(float f) { _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h; }
static inline float rf16(float f) { return (float)(_Float16)f; }
static inline float bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t f2bf(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) | 0x40u) & 0xffffu);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float rbf16(float f) { return bf2f(f2bf(f)); }
/* float -> int32 as JavaScript's ToInt32 of trunc(x): NaN and infinities give 0, others wrap. */
static inline int32_t f2i(double x) {
  if (!(x == x) || x == INFINITY || x == -INFINITY) return 0;
  double t = trunc(x);
  if (t >= -2147483648.0 && t < 2147483648.0) return (int32_t)t;
  double m = fmod(t, 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return (int32_t)(uint32_t)m;
}
/*
 * Branch-free single-precision exp, log, tanh and erf (Cephes-style range reduction and minimax
 * polynomials, about 1-2 ulp) that GCC can vectorise inside loops, unlike libm's calls.
 */
static inline float tas_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t tas_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float texpf(float x) {
  /* one select per statement: nested conditionals defeat GCC's if-conversion */
  float xc = x < -103.97208f ? -103.97208f : x;
  xc = xc > 88.72283f ? 88.72283f : xc;
  float n = __builtin_roundf(xc * 1.44269504088896341f);
  int32_t ni = (int32_t)n;
  float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n in two halves, so both stay normal from n = -150 (gradual underflow) to n = 128 */
  int32_t n1 = ni >> 1;
  float y = p * tas_float((uint32_t)(n1 + 127) << 23) * tas_float((uint32_t)(ni - n1 + 127) << 23);
  y = x > 88.72283f ? INFINITY : y;
  y = x < -103.97208f ? 0.0f : y;
  return x != x ? x : y;
}
static inline float tlogf(float x) {
  uint32_t u0 = tas_uint(x);
  int sub = (u0 & 0x7f800000u) == 0; /* subnormal (or zero): scale into the normal range */
  float xs = sub ? x * 8388608.0f : x;
  uint32_t u = tas_uint(xs);
  int32_t e = (int32_t)((u >> 23) & 0xff) - 127 - (sub ? 23 : 0);
  float m = tas_float((u & 0x007fffffu) | 0x3f800000u);
  int big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  float fe = (float)(e + big);
  float z = m - 1.0f;
  float zz = z * z;
  float p = 7.0376836292E-2f;
  p = p * z - 1.1514610310E-1f;
  p = p * z + 1.1676998740E-1f;
  p = p * z - 1.2420140846E-1f;
  p = p * z + 1.4249322787E-1f;
  p = p * z - 1.6668057665E-1f;
  p = p * z + 2.0000714765E-1f;
  p = p * z - 2.4999993993E-1f;
  p = p * z + 3.3333331174E-1f;
  float y = p * z * zz + fe * -2.12194440e-4f - 0.5f * zz;
  y = z + y + fe * 0.693359375f;
  y = x == INFINITY ? INFINITY : y;
  y = x == 0.0f ? -INFINITY : y;
  y = x < 0.0f ? NAN : y;
  return x != x ? x : y;
}
static inline float ttanhf(float x) {
  float a = x < 0.0f ? -x : x;
  float z = x * x;
  float p = -5.70498872745E-3f;
  p = p * z + 2.06390887954E-2f;
  p = p * z - 5.37397155531E-2f;
  p = p * z + 1.33314422036E-1f;
  p = p * z - 3.33332819422E-1f;
  float small = x + x * z * p;
  float big = 1.0f - 2.0f / (texpf(2.0f * a) + 1.0f);
  big = x < 0.0f ? -big : big;
  float y = a < 0.625f ? small : big;
  return x != x ? x : y;
}
/* Same formula as the interpreter's erf (absolute error < 1.2e-7). */
static inline float terff(float x) {
  float z = x < 0.0f ? -x : x;
  float t = 1.0f / (1.0f + 0.5f * z);
  float q = -z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  float r = t * texpf(q);
  return x >= 0.0f ? 1.0f - r : r - 1.0f;
}
static inline uint32_t thash(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16; return x;
}
static inline float tuniform(uint32_t key, uint32_t counter, int64_t index) {
  uint32_t x = thash((uint32_t)(counter + (uint32_t)index) ^ key);
  uint32_t y = thash(x + key);
  return (float)(y >> 8) / 16777216.0f;
}
`;

function idx(e: IExpr): string {
  switch (e.k) {
    case 'c':
      return `${e.v}LL`;
    case 'v':
      return e.name;
    case 'sum': {
      const parts = e.terms.map(([a, k]) => (k === 1 ? idx(a) : `${idx(a)}*${k}LL`));
      if (e.c) parts.push(`${e.c}LL`);
      return `(${parts.join(' + ')})`;
    }
    case 'div':
      return canBeNegative(e.a) ? `tfdiv(${idx(e.a)}, ${e.d})` : `(${idx(e.a)} / ${e.d})`;
    case 'mod':
      return canBeNegative(e.a) ? `tfmod(${idx(e.a)}, ${e.d})` : `(${idx(e.a)} % ${e.d})`;
  }
}

function conds(cs: readonly ICond[]): string {
  return cs.map((c) => `(${c.lo} <= ${idx(c.e)} && ${idx(c.e)} < ${c.hi})`).join(' && ');
}

function floatLit(v: number): string {
  if (Number.isNaN(v)) return 'NAN';
  if (v === Infinity) return 'INFINITY';
  if (v === -Infinity) return '(-INFINITY)';
  if (Object.is(v, -0)) return '(-0.0f)';
  // Constants are already rounded to f32; 9 significant digits round-trip exactly.
  const s = Math.fround(v).toPrecision(9);
  return `${s.includes('e') || s.includes('.') ? s : s + '.'}f`;
}

function literal(v: number, d: DType): string {
  return d === 'f32' || d === 'f16' || d === 'bf16' ? floatLit(v) : Number.isFinite(v) ? `${Math.trunc(v)}` : '0';
}

/** Round a value expression of dtype d (computed in its VTYPE) as the interpreter does. */
function round(d: DType, x: string): string {
  switch (d) {
    case 'f32':
      return x;
    case 'f16':
      return `rf16(${x})`;
    case 'bf16':
      return `rbf16(${x})`;
    case 'i32':
      return `(int32_t)(${x})`;
    case 'i8':
      return `(int32_t)(int8_t)(${x})`;
    case 'u8':
      return `(int32_t)(uint8_t)(${x})`;
    case 'bool':
      return `((${x}) != 0)`;
  }
}

const isF = (d: DType) => d === 'f32' || d === 'f16' || d === 'bf16';

interface Ctx {
  ir: KernelIR;
  lines: string[];
  /** C name of each parameter pointer. */
  param: (i: number) => string;
}

function operand(o: Operand, d: DType): string {
  return o.k === 'ref' ? `v${o.id}` : literal(o.v, d);
}

function loadExpr(ctx: Ctx, param: number, at: string): string {
  const d = ctx.ir.params[param]!.dtype;
  const p = ctx.param(param);
  if (d === 'f16') return `h2f(${p}[${at}])`;
  if (d === 'bf16') return `bf2f(${p}[${at}])`;
  return `${p}[${at}]`;
}

function exprC(ctx: Ctx, d: DType, e: Expr): string {
  const types = ctx.ir.valueTypes;
  const typeOf = (o: Operand): DType => (o.k === 'ref' ? types[o.id]! : d);
  switch (e.k) {
    case 'load': {
      const l = loadExpr(ctx, e.param, idx(e.idx));
      return e.valid.length ? `((${conds(e.valid)}) ? ${l} : 0)` : l;
    }
    case 'gather': {
      const r = operand(e.row, 'i32');
      const l = loadExpr(ctx, e.param, `(int64_t)${r} * ${e.cols}LL + ${idx(e.col)}`);
      return `((${e.valid.length ? `${conds(e.valid)} && ` : ''}${r} >= 0 && ${r} < ${e.rows}) ? ${l} : 0)`;
    }
    case 'cast': {
      const src = operand(e.src, e.from);
      if (d === 'bool') return `(${src} != 0)`;
      if (isF(d)) return round(d, `(float)${src}`);
      if (isF(e.from)) return round(d, `f2i((double)${src})`);
      return round(d, src);
    }
    case 'index':
      return isF(d) ? round(d, `(float)(${literal(e.start, 'f32').replace(/f$/, '')} + (double)${idx(e.idx)} * ${e.step})`) : round(d, `f2i(${e.start} + (double)${idx(e.idx)} * ${e.step})`);
    case 'rand':
      return `tuniform(S[${e.scalar}], S[${e.scalar + 1}], ${idx(e.idx)})`;
    case 'valid':
      return `(${conds(e.conds)})`;
    case 'alu': {
      // A constant takes the dtype of the value it meets: comparisons yield bool, but compare operands
      // of another type (CMPLT(x, 0.5) must not print 0.5 as a bool).
      const refType = e.src.find((o, i) => o.k === 'ref' && !(e.op === 'WHERE' && i === 0));
      const opType = (o: Operand, i: number): DType =>
        e.op === 'WHERE' && i === 0 ? 'bool' : o.k === 'ref' ? types[o.id]! : e.op === 'WHERE' ? d : refType ? typeOf(refType) : d;
      const src = e.src.map((o, i) => operand(o, opType(o, i)));
      const [a, b, c] = src as [string, string, string];
      const f = isF(d);
      switch (e.op) {
        case 'WHERE':
          return `(${a} ? ${b} : ${c})`;
        case 'ADD':
          return f ? round(d, `${a} + ${b}`) : d === 'i32' ? `(int32_t)((uint32_t)${a} + (uint32_t)${b})` : round(d, `${a} + ${b}`);
        case 'MUL':
          return f ? round(d, `${a} * ${b}`) : d === 'i32' ? `(int32_t)((uint32_t)${a} * (uint32_t)${b})` : round(d, `${a} * ${b}`);
        case 'MAX':
          return f ? `tmaxf(${a}, ${b})` : `tmaxi(${a}, ${b})`;
        case 'CMPLT':
          return `(${a} < ${b})`;
        case 'CMPEQ':
          return `(${a} == ${b})`;
        case 'NEG':
          return f ? round(d, `-${a}`) : round(d, `-(int64_t)${a}`);
        case 'RECIP':
          return round(d, `1.0f / ${a}`);
        case 'EXP':
          return round(d, `texpf(${a})`);
        case 'LOG':
          return round(d, `tlogf(${a})`);
        case 'SQRT':
          return round(d, `sqrtf(${a})`);
        case 'SIN':
          return round(d, `sinf(${a})`);
        case 'COS':
          return round(d, `cosf(${a})`);
        case 'TANH':
          return round(d, `ttanhf(${a})`);
        case 'ERF':
          return round(d, `terff(${a})`);
      }
    }
  }
  throw new Error(`C renderer: unhandled expression ${JSON.stringify(e)}`);
}

function storeC(ctx: Ctx, param: number, at: string, v: string): string {
  const d = ctx.ir.params[param]!.dtype;
  const p = ctx.param(param);
  if (d === 'f16') return `${p}[${at}] = f2h(${v});`;
  if (d === 'bf16') return `${p}[${at}] = f2bf(${v});`;
  if (d === 'bool') return `${p}[${at}] = (${v}) != 0;`;
  return `${p}[${at}] = (${CTYPE[d]})(${v});`;
}

/**
 * An innermost reduce loop whose body only computes and accumulates into one f32 accumulator: it can
 * be vectorised as an OpenMP SIMD reduction (partial sums in vector lanes, combined at the end).
 */
function simdReduction(ctx: Ctx, st: Extract<Stmt, { k: 'loop' }>): Extract<Stmt, { k: 'update' }> | undefined {
  if (st.kind !== 'reduce' || st.v.max + 1 < 8) return undefined;
  if (st.body.some((b) => b.k !== 'let' && b.k !== 'update')) return undefined;
  const updates = st.body.filter((b) => b.k === 'update') as Extract<Stmt, { k: 'update' }>[];
  if (updates.length !== 1 || ctx.ir.valueTypes[updates[0]!.id] !== 'f32') return undefined;
  return updates[0];
}

function stmtsC(ctx: Ctx, stmts: readonly Stmt[], ind: string): void {
  for (const st of stmts) {
    switch (st.k) {
      case 'loop': {
        const red = simdReduction(ctx, st);
        if (red?.op === 'RMAX') {
          // max as a lane-wise reduction; NaN propagation tracked separately (a NaN anywhere wins).
          const a = `v${red.id}`;
          const v = operand(red.value, 'f32');
          ctx.lines.push(`${ind}int nan${red.id} = 0;`);
          ctx.lines.push(`${ind}#pragma omp simd reduction(max:${a}) reduction(|:nan${red.id})`);
          ctx.lines.push(`${ind}for (int64_t ${st.v.name} = 0; ${st.v.name} < ${st.v.max + 1}; ${st.v.name}++) {`);
          stmtsC(ctx, st.body.filter((b) => b !== red), ind + '  ');
          ctx.lines.push(`${ind}  ${a} = ${v} > ${a} ? ${v} : ${a};`);
          ctx.lines.push(`${ind}  nan${red.id} |= ${v} != ${v};`);
          ctx.lines.push(`${ind}}`);
          ctx.lines.push(`${ind}if (nan${red.id}) ${a} = NAN;`);
          break;
        }
        if (red) ctx.lines.push(`${ind}#pragma omp simd reduction(+:v${red.id})`);
        ctx.lines.push(`${ind}for (int64_t ${st.v.name} = 0; ${st.v.name} < ${st.v.max + 1}; ${st.v.name}++) {`);
        stmtsC(ctx, st.body, ind + '  ');
        ctx.lines.push(`${ind}}`);
        break;
      }
      case 'let':
        ctx.lines.push(`${ind}const ${VTYPE[st.dtype]} v${st.id} = ${exprC(ctx, st.dtype, st.expr)};`);
        break;
      case 'acc':
        ctx.lines.push(`${ind}${VTYPE[st.dtype]} v${st.id} = ${literal(st.init, st.dtype)};`);
        break;
      case 'update': {
        const d = ctx.ir.valueTypes[st.id]!;
        const v = operand(st.value, d);
        if (st.op === 'SUM') {
          ctx.lines.push(
            `${ind}v${st.id} = ${isF(d) ? round(d, `v${st.id} + ${v}`) : d === 'i32' ? `(int32_t)((uint32_t)v${st.id} + (uint32_t)${v})` : round(d, `v${st.id} + ${v}`)};`,
          );
        } else {
          ctx.lines.push(`${ind}if (${v} > v${st.id}${isF(d) ? ` || ${v} != ${v}` : ''}) v${st.id} = ${v};`);
        }
        break;
      }
      case 'store':
        ctx.lines.push(ind + storeC(ctx, st.param, idx(st.idx), operand(st.value, ctx.ir.params[st.param]!.dtype)));
        break;
    }
  }
}

function paramDecls(ir: KernelIR): string[] {
  return ir.params.map((p, i) => `  ${p.output ? '' : 'const '}${CTYPE[p.dtype]} *restrict b${i} = (${p.output ? '' : 'const '}${CTYPE[p.dtype]} *)A[${i}];`);
}

/** Total scalar work of a body per outer iteration, to decide whether threads are worth waking. */
function work(stmts: readonly Stmt[]): number {
  let w = 0;
  for (const s of stmts) w += s.k === 'loop' ? (s.v.max + 1) * work(s.body) : 1;
  return w;
}

const PARALLEL_MIN_WORK = 1 << 15;
/** Most rows a product may have to take the skinny path (gemm.h TESSERA_SKINNY_MAX_M). */
const SKINNY_MAX_M = 64;
/** Most rows for the row-major right operand path (gemm.h TESSERA_ROWB_MAX_M). */
const ROWB_MAX_M = 8;

/** A generic kernel: loop nest with the leading global loops collapsed and split across threads. */
function renderLoopKernel(ir: KernelIR, fn: string): string {
  const { vars, inner } = globalNest(ir.body);
  const ctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
  // Collapse leading loops until there is enough parallel work to split.
  let collapse = 0;
  let extent = 1;
  while (collapse < vars.length && extent < 64) extent *= vars[collapse++]!.max + 1;
  const rest = vars.slice(collapse);
  const total = work(ir.body);
  const out: string[] = [];
  out.push(`static void ${fn}_range(void *const *A, const uint32_t *S, int64_t lo, int64_t hi) {`);
  out.push(...paramDecls(ir));
  out.push(`  (void)S;`);
  out.push(`  for (int64_t P = lo; P < hi; P++) {`);
  let stride = 1;
  const decls: string[] = [];
  for (let i = collapse - 1; i >= 0; i--) {
    const e = vars[i]!.max + 1;
    decls.unshift(`    const int64_t ${vars[i]!.name} = ${i === 0 ? `P / ${stride}` : `(P / ${stride}) % ${e}`};`);
    stride *= e;
  }
  out.push(...decls);
  let ind = '    ';
  for (const v of rest) {
    out.push(`${ind}for (int64_t ${v.name} = 0; ${v.name} < ${v.max + 1}; ${v.name}++) {`);
    ind += '  ';
  }
  stmtsC(ctx, inner, ind);
  out.push(...ctx.lines);
  for (let i = rest.length; i > 0; i--) out.push(`${'    ' + '  '.repeat(i - 1)}}`);
  out.push('  }');
  out.push('}');
  out.push(`typedef struct { void *const *A; const uint32_t *S; } ${fn}_ctx;`);
  out.push(`static void ${fn}_task(void *c, int64_t lo, int64_t hi) { ${fn}_ctx *x = (${fn}_ctx *)c; ${fn}_range(x->A, x->S, lo, hi); }`);
  out.push(`void ${fn}(void *const *A, const uint32_t *S) {`);
  if (total < PARALLEL_MIN_WORK || extent < 2) out.push(`  ${fn}_range(A, S, 0, ${extent});`);
  else out.push(`  ${fn}_ctx c = { A, S };\n  T->parallel_for(${extent}, ${fn}_task, &c);`);
  out.push('}');
  return out.join('\n');
}

// ------------------------------------------------------------------------------------------------
// Contractions through the GEMM driver
// ------------------------------------------------------------------------------------------------

/**
 * If an operand is a single f32 load at `base + ld·row + col` (row-major in the GEMM's own axes), its
 * parameter, base offset (which may depend on the batch index) and row stride.
 */
function rowMajorOperand(ir: KernelIR, stmts: readonly Stmt[], value: Operand, row: string, col: string): { param: number; base: IExpr; ld: number; dtype: DType } | undefined {
  if (value.k !== 'ref' || stmts.length < 1 || stmts.length > 2) return undefined;
  const st = stmts[0]!;
  if (st.k !== 'let' || st.expr.k !== 'load' || st.expr.valid.length) return undefined;
  const dtype = ir.params[st.expr.param]!.dtype;
  if (stmts.length === 1) {
    if (st.id !== value.id || dtype !== 'f32') return undefined;
  } else {
    // A 16-bit float operand widened to f32 (mixed precision): the widening is exact, so the packer does it.
    const cast = stmts[1]!;
    if (dtype !== 'bf16' && dtype !== 'f16') return undefined;
    if (cast.k !== 'let' || cast.id !== value.id || cast.expr.k !== 'cast' || cast.expr.from !== dtype || cast.expr.src.k !== 'ref' || cast.expr.src.id !== st.id) return undefined;
  }
  const e = st.expr.idx;
  const ld = coefOf(e, row);
  if (coefOf(e, col) !== 1 || ld === undefined || ld < 1 || ld > 2 ** 30) return undefined;
  const base = substitute(e, new Map([[row, iconst(0)], [col, iconst(0)]]));
  if (vars(base).has(row) || vars(base).has(col)) return undefined;
  return { param: st.expr.param, base, ld, dtype };
}

/** gemm.h TESSERA_GATHER_MAX_K: the longest row a gathered operand's out-of-range index can read as zeros. */
const GATHER_MAX_K = 4096;

/**
 * An f32 operand whose rows are gathered through an index (`gatherRows` of a paged KV cache, read by an
 * attention product): element (row, col) is `table[index[idxBase + istride * row] * cols + colBase + col]`,
 * zero where the index is outside [0, rows). The few-row paths read such rows in place
 * (gemm.h `tessera_row_index`), so the gathered copy is never materialised.
 */
function gatheredRowOperand(ir: KernelIR, stmts: readonly Stmt[], value: Operand, row: string, col: string): { table: number; rows: number; cols: number; colBase: IExpr; index: number; idxBase: IExpr; istride: number } | undefined {
  if (value.k !== 'ref' || stmts.length !== 2) return undefined;
  const [ld, g] = stmts as [Stmt, Stmt];
  if (ld.k !== 'let' || ld.expr.k !== 'load' || ld.expr.valid.length || ir.params[ld.expr.param]!.dtype !== 'i32') return undefined;
  if (g.k !== 'let' || g.id !== value.id || g.expr.k !== 'gather' || g.expr.valid.length || g.expr.row.k !== 'ref' || g.expr.row.id !== ld.id) return undefined;
  if (ir.params[g.expr.param]!.dtype !== 'f32') return undefined;
  const zero = new Map([[row, iconst(0)], [col, iconst(0)]]);
  const istride = coefOf(ld.expr.idx, row);
  if (istride === undefined || istride < 1 || coefOf(ld.expr.idx, col) !== 0) return undefined;
  const idxBase = substitute(ld.expr.idx, zero);
  if (coefOf(g.expr.col, col) !== 1 || coefOf(g.expr.col, row) !== 0) return undefined;
  const colBase = substitute(g.expr.col, zero);
  for (const e of [idxBase, colBase]) if (vars(e).has(row) || vars(e).has(col)) return undefined;
  return { table: g.expr.param, rows: g.expr.rows, cols: g.expr.cols, colBase, index: ld.expr.param, idxBase, istride };
}

/**
 * The start of a GEMM callback (packer, epilogue, row kernel) of kernel `fn`: its context, the kernel's
 * buffers as `b0, b1, ...`, the scalars `S` and the batch index `bf` (each may go unused).
 */
function callbackPrologue(ir: KernelIR, fn: string): string[] {
  return [
    `  const ${fn}_ctx *c = (const ${fn}_ctx *)cv;`,
    ...ir.params.map((p, i) => `  ${p.output ? '' : 'const '}${CTYPE[p.dtype]} *restrict b${i} = (${p.output ? '' : 'const '}${CTYPE[p.dtype]} *)c->A[${i}];`),
    `  const uint32_t *S = c->S;`,
    `  (void)c; (void)S;`,
    `  const int64_t bf = c->batch; (void)bf;`,
  ];
}

/** Whether an operand's value is a bf16 value widened to f32 (so its bf16 bits are exact). */
function isBf16Value(stmts: readonly Stmt[], value: Operand): boolean {
  if (value.k !== 'ref') return false;
  const def = stmts.find((s) => s.k === 'let' && s.id === value.id);
  return def !== undefined && def.k === 'let' && def.expr.k === 'cast' && def.expr.from === 'bf16';
}

/**
 * The bf16 pair packer of one operand (layout in gemm.h, `tessera_gemm.pack_a_bf16`): the driver's own
 * packer for a row-major bf16 tensor, else the operand's statements evaluated per element and stored as
 * bf16 bits (exact: the value is a widened bf16).
 */
function bf16PackFn(ir: KernelIR, fn: string, which: 'a' | 'b', stmts: readonly Stmt[], value: Operand, M: number, N: number): string {
  const lines: string[] = [
    which === 'a'
      ? `static void ${fn}_pack_a_bf16(const void *cv, int m0, int mc, int k0, int kc, uint16_t *dst) {`
      : `static void ${fn}_pack_b_bf16(const void *cv, int k0, int kc, int n0, int nc, uint16_t *dst) {`,
    ...callbackPrologue(ir, fn),
  ];
  const fast = rowMajorOperand(ir, stmts, value, which === 'a' ? 'mf' : 'kf', which === 'a' ? 'kf' : 'nf');
  if (fast && fast.dtype === 'bf16') {
    const at = `b${fast.param} + ${idx(fast.base)}`;
    lines.push(
      which === 'a'
        ? `  tessera_pack_a_rowmajor_bf16(${at}, ${fast.ld}, m0, mc, k0, kc, dst);`
        : `  tessera_pack_b_rowmajor_bf16(${at}, ${fast.ld}, k0, kc, n0, nc, dst);`,
      `}`,
    );
    return lines.join('\n');
  }
  const ctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
  stmtsC(ctx, stmts, '      ');
  const ops = ctx.lines.map((l) => '    ' + l);
  lines.push(...genericPackLoops(which, 'bf16', ops, `(float)${operand(value, 'f32')}`, M, N));
  lines.push(`}`);
  return lines.join('\n');
}

/**
 * Packing loops that evaluate an operand's statements (`ops`, defining `val`) per element: A row by row
 * (the row's axes decomposed once, the k loop along contiguous memory), B k by k (the inner loop along n).
 * `f32` panels are the driver's float layout; `bf16` panels hold k-pairs of 16-bit values (gemm.h,
 * `tessera_gemm.pack_a_bf16`), the second half of an odd K's last pair a real zero.
 */
function genericPackLoops(which: 'a' | 'b', layout: 'f32' | 'bf16', ops: readonly string[], val: string, M: number, N: number): string[] {
  const pairs = layout === 'bf16';
  const [elem, zero, v] = pairs ? ['uint16_t', '0', `f2bf(${val})`] : ['float', '0.0f', val];
  const lines: string[] = pairs ? [`  const int kp = (kc + 1) / 2;`] : [];
  if (which === 'a') {
    // Element k of row r of panel p: d[at(k)] with d the row's start.
    const at = (k: string) => (pairs ? `(int64_t)(${k} >> 1) * TESSERA_MR * 2 + (${k} & 1)` : `(int64_t)${k} * TESSERA_MR`);
    lines.push(`  for (int p = 0; p < (mc + TESSERA_MR - 1) / TESSERA_MR; p++) {`);
    lines.push(`    for (int r = 0; r < TESSERA_MR; r++) {`);
    lines.push(`      const int64_t mf = (int64_t)m0 + p * TESSERA_MR + r;`);
    lines.push(pairs ? `      uint16_t *d = dst + ((int64_t)p * kp * TESSERA_MR + r) * 2;` : `      float *d = dst + (int64_t)p * kc * TESSERA_MR + r;`);
    lines.push(`      if (mf >= (int64_t)m0 + mc || mf >= ${M}) { for (int k = 0; k < ${pairs ? '2 * kp' : 'kc'}; k++) d[${at('k')}] = ${zero}; continue; }`);
    lines.push(`      for (int k = 0; k < kc; k++) {`);
    lines.push(`        const int64_t kf = (int64_t)k0 + k;`);
    lines.push(...ops.map((l) => '  ' + l));
    lines.push(`        d[${at('k')}] = ${v};`);
    lines.push(`      }`);
    if (pairs) lines.push(`      if (kc & 1) d[${at('kc')}] = 0;`);
    lines.push(`    }`);
    lines.push(`  }`);
  } else {
    // Row k of panel p: d[step * q] for column q.
    const row = (k: string) => (pairs ? `dst + ((int64_t)p * kp + (${k} >> 1)) * TESSERA_NR * 2 + (${k} & 1)` : `dst + ((int64_t)p * kc + ${k}) * TESSERA_NR`);
    const col = pairs ? '2 * q' : 'q';
    lines.push(`  for (int p = 0; p < (nc + TESSERA_NR - 1) / TESSERA_NR; p++) {`);
    lines.push(`    const int64_t nb = (int64_t)n0 + p * TESSERA_NR;`);
    lines.push(`    int lim = TESSERA_NR;`);
    lines.push(`    if (nb + lim > (int64_t)n0 + nc) lim = (int)((int64_t)n0 + nc - nb);`);
    lines.push(`    if (nb + lim > ${N}) lim = (int)(${N} - nb);`);
    lines.push(`    for (int k = 0; k < kc; k++) {`);
    lines.push(`      const int64_t kf = (int64_t)k0 + k;`);
    lines.push(`      ${elem} *d = ${row('k')};`);
    lines.push(`      int q = 0;`);
    lines.push(`      for (; q < lim; q++) {`);
    lines.push(`        const int64_t nf = nb + q;`);
    lines.push(...ops.map((l) => '  ' + l));
    lines.push(`        d[${col}] = ${v};`);
    lines.push(`      }`);
    lines.push(`      for (; q < TESSERA_NR; q++) d[${col}] = ${zero};`);
    lines.push(`    }`);
    if (pairs) lines.push(`    if (kc & 1) { uint16_t *d = ${row('kc')}; for (int q = 0; q < TESSERA_NR; q++) d[${col}] = 0; }`);
    lines.push(`  }`);
  }
  return lines;
}

function renderGemmKernel(ir: KernelIR, fn: string, g: GemmPlan): string {
  const M = extentOf(g.m);
  const N = extentOf(g.n);
  const K = extentOf(g.k);
  const B = extentOf(g.batch);
  const out: string[] = [];
  out.push(`typedef struct { void *const *A; const uint32_t *S; int64_t batch; } ${fn}_ctx;`);
  // Every axis becomes a function of one flat index per role (mf, nf, kf, bf): after simplification the
  // operands' and the output's indices are affine in them wherever memory is contiguous.
  const flat = new Map<string, IExpr>();
  flatten(g.m, 'mf', flat);
  flatten(g.n, 'nf', flat);
  flatten(g.k, 'kf', flat);
  flatten(g.batch, 'bf', flat);
  const aStmts = substStmts(g.aStmts, flat);
  const bStmts = substStmts(g.bStmts, flat);
  const pre = substStmts(g.pre, flat);
  const post = substStmts(g.post, flat);
  const operandFn = (which: 'a' | 'b') => {
    const stmts = which === 'a' ? aStmts : bStmts;
    const value = which === 'a' ? g.a : g.b;
    const ctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
    stmtsC(ctx, stmts, '      ');
    const lines: string[] = [];
    if (which === 'a') {
      lines.push(`static void ${fn}_pack_a(const void *cv, int m0, int mc, int k0, int kc, float *dst) {`);
    } else {
      lines.push(`static void ${fn}_pack_b(const void *cv, int k0, int kc, int n0, int nc, float *dst) {`);
    }
    lines.push(...callbackPrologue(ir, fn));
    const ops = ctx.lines.map((l) => '    ' + l);
    const val = `(float)${operand(value, 'f32')}`;
    const fast = rowMajorOperand(ir, stmts, value, which === 'a' ? 'mf' : 'kf', which === 'a' ? 'kf' : 'nf');
    // A transposed f32 operand (a weight read as Wᵀ, an activation in the backward pass): the
    // column-major packers, instead of the generic per-element index arithmetic below.
    const transposed = fast ? undefined : rowMajorOperand(ir, stmts, value, which === 'a' ? 'kf' : 'nf', which === 'a' ? 'mf' : 'kf');
    if (transposed && transposed.dtype === 'f32') {
      const at = `b${transposed.param} + ${idx(transposed.base)}`;
      lines.push(
        which === 'a'
          ? `  tessera_pack_a_colmajor(${at}, ${transposed.ld}, m0, mc, k0, kc, dst);`
          : `  tessera_pack_b_colmajor(${at}, ${transposed.ld}, k0, kc, n0, nc, dst);`,
      );
      lines.push(`}`);
      return lines.join('\n');
    }
    if (fast) {
      // A plain row-major f32 operand: the driver's tuned packer (vector copies / in-register transpose).
      const ld = fast.ld;
      const at = `b${fast.param} + ${idx(fast.base)}`;
      if (fast.dtype === 'f32') {
        lines.push(
          which === 'a'
            ? `  tessera_pack_a_rowmajor_ex(${at}, ${ld}, m0, mc, k0, kc, dst);`
            : `  tessera_pack_b_rowmajor_ex(${at}, ${ld}, k0, kc, n0, nc, dst);`,
        );
      } else {
        const bf = fast.dtype === 'bf16' ? 1 : 0;
        lines.push(
          which === 'a'
            ? `  tessera_pack_a_rowmajor_u16(${at}, ${ld}, m0, mc, k0, kc, dst, ${bf});`
            : `  tessera_pack_b_rowmajor_u16(${at}, ${ld}, k0, kc, n0, nc, dst, ${bf});`,
        );
      }
      lines.push(`}`);
      return lines.join('\n');
    }
    lines.push(...genericPackLoops(which, 'f32', ops, val, M, N));
    lines.push(`}`);
    return lines.join('\n');
  };
  out.push(operandFn('a'));
  out.push(operandFn('b'));
  // Both operands bf16 values (mixed precision): pair packers too, so that a CPU with a bf16 dot product
  // (gemm.h TESSERA_GEMM_BF16) multiplies the 16-bit values directly; elsewhere the driver ignores them.
  const bf16Dot = bf16Operands(g);
  if (bf16Dot) {
    out.push(bf16PackFn(ir, fn, 'a', aStmts, g.a, M, N));
    out.push(bf16PackFn(ir, fn, 'b', bStmts, g.b, M, N));
  }
  // Epilogue: the global-scope statements around the accumulator, with the accumulator as the tile value.
  const ctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
  stmtsC(ctx, pre, '      ');
  ctx.lines.push(`      const float v${g.accId} = acc[(int64_t)r * ldacc + q];`);
  stmtsC(ctx, post, '      ');
  out.push(`static void ${fn}_epilogue(const void *cv, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {`);
  out.push(...callbackPrologue(ir, fn));
  const plainStore = pre.length === 0 && post.length === 1 && post[0]!.k === 'store' && post[0]!.value.k === 'ref' && post[0]!.value.id === g.accId && ir.params[0]!.dtype === 'f32';
  const ldc = plainStore ? coefOf((post[0] as Extract<Stmt, { k: 'store' }>).idx, 'mf') : undefined;
  if (plainStore && ldc !== undefined && ldc >= 1 && coefOf((post[0] as Extract<Stmt, { k: 'store' }>).idx, 'nf') === 1) {
    // Nothing fused after the product: hand the tile to the driver's row-major store.
    const base = substitute((post[0] as Extract<Stmt, { k: 'store' }>).idx, new Map([['mf', iconst(0)], ['nf', iconst(0)]]));
    out.push(`  tessera_gemm_rowmajor st = { .C = b0 + ${idx(base)}, .ldc = ${ldc} };`);
    out.push(`  tessera_store_rowmajor(&st, m0, mr, n0, nr, acc, ldacc);`);
    out.push(`}`);
  } else {
  out.push(`  for (int r = 0; r < mr; r++) {`);
  out.push(`    const int64_t mf = (int64_t)m0 + r;`);
  out.push(`    for (int q = 0; q < nr; q++) {`);
  out.push(`      const int64_t nf = (int64_t)n0 + q;`);
  out.push(...ctx.lines);
  out.push(`    }`);
  out.push(`  }`);
  out.push(`}`);
  }
  // Few rows against a weight stored row by row: the skinny path (gemm.h) reads each weight row once.
  // Few rows against a row-major right operand (attention probabilities against value rows): outer
  // products (tessera_rowb_range). Batched (attention over a few query rows per head): each task runs
  // whole products.
  const aRows = M <= SKINNY_MAX_M ? rowMajorOperand(ir, aStmts, g.a, 'mf', 'kf') : undefined;
  const bRows = aRows ? rowMajorOperand(ir, bStmts, g.b, 'nf', 'kf') : undefined;
  const bKN = aRows && !bRows && M <= ROWB_MAX_M ? rowMajorOperand(ir, bStmts, g.b, 'kf', 'nf') : undefined;
  // The right operand gathered (attention over a paged KV cache): the same paths, its rows read in place.
  const gNK = aRows?.dtype === 'f32' && !bRows && !bKN && K <= GATHER_MAX_K ? gatheredRowOperand(ir, bStmts, g.b, 'nf', 'kf') : undefined;
  const gKN = aRows?.dtype === 'f32' && !bRows && !bKN && !gNK && M <= ROWB_MAX_M && N <= GATHER_MAX_K ? gatheredRowOperand(ir, bStmts, g.b, 'kf', 'nf') : undefined;
  const rowPath = aRows?.dtype === 'f32' && bRows?.dtype === 'f32' ? { b: bRows, range: 'tessera_skinny_range' } : aRows?.dtype === 'f32' && bKN?.dtype === 'f32' ? { b: bKN, range: 'tessera_rowb_range' } : undefined;
  const gathered = gNK ? { g: gNK, range: 'tessera_skinny_range_ex' } : gKN ? { g: gKN, range: 'tessera_rowb_range_ex' } : undefined;
  if (aRows && (rowPath || gathered)) {
    out.push(`static void ${fn}_rows(void *cv, int64_t lo, int64_t hi) {`);
    out.push(...callbackPrologue(ir, fn));
    const a = `b${aRows.param} + ${idx(aRows.base)}, ${aRows.ld}`;
    if (rowPath) {
      const rb = rowPath.b;
      out.push(`  ${rowPath.range}(${a}, b${rb.param} + ${idx(rb.base)}, ${rb.ld}, ${M}, ${K}, lo, hi, ${fn}_epilogue, cv);`);
    } else {
      const gr = gathered!.g;
      out.push(`  const tessera_row_index ri = { b${gr.index} + ${idx(gr.idxBase)}, ${gr.istride}, ${gr.rows} };`);
      out.push(`  ${gathered!.range}(${a}, b${gr.table} + ${idx(gr.colBase)}, ${gr.cols}, &ri, ${M}, ${K}, lo, hi, ${fn}_epilogue, cv);`);
    }
    out.push(`}`);
    const work = 2 * M * N * K;
    if (B === 1) {
      out.push(`void ${fn}(void *const *A, const uint32_t *S) {`);
      out.push(`  ${fn}_ctx c = { A, S, 0 };`);
      out.push(work < PARALLEL_MIN_WORK * 8 ? `  ${fn}_rows(&c, 0, ${N});` : `  T->parallel_for(${N}, ${fn}_rows, &c);`);
    } else {
      out.push(`typedef struct { void *const *A; const uint32_t *S; } ${fn}_sctx;`);
      out.push(`static void ${fn}_rows_batch(void *cv, int64_t lo, int64_t hi) {`);
      out.push(`  const ${fn}_sctx *x = (const ${fn}_sctx *)cv;`);
      out.push(`  for (int64_t bi = lo; bi < hi; bi++) { ${fn}_ctx c = { x->A, x->S, bi }; ${fn}_rows(&c, 0, ${N}); }`);
      out.push(`}`);
      out.push(`void ${fn}(void *const *A, const uint32_t *S) {`);
      out.push(`  ${fn}_sctx x = { A, S };`);
      out.push(B * work < PARALLEL_MIN_WORK * 4 ? `  ${fn}_rows_batch(&x, 0, ${B});` : `  T->parallel_for(${B}, ${fn}_rows_batch, &x);`);
    }
    out.push(`}`);
    return out.join('\n');
  }
  const bf16Fields = bf16Dot ? `, .pack_a_bf16 = ${fn}_pack_a_bf16, .pack_b_bf16 = ${fn}_pack_b_bf16` : '';
  const desc = `{ .M = ${M}, .N = ${N}, .K = ${K}, .pack_a = ${fn}_pack_a, .pack_b = ${fn}_pack_b, .epilogue = ${fn}_epilogue, .ctx = &c${bf16Fields} }`;
  out.push(`typedef struct { void *const *A; const uint32_t *S; } ${fn}_bctx;`);
  out.push(`static void ${fn}_batch(void *cv, int64_t lo, int64_t hi) {`);
  out.push(`  const ${fn}_bctx *x = (const ${fn}_bctx *)cv;`);
  out.push(`  for (int64_t bi = lo; bi < hi; bi++) { ${fn}_ctx c = { x->A, x->S, bi }; tessera_gemm g = ${desc}; T->gemm_serial(&g); }`);
  out.push(`}`);
  out.push(`void ${fn}(void *const *A, const uint32_t *S) {`);
  const flops = 2 * M * N * K;
  if (B > 1 && (flops < 1 << 22 || B >= 8)) {
    // Many small products (attention heads): one whole GEMM per task.
    out.push(`  ${fn}_bctx x = { A, S };`);
    out.push(B * flops < PARALLEL_MIN_WORK * 4 ? `  ${fn}_batch(&x, 0, ${B});` : `  T->parallel_for(${B}, ${fn}_batch, &x);`);
  } else {
    out.push(`  for (int64_t bi = 0; bi < ${B}; bi++) {`);
    out.push(`    ${fn}_ctx c = { A, S, bi };`);
    out.push(`    tessera_gemm g = ${desc};`);
    out.push(flops < PARALLEL_MIN_WORK * 8 ? `    T->gemm_serial(&g);` : `    T->gemm_parallel(&g);`);
    out.push(`  }`);
  }
  out.push(`}`);
  return out.join('\n');
}

/**
 * A reduction whose output's innermost axis is contiguous in the input while the reduced axes are
 * outer (bias and norm-weight gradients: sum over rows for each column). The straightforward loop nest
 * walks columns with a large stride; this form keeps one accumulator per column, sweeps rows in order,
 * and vectorises along the row.
 */
function renderColumnReduce(ir: KernelIR, fn: string): string | undefined {
  const { vars: gv, inner } = globalNest(ir.body);
  if (gv.length === 0 || inner.length < 3 || inner[0]!.k !== 'acc') return undefined;
  const acc = inner[0] as Extract<Stmt, { k: 'acc' }>;
  const loop = inner[1]!;
  if (acc.dtype !== 'f32' || loop.k !== 'loop' || loop.kind !== 'reduce') return undefined;
  const rv: IVar[] = [];
  let body: readonly Stmt[] = [loop];
  while (body.length === 1 && body[0]!.k === 'loop') {
    rv.push(body[0]!.v);
    body = body[0]!.body;
  }
  if (body.some((b) => b.k !== 'let')) {
    const upd = body.filter((b) => b.k !== 'let');
    if (upd.length !== 1 || upd[0]!.k !== 'update' || upd[0]!.op !== 'SUM' || upd[0]!.id !== acc.id) return undefined;
  } else return undefined;
  const post = inner.slice(2);
  if (post.some((b) => b.k === 'loop' || b.k === 'acc')) return undefined;
  const col = gv[gv.length - 1]!;
  const E = col.max + 1;
  if (E < 16 || E > 8192) return undefined;
  // Every load in the reduce body must be contiguous along the column and strided along the rows.
  let contiguous = 0;
  for (const b of body) {
    if (b.k !== 'let' || b.expr.k !== 'load') continue;
    const c = coefOf(b.expr.idx, col.name);
    if (c === undefined || (c !== 0 && c !== 1) || b.expr.valid.length) return undefined;
    if (c === 1) contiguous++;
  }
  if (contiguous === 0) return undefined;
  const ctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
  const outer = gv.slice(0, -1);
  const extent = extentOf(outer);
  const out: string[] = [];
  out.push(`static void ${fn}_range(void *const *A, const uint32_t *S, int64_t lo, int64_t hi) {`);
  out.push(...paramDecls(ir), '  (void)S;');
  out.push(`  float *colacc = (float *)__builtin_alloca(sizeof(float) * ${E});`);
  out.push(`  for (int64_t P = lo; P < hi; P++) {`);
  let stride = 1;
  const decls: string[] = [];
  for (let i = outer.length - 1; i >= 0; i--) {
    const e = outer[i]!.max + 1;
    decls.unshift(`    const int64_t ${outer[i]!.name} = ${i === 0 ? `P / ${stride}` : `(P / ${stride}) % ${e}`};`);
    stride *= e;
  }
  out.push(...decls, `    (void)P;`);
  out.push(`    for (int64_t ${col.name} = 0; ${col.name} < ${E}; ${col.name}++) colacc[${col.name}] = ${literal(acc.init, 'f32')};`);
  let ind = '    ';
  for (const v of rv) {
    out.push(`${ind}for (int64_t ${v.name} = 0; ${v.name} < ${v.max + 1}; ${v.name}++) {`);
    ind += '  ';
  }
  out.push(`${ind}#pragma omp simd`);
  out.push(`${ind}for (int64_t ${col.name} = 0; ${col.name} < ${E}; ${col.name}++) {`);
  stmtsC(ctx, body.filter((b) => b.k === 'let'), ind + '  ');
  out.push(...ctx.lines);
  const upd = body.find((b) => b.k === 'update') as Extract<Stmt, { k: 'update' }>;
  out.push(`${ind}  colacc[${col.name}] += ${operand(upd.value, 'f32')};`);
  out.push(`${ind}}`);
  for (let i = rv.length; i > 0; i--) out.push(`${'    ' + '  '.repeat(i - 1)}}`);
  const pctx: Ctx = { ir, lines: [], param: (i) => `b${i}` };
  stmtsC(pctx, post, '      ');
  out.push(`    for (int64_t ${col.name} = 0; ${col.name} < ${E}; ${col.name}++) {`);
  out.push(`      const float v${acc.id} = colacc[${col.name}];`);
  out.push(...pctx.lines);
  out.push(`    }`);
  out.push(`  }`);
  out.push(`}`);
  out.push(`typedef struct { void *const *A; const uint32_t *S; } ${fn}_ctx;`);
  out.push(`static void ${fn}_task(void *c, int64_t lo, int64_t hi) { ${fn}_ctx *x = (${fn}_ctx *)c; ${fn}_range(x->A, x->S, lo, hi); }`);
  out.push(`void ${fn}(void *const *A, const uint32_t *S) {`);
  out.push(work(ir.body) < PARALLEL_MIN_WORK * 4 || extent < 2 ? `  ${fn}_range(A, S, 0, ${extent});` : `  ${fn}_ctx c = { A, S };
  T->parallel_for(${extent}, ${fn}_task, &c);`);
  out.push(`}`);
  return out.join('\n');
}

/** C source of one kernel, defining `void fn(void *const *args, const uint32_t *scalars)`. */
export function renderKernelC(ir: KernelIR, fn: string): string {
  const g = planGemm(ir);
  const body = g ? renderGemmKernel(ir, fn, g) : (renderColumnReduce(ir, fn) ?? renderLoopKernel(ir, fn));
  return `/* ${ir.name}: ${ir.kind}${g ? ' via GEMM driver' : ''} */\n${body}\n`;
}

/** Whether a kernel takes the GEMM template (for tests and statistics). */
export function usesGemmTemplate(ir: KernelIR): boolean {
  return planGemm(ir) !== undefined;
}

/**
 * Whether a kernel is a product of two bf16 values, which the GEMM driver runs on the CPU's bf16 dot
 * product where it has one (`CpuRuntime.gemmInfo.bf16Dot`).
 */
export function usesBf16Dot(ir: KernelIR): boolean {
  const g = planGemm(ir);
  return g !== undefined && bf16Operands(g);
}

function bf16Operands(g: GemmPlan): boolean {
  return isBf16Value(g.aStmts, g.a) && isBf16Value(g.bStmts, g.b);
}
