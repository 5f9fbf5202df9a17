import type { DType } from '../dtype.js';
import { roundTo } from '../dtype.js';
import { ShapeError } from '../errors.js';
import type { DeviceBuffer } from '../runtime/buffer.js';
import type { Op, ReduceOp } from './ops.js';
import { isBinary, isMovement, isReduce, isUnary } from './ops.js';

export type Shape = readonly number[];

/** Arguments of the ops that carry one. */
export interface RandArg {
  readonly seed: number;
  readonly counter: number;
}
export interface ArangeArg {
  readonly start: number;
  readonly step: number;
}

let nextId = 1;

/**
 * One node of the lazy graph: immutable and hash-consed, so structurally equal subgraphs are the same
 * object (and compute once). `arg` holds the op's parameter: axes for reductions and permutes, a shape
 * for reshape and expand, [before, after] pairs for pad, [start, end) pairs for shrink, a dtype for CAST,
 * the value for CONST, the buffer for BUFFER.
 */
export class LazyNode {
  readonly id = nextId++;
  constructor(
    readonly op: Op,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly src: readonly LazyNode[],
    readonly arg: unknown,
    readonly key: string,
  ) {}

  get numel(): number {
    return numel(this.shape);
  }

  get buffer(): DeviceBuffer {
    if (this.op !== 'BUFFER') throw new Error(`node ${this.op} has no buffer`);
    const a = this.arg as DeviceBuffer | { buf: DeviceBuffer };
    return 'buf' in a ? a.buf : a;
  }

