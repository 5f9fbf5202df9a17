/**
 * The primitive operations of the lazy graph. Everything the Tensor API offers is written in terms of
 * these; autodiff has one rule per primitive, and every renderer has one line per ALU op.
 */

/** Elementwise ops of one operand. */
export const UNARY_OPS = ['NEG', 'RECIP', 'EXP', 'LOG', 'SQRT', 'SIN', 'COS', 'TANH', 'ERF', 'CAST'] as const;
/** Elementwise ops of two operands (comparisons yield bool). */
export const BINARY_OPS = ['ADD', 'MUL', 'MAX', 'CMPLT', 'CMPEQ'] as const;
/** Reductions over a set of axes; reduced axes stay in the shape with size 1. */
export const REDUCE_OPS = ['SUM', 'RMAX'] as const;
/**
 * Zero-copy views. RESHAPE (new shape), PERMUTE (axis order), EXPAND (broadcast size-1 axes),
 * PAD ([before, after] per axis, zeros outside), SHRINK ([start, end) per axis), FLIP (axes),
 * STRIDE (positive step per axis: `x[::k]`).
 */
export const MOVEMENT_OPS = ['RESHAPE', 'PERMUTE', 'EXPAND', 'PAD', 'SHRINK', 'FLIP', 'STRIDE'] as const;
/**
 * Leaves. BUFFER (a realized device buffer), CONST (a scalar broadcast to a shape), ARANGE
 * (`start + i*step` along a 1-d shape), RAND (uniform [0,1) from a counter-based hash of
 * (seed, counter + flat index), identical on every backend).
 */
export const SOURCE_OPS = ['BUFFER', 'CONST', 'ARANGE', 'RAND'] as const;
/**
 * WHERE (cond, a, b); CONTIGUOUS forces materialisation; DETACH is an identity that stops gradients;
 * RECOMPUTE (arg: a segment id) is an identity that gradients pass through, whose only job is to give a
 * checkpointed segment's backward-pass copy a graph identity of its own (see autograd/checkpoint.ts);
 * GATHER (table [V, C] materialised, integer indices S) → [...S, C]: row `indices[s]` of the table (a
 * data-dependent load; rows outside [0, V) read 0). Embedding lookups read one row, not the table.
 */
export const OTHER_OPS = ['WHERE', 'CONTIGUOUS', 'DETACH', 'RECOMPUTE', 'GATHER'] as const;

export type UnaryOp = (typeof UNARY_OPS)[number];
export type BinaryOp = (typeof BINARY_OPS)[number];
export type ReduceOp = (typeof REDUCE_OPS)[number];
export type MovementOp = (typeof MOVEMENT_OPS)[number];
export type SourceOp = (typeof SOURCE_OPS)[number];
export type Op = UnaryOp | BinaryOp | ReduceOp | MovementOp | SourceOp | (typeof OTHER_OPS)[number];

const unary = new Set<string>(UNARY_OPS);
const binary = new Set<string>(BINARY_OPS);
const reduce = new Set<string>(REDUCE_OPS);
const movement = new Set<string>(MOVEMENT_OPS);

export const isUnary = (op: Op): op is UnaryOp => unary.has(op);
export const isBinary = (op: Op): op is BinaryOp => binary.has(op);
export const isReduce = (op: Op): op is ReduceOp => reduce.has(op);
export const isMovement = (op: Op): op is MovementOp => movement.has(op);
/** Ops computed per element from operands at the same index (fusable into any kernel). */
export const isElementwise = (op: Op): boolean => unary.has(op) || binary.has(op) || op === 'WHERE' || op === 'DETACH' || op === 'RECOMPUTE';

/** Rough cost of one evaluation, used by the scheduler to decide recompute versus store. */
export function aluCost(op: Op): number {
  switch (op) {
    case 'EXP':
    case 'LOG':
    case 'SIN':
    case 'COS':
    case 'TANH':
    case 'ERF':
    case 'SQRT':
      return 4;
    case 'RECIP':
      return 2;
    case 'DETACH':
    case 'RECOMPUTE':
      return 0;
    default:
      return 1;
  }
}
