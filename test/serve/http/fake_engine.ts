/**
 * A scripted {@link Engine} for the HTTP tests: each request "generates" the tokens its script gives,
 * one per tick (setImmediate, or a timer of `delayMs`), honouring maxTokens, stop token ids, finish and
 * cancel, and records what it was asked so tests can check prompts, cancellations and overloads.
 */
import { EngineOverloadedError, EngineRequestError, type Engine, type EngineCallbacks, type EngineHandle, type EngineRequest, type EngineStats, type FinishReason, type ServedModelInfo, type StepTiming } from '../../../src/serve/types.js';

export interface FakeEngineOptions {
  model?: Partial<ServedModelInfo>;
  /** The tokens generated for a request (default: the bytes of "Hello, world! " over and over). */
  script?: (req: EngineRequest) => number[];
  /** Milliseconds between tokens (default 0: one token per setImmediate). */
  delayMs?: number;
  /** Tokens still delivered after `finish`/`cancel`, as a worker with tokens in flight would (default 0). */
  lagTokens?: number;
  /** Prompt tokens reported as served from the prefix cache. */
  cachedTokens?: number;
}

const HELLO = [...new TextEncoder().encode('Hello, world! ')];

/** What happened to one submitted request. */
export interface FakeRun {
  req: EngineRequest;
  emitted: number;
  cancelled: boolean;
  finished: boolean;
  reason?: FinishReason;
}

export class FakeEngine implements Engine {
  readonly model: ServedModelInfo;
  readonly runs: FakeRun[] = [];
  /** When set, `submit` throws this (overload, or a request that can never run). */
  refuse: EngineOverloadedError | EngineRequestError | undefined;
  /** Refuse only after this many accepted submits (to test a refusal in the middle of n choices). */
  refuseAfter = 0;
  /** When set, a request fails with this error after that many tokens. */
  failAfter: { tokens: number; error: string } | undefined;
  isReady = true;
  closed = false;

  constructor(private readonly opts: FakeEngineOptions = {}) {
    this.model = { id: 'tiny-llama', contextLength: 128, vocabSize: 260, eosTokenIds: [257], bosToken: '<s>', eosToken: '</s>', ...opts.model };
  }

  get running(): number {
    return this.runs.filter((r) => r.reason === undefined).length;
  }

  submit(req: EngineRequest, cb: EngineCallbacks): EngineHandle {
    if (this.refuse && this.runs.length >= this.refuseAfter) throw this.refuse;
    const run: FakeRun = { req, emitted: 0, cancelled: false, finished: false };
    this.runs.push(run);
    const tokens = (this.opts.script ?? (() => Array.from({ length: req.maxTokens }, (_, i) => HELLO[i % HELLO.length]!)))(req);
    const start = performance.now();
    let ttft: number | undefined;
    let lag = this.opts.lagTokens ?? 0;
    const end = (reason: FinishReason, error?: string) => {
      run.reason = reason;
      cb.onDone(reason, { promptTokens: req.promptTokens.length, completionTokens: run.emitted, cachedTokens: this.opts.cachedTokens ?? 0, queueMs: 0, preemptions: 0, ...(ttft !== undefined ? { timeToFirstTokenMs: ttft } : {}) }, error);
    };
    const tick = () => {
      if (run.cancelled || run.finished) {
        if (lag-- <= 0) return end(run.cancelled ? 'cancelled' : 'stop');
      }
      if (this.failAfter && run.emitted >= this.failAfter.tokens) return end('error', this.failAfter.error);
      if (run.emitted >= req.maxTokens) return end('length');
      const t = tokens[run.emitted];
      if (t === undefined || req.stopTokenIds.includes(t)) return end('stop');
      run.emitted++;
      ttft ??= performance.now() - start;
      cb.onToken(t);
      schedule();
    };
    const schedule = () => (this.opts.delayMs ? setTimeout(tick, this.opts.delayMs) : setImmediate(tick));
    schedule();
    return {
      cancel: () => {
        run.cancelled = true;
      },
      finish: () => {
        run.finished = true;
      },
    };
  }

  private readonly stepListeners = new Set<(s: StepTiming) => void>();
  onStep(listener: (s: StepTiming) => void): () => void {
    this.stepListeners.add(listener);
    return () => this.stepListeners.delete(listener);
  }
  /** Report a step to the listeners (as the real engine does after each model call). */
  emitStep(s: StepTiming): void {
    for (const l of this.stepListeners) l(s);
  }

  stats(): EngineStats {
    const running = this.running;
    return { running, waiting: 0, kvBlocksTotal: 64, kvBlocksUsed: running * 2, kvBlocksFree: 64 - running * 2, lastBatchSize: running, steps: 7, prefillTokens: 11, decodeTokens: 13, busyFraction: 0.25, preemptions: 0 };
  }

  ready(): boolean {
    return this.isReady;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.runs) r.cancelled = true;
  }
}
