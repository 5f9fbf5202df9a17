/**
 * The continuous-batching scheduler: which sequences compute which tokens in each step, over a paged KV
 * cache managed by {@link BlockManager}. Pure host logic around a {@link StepModel}, so it is tested with
 * a fake model.
 *
 * Policy, per step (FCFS with a token budget):
 *  1. Decodes first: every running sequence with one token to feed gets it, in admission order. A
 *     decode that needs a new block and finds none preempts the newest running sequence (possibly
 *     itself) by recomputation: its blocks are freed and it goes back to the head of the queue, to be
 *     re-prefilled later with its prompt and the tokens generated so far.
 *  2. Then prefill chunks, oldest first: sequences part-way through their prompt continue, then waiting
 *     requests are admitted in arrival order while the batch has room (`maxBatch`), the pool holds their
 *     uncached blocks (plus a 1% watermark) and the budget lasts. Prefill tokens per step are capped by
 *     `maxPrefillTokensPerStep`; while sequences are decoding, also by what the decodes leave of
 *     `maxBatchedTokens` (at least 4 tokens): a prompt then joins the running decodes in chunks that
 *     keep each step near a decode step's duration, instead of stalling them for its whole length.
 *     Admission is strictly in order: a head request that does not fit blocks the ones behind it (no
 *     starvation of long prompts).
 *  3. One model step computes all of it; the logits of sequences whose known tokens are all computed
 *     are sampled on the host (per-request seeded RNG), stop tokens and `maxTokens` end sequences.
 *
 * Prefix caching: admission reuses full blocks of an earlier identical prefix. The block manager knows a
 * block's tokens as soon as a sequence is admitted, before the step that computes them, so the scheduler
 * also tracks which blocks hold computed keys/values; a sequence recomputes from its first shared block
 * that is not computed yet (it writes the same values), and only the rest counts as cached.
 */
import { BlockManager } from '../block_manager.js';
import { mulberry32, sampleToken } from '../../nn/sampling.js';
import { EngineRequestError } from '../types.js';
import type { EngineCallbacks, EngineHandle, EngineRequest, EngineStats, EngineUsage, FinishReason } from '../types.js';
import { checkQueue, validateRequest, type AdmissionLimits, type CheckedSampling } from './admission.js';
import type { StepModel, StepSequence } from './step_model.js';

/** Options of {@link Scheduler}. */
export interface SchedulerOptions {
  /** Sequences running at once (the decode batch) at most. */
  maxBatch: number;
  /** Requests waiting for admission at most; `submit` throws EngineOverloadedError beyond. */
  maxWaiting: number;
  /** Prompt tokens computed per step at most (the chunk budget). */
  maxPrefillTokensPerStep: number;
  /**
   * While sequences are decoding, tokens per step (their decodes plus prefill) at most: prefill gets what
   * the decodes leave, but at least 4 tokens, so waiting requests always progress.
   * Keeps a step that adds a prompt close to a decode step's duration, which bounds the inter-token
   * latency of the running streams. Unset: no bound beyond `maxPrefillTokensPerStep`.
   */
  maxBatchedTokens?: number;
  /** Bytes per KV block (all layers, K and V), for the block manager. */
  blockBytes: number;
}

type SeqState = 'waiting' | 'running' | 'done';

interface Seq {
  readonly req: EngineRequest;
  readonly cb: EngineCallbacks;
  readonly sampling: CheckedSampling;
  readonly rng: () => number;
  readonly stops: ReadonlySet<number>;
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  generated: number;
  /** Tokens whose keys/values are in the pool (or written by the step in flight). */
  computed: number;
  state: SeqState;
  /** Set by `cancel`/`finish`; applied between steps. */
  endRequested?: FinishReason;
  endError?: string;
  arrivedAt: number;
  admittedAt?: number;
  firstTokenAt?: number;
  cachedTokens?: number;
  preemptions: number;
}

/** What one step did, for the engine loop and tests. */
export interface StepReport {
  /** Sequences in the step. */
  batchSize: number;
  prefillTokens: number;
  decodeTokens: number;
  /** Requests admitted (for the first time) in this step. */
  admitted: string[];
  ms: number;
  /** The step compiled a new shape bucket. */
  compiled: boolean;
  /** Its name, when it did. */
  compiledShape?: string;
  /** The shape buckets the model computed the step in (when the model reports them). */
  buckets?: readonly string[];
}

