/**
 * A Llama over a paged KV cache: the model side of continuous batching.
 *
 * Keys and values live in one pool per layer, `[numBlocks * blockSize, nKVHead * headDim]` f32 device
 * tensors (telemetry owner `kv-cache`). A step takes N tokens from S sequences (decodes of one token and
 * prefill chunks of several, mixed) as one flat `[N, dim]` batch, so every weight matrix is read once
 * per step for the whole batch. Attention of each token covers
 *   - its sequence's past, gathered from the pool by slot index (`gatherRows`, `[N * M]` slots, M the
 *     longest past in the step rounded up to a bucket; padding slots masked), and
 *   - the step's own new keys/values (causal within its sequence, masked across sequences),
 * with one additive 0/-inf mask `[N, M + N]`. The step returns the logits after the last token of each
 * sequence that needs them (rows picked with `gatherRows`) and every layer's new key/value rows; those
 * rows are then copied into their pool slots on the device (O(new tokens)).
 *
 * Gathering per token costs a prefill chunk of c tokens its past c times; when a step's gather would
 * exceed `maxGatherBytes`, its decodes run as one mixed step and each chunk as a "chunk step" whose
 * tokens share one gathered past (`[M]` slots). Weights are then read once per group, not per token.
 *
 * The step is `jit`-compiled per shape bucket (N by `tokenBucket`, the logit rows S by `logitBucket`, M
 * to a power of two of at least one block), and every per-step value (token ids, positions, which index
 * the rotary tables, slots, mask, logit rows) is an input tensor: a replay builds no graph.
 */
import { ValueError } from '../../errors.js';
import { jit, type Jitted } from '../../jit/jit.js';
import type { Llama } from '../../nn/llama.js';
import { ropeTables } from '../../nn/llama.js';
import { getRuntime } from '../../runtime/registry.js';
import { noGrad } from '../../tensor/context.js';
import { cat, gatherRows, tensor, zeros, type Tensor } from '../../tensor/tensor.js';
import { copyRowsToSlots } from './kv_rows.js';
import { slotOf, type StepModel, type StepSequence } from './step_model.js';

/** Smallest power of two ≥ n (n ≥ 1). */
export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Bucket of a step's logit rows: powers of two up to 16, then multiples of 8. The LM head is the largest
 * product of a decode step, and the common case is every running sequence plus the one whose prompt
 * just completed (17 rows): 24, not 32.
 */
export function logitBucket(n: number): number {
  return n <= 16 ? nextPow2(Math.max(n, 1)) : Math.ceil(n / 8) * 8;
}

/**
 * Bucket of a step's token rows: powers of two up to 16, multiples of 4 up to 32 and of 8 up to 64 (a
 * batch of decodes plus a prefill chunk: 16 + 4 runs as 20 rows, not 32), powers of two beyond.
 */
export function tokenBucket(n: number): number {
  if (n <= 16 || n > 64) return nextPow2(Math.max(n, 1));
  return n <= 32 ? Math.ceil(n / 4) * 4 : Math.ceil(n / 8) * 8;
}

/** Options of {@link PagedLlama}. */
export interface PagedLlamaOptions {
  /** Blocks in the pool (the block manager sizes this from the memory budget). */
  numBlocks: number;
  /** Tokens per block. */
  blockSize: number;
  /**
   * Bytes one layer's gathered past keys may take in a mixed step (default 32 MiB). Each token gathers
   * its own sequence's past, so a prefill chunk of c tokens would gather its past c times; a step over
   * this bound runs its decodes together and each prefill chunk apart, gathering that past once.
   */
  maxGatherBytes?: number;
}

/** Shape buckets of one step. */
export interface StepShape {
  /** Token rows (power of two). */
  tokens: number;
  /** Past-context slots per token (power of two, at least one block). */
  past: number;
  /** Logit rows (power of two). */
  logits: number;
}

