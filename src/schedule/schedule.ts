import type { LazyNode, RandArg } from '../graph/node.js';
import { numel, toposort } from '../graph/node.js';
import { aluCost, isElementwise, isMovement, isReduce } from '../graph/ops.js';

/**
 * The scheduler decides kernel boundaries: which nodes of the lazy graph are materialised in memory
 * (each one the output of one kernel) and which are recomputed inline inside the kernels that use them.
 *
 * Rules, in the order they apply:
 *  1. Requested outputs and CONTIGUOUS nodes are materialised; BUFFER nodes already are.
 *  2. A reduction lives in the kernel of the value that consumes it only through elementwise ops and
 *     bijective views (its "epilogue"). A reduction reached through a broadcast (EXPAND) or from inside
 *     another reduction's operand is materialised: recomputing it per broadcast element would multiply
 *     its work.
 *  3. An inline value used by several kernels is recomputed in each, unless it contains a reduction or
 *     costs more than `recomputeLimit` ALU ops; an expensive value broadcast into a reduction's operand
 *     (a matmul prologue) is stored once instead of recomputed per use.
 *  4. A kernel that would bind more buffers than the device allows has its largest inline input
 *     subtree materialised until it fits.
 */

export type KernelKind = 'elementwise' | 'reduce' | 'contraction';

/** Sizes of a recognised contraction (batched matmul): out[b, m, n] = Σ_k a[b, m, k] · b[b, k, n]. */
export interface ContractionInfo {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Elementwise ops applied to the accumulated result before it is stored (bias, activation, ...). */
  readonly epilogue: readonly string[];
  /** Elementwise ops applied to the operands as they are loaded (casts, scaling, ...). */
  readonly prologue: readonly string[];
}

export interface ScheduledKernel {
  readonly index: number;
  /** The materialised node this kernel computes. */
  readonly out: LazyNode;
  /** Materialised nodes it reads, in parameter order (after the output). */
  readonly inputs: readonly LazyNode[];
  /** Every node computed inline, sources first. */
  readonly inline: readonly LazyNode[];
  readonly kind: KernelKind;
  readonly contraction?: ContractionInfo;
  /** Names of the fused ops, for printing. */
  readonly ops: readonly string[];
  /**
   * Structural identity: equal for kernels that compute the same expression over inputs of the same
   * shapes and dtypes, whatever the buffers. Compiled kernels are cached by it.
   */
  readonly structuralKey: string;
  /** Per-launch scalar values (RAND seeds and counters) that are parameters rather than constants. */
  readonly scalars: readonly number[];
}

export interface Schedule {
  readonly kernels: readonly ScheduledKernel[];
  /** The requested nodes, in request order. */
  readonly outputs: readonly LazyNode[];
}

export interface ScheduleOptions {
  /** Most buffers a kernel may bind, output included. */
  maxBuffersPerKernel?: number;
  /** Inline ALU ops above which a value shared by several kernels is stored instead of recomputed. */
  recomputeLimit?: number;
  /**
   * Outputs written in place into an existing buffer (parameter and optimizer-state updates). Their
   * kernels, and everything that depends on them, run last, so that every other kernel has read the
   * buffer's old value first.
   */
  late?: ReadonlySet<LazyNode>;
  /**
   * For each late output, the buffer it overwrites (compared by identity against BUFFER nodes' `buffer`).
   * With it, a late kernel runs as soon as its inputs are ready and every other kernel that reads the old
   * value has run, instead of at the very end: a parameter's update then frees its gradient right after
   * the backward pass has used the parameter, so gradients are not all alive at once.
   */
  lateTargets?: ReadonlyMap<LazyNode, unknown>;
}

type Walk = (n: LazyNode, inReduce: boolean, expansion: number) => void;

/** Broadcast factor above which an expensive value feeding a reduction is stored, not recomputed. */
const PROLOGUE_EXPANSION = 16;

