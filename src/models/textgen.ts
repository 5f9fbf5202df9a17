import { ValueError } from '../errors.js';
import type { SamplingOptions } from '../nn/sampling.js';
import { tensor } from '../tensor/tensor.js';
import type { Tokenizer } from '../tokenizer/types.js';
import type { LanguageModel } from './gguf.js';

/** Options of {@link generateText}. */
export interface GenerateTextOptions extends SamplingOptions {
  /** Tokens to generate at most (default 64). */
  maxTokens?: number;
  /** Strings that end the generation; the text stops before the first one found (not included). */
  stop?: readonly string[];
  /** Called with each new piece of text as soon as it cannot be part of a stop string or a split character. */
  onText?: (piece: string) => void;
}

/** What {@link generateText} produced. */
export interface GeneratedText {
  text: string;
  /** Tokens generated (including those of a stop string, excluding an end-of-sequence token). */
  tokens: number[];
  promptTokens: number;
  /** 'stop': a stop string or the end-of-sequence token; 'length': maxTokens (or the context) reached. */
  finishReason: 'stop' | 'length';
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
export function heldBackLength(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/**
 * Continue `prompt` with a language model and its tokenizer: encode, generate (Llama: KV cache and a
 * jitted decode step; GPT-2: a forward per token), decode. Stop strings end the text before their first
 * occurrence; streamed pieces (`onText`) never include text that later turns out to be a stop string's
 * start or an incomplete UTF-8 character.
 */
export function generateText(lm: LanguageModel, tok: Tokenizer, prompt: string, opts: GenerateTextOptions = {}): GeneratedText {
  const maxTokens = opts.maxTokens ?? 64;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) throw new ValueError(`generateText: maxTokens must be a non-negative integer, got ${opts.maxTokens}`);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const ids = tok.encode(prompt);
  if (ids.length === 0) throw new ValueError('generateText: the prompt encodes to no tokens');
  const eos = tok.eosId;
  const out: number[] = [];
  let emitted = 0;
  let finish: GeneratedText['finishReason'] = 'length';
  let final: string | undefined;
  /** Handle one token; false ends the generation. */
  const push = (id: number): boolean => {
    if (id === eos) {
      finish = 'stop';
      return false;
    }
    out.push(id);
    const text = tok.decode(out);
    const cut = stops.length ? Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0)) : Infinity;
    if (cut !== Infinity) {
      final = text.slice(0, cut);
      finish = 'stop';
      if (opts.onText && final.length > emitted) opts.onText(final.slice(emitted));
      emitted = final.length;
      return false;
    }
    if (opts.onText) {
      let safe = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
      safe = safe.slice(0, safe.length - heldBackLength(safe, stops));
      if (safe.length > emitted) {
        opts.onText(safe.slice(emitted));
        emitted = safe.length;
      }
    }
    return true;
  };
  const sampling: SamplingOptions = { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, minP: opts.minP, repetitionPenalty: opts.repetitionPenalty, seed: opts.seed };
  if (lm.arch === 'llama') {
    let going = true;
    lm.model.generate([ids], { ...sampling, maxNewTokens: maxTokens, onToken: (id) => (going = going && push(id)) });
  } else {
    const device = lm.model.wte.weight.device;
    const all = lm.model.generate(tensor(ids, { dtype: 'i32', shape: [1, ids.length], device }), maxTokens, { temperature: opts.temperature, topK: opts.topK, seed: opts.seed });
    for (const id of Array.from(all.dataSync()).slice(ids.length)) if (!push(id)) break;
    all.dispose();
  }
  const text = final ?? tok.decode(out);
  if (opts.onText && text.length > emitted) opts.onText(text.slice(emitted));
  return { text, tokens: out, promptTokens: ids.length, finishReason: finish };
}
