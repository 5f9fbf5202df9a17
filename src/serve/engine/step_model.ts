/**
 * The interface between the scheduler (which sequences compute which tokens this step) and the model
 * that computes them over a paged KV cache. Kept apart from both so the scheduler can be tested against
 * a fake model and the model against a plain reference.
 */

/** One sequence's share of a step: `tokens` at positions [start, start + tokens.length). */
export interface StepSequence {
  /** Tokens computed this step: one for a decode, a chunk for a prefill. */
  readonly tokens: readonly number[];
  /** Position of `tokens[0]`; positions [0, start) are already in the cache. */
  readonly start: number;
  /**
   * The sequence's block table: position p lives in slot `blockTable[p / blockSize] * blockSize +
   * p % blockSize`. Covers at least positions [0, start + tokens.length).
   */
  readonly blockTable: readonly number[];
  /** Whether the logits after the last token are needed (the chunk ends the known tokens). */
  readonly wantLogits: boolean;
  /**
   * Only the arg max of those logits is needed (greedy decoding): a model may return the token instead of
   * the row (see {@link StepModel.run}).
   */
  readonly greedy?: boolean;
}

/** A model that runs one batched step over a paged KV cache. */
export interface StepModel {
  readonly vocabSize: number;
  /** Longest prompt + completion in tokens. */
  readonly contextLength: number;
  readonly blockSize: number;
  /** Blocks in the KV pool. */
  readonly numBlocks: number;
  /**
   * Compute `seqs` in one step: write their tokens' keys and values into their slots and return, per
   * sequence in order, the logits after its last token (`undefined` where `wantLogits` is false), or for
   * a `greedy` sequence possibly just their arg max (the first maximum) as a number. The arrays may be
   * views of a buffer the next `run` overwrites: copy what must outlive the step.
   */
  run(seqs: readonly StepSequence[]): (Float32Array | number | undefined)[];
  /** Shape buckets compiled so far (a step that raises it paid for a compilation). */
  readonly compiledShapes?: number;
  /** Name of the bucket compiled last. */
  readonly lastCompiled?: string;
  /** The buckets the last `run` computed in (one per model call; a larger one when promoted). */
  readonly lastBuckets?: readonly string[];
}

/** The pool slot of position `p` under `table`. */
export function slotOf(table: readonly number[], blockSize: number, p: number): number {
  return table[Math.floor(p / blockSize)]! * blockSize + (p % blockSize);
}