export function createSchedule(outputs: readonly LazyNode[], opts: ScheduleOptions = {}): Schedule {
  const maxBuffers = opts.maxBuffersPerKernel ?? Infinity;
  const recomputeLimit = opts.recomputeLimit ?? 12;
  const order = toposort(outputs);
  const materialised = new Set<LazyNode>();
  for (const o of outputs) if (o.op !== 'BUFFER') materialised.add(o);
  for (const n of order) if (n.op === 'CONTIGUOUS') materialised.add(n);

  const isInput = (n: LazyNode) => n.op === 'BUFFER' || materialised.has(n);

  // Cost of recomputing a node inline, counting shared sub-nodes once.
  const costMemo = new Map<LazyNode, { cost: number; hasReduce: boolean }>();
  const inlineCost = (root: LazyNode): { cost: number; hasReduce: boolean } => {
    const hit = costMemo.get(root);
    if (hit) return hit;
    let cost = 0;
    let hasReduce = false;
    const seen = new Set<LazyNode>();
    const stack = [root];
    while (stack.length) {
      const n = stack.pop()!;
      if (seen.has(n)) continue;
      seen.add(n);
      if (isReduce(n.op)) hasReduce = true;
      cost += isElementwise(n.op) ? aluCost(n.op) : isReduce(n.op) ? 1 + numel(n.src[0]!.shape) / Math.max(1, n.numel) : 0;
      for (const s of n.src) if (!isInput(s)) stack.push(s);
    }
    const r = { cost, hasReduce };
    costMemo.set(root, r);
    return r;
  };

  let changed = true;
  while (changed) {
    changed = false;
    costMemo.clear();
    const users = new Map<LazyNode, Set<LazyNode>>(); // inline node -> kernels that recompute it
    for (const root of order) {
      if (!materialised.has(root)) continue;
      const seen = new Set<string>();
      const walk: Walk = (n, inReduce, expansion) => {
        const key = `${n.id}|${inReduce}|${expansion}`;
        if (seen.has(key)) return;
        seen.add(key);
        for (const c of n.src) {
          if (isInput(c)) continue;
          const cin = inReduce || isReduce(n.op);
          const cexp = n.op === 'EXPAND' || n.op === 'GATHER' ? (expansion * n.numel) / Math.max(1, c.numel) : expansion;
          if (isReduce(c.op) && (cin || cexp > 1)) {
            materialised.add(c); // rule 2
            changed = true;
            continue;
          }
          let u = users.get(c);
          if (!u) users.set(c, (u = new Set()));
          u.add(root);
          if (cin && cexp >= PROLOGUE_EXPANSION && isElementwise(c.op) && inlineCost(c).cost >= 4) {
            materialised.add(c); // rule 3, prologue half
            changed = true;
            continue;
          }
          walk(c, cin, cexp);
        }
      };
      walk(root, false, 1);
    }
    if (changed) continue;
    for (const [n, kernels] of users) {
      if (kernels.size < 2 || n.op === 'CONST' || n.op === 'ARANGE') continue;
      if (isReduce(n.op)) {
        materialised.add(n); // rule 3: a reduction shared by several kernels is computed once
        changed = true;
      } else if (!isMovement(n.op) && !inlineCost(n).hasReduce && inlineCost(n).cost > recomputeLimit) {
        materialised.add(n); // rule 3: too expensive to recompute in each kernel
        changed = true;
      }
    }
    if (changed) continue;
    for (const root of order) {
      if (!materialised.has(root)) continue;
      if (splitForBufferLimit(root, maxBuffers, isInput, materialised)) changed = true;
    }
  }

  let roots = order.filter((n) => materialised.has(n));
  if (opts.late?.size) {
    // Stable partition: kernels that (transitively) depend on a late output go after all others.
    const late = new Set<LazyNode>();
    const dependsOnLate = (n: LazyNode): boolean => inputsOf(n, isInput).inputs.some((i) => late.has(i));
    for (const n of roots) if (opts.late.has(n) || dependsOnLate(n)) late.add(n);
    roots = opts.lateTargets ? placeLate(roots, late, opts.lateTargets, isInput) : [...roots.filter((n) => !late.has(n)), ...roots.filter((n) => late.has(n))];
  }
  const kernels: ScheduledKernel[] = [];
  for (const n of roots) kernels.push(buildKernel(kernels.length, n, isInput));
  return { kernels, outputs };
}