/** Promotions of a prompt-only bucket before it is compiled after all (see `bucketFor`). */
export const PROMOTIONS_BEFORE_COMPILE = 4;
/**
 * A bucket with decodes is compiled once its promoted steps have cost this many of its own steps extra
 * (the rent-or-buy rule): compiling stalls every running stream for two slow steps (trace, then capture,
 * together about this many ordinary steps with a warm kernel cache), while a promoted step costs at most
 * 1.5x its own. A full decode batch padded into a larger bucket is compiled after a dozen steps; a past
 * padded by a few slots practically never.
 */
export const PROMOTION_EXTRA_BEFORE_COMPILE = 6;

function shapeKey(s: StepShape, shared: boolean): string {
  return `${shared ? 'chunk' : 'mixed'}:${s.tokens}x${s.past}x${s.logits}`;
}

/** Rotate adjacent pairs of `x` `[N, Hx, hd]` by per-row angles `cos`/`sin` `[N, hd/2]`. */
function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [N, Hx, hd] = x.shape as [number, number, number];
  const pairs = x.reshape([N, Hx, hd / 2, 2]);
  const x0 = pairs.narrow(3, 0, 1);
  const x1 = pairs.narrow(3, 1, 1);
  const c = cos.reshape([N, 1, hd / 2, 1]);
  const s = sin.reshape([N, 1, hd / 2, 1]);
  return cat([x0.mul(c).sub(x1.mul(s)), x0.mul(s).add(x1.mul(c))], 3).reshape([N, Hx, hd]);
}

export class PagedLlama implements StepModel {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly device: string;
  /** Per layer: keys and values of every slot, `[numSlots, nKVHead * headDim]`. */
  readonly kPool: Tensor[];
  readonly vPool: Tensor[];
  private readonly cos: Tensor;
  private readonly sin: Tensor;
  private readonly kvWidth: number;
  /** Mixed step: each token gathers its own past. */
  private readonly step: Jitted<Tensor[]>;
  /** Chunk step: the tokens of one sequence share one gathered past. */
  private readonly chunkStep: Jitted<Tensor[]>;
  private readonly maxGatherRows: number;
  /** Shape buckets seen so far (each compiled once). */
  readonly shapes = new Set<string>();
  private readonly compiled: { shape: StepShape; shared: boolean }[] = [];
  /**
   * Uncompiled buckets that ran promoted: times as a prompt-only step, and the extra cost, in steps of
   * their own, paid as a step with decodes.
   */
  private readonly pending = new Map<string, { shape: StepShape; shared: boolean; promotions: number; extra: number }>();
  /** Steps run in a larger compiled bucket instead of compiling their own. */
  promotedSteps = 0;
  /** The bucket compiled last (`mixed:NxMxS` or `chunk:NxMxS`). */
  lastCompiled: string | undefined;
  /** The buckets the last `run` computed in. */
  lastBuckets: string[] = [];
  /**
   * Host buffer the logits are read into, reused across steps (`logitsUsed` floats taken by this run):
   * a fresh copy per step (2 MB for 16 rows of a 32k vocabulary) kept V8's collector running major GCs
   * whose pauses and marking threads showed up as 2x slower steps.
   */
  private logitsHost = new Float32Array(0);
  private logitsUsed = 0;

