import type { DType } from '../dtype.js';
import { isFloat } from '../dtype.js';
import type { ArangeArg, LazyNode } from '../graph/node.js';
import { isReduce } from '../graph/ops.js';
import type { ScheduledKernel } from '../schedule/schedule.js';
import type { ALUOp, Expr, KernelIR, KernelParam, Operand, Stmt } from './ir.js';
import { printKernel } from './ir.js';
import type { ICond, IExpr } from './symbolic.js';
import { add, div, iconst, ivar, mod, mul, narrowedVars, simplifyConds, substitute } from './symbolic.js';

/** Row-major flat index of a multi-dimensional index. */
export function flatIndex(idx: readonly IExpr[], shape: readonly number[]): IExpr {
  let stride = 1;
  const terms: IExpr[] = [];
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i]! !== 1) terms.push(mul(idx[i]!, stride));
    stride *= shape[i]!;
  }
  return add(...terms);
}

/** Inverse of `flatIndex` for a flat index known to lie in range. */
export function unflatIndex(flat: IExpr, shape: readonly number[]): IExpr[] {
  const out: IExpr[] = new Array(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const s = shape[i]!;
    out[i] = s === 1 ? iconst(0) : i === 0 ? div(flat, stride) : mod(div(flat, stride), s);
    stride *= s;
  }
  return out;
}

/** Map an index into a view's output to an index into its source, adding validity conditions. */
function viewSource(n: LazyNode, idx: readonly IExpr[], conds: ICond[]): IExpr[] {
  const src = n.src[0]!;
  switch (n.op) {
    case 'RESHAPE':
      return unflatIndex(flatIndex(idx, n.shape), src.shape);
    case 'PERMUTE': {
      const order = n.arg as number[];
      const out: IExpr[] = new Array(order.length);
      order.forEach((o, i) => (out[o] = idx[i]!));
      return out;
    }
    case 'EXPAND':
      return src.shape.map((s, i) => (s === 1 ? iconst(0) : idx[i]!));
    case 'PAD': {
      const pads = n.arg as [number, number][];
      return idx.map((e, i) => {
        const [before] = pads[i]!;
        const shifted = add(e, -before);
        if (pads[i]![0] || pads[i]![1]) conds.push({ e: shifted, lo: 0, hi: src.shape[i]! });
        return shifted;
      });
    }
    case 'SHRINK': {
      const ranges = n.arg as [number, number][];
      return idx.map((e, i) => add(e, ranges[i]![0]));
    }
    case 'FLIP': {
      const axes = n.arg as number[];
      return idx.map((e, i) => (axes.includes(i) ? add(src.shape[i]! - 1, mul(e, -1)) : e));
    }
    case 'STRIDE': {
      const steps = n.arg as number[];
      return idx.map((e, i) => mul(e, steps[i]!));
    }
    default:
      throw new Error(`not a view: ${n.op}`);
  }
}

const accType = (d: DType): DType => (d === 'f16' || d === 'bf16' ? 'f32' : d);

function reduceInit(op: string, d: DType): number {
  if (op === 'SUM') return 0;
  if (isFloat(d)) return -Infinity;
  if (d === 'i32') return -2147483648;
  if (d === 'i8') return -128;
  return 0;
}

/**
 * Lower one scheduled kernel to the loop-nest IR. The output's axes become global loops (size-1 axes
 * vanish); each reduction becomes an accumulator and a nest of reduce loops; every inline node becomes
 * SSA values, shared within a scope when the same node is needed at the same index.
 */
