/**
 * Activation checkpointing: trade compute for memory by recomputing a segment's activations in the
 * backward pass instead of keeping them from the forward pass.
 *
 * Tessera differentiates a lazy graph and schedules forward and backward as one program, so "not keeping"
 * an activation means giving the backward pass no reason to read it. `checkpoint(fn)` runs `fn` as usual
 * for the forward value, then builds a second copy of the segment's graph on RECOMPUTE-tagged inputs
 * (distinct nodes, so hash-consing does not merge them with the forward ones) and tells autodiff to
 * differentiate the copy. The forward activations inside the segment then die inside the forward pass;
 * the scheduler computes the copy where the backward pass first needs it, and the memory planner reuses
 * its space for the next segment.
 */
import { recordRecomputation } from '../autograd/grad.js';
import type { LazyNode } from '../graph/node.js';
import { recomputeNode, toposort, withSources } from '../graph/node.js';
import { ValueError } from '../errors.js';
import { isGradEnabled } from './context.js';
import { Tensor } from './tensor.js';

let nextSegment = 1;

/** Copy the graph of `root` onto `inputs` (old node → new node); leaves and untouched subgraphs are shared. */
function copyOnto(root: LazyNode, inputs: ReadonlyMap<LazyNode, LazyNode>): LazyNode {
  const copied = new Map<LazyNode, LazyNode>(inputs);
  for (const n of toposort([root], (x) => (inputs.has(x) ? [] : x.src))) {
    if (copied.has(n)) continue;
    copied.set(n, n.src.length ? withSources(n, n.src.map((s) => copied.get(s)!)) : n);
  }
  return copied.get(root)!;
}

/**
 * Wrap `fn` (a module's forward, a transformer block, any tensor function) so that its activations are
 * recomputed in the backward pass instead of stored. Values and gradients are identical to calling `fn`
 * directly; peak memory drops by the segment's activations at the cost of running its forward twice.
 *
 * `fn` must be a pure function of its tensor arguments and of realized tensors (parameters): random ops
 * (dropout) reproduce the same values in the recomputation because Tessera's random stream is
 * counter-based. Outside gradient recording (`noGrad`, or no input requiring grad) it is just `fn`.
 *
 * ```ts
 * const block = checkpoint((x: Tensor) => layer.forward(x));
 * for (const layer of layers) x = checkpoint((h: Tensor) => layer.forward(h))(x);
 * ```
 */
export function checkpoint<A extends Tensor[], R extends Tensor | readonly Tensor[]>(fn: (...args: A) => R): (...args: A) => R {
  if (typeof fn !== 'function') throw new ValueError(`checkpoint: expected a function, got ${typeof fn}`);
  return (...args: A): R => {
    args.forEach((a, i) => {
      if (!(a instanceof Tensor)) throw new ValueError(`checkpoint: argument ${i} is not a Tensor`);
    });
    if (!isGradEnabled()) return fn(...args);
    // Segment inputs are stored (they are the checkpoints): materialise any that is still an expression,
    // so the recomputation starts from them rather than re-deriving them from earlier segments.
    const inputs = args.map((a) => (a.node.op === 'BUFFER' || a.node.op === 'CONTIGUOUS' ? a : a.contiguous())) as A;
    const out = fn(...inputs);
    const outs: readonly Tensor[] = out instanceof Tensor ? [out] : (out as readonly Tensor[]);
    if (!Array.isArray(outs) || outs.some((o) => !(o instanceof Tensor))) throw new ValueError('checkpoint: the function must return a Tensor or an array of Tensors');
    const segment = nextSegment++;
    const subst = new Map<LazyNode, LazyNode>(inputs.map((t) => [t.node, recomputeNode(t.node, segment)]));
    for (const o of outs) {
      if (!o.requiresGrad) continue;
      const copy = copyOnto(o.node, subst);
      if (copy !== o.node) recordRecomputation(o.node, copy);
    }
    return out;
  };
}
