/**
 * Tokenizers to and from GGUF metadata, the `tokenizer.ggml.*` keys llama.cpp reads, with the value
 * types it checks (tokens and merges string arrays, scores f32, token types i32, ids u32), so a model
 * Tessera exports carries a tokenizer llama.cpp tokenizes with exactly as Tessera does.
 */
import type { GGUFValue } from '../io/gguf.js';
import { FormatError, ValueError } from '../errors.js';
import { ByteLevelBPE } from './byte_level.js';
import { CharTokenizerAdapter } from './char.js';
import { GGUF_KEYS, MetaReader, type TokenizerMetadata } from './meta.js';
import { PRE_TOKENIZER_NAMES, PreTokenizer } from './pretokenize.js';
import { SentencePieceBPE, SPM_SPACE } from './sentencepiece.js';
import { TokenType, type Tokenizer } from './types.js';

/** GGUF metadata entries of a tokenizer, each with its GGUF type; pass them to the GGUF writer. */
export type TokenizerGGUFMetadata = Record<string, GGUFValue>;

/**
 * The tokenizer GGUF metadata describes, by `tokenizer.ggml.model`: 'gpt2' is byte-level BPE,
 * 'llama' is SentencePiece-style BPE.
 *
 * @param meta - `GGUFFile.metadata`, or a map/record of key -> value (plain or `{ type, value }`).
 * @param label - names the source in error messages (e.g. the file path).
 * @throws FormatError naming the key when one is missing, mistyped or inconsistent, or the model is
 *   another kind (bert, t5, rwkv, ...).
 */
export function tokenizerFromGGUFMetadata(meta: TokenizerMetadata, label = 'GGUF metadata'): ByteLevelBPE | SentencePieceBPE {
  const model = new MetaReader(meta, label).requireString(GGUF_KEYS.model);
  if (model === 'gpt2') return ByteLevelBPE.fromGGUFMetadata(meta, label);
  if (model === 'llama') return SentencePieceBPE.fromGGUFMetadata(meta, label);
  throw new FormatError(`${label}: '${GGUF_KEYS.model}' is '${model}'; supported tokenizer models are 'gpt2' and 'llama'`);
}

const str = (value: string): GGUFValue => ({ type: 'string', value });
const strs = (value: string[]): GGUFValue => ({ type: 'array', elementType: 'string', value });
const u32 = (value: number): GGUFValue => ({ type: 'u32', value });
const bool = (value: boolean): GGUFValue => ({ type: 'bool', value });
const i32s = (value: ArrayLike<number>): GGUFValue => ({ type: 'array', elementType: 'i32', value: Int32Array.from(value) });
const f32s = (value: ArrayLike<number>): GGUFValue => ({ type: 'array', elementType: 'f32', value: Float32Array.from(value) });

function ids(out: TokenizerGGUFMetadata, t: { bosId?: number; eosId?: number; unkId?: number; padId?: number }): void {
  if (t.bosId !== undefined) out[GGUF_KEYS.bosId] = u32(t.bosId);
  if (t.eosId !== undefined) out[GGUF_KEYS.eosId] = u32(t.eosId);
  if (t.unkId !== undefined) out[GGUF_KEYS.unkId] = u32(t.unkId);
  if (t.padId !== undefined) out[GGUF_KEYS.padId] = u32(t.padId);
}

/**
 * The `tokenizer.ggml.*` metadata of a tokenizer, typed for the GGUF writer.
 *
 * Byte-level BPE becomes model 'gpt2' with its pre-tokenizer's llama.cpp name; SentencePiece BPE
 * becomes 'llama'. The character tokenizer becomes a 'llama' vocabulary of single characters (space
 * as '▁', zero scores, no dummy prefix, no BOS), on which llama.cpp's merge loop finds nothing to
 * merge, so it tokenizes one id per character like the original.
 *
 * @throws ValueError when the tokenizer cannot be expressed: a byte-level BPE with a custom
 *   (non-llama.cpp) pre-tokenizer, or a character vocabulary containing '▁' itself.
 */
export function toGGUFMetadata(tok: Tokenizer): TokenizerGGUFMetadata {
  const out: TokenizerGGUFMetadata = {};
  if (tok instanceof ByteLevelBPE) {
    const presetPatterns = PRE_TOKENIZER_NAMES.includes(tok.pre.name) ? PreTokenizer.preset(tok.pre.name).patterns : undefined;
    const same = presetPatterns?.length === tok.pre.patterns.length && presetPatterns.every((p, i) => p === tok.pre.patterns[i]);
    const pre = same ? tok.pre.name : PreTokenizer.presetNameFor(tok.pre.patterns, tok.ignoreMerges);
    if (pre === undefined) {
      throw new ValueError(
        `toGGUFMetadata: pre-tokenizer '${tok.pre.name}' (${JSON.stringify(tok.pre.patterns)}) has no llama.cpp 'tokenizer.ggml.pre' name`,
      );
    }
    out[GGUF_KEYS.model] = str('gpt2');
    out[GGUF_KEYS.pre] = str(pre);
    out[GGUF_KEYS.tokens] = strs([...tok.vocab.texts]);
    out[GGUF_KEYS.tokenType] = i32s(tok.vocab.types);
    out[GGUF_KEYS.merges] = strs(tok.mergeStrings());
    ids(out, tok);
    out[GGUF_KEYS.addBos] = bool(tok.addBos);
    out[GGUF_KEYS.addEos] = bool(tok.addEos);
    return out;
  }
  if (tok instanceof SentencePieceBPE) {
    out[GGUF_KEYS.model] = str('llama');
    out[GGUF_KEYS.tokens] = strs([...tok.vocab.texts]);
    out[GGUF_KEYS.scores] = f32s(tok.scores);
    out[GGUF_KEYS.tokenType] = i32s(tok.vocab.types);
    ids(out, tok);
    out[GGUF_KEYS.addBos] = bool(tok.addBos);
    out[GGUF_KEYS.addEos] = bool(tok.addEos);
    out[GGUF_KEYS.addSpacePrefix] = bool(tok.addSpacePrefix);
    return out;
  }
  if (tok instanceof CharTokenizerAdapter) {
    const chars = tok.inner.chars;
    if (chars.includes(SPM_SPACE)) {
      throw new ValueError(`toGGUFMetadata: the character vocabulary contains '${SPM_SPACE}' (U+2581), which llama.cpp reads as a space`);
    }
    out[GGUF_KEYS.model] = str('llama');
    out[GGUF_KEYS.tokens] = strs(chars.map((c) => (c === ' ' ? SPM_SPACE : c)));
    out[GGUF_KEYS.scores] = f32s(new Float32Array(chars.length));
    out[GGUF_KEYS.tokenType] = i32s(new Int32Array(chars.length).fill(TokenType.Normal));
    out[GGUF_KEYS.addBos] = bool(false);
    out[GGUF_KEYS.addEos] = bool(false);
    out[GGUF_KEYS.addSpacePrefix] = bool(false);
    return out;
  }
  throw new ValueError(`toGGUFMetadata: unsupported tokenizer kind '${tok.kind}'`);
}
