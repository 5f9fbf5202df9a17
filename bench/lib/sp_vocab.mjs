/**
 * The programmatic SentencePiece vocabulary of the random-weight benchmark Llamas (bench/llm_decode.mjs,
 * bench/serve_load.mjs): <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then filler tokens
 * `tokN`, zero scores, so that llama.cpp loads the exported GGUF; and prompts drawn from the filler range.
 */

/** Ids below this are special or byte tokens. */
export const SPECIAL_AND_BYTE_TOKENS = 3 + 256;

/** A SentencePieceBPE of `vocabSize` tokens, built with the given tokenizer module of dist/. */
export function benchVocabulary({ SentencePieceBPE, TokenType }, vocabSize) {
  const tokens = ['<unk>', '<s>', '</s>'];
  const tokenTypes = [TokenType.Unknown, TokenType.Control, TokenType.Control];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    tokenTypes.push(TokenType.Byte);
  }
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`tok${i}`);
    tokenTypes.push(TokenType.Normal);
  }
  return new SentencePieceBPE({ tokens, scores: new Float32Array(tokens.length), tokenTypes });
}

/** `n` deterministic prompt ids in the filler range (xorshift32 from `seed`). */
export function promptIds(n, seed, vocabSize) {
  let s = seed >>> 0 || 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out.push(SPECIAL_AND_BYTE_TOKENS + ((s >>> 0) % (vocabSize - SPECIAL_AND_BYTE_TOKENS)));
  }
  return out;
}