  toString(): string {
    return `${this.op}<${this.dtype}[${this.shape.join(',')}]>#${this.id}`;
  }
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

// Hash-consing table. Weak references let unused subgraphs be collected; the registry prunes dead keys.
const table = new Map<string, WeakRef<LazyNode>>();
const cleanup = new FinalizationRegistry<string>((key) => {
  const ref = table.get(key);
  if (ref && ref.deref() === undefined) table.delete(key);
});

function argKey(op: Op, arg: unknown): string {
  if (arg === undefined) return '';
  if (op === 'BUFFER') {
    const a = arg as DeviceBuffer | { buf: DeviceBuffer; alias: number };
    return 'alias' in a ? `b${a.buf.id}~${a.alias}` : `b${a.id}`;
  }
  if (op === 'CONST') return Object.is(arg, -0) ? '-0' : String(arg);
  return JSON.stringify(arg);
}

function make(op: Op, dtype: DType, shape: Shape, src: readonly LazyNode[], arg?: unknown): LazyNode {
  const key = `${op}|${dtype}|${shape.join(',')}|${src.map((s) => s.id).join(',')}|${argKey(op, arg)}`;
  const hit = table.get(key)?.deref();
  if (hit) return hit;
  const node = new LazyNode(op, dtype, Object.freeze([...shape]), Object.freeze([...src]), arg, key);
  table.set(key, new WeakRef(node));
  cleanup.register(node, key);
  return node;
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

// ---------------------------------------------------------------------------------------------
// Constructors. Each checks its invariants; the Tensor layer does broadcasting and user-facing errors.
// ---------------------------------------------------------------------------------------------

/**
 * A realized buffer viewed with `shape`. `alias` gives a second identity to the same buffer (a
 * `detach()`ed tensor must be a different graph node from its source, or gradients would reach it).
 */
export function bufferNode(buf: DeviceBuffer, shape: Shape, alias = 0): LazyNode {
  if (numel(shape) !== buf.numel) throw new ShapeError(`buffer of ${buf.numel} elements cannot have shape [${shape}]`);
  return make('BUFFER', buf.dtype, shape, [], alias ? { buf, alias } : buf);
}

let nextAlias = 1;
/** A fresh alias number for `bufferNode`. */
export function newAlias(): number {
  return nextAlias++;
}

/** A constant; the value is rounded to `dtype` first, so it computes as it would read back. */
export function constNode(value: number, dtype: DType, shape: Shape): LazyNode {
  return make('CONST', dtype, shape, [], roundTo(dtype, value));
}

export function arangeNode(n: number, start: number, step: number, dtype: DType): LazyNode {
  return make('ARANGE', dtype, [n], [], { start, step } satisfies ArangeArg);
}

export function randNode(shape: Shape, seed: number, counter: number): LazyNode {
  return make('RAND', 'f32', shape, [], { seed, counter } satisfies RandArg);
}

export function unaryNode(op: Op, x: LazyNode, dtype: DType = x.dtype): LazyNode {
  if (!isUnary(op)) throw new Error(`${op} is not a unary op`);
  if (op === 'CAST') {
    if (dtype === x.dtype) return x;
    return make('CAST', dtype, x.shape, [x], dtype);
  }
  return make(op, dtype, x.shape, [x]);
}

export function binaryNode(op: Op, a: LazyNode, b: LazyNode): LazyNode {
  if (!isBinary(op)) throw new Error(`${op} is not a binary op`);
  if (!sameShape(a.shape, b.shape)) throw new ShapeError(`${op}: operand shapes [${a.shape}] and [${b.shape}] differ`);
  if (a.dtype !== b.dtype) throw new Error(`${op}: operand dtypes ${a.dtype} and ${b.dtype} differ`);
  const dtype: DType = op === 'CMPLT' || op === 'CMPEQ' ? 'bool' : a.dtype;
  // Commutative ops get a canonical operand order so that a+b and b+a are one node.
  if ((op === 'ADD' || op === 'MUL' || op === 'MAX' || op === 'CMPEQ') && a.id > b.id) [a, b] = [b, a];
  return make(op, dtype, a.shape, [a, b]);
}

export function whereNode(c: LazyNode, a: LazyNode, b: LazyNode): LazyNode {
  if (!sameShape(c.shape, a.shape) || !sameShape(a.shape, b.shape)) {
    throw new ShapeError(`WHERE: shapes [${c.shape}], [${a.shape}], [${b.shape}] differ`);
  }
  if (a === b) return a;
  return make('WHERE', a.dtype, a.shape, [c, a, b]);
}

export function reduceNode(op: ReduceOp, x: LazyNode, axes: readonly number[]): LazyNode {
  if (!isReduce(op)) throw new Error(`${op} is not a reduce op`);
  const ax = [...new Set(axes)].filter((a) => x.shape[a] !== 1).sort((p, q) => p - q);
  if (ax.length === 0) return x;
  const shape = x.shape.map((s, i) => (ax.includes(i) ? 1 : s));
  return make(op, x.dtype, shape, [x], ax);
}

export function contiguousNode(x: LazyNode): LazyNode {
  if (x.op === 'BUFFER' || x.op === 'CONTIGUOUS') return x;
  return make('CONTIGUOUS', x.dtype, x.shape, [x]);
}

/** Rows of a 2-D `table` at integer `indices`: shape `[...indices.shape, C]`. The table is materialised. */
export function gatherNode(table: LazyNode, indices: LazyNode): LazyNode {
  if (table.shape.length !== 2) throw new ShapeError(`GATHER: table must be 2-d, got shape [${table.shape}]`);
  if (indices.dtype !== 'i32' && indices.dtype !== 'i8' && indices.dtype !== 'u8') throw new Error(`GATHER: indices must be integers, got ${indices.dtype}`);
  return make('GATHER', table.dtype, [...indices.shape, table.shape[1]!], [contiguousNode(table), indices]);
}

/** An identity tagged with `segment`: a distinct graph node for the same value (checkpoint recomputation). */
export function recomputeNode(x: LazyNode, segment: number): LazyNode {
  return make('RECOMPUTE', x.dtype, x.shape, [x], segment);
}

/**
 * `n` with its sources replaced (same op, dtype, shape and argument): how a subgraph is copied onto other
 * inputs. Returns `n` itself when the sources are unchanged (hash-consing makes them one node anyway).
 */
export function withSources(n: LazyNode, src: readonly LazyNode[]): LazyNode {
  if (src.length !== n.src.length) throw new Error(`withSources: ${n.op} has ${n.src.length} sources, got ${src.length}`);
  if (src.every((s, i) => s === n.src[i])) return n;
  src.forEach((s, i) => {
    const o = n.src[i]!;
    if (s.dtype !== o.dtype || !sameShape(s.shape, o.shape)) throw new Error(`withSources: source ${i} of ${n.op} must be ${o.dtype}[${o.shape}], got ${s.dtype}[${s.shape}]`);
  });
  return make(n.op, n.dtype, n.shape, src, n.arg);
}

export function detachNode(x: LazyNode): LazyNode {
  if (x.op === 'DETACH' || x.op === 'BUFFER' || x.op === 'CONST') return x;
  return make('DETACH', x.dtype, x.shape, [x]);
}

// ---- movement ----

export function reshapeNode(x: LazyNode, shape: Shape): LazyNode {
  if (numel(shape) !== x.numel) throw new ShapeError(`reshape: cannot view [${x.shape}] (${x.numel} elements) as [${shape}] (${numel(shape)} elements)`);
  if (sameShape(shape, x.shape)) return x;
  if (x.op === 'CONST') return constNode(x.arg as number, x.dtype, shape);
  if (x.op === 'RESHAPE') return reshapeNode(x.src[0]!, shape);
  return make('RESHAPE', x.dtype, shape, [x], [...shape]);
}

export function permuteNode(x: LazyNode, order: readonly number[]): LazyNode {
  if (order.length !== x.shape.length || [...order].sort((a, b) => a - b).some((v, i) => v !== i)) {
    throw new ShapeError(`permute: [${order}] is not a permutation of the ${x.shape.length} axes of [${x.shape}]`);
  }
  if (order.every((v, i) => v === i)) return x;
  const shape = order.map((o) => x.shape[o]!);
  if (x.op === 'CONST') return constNode(x.arg as number, x.dtype, shape);
  if (x.op === 'PERMUTE') {
    const inner = x.arg as number[];
    return permuteNode(x.src[0]!, order.map((o) => inner[o]!));
  }
  return make('PERMUTE', x.dtype, shape, [x], [...order]);
}

export function expandNode(x: LazyNode, shape: Shape): LazyNode {
  if (shape.length !== x.shape.length || x.shape.some((s, i) => s !== shape[i] && s !== 1)) {
    throw new ShapeError(`expand: cannot broadcast [${x.shape}] to [${shape}]`);
  }
  if (sameShape(shape, x.shape)) return x;
  if (x.op === 'CONST') return constNode(x.arg as number, x.dtype, shape);
  if (x.op === 'EXPAND') return expandNode(x.src[0]!, shape);
  return make('EXPAND', x.dtype, shape, [x], [...shape]);
}

export function padNode(x: LazyNode, pads: readonly (readonly [number, number])[]): LazyNode {
  if (pads.length !== x.shape.length || pads.some(([a, b]) => a < 0 || b < 0 || !Number.isInteger(a) || !Number.isInteger(b))) {
    throw new ShapeError(`pad: need one non-negative [before, after] pair per axis of [${x.shape}], got ${JSON.stringify(pads)}`);
  }
  if (pads.every(([a, b]) => a === 0 && b === 0)) return x;
  const shape = x.shape.map((s, i) => s + pads[i]![0] + pads[i]![1]);
  return make('PAD', x.dtype, shape, [x], pads.map((p) => [p[0], p[1]]));
}

export function shrinkNode(x: LazyNode, ranges: readonly (readonly [number, number])[]): LazyNode {
  if (ranges.length !== x.shape.length || ranges.some(([a, b], i) => !(0 <= a && a <= b && b <= x.shape[i]!))) {
    throw new ShapeError(`shrink: ranges ${JSON.stringify(ranges)} do not fit inside [${x.shape}]`);
  }
  if (ranges.every(([a, b], i) => a === 0 && b === x.shape[i])) return x;
  const shape = ranges.map(([a, b]) => b - a);
  if (x.op === 'CONST') return constNode(x.arg as number, x.dtype, shape);
  return make('SHRINK', x.dtype, shape, [x], ranges.map((r) => [r[0], r[1]]));
}

export function flipNode(x: LazyNode, axes: readonly number[]): LazyNode {
  const ax = [...new Set(axes)].filter((a) => x.shape[a]! > 1).sort((a, b) => a - b);
  if (ax.length === 0) return x;
  if (x.op === 'CONST') return x;
  return make('FLIP', x.dtype, x.shape, [x], ax);
}

export function strideNode(x: LazyNode, steps: readonly number[]): LazyNode {
  if (steps.length !== x.shape.length || steps.some((s) => !(Number.isInteger(s) && s >= 1))) {
    throw new ShapeError(`stride: need one positive integer step per axis of [${x.shape}], got [${steps}]`);
  }
  if (steps.every((s) => s === 1)) return x;
  const shape = x.shape.map((s, i) => Math.ceil(s / steps[i]!));
  if (x.op === 'CONST') return constNode(x.arg as number, x.dtype, shape);
  return make('STRIDE', x.dtype, shape, [x], [...steps]);
}

/**
 * Nodes reachable from `roots`, in an order where every node follows its sources. `sources` says what a
 * node's sources are (autodiff follows realized buffers back to the graphs that computed them).
 */
export function toposort(roots: readonly LazyNode[], sources: (n: LazyNode) => readonly LazyNode[] = (n) => n.src): LazyNode[] {
  const seen = new Set<LazyNode>();
  const order: LazyNode[] = [];
  const stack: [LazyNode, boolean][] = roots.map((r) => [r, false]);
  while (stack.length) {
    const [n, done] = stack.pop()!;
    if (done) {
      order.push(n);
      continue;
    }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    const src = sources(n);
    for (let i = src.length - 1; i >= 0; i--) if (!seen.has(src[i]!)) stack.push([src[i]!, false]);
  }
  return order;
}

export { isMovement };