  constructor(
    readonly model: Llama,
    opts: PagedLlamaOptions,
  ) {
    const cfg = model.config;
    if (!(Number.isInteger(opts.numBlocks) && opts.numBlocks > 0)) throw new ValueError(`PagedLlama: numBlocks must be a positive integer, got ${opts.numBlocks}`);
    if (!(Number.isInteger(opts.blockSize) && opts.blockSize > 0)) throw new ValueError(`PagedLlama: blockSize must be a positive integer, got ${opts.blockSize}`);
    this.vocabSize = cfg.vocabSize;
    this.contextLength = cfg.maxSeqLen;
    this.blockSize = opts.blockSize;
    this.numBlocks = opts.numBlocks;
    this.device = model.embedTokens.weight.device;
    const hd = cfg.dim / cfg.nHead;
    this.kvWidth = cfg.nKVHead * hd;
    const slots = opts.numBlocks * opts.blockSize;
    const pool = (label: string) => {
      const t = zeros([slots, this.kvWidth], { device: this.device }).realize();
      t.node.buffer.setOwner('kv-cache', label);
      return t;
    };
    this.kPool = Array.from({ length: cfg.nLayer }, (_, l) => pool(`kv.k.${l}`));
    this.vPool = Array.from({ length: cfg.nLayer }, (_, l) => pool(`kv.v.${l}`));
    const t = ropeTables(cfg.maxSeqLen, hd, cfg.ropeTheta, cfg.ropeScaling);
    this.cos = tensor(t.cos, { shape: [cfg.maxSeqLen, hd / 2], device: this.device }).realize();
    this.sin = tensor(t.sin, { shape: [cfg.maxSeqLen, hd / 2], device: this.device }).realize();
    model.eval();
    this.maxGatherRows = Math.max(1, Math.floor((opts.maxGatherBytes ?? 32 * 2 ** 20) / (this.kvWidth * 4)));
    this.step = jit((tokens: Tensor, positions: Tensor, pastSlots: Tensor, mask: Tensor, logitRows: Tensor) =>
      noGrad(() => this.forward(tokens, positions, pastSlots, mask, logitRows, false)),
    );
    this.chunkStep = jit((tokens: Tensor, positions: Tensor, pastSlots: Tensor, mask: Tensor, logitRows: Tensor) =>
      noGrad(() => this.forward(tokens, positions, pastSlots, mask, logitRows, true)),
    );
  }

  /**
   * The bucket a step runs in: its own when compiled, else the cheapest compiled bucket that holds it
   * (at least as many token rows, past slots and logit rows; padding is masked) if that costs at most
   * 1.5x its own (4x for a step without decodes: only prompts wait for it), else its own (compiled now).
   * Compiling a new bucket takes seconds, which every running stream would wait for; a somewhat larger
   * step does not stall them. A prompt-only bucket promoted `PROMOTIONS_BEFORE_COMPILE` times, or one
   * with decodes whose promotions have cost `PROMOTION_EXTRA_BEFORE_COMPILE` of its own steps extra, has
   * shown it repays its compilation, and is compiled on its next use.
   */
  private bucketFor(shape: StepShape, shared: boolean, decoding: boolean): StepShape {
    const key = shapeKey(shape, shared);
    if (this.shapes.has(key)) return shape;
    const p = this.pending.get(key) ?? { shape, shared, promotions: 0, extra: 0 };
    if (decoding ? p.extra >= PROMOTION_EXTRA_BEFORE_COMPILE : p.promotions >= PROMOTIONS_BEFORE_COMPILE) return shape;
    const own = this.stepCost(shape);
    let best: StepShape | undefined;
    let bestCost = (decoding ? 1.5 : 4) * own;
    for (const c of this.compiled) {
      const s = c.shape;
      if (c.shared !== shared || s.tokens < shape.tokens || s.past < shape.past || s.logits < shape.logits) continue;
      const cost = this.stepCost(s);
      if (cost <= bestCost) [best, bestCost] = [s, cost];
    }
    if (!best) return shape;
    this.promotedSteps++;
    if (decoding) p.extra += bestCost / own - 1;
    else p.promotions++;
    this.pending.set(key, p);
    return best;
  }

  /** Relative cost of a step bucket: per-token weight flops, per-slot attention work, LM-head rows. */
  private stepCost(s: StepShape): number {
    const c = this.model.config;
    const perToken = c.nLayer * (4 * c.dim * c.dim + 3 * c.dim * c.hiddenDim);
    // Two products per slot, plus gathering its keys and values (memory-bound: weighted as measured).
    const perSlot = c.nLayer * (4 * c.dim + 12 * this.kvWidth);
    return s.tokens * perToken + s.tokens * s.past * perSlot + s.logits * c.dim * c.vocabSize;
  }