/**
 * Order kernels so that each late kernel (an in-place write and what depends on it) runs at the first
 * point where all its inputs exist and every other kernel reading the buffer it overwrites has run. The
 * other kernels keep their depth-first order. A write placed too early would still be correct (the
 * engine then writes a temporary and copies at the end) but would cost memory, so readers are waited for.
 */
function placeLate(roots: readonly LazyNode[], late: ReadonlySet<LazyNode>, targets: ReadonlyMap<LazyNode, unknown>, isInput: (n: LazyNode) => boolean): LazyNode[] {
  const inputs = new Map<LazyNode, LazyNode[]>();
  const readersOf = new Map<unknown, LazyNode[]>();
  for (const n of roots) {
    const ins = inputsOf(n, isInput).inputs;
    inputs.set(n, ins);
    for (const i of ins) {
      if (i.op !== 'BUFFER') continue;
      let r = readersOf.get(i.buffer);
      if (!r) readersOf.set(i.buffer, (r = []));
      r.push(n);
    }
  }
  // Kernels each late kernel waits for: its materialised inputs, and the readers of its target.
  const waits = new Map<LazyNode, LazyNode[]>();
  const rootSet = new Set(roots);
  for (const n of roots) {
    if (!late.has(n)) continue;
    const w = inputs.get(n)!.filter((i) => rootSet.has(i));
    const target = targets.get(n);
    if (target !== undefined) for (const r of readersOf.get(target) ?? []) if (r !== n) w.push(r);
    waits.set(n, w);
  }
  const done = new Set<LazyNode>();
  const out: LazyNode[] = [];
  let pending = roots.filter((n) => late.has(n));
  const flush = () => {
    for (let progress = true; progress && pending.length; ) {
      progress = false;
      const still: LazyNode[] = [];
      for (const n of pending) {
        if (waits.get(n)!.every((w) => done.has(w))) {
          out.push(n);
          done.add(n);
          progress = true;
        } else still.push(n);
      }
      pending = still;
    }
  };
  for (const n of roots) {
    if (late.has(n)) continue;
    out.push(n);
    done.add(n);
    flush();
  }
  flush();
  // Cycles cannot happen between readers and writers of distinct buffers; anything left keeps its order.
  out.push(...pending);
  return out;
}

function inputsOf(root: LazyNode, isInput: (n: LazyNode) => boolean): { inputs: LazyNode[]; inline: LazyNode[] } {
  const inputs: LazyNode[] = [];
  const inline: LazyNode[] = [];
  const seen = new Set<LazyNode>();
  const visit = (n: LazyNode): void => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n !== root && isInput(n)) {
      inputs.push(n);
      return;
    }
    for (const s of n.src) visit(s);
    inline.push(n);
  };
  visit(root);
  return { inputs, inline };
}

/** Rule 4: materialise the inline subtree with the most inputs until the kernel fits the binding limit. */
function splitForBufferLimit(
  root: LazyNode,
  maxBuffers: number,
  isInput: (n: LazyNode) => boolean,
  materialised: Set<LazyNode>,
): boolean {
  const { inputs, inline } = inputsOf(root, isInput);
  if (inputs.length + 1 <= maxBuffers) return false;
  if (maxBuffers < 3) throw new Error(`a device that binds fewer than 3 buffers per kernel cannot run binary ops`);
  let best: LazyNode | undefined;
  let bestCount = 0;
  for (const n of inline) {
    if (n === root || isMovement(n.op) || n.op === 'CONST') continue;
    const count = inputsOf(n, isInput).inputs.length;
    if (count < inputs.length && count > bestCount && count + 1 <= maxBuffers) {
      best = n;
      bestCount = count;
    }
  }
  if (!best) {
    // No single subtree fits: materialise the largest one anyway; the next round splits it further.
    for (const n of inline) {
      if (n === root || isMovement(n.op) || n.op === 'CONST') continue;
      const count = inputsOf(n, isInput).inputs.length;
      if (count < inputs.length && count > bestCount) {
        best = n;
        bestCount = count;
      }
    }
  }
  if (!best || bestCount < 2) throw new Error(`cannot split a kernel with ${inputs.length} inputs to fit ${maxBuffers} buffers`);
  materialised.add(best);
  return true;
}

