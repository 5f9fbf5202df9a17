/**
 * Generated token ids → text that is safe to send: incremental detokenization that never emits half a
 * UTF-8 character, and stop strings that are never emitted, not even their first characters (the same
 * rules as `generateText` in src/models/textgen.ts, in a form that is fed one token at a time and costs
 * O(window) per token instead of re-decoding the whole completion).
 */
import { heldBackLength } from '../../models/textgen.js';
import type { Tokenizer } from '../../tokenizer/types.js';

/** Prompt tokens kept as left context, so the first generated token decodes with its leading space. */
const CONTEXT_TOKENS = 6;

/** Control tokens (BOS, end-of-turn) are not text for the client, as in vLLM and Hugging Face serving. */
const DECODE = { skipSpecial: true } as const;

/**
 * Decodes a growing token sequence piece by piece. Each step decodes a short window twice (up to the
 * last emitted token, and up to the new one) and emits the difference, so tokenizer quirks that depend
 * on neighbours (SentencePiece's dummy space, byte tokens joining into one character) come out exactly
 * as a whole-sequence decode would. A window that ends in U+FFFD waits for more bytes.
 */
export class IncrementalDetokenizer {
  private tokens: number[];
  private prefixOffset = 0;
  private readOffset: number;

  constructor(
    private readonly tokenizer: Tokenizer,
    context: readonly number[] = [],
  ) {
    this.tokens = context.slice(Math.max(0, context.length - CONTEXT_TOKENS));
    this.readOffset = this.tokens.length;
  }

  /** The new text that `token` completes ('' while a character is still incomplete). */
  push(token: number): string {
    this.tokens.push(token);
    const prefix = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset), DECODE);
    const full = this.tokenizer.decode(this.tokens.slice(this.prefixOffset), DECODE);
    if (full.length <= prefix.length || full.endsWith('\uFFFD')) return '';
    // Drop the tokens that no longer matter, so the window stays short.
    this.tokens = this.tokens.slice(this.readOffset);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
    return full.slice(prefix.length);
  }

  /** Whatever is still held back at the end (an incomplete character decodes to U+FFFD here). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset), DECODE);
    const full = this.tokenizer.decode(this.tokens.slice(this.prefixOffset), DECODE);
    this.tokens = [];
    this.prefixOffset = this.readOffset = 0;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}


/** The result of feeding one piece of text to a {@link StopStringFilter}. */
export interface FilterStep {
  /** Text that can be sent now. */
  text: string;
  /** True when a stop string was found: `text` ends right before it and nothing more may be sent. */
  stopped: boolean;
}

/**
 * Holds back text that could be the start of a stop string, and cuts the text at the first complete
 * one. Only the held-back tail needs searching: an earlier occurrence would have been found earlier.
 */
export class StopStringFilter {
  private pending = '';
  private readonly stops: readonly string[];
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(piece: string): FilterStep {
    if (this.done) return { text: '', stopped: true };
    const text = this.pending + piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.done = true;
      this.pending = '';
      return { text: text.slice(0, cut), stopped: true };
    }
    const hold = heldBackLength(text, this.stops);
    this.pending = text.slice(text.length - hold);
    return { text: text.slice(0, text.length - hold), stopped: false };
  }

  /** At the end of generation (no stop string found): the held-back text is ordinary text after all. */
  flush(): string {
    const rest = this.done ? '' : this.pending;
    this.pending = '';
    return rest;
  }
}

/**
 * One choice's token stream → client text: detokenizer plus stop-string filter. `push` returns what to
 * send and whether a stop string ended the text (then the caller asks the engine to finish).
 */
export class CompletionTextStream {
  private readonly detok: IncrementalDetokenizer;
  private readonly filter: StopStringFilter;
  private stoppedFlag = false;
  /** Everything sent so far. */
  text = '';

  constructor(tokenizer: Tokenizer, promptTokens: readonly number[], stops: readonly string[]) {
    this.detok = new IncrementalDetokenizer(tokenizer, promptTokens);
    this.filter = new StopStringFilter(stops);
  }

  /** True once a stop string was found. */
  get stopped(): boolean {
    return this.stoppedFlag;
  }

  push(token: number): FilterStep {
    if (this.stoppedFlag) return { text: '', stopped: true };
    return this.take(this.filter.push(this.detok.push(token)));
  }

  /** The rest of the text once generation ended without a stop string. */
  flush(): string {
    if (this.stoppedFlag) return '';
    const step = this.take(this.filter.push(this.detok.flush()));
    if (step.stopped) return step.text;
    const rest = this.filter.flush();
    this.text += rest;
    return step.text + rest;
  }

  private take(step: FilterStep): FilterStep {
    this.text += step.text;
    if (step.stopped) this.stoppedFlag = true;
    return step;
  }
}