  /**
   * Compile the mixed step for `shape` now (a jit trace and capture on placeholder inputs), so that no
   * request waits for it and `bucketFor` can promote smaller steps into it. Writes nothing to the pools.
   */
  precompile(shape: StepShape): void {
    const key = shapeKey(shape, false);
    if (this.shapes.has(key)) return;
    const { tokens: N, past: M, logits: S } = shape;
    for (const [what, n] of [['tokens', N], ['past', M], ['logits', S]] as const) {
      if (!(Number.isInteger(n) && n >= 1)) throw new ValueError(`PagedLlama.precompile: ${what} must be a positive integer, got ${n}`);
    }
    if (S > N) throw new ValueError(`PagedLlama.precompile: logit rows (${S}) exceed token rows (${N})`);
    const W = M + N;
    const mask = new Float32Array(N * W).fill(-Infinity);
    for (let row = 0; row < N; row++) mask[row * W + M + row] = 0;
    for (let pass = 0; pass < 2; pass++) {
      // Two calls: the jit traces on the first and captures its replay on the second.
      const inputs = this.stepInputs(new Int32Array(N), new Int32Array(N), new Int32Array(N * M), mask, new Int32Array(S));
      let outs: Tensor[] | undefined;
      try {
        outs = this.step(...inputs);
      } finally {
        for (const t of inputs) t.dispose();
        for (const t of outs ?? []) t.dispose();
      }
    }
    this.markCompiled(shape, false);
  }

  /** Record `shape` as compiled (a step or `precompile` compiles it now); returns its key. */
  private markCompiled(shape: StepShape, shared: boolean): string {
    const key = shapeKey(shape, shared);
    if (!this.shapes.has(key)) {
      this.compiled.push({ shape, shared });
      this.shapes.add(key);
      this.pending.delete(key);
      this.lastCompiled = key;
    }
    return key;
  }

  /** The step's inputs on the device: token ids, positions, past slots, mask `[N, M + N]`, logit rows. */
  private stepInputs(ids: Int32Array, pos: Int32Array, pastSlots: Int32Array, mask: Float32Array, rows: Int32Array): Tensor[] {
    const dev = { device: this.device };
    const N = ids.length;
    return [
      tensor(ids, { ...dev, dtype: 'i32', shape: [N] }),
      tensor(pos, { ...dev, dtype: 'i32', shape: [N] }),
      tensor(pastSlots, { ...dev, dtype: 'i32', shape: [pastSlots.length] }),
      tensor(mask, { ...dev, shape: [N, mask.length / N] }),
      tensor(rows, { ...dev, dtype: 'i32', shape: [rows.length] }),
    ];
  }

  /**
   * Compile the promoted bucket that has cost the most so far (mixed steps only), if any: the engine calls
   * this while it has nothing to run, so a bucket that traffic keeps promoting is ready before the next
   * burst instead of stalling it. Returns the bucket compiled.
   */
  compilePending(): string | undefined {
    let best: StepShape | undefined;
    let score = 0;
    // Extra cost in own steps (with decodes), or promotions (prompt-only: each about a step extra).
    for (const p of this.pending.values()) {
      const v = p.extra + p.promotions;
      if (!p.shared && v > score) [best, score] = [p.shape, v];
    }
    if (!best) return undefined;
    this.precompile(best);
    return shapeKey(best, false);
  }

  /** Shape buckets compiled so far. */
  get compiledShapes(): number {
    return this.shapes.size;
  }

  /** Bytes of the KV pools. */
  get kvBytes(): number {
    return [...this.kPool, ...this.vPool].reduce((s, t) => s + t.numel * 4, 0);
  }

