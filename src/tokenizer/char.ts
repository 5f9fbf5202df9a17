/**
 * The training demo's character tokenizer ({@link CharTokenizer}, one id per code point) behind the
 * common {@link Tokenizer} interface, so generation and evaluation code can take any tokenizer.
 */
import { CharTokenizer } from '../io/char_tokenizer.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './types.js';
import { utf8 } from './vocab.js';

/** {@link CharTokenizer} as a {@link Tokenizer}. It has no special tokens, so the options change nothing. */
export class CharTokenizerAdapter implements Tokenizer {
  readonly kind = 'char' as const;
  readonly bosId = undefined;
  readonly eosId = undefined;
  readonly specialTokens: ReadonlyMap<string, number> = new Map();
  private readonly index: ReadonlyMap<string, number>;

  constructor(readonly inner: CharTokenizer) {
    this.index = new Map(inner.chars.map((c, i) => [c, i]));
  }

  /** The vocabulary of `text` (see {@link CharTokenizer.fromText}). */
  static fromText(text: string): CharTokenizerAdapter {
    return new CharTokenizerAdapter(CharTokenizer.fromText(text));
  }

  /** Restore from {@link CharTokenizer.toJSON} output, as stored in a checkpoint's metadata. */
  static fromJSON(json: string): CharTokenizerAdapter {
    return new CharTokenizerAdapter(CharTokenizer.fromJSON(json));
  }

  get vocabSize(): number {
    return this.inner.vocabSize;
  }

  /** Token ids of `text`; a character outside the vocabulary is a ValueError naming it. */
  encode(text: string, _opts?: EncodeOptions): number[] {
    return this.inner.encode(text);
  }

  decode(ids: readonly number[], _opts?: DecodeOptions): string {
    return this.inner.decode(ids);
  }

  decodeBytes(ids: readonly number[], _opts?: DecodeOptions): Uint8Array {
    return utf8(this.inner.decode(ids));
  }

  tokenToId(token: string): number | undefined {
    return this.index.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.chars[id];
  }
}
