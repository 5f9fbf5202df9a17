import { isFloat, itemsize } from '../dtype.js';
import { isMovement } from '../graph/ops.js';
import type { LazyNode } from '../graph/node.js';
import {
  arangeNode,
  binaryNode,
  constNode,
  contiguousNode,
  expandNode,
  flipNode,
  padNode,
  permuteNode,
  reduceNode,
  reshapeNode,
  shrinkNode,
  toposort,
  unaryNode,
  whereNode,
} from '../graph/node.js';
import { GradError } from '../errors.js';

/**
 * Reverse-mode autodiff as a rewrite of the lazy graph: one derivative rule per primitive, each
 * producing ordinary lazy nodes, so the backward pass is scheduled, fused and memory-planned together
 * with the forward pass.
 */

const c = (v: number, like: LazyNode) => constNode(v, like.dtype, like.shape);
const mul = (a: LazyNode, b: LazyNode) => binaryNode('MUL', a, b);
const addN = (a: LazyNode, b: LazyNode) => binaryNode('ADD', a, b);
const neg = (a: LazyNode) => unaryNode('NEG', a);
const cast = (a: LazyNode, like: LazyNode) => unaryNode('CAST', a, like.dtype);

/** Whether `n` is a reduction (a contraction's accumulator), looking through views. */
function isProduct(n: LazyNode): boolean {
  while (isMovement(n.op)) n = n.src[0]!;
  return n.op === 'SUM';
}

/** Gradient contributions to each source of `n`, given the gradient `g` of `n` (undefined: none). */
function rule(n: LazyNode, g: LazyNode): (LazyNode | undefined)[] {
  const [a, b] = n.src;
  switch (n.op) {
    case 'ADD':
      return [g, g];
    case 'MUL':
      return [mul(g, b!), mul(g, a!)];
    case 'NEG':
      return [neg(g)];
    case 'RECIP':
      return [neg(mul(g, mul(n, n)))];
    case 'EXP':
      return [mul(g, n)];
    case 'LOG':
      return [mul(g, unaryNode('RECIP', a!))];
    case 'SQRT':
      return [mul(g, unaryNode('RECIP', mul(n, c(2, n))))];
    case 'SIN':
      return [mul(g, unaryNode('COS', a!))];
    case 'COS':
      return [neg(mul(g, unaryNode('SIN', a!)))];
    case 'TANH':
      return [mul(g, addN(c(1, n), neg(mul(n, n))))];
    case 'ERF': {
      // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
      const e = unaryNode('EXP', neg(mul(a!, a!)));
      return [mul(g, mul(e, c(2 / Math.sqrt(Math.PI), a!)))];
    }
    case 'CAST':
      if (!isFloat(a!.dtype)) return [undefined];
      // A product rounded to 16 bits (a matmul under autocast): the gradient of its result is a
      // low-precision value that the two backward products read. Stored in that type, it is half the
      // bytes, and they read 16-bit operands (the bf16 dot-product GEMM) instead of an f32 buffer.
      // (Elsewhere, e.g. a weight rounded for a product, storing it would only add a kernel.)
      return [itemsize[n.dtype] < itemsize[a!.dtype] && isProduct(a!) ? cast(contiguousNode(g), a!) : cast(g, a!)];
    case 'MAX': {
      // Ties split the gradient evenly, as a subgradient should.
      const aWins = cast(binaryNode('CMPLT', b!, a!), g);
      const tie = mul(cast(binaryNode('CMPEQ', a!, b!), g), c(0.5, g));
      const wa = addN(aWins, tie);
      const wb = addN(addN(c(1, g), neg(aWins)), neg(tie));
      return [mul(g, wa), mul(g, wb)];
    }
    case 'CMPLT':
    case 'CMPEQ':
      return [undefined, undefined];
    case 'WHERE': {
      const zero = c(0, g);
      return [undefined, whereNode(a!, g, zero), whereNode(a!, zero, g)];
    }
    case 'SUM':
      return [expandNode(g, a!.shape)];
    case 'RMAX': {
      // Gradient flows to every maximal element, divided among ties.
      const hit = cast(binaryNode('CMPEQ', a!, expandNode(n, a!.shape)), a!);
      const count = reduceNode('SUM', hit, n.arg as number[]);
      return [mul(mul(hit, expandNode(unaryNode('RECIP', count), a!.shape)), expandNode(g, a!.shape))];
    }
    case 'GATHER': {
      // d table[v, c] = Σ_s [indices[s] = v] · g[s, c]: a one-hot contraction (only built for training).
      const [V, C] = a!.shape as [number, number];
      const S = b!.shape;
      const N = S.reduce((p, q) => p * q, 1);
      const ids = expandNode(reshapeNode(b!.dtype === 'i32' ? b! : unaryNode('CAST', b!, 'i32'), [N, 1, 1]), [N, V, 1]);
      const rows = expandNode(reshapeNode(arangeNode(V, 0, 1, 'i32'), [1, V, 1]), [N, V, 1]);
      const onehot = expandNode(cast(binaryNode('CMPEQ', ids, rows), g), [N, V, C]);
      const gs = expandNode(reshapeNode(g, [N, 1, C]), [N, V, C]);
      return [reshapeNode(reduceNode('SUM', mul(onehot, gs), [0]), [V, C]), undefined];
    }
    case 'RESHAPE':
      return [reshapeNode(g, a!.shape)];
    case 'PERMUTE': {
      const order = n.arg as number[];
      const inv = new Array<number>(order.length);
      order.forEach((o, i) => (inv[o] = i));
      return [permuteNode(g, inv)];
    }
    case 'EXPAND': {
      const axes = a!.shape.map((s, i) => (s === 1 && n.shape[i]! > 1 ? i : -1)).filter((i) => i >= 0);
      return [reduceNode('SUM', g, axes)];
    }
    case 'PAD': {
      const pads = n.arg as [number, number][];
      return [shrinkNode(g, pads.map(([lo], i) => [lo, lo + a!.shape[i]!] as [number, number]))];
    }
    case 'SHRINK': {
      const ranges = n.arg as [number, number][];
      return [padNode(g, ranges.map(([s, e], i) => [s, a!.shape[i]! - e] as [number, number]))];
    }
    case 'FLIP':
      return [flipNode(g, n.arg as number[])];
    case 'STRIDE': {
      // Scatter back: each kept element goes to position i*step; the gaps get zero.
      const steps = n.arg as number[];
      let x = g;
      for (let ax = 0; ax < steps.length; ax++) {
        const s = steps[ax]!;
        if (s === 1) continue;
        const shp = [...x.shape];
        const len = shp[ax]!;
        const expanded = [...shp.slice(0, ax), len, 1, ...shp.slice(ax + 1)];
        x = reshapeNode(x, expanded);
        const pads = expanded.map((_, i) => (i === ax + 1 ? [0, s - 1] : [0, 0]) as [number, number]);
        x = padNode(x, pads);
        x = reshapeNode(x, [...shp.slice(0, ax), len * s, ...shp.slice(ax + 1)]);
        const full = a!.shape[ax]!;
        x = shrinkNode(x, x.shape.map((d, i) => (i === ax ? [0, full] : [0, d]) as [number, number]));
      }
      return [x];
    }
    case 'CONTIGUOUS':
    case 'RECOMPUTE':
      return [g];
    case 'DETACH':
      return [undefined];
    default:
      throw new GradError(`no derivative rule for ${n.op}`);
  }
}