const BUSY_WINDOW_MS = 5000;
/** Prompt tokens a step computes at least while sequences decode (waiting requests always progress). */
const MIN_PREFILL_CHUNK = 4;

export class Scheduler {
  readonly blocks: BlockManager;
  readonly limits: AdmissionLimits;
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private readonly byId = new Map<string, Seq>();
  /** Blocks whose keys/values are computed (see the class comment). */
  private readonly ready = new Set<number>();
  private readonly watermark: number;
  private inStep = false;
  private readonly counters = { steps: 0, prefillTokens: 0, decodeTokens: 0, preemptions: 0, lastBatchSize: 0 };
  /** Recent steps: end time and duration, for the busy fraction and throughput. */
  private recent: { end: number; ms: number; tokens: number }[] = [];
  private readonly startedAt = performance.now();
  private shapesBefore = 0;

  constructor(
    readonly model: StepModel,
    readonly opts: SchedulerOptions,
  ) {
    this.blocks = new BlockManager({ blockSize: model.blockSize, blockBytes: opts.blockBytes, budgetBytes: opts.blockBytes * model.numBlocks });
    this.limits = { contextLength: model.contextLength, vocabSize: model.vocabSize, blockSize: model.blockSize, totalBlocks: model.numBlocks };
    this.watermark = Math.floor(model.numBlocks * 0.01);
  }

  /**
   * Queue a request.
   * @throws EngineRequestError when it can never run; EngineOverloadedError when the queue is full.
   */
  submit(req: EngineRequest, cb: EngineCallbacks): EngineHandle {
    const sampling = validateRequest(req, this.limits);
    if (this.byId.has(req.id)) throw new EngineRequestError(`a request with id '${req.id}' is already queued or running`, 'id');
    checkQueue(this.waiting.length, this.opts.maxWaiting, this.retryAfterSeconds());
    const seq: Seq = {
      req,
      cb,
      sampling,
      rng: mulberry32(sampling.seed),
      stops: new Set(req.stopTokenIds),
      tokens: [...req.promptTokens],
      generated: 0,
      computed: 0,
      state: 'waiting',
      arrivedAt: performance.now(),
      preemptions: 0,
    };
    this.byId.set(req.id, seq);
    this.waiting.push(seq);
    return { cancel: () => this.requestEnd(seq, 'cancelled'), finish: () => this.requestEnd(seq, 'stop') };
  }

  /** Whether a step has anything to do. */
  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  /** Seconds until the queue likely drains enough to admit one more request (an estimate). */
  retryAfterSeconds(): number {
    const now = performance.now();
    const recent = this.recent.filter((r) => r.end > now - BUSY_WINDOW_MS);
    const tokens = recent.reduce((s, r) => s + r.tokens, 0);
    const tps = tokens / (BUSY_WINDOW_MS / 1000);
    const queued = this.waiting.reduce((s, q) => s + q.tokens.length + q.req.maxTokens - q.generated, 0);
    return tps > 0 ? Math.min(60, Math.max(1, queued / tps / Math.max(1, this.waiting.length))) : 1;
  }