  /** Compiled-step statistics (traces, replays, signatures) of the mixed and the chunk step. */
  get jitStats(): { mixed: Jitted<Tensor[]>['stats']; chunk: Jitted<Tensor[]>['stats'] } {
    return { mixed: this.step.stats, chunk: this.chunkStep.stats };
  }

  /**
   * The step graph: `[logits, argmax, k0, v0, k1, v1, ...]`. `shared`: all tokens belong to one sequence and
   * `pastSlots` `[M]` is its past; otherwise `pastSlots` `[N * M]` holds each token's own.
   */
  private forward(tokens: Tensor, positions: Tensor, pastSlots: Tensor, mask: Tensor, logitRows: Tensor, shared: boolean): Tensor[] {
    const m = this.model;
    const cfg = m.config;
    const N = tokens.shape[0]!;
    const M = shared ? pastSlots.shape[0]! : pastSlots.shape[0]! / N;
    const H = cfg.nHead;
    const KV = cfg.nKVHead;
    const rep = H / KV;
    const hd = cfg.dim / H;
    const cos = gatherRows(this.cos, positions);
    const sin = gatherRows(this.sin, positions);
    const scale = 1 / Math.sqrt(hd);
    const bias = mask.reshape([N, 1, 1, M + N]);
    const out: Tensor[] = [];
    let x = m.embedTokens.forward(tokens); // [N, dim]
    let l = 0;
    for (const layer of m.layers) {
      const a = layer.selfAttn;
      // Normalised inputs are stored once: inlined into a projection's operand, the norm's per-row scale
      // would keep the product off the GEMM paths (a plain reduction, recomputing the norm per column).
      const h = layer.inputLayernorm.forward(x).contiguous();
      // Projections stored before the rotation: fused into it, each output pair would recompute two
      // dot products per element as plain reductions instead of one GEMM.
      const q = rope(a.qProj.forward(h).contiguous().reshape([N, H, hd]), cos, sin).reshape([N, KV, rep, hd]);
      const k = rope(a.kProj.forward(h).contiguous().reshape([N, KV, hd]), cos, sin);
      const v = a.vProj.forward(h);
      out.push(k.reshape([N, KV * hd]), v);
      const qAll = q.permute([1, 0, 2, 3]).reshape([KV, N * rep, hd]);
      const kNew = k.permute([1, 2, 0]); // [KV, hd, N]
      const vNew = v.reshape([N, KV, hd]).permute([1, 0, 2]); // [KV, N, hd]
      // New: every token against every token of the step (the mask keeps its own sequence, causally).
      const sNew = qAll.matmul(kNew).reshape([KV, N, rep, N]).permute([1, 0, 2, 3]); // [N, KV, rep, N]
      let sPast: Tensor;
      let attendPast: (p: Tensor) => Tensor; // [N, KV, rep, M] -> [N, KV, rep, hd]
      if (shared) {
        // One past for all tokens: [KV, hd, M] and [KV, M, hd].
        const pastK = gatherRows(this.kPool[l]!, pastSlots).reshape([M, KV, hd]).permute([1, 2, 0]);
        const pastV = gatherRows(this.vPool[l]!, pastSlots).reshape([M, KV, hd]).permute([1, 0, 2]);
        sPast = qAll.matmul(pastK).reshape([KV, N, rep, M]).permute([1, 0, 2, 3]);
        attendPast = (p) => p.permute([1, 0, 2, 3]).reshape([KV, N * rep, M]).matmul(pastV).reshape([KV, N, rep, hd]).permute([1, 0, 2, 3]);
      } else {
        // Each token's own context rows, read from the pool through its slots by the products themselves:
        // the rep query rows of a head against M key rows (skinny GEMM path), then its rep probability rows
        // against the M value rows (outer products), each pool row read in place (the C renderer's
        // gathered-row operands) instead of copied into a [N, KV, M, hd] matrix first.
        const pastK = gatherRows(this.kPool[l]!, pastSlots).reshape([N, M, KV, hd]).permute([0, 2, 1, 3]);
        const pastV = gatherRows(this.vPool[l]!, pastSlots).reshape([N, M, KV, hd]).permute([0, 2, 1, 3]);
        sPast = q.contiguous().matmul(pastK.transpose(-1, -2));
        attendPast = (p) => p.contiguous().matmul(pastV);
      }
      // Stored once: inlined, the softmax (an exp per score) would be recomputed inside every product
      // that reads it, once per output column.
      const p = cat([sPast, sNew], 3).mul(scale).add(bias).softmax(-1).contiguous();
      // Each product stored by itself: fused into one kernel with the sum, they would run as plain
      // reductions (the new-token one reading values with a stride, O(N²) scalar work per step).
      const yPast = attendPast(p.narrow(3, 0, M)).contiguous();
      const pNew = p.narrow(3, M, N).permute([1, 0, 2, 3]).reshape([KV, N * rep, N]);
      const yNew = pNew.matmul(vNew).contiguous().reshape([KV, N, rep, hd]).permute([1, 0, 2, 3]);
      // Stored before the output projection, so that it reads a plain matrix (skinny path).
      const y = a.oProj.forward(yPast.add(yNew).reshape([N, H * hd]).contiguous());
      x = x.add(y);
      x = x.add(layer.mlp.forward(layer.postAttentionLayernorm.forward(x).contiguous()));
      l++;
    }
    const last = m.norm.forward(gatherRows(x, logitRows)).contiguous();
    const logits = m.lmHead ? m.lmHead.forward(last) : last.matmul(m.embedTokens.weight.T);
    // The arg max too: a step whose sequences all decode greedily reads S integers, not S rows of logits.
    return [logits, logits.argmax(-1), ...out];
  }