// Realized buffers of non-leaf tensors that require grad, mapped to the graph that computed them.
const origins = new WeakMap<LazyNode, LazyNode>();

/** Remember that `buffer` holds the value of `graph`, so gradients can flow through it. */
export function recordOrigin(buffer: LazyNode, graph: LazyNode): void {
  origins.set(buffer, graph);
}

// Outputs of checkpointed segments, mapped to their recomputation (a copy of the segment on RECOMPUTE
// inputs). The backward pass differentiates the copy, so the forward's activations inside the segment
// have no backward consumers and die in the forward pass; the copy is computed where the backward needs it.
const recomputations = new WeakMap<LazyNode, LazyNode>();

/** Differentiate `forward` through `copy` (same value, distinct nodes) instead of through its own graph. */
export function recordRecomputation(forward: LazyNode, copy: LazyNode): void {
  recomputations.set(forward, copy);
}

/** The node standing in for `n` in the backward pass, if any (a recorded origin or a recomputation). */
function redirect(n: LazyNode): LazyNode | undefined {
  return n.op === 'BUFFER' ? origins.get(n) : recomputations.get(n);
}

/** Sources for differentiation: a realized buffer with a recorded origin stands for its graph. */
function diffSources(n: LazyNode): readonly LazyNode[] {
  const o = redirect(n);
  return o ? [o] : n.src;
}

/** Nodes gradients can reach from `root` (through recorded origins), sources first. */
export function diffToposort(root: LazyNode): LazyNode[] {
  return toposort([root], diffSources);
}

/**
 * Gradients of `root` with respect to each node in `targets`, seeded with `rootGrad`. Only nodes on a
 * path from a target to the root are differentiated.
 */
export function gradients(root: LazyNode, rootGrad: LazyNode, targets: ReadonlySet<LazyNode>): Map<LazyNode, LazyNode> {
  const order = diffToposort(root);
  const onPath = new Set<LazyNode>();
  for (const n of order) {
    if (targets.has(n) || (n.op !== 'DETACH' && diffSources(n).some((s) => onPath.has(s)))) onPath.add(n);
  }
  const grads = new Map<LazyNode, LazyNode>([[root, rootGrad]]);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    const g = grads.get(n);
    if (!g || !onPath.has(n) || targets.has(n)) continue;
    const srcs = diffSources(n);
    if (srcs.length === 0) continue;
    const contributions = n.op === 'BUFFER' || redirect(n) ? [g] : rule(n, g);
    srcs.forEach((s, j) => {
      const d = contributions[j];
      if (!d || !onPath.has(s)) return;
      const prev = grads.get(s);
      grads.set(s, prev ? addN(prev, d) : d);
    });
  }
  const out = new Map<LazyNode, LazyNode>();
  for (const t of targets) {
    const g = grads.get(t);
    if (g) out.set(t, g);
  }
  return out;
}