export function lowerKernel(k: ScheduledKernel): KernelIR {
  const params: KernelParam[] = [
    { name: 'out', dtype: k.out.dtype, numel: k.out.numel, output: true },
    ...k.inputs.map((n, i) => ({ name: `in${i}`, dtype: n.dtype, numel: n.numel, output: false })),
  ];
  const paramOf = new Map<LazyNode, number>(k.inputs.map((n, i) => [n, i + 1]));
  const valueTypes: DType[] = [];
  const scopes: Map<string, Operand>[] = [new Map()];
  let blocks: Stmt[][] = [];
  let reduceCount = 0;
  let randScalar = 0;
  const randSlots = new Map<LazyNode, number>();
  for (const n of k.inline) if (n.op === 'RAND') randSlots.set(n, (randScalar += 2) - 2);

  const emit = (s: Stmt) => blocks[blocks.length - 1]!.push(s);
  const define = (dtype: DType, expr: Expr): Operand => {
    const id = valueTypes.length;
    valueTypes.push(dtype);
    emit({ k: 'let', id, dtype, expr });
    return { k: 'ref', id };
  };
  const lookup = (key: string): Operand | undefined => {
    for (let i = scopes.length - 1; i >= 0; i--) {
      const hit = scopes[i]!.get(key);
      if (hit) return hit;
    }
    return undefined;
  };

  const lower = (n: LazyNode, idx: readonly IExpr[], valid: readonly ICond[]): Operand => {
    const key = `${n.id}|${idx.map((e) => e.key).join(',')}|${valid.map((c) => `${c.e.key}:${c.lo}:${c.hi}`).join(',')}`;
    const hit = lookup(key);
    if (hit) return hit;
    const v = lowerUncached(n, idx, valid);
    scopes[scopes.length - 1]!.set(key, v);
    return v;
  };

  const lowerUncached = (n: LazyNode, idx: readonly IExpr[], valid: readonly ICond[]): Operand => {
    const param = paramOf.get(n);
    if (param !== undefined) {
      return define(n.dtype, { k: 'load', param, idx: flatIndex(idx, n.shape), valid });
    }
    switch (n.op) {
      case 'CONST':
        return { k: 'const', v: n.arg as number };
      case 'ARANGE': {
        const a = n.arg as ArangeArg;
        return define(n.dtype, { k: 'index', idx: idx[0]!, start: a.start, step: a.step });
      }
      case 'RAND':
        return define('f32', { k: 'rand', idx: flatIndex(idx, n.shape), scalar: randSlots.get(n)! });
      case 'CAST':
        return define(n.dtype, { k: 'cast', src: lower(n.src[0]!, idx, valid), from: n.src[0]!.dtype });
      case 'DETACH':
      case 'RECOMPUTE':
      case 'CONTIGUOUS':
        return lower(n.src[0]!, idx, valid);
      case 'GATHER': {
        const table = paramOf.get(n.src[0]!);
        if (table === undefined) throw new Error(`lower: GATHER table ${n.src[0]!.op} is not a kernel input`);
        const [rows, cols] = n.src[0]!.shape as [number, number];
        const row = lower(n.src[1]!, idx.slice(0, -1), valid);
        return define(n.dtype, { k: 'gather', param: table, row, col: idx[idx.length - 1]!, rows, cols, valid });
      }
      case 'PAD': {
        const conds: ICond[] = [];
        const sidx = viewSource(n, idx, conds);
        const simple = simplifyConds(conds);
        if (simple === false) return { k: 'const', v: 0 };
        // The source is only read where the conditions hold (the load is guarded and the WHERE below
        // masks the value), so its index may assume them: that collapses the divisions and modulos a
        // concatenation's reshapes leave (attention over cat([past, new]) is the case that matters).
        const narrow = narrowedVars(simple);
        const inner = lower(n.src[0]!, narrow.size ? sidx.map((e) => substitute(e, narrow)) : sidx, [...valid, ...simple]);
        if (simple.length === 0) return inner;
        const mask = define('bool', { k: 'valid', conds: simple });
        return define(n.dtype, { k: 'alu', op: 'WHERE', src: [mask, inner, { k: 'const', v: 0 }] });
      }
      case 'RESHAPE':
      case 'PERMUTE':
      case 'EXPAND':
      case 'SHRINK':
      case 'FLIP':
      case 'STRIDE':
        return lower(n.src[0]!, viewSource(n, idx, []), valid);
      case 'SUM':
      case 'RMAX':
        return lowerReduce(n, idx, valid);
      default: {
        const src = n.src.map((s) => lower(s, idx, valid));
        return define(n.dtype, { k: 'alu', op: n.op as ALUOp, src });
      }
    }
  };

  const lowerReduce = (n: LazyNode, idx: readonly IExpr[], valid: readonly ICond[]): Operand => {
    const src = n.src[0]!;
    const axes = n.arg as number[];
    const r = reduceCount++;
    const adtype = accType(n.dtype);
    const id = valueTypes.length;
    valueTypes.push(adtype);
    emit({ k: 'acc', id, dtype: adtype, init: reduceInit(n.op, n.dtype) });
    const sidx = src.shape.map((s, i) => (axes.includes(i) ? ivar(`r${r}_${i}`, 0, s - 1) : idx[i]!));
    const outer = blocks;
    let body: Stmt[] = [];
    const loops: Stmt[] = [];
    for (const a of axes) {
      const v = sidx[a] as ReturnType<typeof ivar>;
      const inner: Stmt[] = [];
      const loop: Stmt = { k: 'loop', v, kind: 'reduce', body: inner };
      (loops.length ? body : loops).push(loop);
      body = inner;
    }
    blocks = [...outer, body];
    scopes.push(new Map());
    let value = lower(src, sidx, valid);
    if (adtype !== src.dtype) value = define(adtype, { k: 'cast', src: value, from: src.dtype });
    emit({ k: 'update', id, op: n.op as 'SUM' | 'RMAX', value });
    scopes.pop();
    blocks = outer;
    emit(loops[0]!);
    const acc: Operand = { k: 'ref', id };
    return adtype === n.dtype ? acc : define(n.dtype, { k: 'cast', src: acc, from: adtype });
  };

  // Global loops over the output's non-trivial axes.
  const out = k.out;
  const gidx = out.shape.map((s, i) => (s === 1 ? iconst(0) : ivar(`g${i}`, 0, s - 1)));
  const body: Stmt[] = [];
  let cur = body;
  for (const e of gidx) {
    if (e.k !== 'v') continue;
    const inner: Stmt[] = [];
    cur.push({ k: 'loop', v: e, kind: 'global', body: inner });
    cur = inner;
  }
  blocks = [cur];
  const value = lower(out, gidx, []);
  cur.push({ k: 'store', param: 0, idx: flatIndex(gidx, out.shape), value });

  const reduces = k.inline.filter((n) => isReduce(n.op)).length;
  const prefix = k.kind === 'contraction' ? 'gemm' : reduces ? 'r' : 'E';
  const name = `${prefix}_${out.shape.join('_') || 's'}`;
  const partial: Omit<KernelIR, 'key'> = {
    name,
    params,
    scalarCount: randScalar,
    body,
    kind: k.kind,
    contraction: k.contraction,
    valueCount: valueTypes.length,
    valueTypes,
  };
  const key = printKernel({ ...partial, key: '' });
  return { ...partial, key };
}
