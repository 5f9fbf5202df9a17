import type { Expr, KernelIR, Operand, Stmt } from './ir.js';
import type { ICond, IExpr, IVar } from './symbolic.js';
import { div, ivar, mod, substitute, vars } from './symbolic.js';

/**
 * Analysis shared by the renderers: the global loop nest of a kernel, and the recognition of a
 * contraction's IR as a GEMM (batch, M, N, K axes; the operand closures that become the prologue; the
 * statements around the accumulator that become the epilogue). Each renderer then emits its own
 * template (packed AVX-512 driver in C, workgroup tiles in WGSL).
 */

/** Leading perfectly nested global loops of a body. */
export function globalNest(body: readonly Stmt[]): { vars: IVar[]; inner: readonly Stmt[] } {
  const vars: IVar[] = [];
  let cur = body;
  while (cur.length === 1 && cur[0]!.k === 'loop' && cur[0]!.kind === 'global') {
    vars.push(cur[0]!.v);
    cur = cur[0]!.body;
  }
  return { vars, inner: cur };
}


export const extentOf = (vars: readonly IVar[]) => vars.reduce((p, v) => p * (v.max + 1), 1);


/** Coefficient of variable `name` in an affine index (0 if absent, undefined if not affine in it). */
export function coefOf(e: IExpr, name: string): number | undefined {
  if (e.k === 'v') return e.name === name ? 1 : 0;
  if (e.k === 'c') return 0;
  if (e.k === 'sum') {
    let c = 0;
    for (const [a, k] of e.terms) {
      if (a.k === 'v') c += a.name === name ? k : 0;
      else if (vars(a).has(name)) return undefined;
    }
    return c;
  }
  return vars(e).has(name) ? undefined : 0;
}


export interface GemmPlan {
  batch: IVar[];
  m: IVar[];
  n: IVar[];
  k: IVar[];
  pre: readonly Stmt[]; // global-scope statements before the accumulator (epilogue operands)
  accId: number;
  aStmts: Stmt[];
  bStmts: Stmt[];
  a: Operand;
  b: Operand;
  post: readonly Stmt[];
}

function refsOf(e: Expr | Operand): number[] {
  if ('k' in e && e.k === 'ref') return [e.id];
  if ('k' in e && e.k === 'const') return [];
  const x = e as Expr;
  if (x.k === 'alu') return x.src.flatMap(refsOf);
  if (x.k === 'cast') return refsOf(x.src);
  if (x.k === 'gather') return refsOf(x.row);
  return [];
}

function varsOfExpr(e: Expr): Set<string> {
  const out = new Set<string>();
  const add = (i: IExpr) => {
    if (i.k === 'v') out.add(i.name);
    else if (i.k === 'sum') i.terms.forEach(([a]) => add(a));
    else if (i.k === 'div' || i.k === 'mod') add(i.a);
  };
  if (e.k === 'load' || e.k === 'index' || e.k === 'rand') {
    add(e.idx);
    if (e.k === 'load') e.valid.forEach((c) => add(c.e));
  } else if (e.k === 'valid') e.conds.forEach((c) => add(c.e));
  else if (e.k === 'gather') {
    add(e.col);
    e.valid.forEach((c) => add(c.e));
  }
  return out;
}