  /** The buckets a step over `seqs` runs in. */
  shapeOf(seqs: readonly StepSequence[]): StepShape {
    const n = seqs.reduce((s, q) => s + q.tokens.length, 0);
    const past = seqs.reduce((s, q) => Math.max(s, q.start), 0);
    const logits = seqs.filter((q) => q.wantLogits).length;
    return { tokens: tokenBucket(n), past: Math.max(this.blockSize, nextPow2(Math.max(past, 1))), logits: logitBucket(logits) };
  }

  run(seqs: readonly StepSequence[]): (Float32Array | number | undefined)[] {
    this.lastBuckets = [];
    this.logitsUsed = 0;
    if (seqs.length === 0) return [];
    const shape = this.shapeOf(seqs);
    if (shape.tokens * shape.past <= this.maxGatherRows || seqs.every((q) => q.tokens.length === 1)) return this.runGroup(seqs, false);
    // Too much to gather per token: decodes together, then each prefill chunk with its past gathered once.
    const out: (Float32Array | number | undefined)[] = new Array(seqs.length);
    const decodes = seqs.flatMap((q, i) => (q.tokens.length === 1 ? [i] : []));
    if (decodes.length) this.runGroup(decodes.map((i) => seqs[i]!), false).forEach((r, j) => (out[decodes[j]!] = r));
    seqs.forEach((q, i) => {
      if (q.tokens.length > 1) out[i] = this.runGroup([q], true)[0];
    });
    return out;
  }