function buildKernel(index: number, out: LazyNode, isInput: (n: LazyNode) => boolean): ScheduledKernel {
  const { inputs, inline } = inputsOf(out, isInput);
  const reduces = inline.filter((n) => isReduce(n.op));
  const contraction = reduces.length === 1 ? detectContraction(reduces[0]!, inline) : undefined;
  const kind: KernelKind = contraction ? 'contraction' : reduces.length ? 'reduce' : 'elementwise';
  const ops = inline.filter((n) => isElementwise(n.op) || isReduce(n.op) || n.op === 'RAND' || n.op === 'ARANGE').map((n) => n.op);

  // Structural key: local numbering of inline nodes and inputs, so identical work on other buffers matches.
  const local = new Map<LazyNode, number>();
  inputs.forEach((n, i) => local.set(n, -1 - i));
  const scalars: number[] = [];
  const parts: string[] = [`out:${out.dtype}[${out.shape}]`];
  inputs.forEach((n, i) => parts.push(`in${i}:${n.dtype}[${n.shape}]`));
  for (const n of inline) {
    local.set(n, local.size);
    let arg: string;
    if (n.op === 'RAND') {
      const r = n.arg as RandArg;
      arg = `s${scalars.length}`;
      scalars.push(r.seed >>> 0, r.counter >>> 0);
    } else if (n.op === 'CONST') {
      arg = Object.is(n.arg, -0) ? '-0' : String(n.arg);
    } else {
      arg = n.arg === undefined ? '' : JSON.stringify(n.arg);
    }
    parts.push(`${n.op}:${n.dtype}[${n.shape}](${n.src.map((s) => local.get(s)).join(',')})${arg}`);
  }
  return { index, out, inputs, inline, kind, contraction, ops, structuralKey: parts.join(';'), scalars };
}

/** Skip casts and unary ops to the node that provides an operand's shape. */
function throughUnary(n: LazyNode, prologue: string[], inline: Set<LazyNode>): LazyNode {
  while (inline.has(n) && n.src.length === 1 && isElementwise(n.op)) {
    prologue.push(n.op);
    n = n.src[0]!;
  }
  return n;
}

/**
 * A SUM whose operand is a product of two operands broadcast along different axes is a contraction.
 * Axes where only `a` varies are M, where only `b` varies are N, both vary and not reduced: batch.
 */
function detectContraction(r: LazyNode, inlineList: readonly LazyNode[]): ContractionInfo | undefined {
  if (r.op !== 'SUM') return undefined;
  const inline = new Set(inlineList);
  const prologue: string[] = [];
  const mulNode = throughUnary(r.src[0]!, prologue, inline);
  if (mulNode.op !== 'MUL' || !inline.has(mulNode)) return undefined;
  const axes = r.arg as number[];
  const expandedAxes = (x: LazyNode): Set<number> | undefined => {
    x = throughUnary(x, prologue, inline);
    if (x.op !== 'EXPAND' || !inline.has(x)) return undefined;
    const src = x.src[0]!;
    return new Set(x.shape.map((s, i) => (src.shape[i] === 1 && s > 1 ? i : -1)).filter((i) => i >= 0));
  };
  const ea = expandedAxes(mulNode.src[0]!);
  const eb = expandedAxes(mulNode.src[1]!);
  if (!ea || !eb || ea.size === 0 || eb.size === 0) return undefined;
  if ([...ea].some((a) => eb.has(a)) || axes.some((a) => ea.has(a) || eb.has(a))) return undefined;
  const shape = r.src[0]!.shape;
  let m = 1;
  let n = 1;
  let k = 1;
  let batch = 1;
  shape.forEach((s, i) => {
    if (axes.includes(i)) k *= s;
    else if (eb.has(i)) m *= s;
    else if (ea.has(i)) n *= s;
    else batch *= s;
  });
  // Epilogue: inline elementwise nodes downstream of the reduce.
  const epilogue: string[] = [];
  const downstream = new Set<LazyNode>([r]);
  for (const node of inlineList) {
    if (node.src.some((s) => downstream.has(s))) {
      downstream.add(node);
      if (isElementwise(node.op)) epilogue.push(node.op);
    }
  }
  return { batch, m, n, k, epilogue, prologue };
}