/** Recognise the IR shape of a contraction and split its reduce body into the two operands. */
export function planGemm(ir: KernelIR): GemmPlan | undefined {
  if (ir.kind !== 'contraction') return undefined;
  const { vars, inner } = globalNest(ir.body);
  const accAt = inner.findIndex((s) => s.k === 'acc');
  if (accAt < 0 || inner.filter((s) => s.k === 'acc').length !== 1) return undefined;
  const acc = inner[accAt] as Extract<Stmt, { k: 'acc' }>;
  if (acc.dtype !== 'f32') return undefined;
  const loop = inner[accAt + 1];
  if (!loop || loop.k !== 'loop' || loop.kind !== 'reduce') return undefined;
  const k: IVar[] = [];
  let body: readonly Stmt[] = [loop];
  while (body.length === 1 && body[0]!.k === 'loop') {
    k.push(body[0]!.v);
    body = body[0]!.body;
  }
  if (body.some((s) => s.k === 'loop' || s.k === 'acc' || s.k === 'store')) return undefined;
  const upd = body[body.length - 1]!;
  if (upd.k !== 'update' || upd.op !== 'SUM' || upd.id !== acc.id || upd.value.k !== 'ref') return undefined;
  const lets = new Map<number, Extract<Stmt, { k: 'let' }>>();
  for (const s of body) if (s.k === 'let') lets.set(s.id, s);
  // The accumulated value: MUL(x, y), possibly behind a cast to f32.
  let top = lets.get(upd.value.id);
  if (top && top.expr.k === 'cast') top = top.expr.src.k === 'ref' ? lets.get(top.expr.src.id) : undefined;
  if (!top || top.expr.k !== 'alu' || top.expr.op !== 'MUL') return undefined;
  const [x, y] = top.expr.src as [Operand, Operand];
  let outside = false;
  const closure = (o: Operand): { stmts: Stmt[]; vars: Set<string> } => {
    const ids = new Set<number>();
    const visit = (id: number) => {
      if (ids.has(id)) return;
      const l = lets.get(id);
      if (!l) {
        outside = true; // reads a value computed outside the reduce loop: not a packable operand
        return;
      }
      ids.add(id);
      refsOf(l.expr).forEach(visit);
    };
    if (o.k === 'ref') visit(o.id);
    const stmts = body.filter((s) => s.k === 'let' && ids.has(s.id));
    const vs = new Set<string>();
    for (const s of stmts) if (s.k === 'let') varsOfExpr(s.expr).forEach((v) => vs.add(v));
    return { stmts, vars: vs };
  };
  const ca = closure(x);
  const cb = closure(y);
  if (outside) return undefined;
  const kNames = new Set(k.map((v) => v.name));
  const m: IVar[] = [];
  const n: IVar[] = [];
  const batch: IVar[] = [];
  for (const v of vars) {
    const inA = ca.vars.has(v.name);
    const inB = cb.vars.has(v.name);
    if (inA && !inB) m.push(v);
    else if (inB && !inA) n.push(v);
    else batch.push(v);
  }
  // Operand closures may only use their own axes.
  for (const v of ca.vars) if (!kNames.has(v) && !m.some((q) => q.name === v) && !batch.some((q) => q.name === v)) return undefined;
  for (const v of cb.vars) if (!kNames.has(v) && !n.some((q) => q.name === v) && !batch.some((q) => q.name === v)) return undefined;
  if (m.length === 0 || n.length === 0) return undefined;
  const post = inner.slice(accAt + 2);
  const plan: GemmPlan = { batch, m, n, k, pre: inner.slice(0, accAt), accId: acc.id, aStmts: ca.stmts, bStmts: cb.stmts, a: x, b: y, post };
  // The tile's columns (N) are stored contiguously by the epilogue: orient the product so that the
  // output's innermost axis is an N axis (swap the operands otherwise).
  const innermost = vars[vars.length - 1];
  if (innermost && m.includes(innermost)) {
    return { ...plan, m: n, n: m, aStmts: cb.stmts, bStmts: ca.stmts, a: y, b: x };
  }
  return plan;
}

/** Each var of `vars` as an expression of one flat row-major variable named `flat`. */
export function flatten(vars: readonly IVar[], flat: string, into: Map<string, IExpr>): void {
  const total = extentOf(vars);
  const f = ivar(flat, 0, Math.max(0, total - 1));
  let stride = 1;
  for (let i = vars.length - 1; i >= 0; i--) {
    const e = vars[i]!.max + 1;
    into.set(vars[i]!.name, i === 0 ? div(f, stride) : mod(div(f, stride), e));
    stride *= e;
  }
}

export function substExpr(e: Expr, map: ReadonlyMap<string, IExpr>): Expr {
  const sc = (c: ICond): ICond => ({ e: substitute(c.e, map), lo: c.lo, hi: c.hi });
  switch (e.k) {
    case 'load':
      return { ...e, idx: substitute(e.idx, map), valid: e.valid.map(sc) };
    case 'index':
    case 'rand':
      return { ...e, idx: substitute(e.idx, map) };
    case 'valid':
      return { ...e, conds: e.conds.map(sc) };
    case 'gather':
      return { ...e, col: substitute(e.col, map), valid: e.valid.map(sc) };
    default:
      return e;
  }
}

/** Rewrite statements' index expressions in terms of flat variables (so `k = r0*64 + r1` becomes affine). */
export function substStmts(stmts: readonly Stmt[], map: ReadonlyMap<string, IExpr>): Stmt[] {
  return stmts.map((s) => {
    if (s.k === 'let') return { ...s, expr: substExpr(s.expr, map) };
    if (s.k === 'store') return { ...s, idx: substitute(s.idx, map) };
    if (s.k === 'loop') return { ...s, body: substStmts(s.body, map) };
    return s;
  });
}

