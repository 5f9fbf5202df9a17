/**
 * The interface every tokenizer here implements, and llama.cpp's token types. A model only ever sees
 * token ids; the tokenizer owns the mapping between text (as UTF-8 bytes) and those ids.
 */

/**
 * Token types as stored in GGUF's `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`), with
 * the same numbers, so metadata round-trips without a translation table.
 */
export const TokenType = {
  Undefined: 0,
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;
export type TokenType = (typeof TokenType)[keyof typeof TokenType];

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /**
   * Add the tokens the tokenizer's configuration puts around a sequence (BOS and/or EOS; for GPT-2
   * style vocabularies usually none). Default true, as in llama.cpp and Hugging Face.
   */
  addSpecial?: boolean;
  /**
   * Recognise control tokens written in the text (`<|endoftext|>`, `<s>`) as their single ids.
   * Default false: they are encoded as ordinary text, so untrusted input cannot forge them (llama.cpp's
   * `parse_special`). User-defined tokens are always recognised, as in llama.cpp and Hugging Face.
   */
  parseSpecial?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out control, unknown and unused tokens instead of writing their text. Default false. */
  skipSpecial?: boolean;
}

/**
 * A tokenizer: text to token ids and back.
 *
 * `decode(encode(s, { addSpecial: false }))` gives back `s` exactly for every well-formed string (the
 * SentencePiece tokenizer excepts U+2581, which it uses for spaces). Decoding works on bytes: ids whose
 * tokens split a character are joined before the bytes become text, so a sequence cut in the middle of
 * a character decodes to U+FFFD only where the bytes really are incomplete.
 */
export interface Tokenizer {
  /** Which algorithm: GPT-2 byte-level BPE, SentencePiece-style BPE, or one token per character. */
  readonly kind: 'byte-bpe' | 'spm' | 'char';
  /** Number of ids; valid ids are `0 .. vocabSize - 1`. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, if the vocabulary has one. */
  readonly bosId: number | undefined;
  /** End-of-sequence id, if the vocabulary has one. */
  readonly eosId: number | undefined;
  /** Control, user-defined and unknown tokens by their text (what `parseSpecial` can match). */
  readonly specialTokens: ReadonlyMap<string, number>;
  /** Token ids of `text`. */
  encode(text: string, opts?: EncodeOptions): number[];
  /** The text of `ids`. Throws a ValueError for an id outside the vocabulary. */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** The exact bytes of `ids` (what {@link decode} turns into text). */
  decodeBytes(ids: readonly number[], opts?: DecodeOptions): Uint8Array;
  /** The id of a token given its vocabulary text (as stored: `Ġthe` for GPT-2, `▁the` for SentencePiece). */
  tokenToId(token: string): number | undefined;
  /** The vocabulary text of an id (as stored), or undefined outside the vocabulary. */
  idToToken(id: number): string | undefined;
}