  stats(): EngineStats {
    const b = this.blocks.stats();
    const now = performance.now();
    this.recent = this.recent.filter((r) => r.end > now - BUSY_WINDOW_MS);
    const window = Math.min(BUSY_WINDOW_MS, now - this.startedAt);
    const busy = this.recent.reduce((s, r) => s + Math.min(r.ms, r.end - (now - window)), 0);
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      kvBlocksTotal: b.totalBlocks,
      kvBlocksUsed: b.usedBlocks,
      kvBlocksFree: b.freeBlocks,
      lastBatchSize: this.counters.lastBatchSize,
      steps: this.counters.steps,
      prefillTokens: this.counters.prefillTokens,
      decodeTokens: this.counters.decodeTokens,
      busyFraction: window > 0 ? Math.min(1, busy / window) : 0,
      preemptions: this.counters.preemptions,
    };
  }

  /** End every request (engine shutdown): waiting and running ones finish with `reason`. */
  endAll(reason: FinishReason, error?: string): void {
    for (const s of [...this.running, ...this.waiting]) this.end(s, reason, error);
  }

  private requestEnd(seq: Seq, reason: FinishReason): void {
    if (seq.state === 'done' || seq.endRequested) return;
    seq.endRequested = reason;
    // Inside a step (a callback ending its own request) the step applies it when it is done.
    if (!this.inStep) this.applyEnds();
  }

  private applyEnds(): void {
    for (const s of [...this.running, ...this.waiting]) if (s.endRequested) this.end(s, s.endRequested, s.endError);
  }

  private usage(s: Seq): EngineUsage {
    const prompt = s.req.promptTokens.length;
    return {
      promptTokens: prompt,
      completionTokens: s.generated,
      cachedTokens: Math.min(s.cachedTokens ?? 0, prompt),
      ...(s.firstTokenAt !== undefined ? { timeToFirstTokenMs: s.firstTokenAt - s.arrivedAt } : {}),
      queueMs: (s.admittedAt ?? performance.now()) - s.arrivedAt,
      preemptions: s.preemptions,
    };
  }

  /** Finish a sequence: free its blocks, drop it from the queues, then tell the caller. */
  private end(s: Seq, reason: FinishReason, error?: string): void {
    if (s.state === 'done') return;
    if (s.state === 'running') {
      this.blocks.release(s.req.id);
      this.running.splice(this.running.indexOf(s), 1);
    } else {
      this.waiting.splice(this.waiting.indexOf(s), 1);
    }
    s.state = 'done';
    this.byId.delete(s.req.id);
    try {
      s.cb.onDone(reason, this.usage(s), error);
    } catch {
      // A failing listener must not take the engine down; there is nothing left to tell it.
    }
  }

  /** Free a running sequence's blocks and put it back at the head of the queue (recompute later). */
  private preempt(s: Seq): void {
    this.blocks.release(s.req.id);
    this.running.splice(this.running.indexOf(s), 1);
    s.state = 'waiting';
    s.computed = 0;
    s.preemptions++;
    this.counters.preemptions++;
    this.waiting.unshift(s);
  }

  /** Mark blocks fully covered by `s.computed` as holding computed keys/values. */
  private markReady(s: Seq): void {
    const table = this.blocks.seq(s.req.id).table;
    const bs = this.model.blockSize;
    for (let i = 0; (i + 1) * bs <= s.computed && i < table.length; i++) this.ready.add(table[i]!);
  }

  /** Admit `s` into the pool; returns false when it does not fit now. */
  private admit(s: Seq): boolean {
    // The watermark keeps headroom for running decodes; with none running, any fit is fine.
    if (!this.blocks.canAdmit(s.tokens, this.running.length ? this.watermark : 0)) return false;
    const sb = this.blocks.admit(s.req.id, s.tokens);
    const bs = this.model.blockSize;
    const cachedBlocks = sb.cachedTokens / bs;
    let firstUnready = cachedBlocks;
    for (let i = 0; i < cachedBlocks; i++) {
      if (!this.ready.has(sb.table[i]!)) {
        firstUnready = i;
        break;
      }
    }
    // Freshly taken blocks are about to be overwritten: whatever they held is gone.
    for (let i = cachedBlocks; i < sb.table.length; i++) this.ready.delete(sb.table[i]!);
    s.computed = firstUnready * bs;
    s.cachedTokens ??= s.computed;
    s.admittedAt ??= performance.now();
    s.state = 'running';
    return true;
  }

  /** Make room for one more token of `s`; false when `s` itself had to be preempted. */
  private reserveSlot(s: Seq): boolean {
    const id = s.req.id;
    while (!this.blocks.canAppend(id, 1)) {
      const victim = this.running[this.running.length - 1]!;
      this.preempt(victim);
      if (victim === s) return false;
    }
    const table = this.blocks.seq(id).table;
    const before = table.length;
    this.blocks.append(id, [s.tokens[s.tokens.length - 1]!]);
    for (let i = before; i < table.length; i++) this.ready.delete(table[i]!);
    return true;
  }

  /** Run one step: schedule, compute, sample. Returns undefined when there was nothing to do. */
  step(): StepReport | undefined {
    this.applyEnds();
    const t0 = performance.now();
    this.shapesBefore = this.model.compiledShapes ?? 0;
    const batch: { seq: Seq; chunk: number }[] = [];
    const admitted: string[] = [];
    let decodeTokens = 0;
    // 1. Decodes, oldest first. A sequence has a slot for every token up to `blocks.length`.
    for (const s of [...this.running]) {
      if (s.state !== 'running' || s.tokens.length - s.computed !== 1) continue;
      if (this.blocks.seq(s.req.id).length < s.tokens.length && !this.reserveSlot(s)) continue;
      batch.push({ seq: s, chunk: 1 });
      decodeTokens++;
    }
    // 2. Prefill chunks: running sequences part-way through, then admissions in arrival order.
    let budget = this.opts.maxPrefillTokensPerStep;
    const batched = this.opts.maxBatchedTokens;
    if (decodeTokens > 0 && batched !== undefined) budget = Math.min(budget, Math.max(MIN_PREFILL_CHUNK, batched - decodeTokens));
    for (const s of this.running) {
      const pending = s.tokens.length - s.computed;
      if (pending <= 1 || budget <= 0) continue;
      const chunk = Math.min(pending, budget);
      batch.push({ seq: s, chunk });
      budget -= chunk;
    }
    while (budget > 0 && this.waiting.length > 0 && this.running.length < this.opts.maxBatch) {
      const s = this.waiting[0]!;
      if (!this.admit(s)) break;
      this.waiting.shift();
      this.running.push(s);
      if (s.preemptions === 0) admitted.push(s.req.id);
      const chunk = Math.min(s.tokens.length - s.computed, budget);
      batch.push({ seq: s, chunk });
      budget -= chunk;
    }
    if (batch.length === 0) return undefined;
    const prefillTokens = batch.reduce((n, b) => n + b.chunk, 0) - decodeTokens;

    const inputs: StepSequence[] = batch.map(({ seq, chunk }) => ({
      tokens: seq.tokens.slice(seq.computed, seq.computed + chunk),
      start: seq.computed,
      blockTable: this.blocks.seq(seq.req.id).table,
      wantLogits: seq.computed + chunk === seq.tokens.length,
      greedy: seq.sampling.temperature === 0,
    }));
    this.inStep = true;
    try {
      let logits: (Float32Array | number | undefined)[];
      try {
        logits = this.model.run(inputs);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        for (const { seq } of batch) this.end(seq, 'error', `model step failed: ${msg}`);
        return this.finishStep(t0, batch.length, 0, 0, admitted);
      }
      batch.forEach(({ seq, chunk }, i) => {
        seq.computed += chunk;
        this.markReady(seq);
        const row = logits[i];
        if (row === undefined || seq.endRequested) return;
        this.accept(seq, typeof row === 'number' ? row : sampleToken(row, seq.sampling, seq.rng));
      });
    } finally {
      this.inStep = false;
    }
    this.applyEnds();
    return this.finishStep(t0, batch.length, prefillTokens, decodeTokens, admitted);
  }

  private finishStep(t0: number, batchSize: number, prefillTokens: number, decodeTokens: number, admitted: string[]): StepReport {
    const end = performance.now();
    const ms = end - t0;
    this.counters.steps++;
    this.counters.lastBatchSize = batchSize;
    this.counters.prefillTokens += prefillTokens;
    this.counters.decodeTokens += decodeTokens;
    this.recent.push({ end, ms, tokens: prefillTokens + decodeTokens });
    if (this.recent.length > 4096) this.recent = this.recent.filter((r) => r.end > end - BUSY_WINDOW_MS);
    const compiled = (this.model.compiledShapes ?? 0) > this.shapesBefore;
    const buckets = this.model.lastBuckets;
    return { batchSize, prefillTokens, decodeTokens, admitted, ms, compiled, ...(compiled && this.model.lastCompiled ? { compiledShape: this.model.lastCompiled } : {}), ...(buckets ? { buckets: [...buckets] } : {}) };
  }

  /** Emit `tok` as the next token of `s`, or end the sequence. */
  private accept(s: Seq, tok: number): void {
    if (s.stops.has(tok)) {
      s.endRequested = 'stop';
      return;
    }
    s.tokens.push(tok);
    s.generated++;
    s.firstTokenAt ??= performance.now();
    try {
      s.cb.onToken(tok);
    } catch (e) {
      this.endWithError(s, e);
      return;
    }
    if (s.generated >= s.req.maxTokens || s.tokens.length >= this.model.contextLength) s.endRequested ??= 'length';
  }

  private endWithError(s: Seq, e: unknown): void {
    s.endRequested = 'error';
    s.endError = `onToken failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}
