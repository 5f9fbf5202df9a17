/**
 * One HTTP completion request as engine work: `n` engine requests (one per choice) over the same prompt,
 * their token streams turned into text (stop strings cut, never a split character), and one summary once
 * every choice has ended. The HTTP handlers decide what to send; this file only drives the engine.
 */
import type { Tokenizer } from '../../tokenizer/types.js';
import type { Engine, EngineHandle, EngineSampling, FinishReason } from '../types.js';
import { CompletionTextStream } from './stop.js';

/** What to generate. */
export interface GenerationSpec {
  /** The completion id; choice i is submitted as `${id}-${i}`. */
  id: string;
  promptTokens: readonly number[];
  maxTokens: number;
  /** Choice i samples with seed `sampling.seed + i`, so the choices differ but stay reproducible. */
  sampling: EngineSampling;
  stopTokenIds: readonly number[];
  stops: readonly string[];
  n: number;
  /** `performance.now()` when the request arrived: time to first token counts from there. */
  arrivedAt: number;
}

/** Callbacks while generating (all optional). */
export interface GenerationListener {
  /** New text of choice `index`, safe to send. */
  onText?(index: number, text: string): void;
  /** A token arrived; `gapMs` is the time since the previous token of the same choice (undefined for the first). */
  onToken?(index: number, gapMs: number | undefined): void;
}

/** How one choice ended. */
export interface ChoiceOutcome {
  index: number;
  text: string;
  /** 'stop' also when the HTTP layer's stop string ended it. */
  finishReason: FinishReason;
  /** Tokens this choice consumed: up to and including the one that completed a stop string. */
  completionTokens: number;
  error?: string;
}

/** How the whole request ended. */
export interface GenerationOutcome {
  choices: ChoiceOutcome[];
  /** The prompt's length, counted once for all choices (as OpenAI counts `n`). */
  promptTokens: number;
  /** Sum over choices of {@link ChoiceOutcome.completionTokens}. */
  completionTokens: number;
  /** Prompt tokens of the first choice served from the prefix cache. */
  cachedTokens: number;
  /** Milliseconds from arrival to the first token of any choice. */
  timeToFirstTokenMs?: number;
  /** 'error' if any choice failed, else 'cancelled' if any was cancelled, else 'stop' if all stopped, else 'length'. */
  finishReason: FinishReason;
  /** The first choice error, if any. */
  error?: string;
}

interface ChoiceState {
  index: number;
  stream: CompletionTextStream;
  handle?: EngineHandle;
  tokens: number;
  /** No more tokens are taken (stop string found, or cancelled): later ones are neither sent nor billed. */
  closed: boolean;
  lastTokenAt?: number;
  outcome?: ChoiceOutcome;
  cachedTokens: number;
}

/**
 * Drives the engine for one request. Call {@link start} once; {@link done} resolves when every submitted
 * choice has reported `onDone` (the engine has then freed its KV blocks).
 */
export class Generation {
  readonly done: Promise<GenerationOutcome>;
  private resolve!: (o: GenerationOutcome) => void;
  private readonly choices: ChoiceState[];
  private firstTokenAt?: number;
  private submitted = 0;
  private pending = 0;
  /** True while `start` is submitting: `onDone` may run synchronously inside `submit`. */
  private submitting = true;
  private resolved = false;

  constructor(
    private readonly engine: Engine,
    private readonly tokenizer: Tokenizer,
    private readonly spec: GenerationSpec,
    private readonly listener: GenerationListener = {},
  ) {
    this.done = new Promise((r) => (this.resolve = r));
    this.choices = Array.from({ length: spec.n }, (_, index) => ({
      index,
      stream: new CompletionTextStream(tokenizer, spec.promptTokens, spec.stops),
      tokens: 0,
      closed: false,
      cachedTokens: 0,
    }));
  }

  /** Choices the engine accepted (after a failed `start`, those are cancelled and {@link done} still resolves). */
  get submittedCount(): number {
    return this.submitted;
  }

  /**
   * Submit every choice. If the engine refuses one (overloaded, never fits), the ones already accepted
   * are cancelled and the engine's error is rethrown.
   */
  start(): void {
    const { spec } = this;
    try {
      for (const c of this.choices) {
        this.pending++;
        try {
          c.handle = this.engine.submit(
            {
              id: `${spec.id}-${c.index}`,
              promptTokens: spec.promptTokens,
              maxTokens: spec.maxTokens,
              sampling: { ...spec.sampling, seed: spec.sampling.seed + c.index },
              stopTokenIds: spec.stopTokenIds,
            },
            { onToken: (t) => this.onToken(c, t), onDone: (reason, usage, error) => this.onDone(c, reason, usage.cachedTokens, error) },
          );
        } catch (e) {
          this.pending--;
          throw e;
        }
        this.submitted++;
      }
    } catch (e) {
      this.cancel();
      // Only the accepted choices will report; the rest never ran.
      this.choices.length = this.submitted;
      this.submitting = false;
      if (this.submitted > 0) this.maybeFinish();
      throw e;
    }
    this.submitting = false;
    this.maybeFinish();
  }

  /** Stop every choice still running (client gone, server shutting down). */
  cancel(): void {
    for (const c of this.choices) {
      if (c.outcome || c.closed) continue;
      c.closed = true;
      c.handle?.cancel();
    }
  }

  private onToken(c: ChoiceState, token: number): void {
    if (c.closed || c.outcome) return;
    const now = performance.now();
    this.firstTokenAt ??= now;
    this.listener.onToken?.(c.index, c.lastTokenAt === undefined ? undefined : now - c.lastTokenAt);
    c.lastTokenAt = now;
    c.tokens++;
    const step = c.stream.push(token);
    if (step.text) this.listener.onText?.(c.index, step.text);
    if (step.stopped) {
      c.closed = true;
      c.handle?.finish();
    }
  }

  private onDone(c: ChoiceState, reason: FinishReason, cachedTokens: number, error: string | undefined): void {
    if (c.outcome) return;
    if (reason !== 'cancelled' && reason !== 'error') {
      const rest = c.stream.flush();
      if (rest) this.listener.onText?.(c.index, rest);
    }
    const finishReason: FinishReason = c.stream.stopped && reason !== 'error' ? 'stop' : reason;
    c.closed = true;
    c.cachedTokens = cachedTokens;
    c.outcome = { index: c.index, text: c.stream.text, finishReason, completionTokens: c.tokens, ...(error !== undefined ? { error } : {}) };
    this.pending--;
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.submitting || this.pending > 0 || this.resolved) return;
    this.resolved = true;
    const outs = this.choices.map((c) => c.outcome!);
    const reasons = outs.map((o) => o.finishReason);
    const finishReason: FinishReason = reasons.includes('error') ? 'error' : reasons.includes('cancelled') ? 'cancelled' : reasons.every((r) => r === 'stop') ? 'stop' : 'length';
    const error = outs.find((o) => o.error !== undefined)?.error;
    this.resolve({
      choices: outs,
      promptTokens: this.spec.promptTokens.length,
      completionTokens: outs.reduce((a, o) => a + o.completionTokens, 0),
      cachedTokens: this.choices[0]?.cachedTokens ?? 0,
      ...(this.firstTokenAt !== undefined ? { timeToFirstTokenMs: this.firstTokenAt - this.spec.arrivedAt } : {}),
      finishReason,
      ...(error !== undefined ? { error } : {}),
    });
  }
}
