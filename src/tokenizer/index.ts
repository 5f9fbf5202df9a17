/**
 * Tokenizers: GPT-2-style byte-level BPE (from vocab.json + merges.txt, tokenizer.json or GGUF
 * metadata), SentencePiece-style BPE (from GGUF metadata), the training demo's character tokenizer,
 * and a byte-level BPE trainer. All implement {@link Tokenizer}; {@link toGGUFMetadata} and
 * {@link tokenizerFromGGUFMetadata} carry them in and out of GGUF files the way llama.cpp reads them.
 */
export { TokenType } from './types.js';
export type { Tokenizer, EncodeOptions, DecodeOptions } from './types.js';
export { ByteLevelBPE, BYTE_TO_UNICODE, BYTE_ORDER, toByteLevel } from './byte_level.js';
export type { ByteLevelBPEConfig, ByteLevelFileOptions, Normalization } from './byte_level.js';
export { SentencePieceBPE, SPM_SPACE } from './sentencepiece.js';
export type { SentencePieceConfig } from './sentencepiece.js';
export { CharTokenizerAdapter } from './char.js';
export { PreTokenizer, PRE_TOKENIZER_NAMES, GPT2_PATTERN } from './pretokenize.js';
export { MergeTable } from './bpe.js';
export { GGUF_KEYS } from './meta.js';
export type { TokenizerMetadata } from './meta.js';
export { tokenizerFromGGUFMetadata, toGGUFMetadata } from './gguf.js';
export type { TokenizerGGUFMetadata } from './gguf.js';
export { trainByteLevelBPE, saveTokenizerFiles, trainTokenizerCommand } from './train.js';
export type { TrainBPEOptions, TokenizerFiles, TrainTokenizerCommandOptions, TrainTokenizerSummary } from './train.js';