  /** One jitted step over `seqs` (`shared`: one sequence whose tokens share its gathered past). */
  private runGroup(seqs: readonly StepSequence[], shared: boolean): (Float32Array | number | undefined)[] {
    const shape = this.bucketFor(this.shapeOf(seqs), shared, seqs.some((q) => q.tokens.length === 1 && q.start > 0));
    const { tokens: N, past: M, logits: S } = shape;
    const W = M + N;
    const ids = new Int32Array(N);
    const pos = new Int32Array(N);
    const pastSlots = new Int32Array(shared ? M : N * M);
    const mask = new Float32Array(N * W).fill(-Infinity);
    const rows = new Int32Array(S);
    const newSlots: number[] = [];
    let r = 0;
    let li = 0;
    for (const s of seqs) {
      const c = s.tokens.length;
      if (c === 0) throw new ValueError('PagedLlama.run: a sequence has no tokens this step');
      if (s.start + c > this.contextLength) throw new ValueError(`PagedLlama.run: positions up to ${s.start + c} exceed the context of ${this.contextLength}`);
      const past = Array.from({ length: s.start }, (_, j) => slotOf(s.blockTable, this.blockSize, j));
      for (let i = 0; i < c; i++) {
        const row = r + i;
        const tok = s.tokens[i]!;
        if (!(Number.isInteger(tok) && tok >= 0 && tok < this.vocabSize)) throw new ValueError(`PagedLlama.run: token id ${tok} is outside [0, ${this.vocabSize})`);
        ids[row] = tok;
        pos[row] = s.start + i;
        if (!shared) pastSlots.set(past, row * M);
        mask.fill(0, row * W, row * W + s.start);
        mask.fill(0, row * W + M + r, row * W + M + row + 1);
        newSlots.push(slotOf(s.blockTable, this.blockSize, s.start + i));
      }
      if (shared) pastSlots.set(past);
      r += c;
      if (s.wantLogits) rows[li++] = r - 1;
    }
    // Padding rows attend to themselves only, so they stay finite (a NaN key would poison real rows).
    for (let row = r; row < N; row++) mask[row * W + M + row] = 0;
    this.lastBuckets.push(this.markCompiled(shape, shared));
    const inputs = this.stepInputs(ids, pos, pastSlots, mask, rows);
    let outs: Tensor[] | undefined;
    try {
      outs = (shared ? this.chunkStep : this.step)(...inputs);
      const rt = getRuntime(this.device);
      for (let l = 0; l < this.kPool.length; l++) {
        copyRowsToSlots(rt, outs[2 + 2 * l]!.node.buffer.mem, this.kPool[l]!.node.buffer.mem, newSlots, this.kvWidth);
        copyRowsToSlots(rt, outs[3 + 2 * l]!.node.buffer.mem, this.vPool[l]!.node.buffer.mem, newSlots, this.kvWidth);
      }
      let k = 0;
      if (seqs.every((s) => !s.wantLogits || s.greedy)) {
        const best = outs[1]!.dataSync();
        return seqs.map((s) => (s.wantLogits ? best[k++]! : undefined));
      }
      const V = this.vocabSize;
      const logits = this.readLogits(rt, outs[0]!, li * V);
      return seqs.map((s) => (s.wantLogits ? logits.subarray(k * V, ++k * V) : undefined));
    } finally {
      for (const t of inputs) t.dispose();
      for (const t of outs ?? []) t.dispose();
    }
  }

  /** The first `n` floats of `t` in host memory: a view of the reused buffer where the runtime can read into one. */
  private readLogits(rt: ReturnType<typeof getRuntime>, t: Tensor, n: number): Float32Array {
    if (!rt.readSyncInto || t.dtype !== 'f32') return (t.dataSync() as Float32Array).subarray(0, n);
    if (this.logitsUsed + n > this.logitsHost.length) {
      // Views handed out earlier in this run keep the old buffer alive; later runs use the new one.
      this.logitsHost = new Float32Array(Math.max(n, 2 * this.logitsHost.length));
      this.logitsUsed = 0;
    }
    const view = this.logitsHost.subarray(this.logitsUsed, this.logitsUsed + n);
    this.logitsUsed += n;
    rt.readSyncInto(t.node.buffer.mem, 0, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    return view;
  }

  /** Free the pools and the compiled steps. */
  dispose(): void {
    this.step.reset();
    this.chunkStep.reset();
    for (const t of [...this.kPool, ...this.vPool, this.cos, this.sin]) t.dispose();
  }
}
