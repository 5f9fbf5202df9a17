/**
 * `nn`: modules, layers, the GPT model and stateless functions (`F`).
 * @packageDocumentation
 */
/** Stateless functions: crossEntropy, mseLoss, layerNorm, rmsNorm, dropout, embedding, linear, gelu. */
export * as F from './functional.js';
export { crossEntropy, mseLoss, layerNorm, rmsNorm, dropout, embedding, linear, gelu } from './functional.js';
export type { CrossEntropyOptions, Reduction } from './functional.js';
export { Module, ModuleList, asParameter } from './module.js';
export type { LoadStateDictOptions, LoadStateDictResult } from './module.js';
export { Linear, Embedding, LayerNorm, RMSNorm, Dropout, GELU, uniformInit, normalInit } from './layers.js';
export type { LinearOptions, EmbeddingOptions, NormOptions } from './layers.js';
export { GPT, Block, CausalSelfAttention, MLP } from './gpt.js';
export type { GPTConfig, GenerateOptions } from './gpt.js';
export { Llama, LlamaBlock, LlamaAttention, LlamaMLP, KVCache, applyRope, ropeInvFreq, ropeTables, checkLlamaConfig } from './llama.js';
export type { LlamaConfig, LlamaGenerateOptions, RopeScaling, ResolvedLlamaConfig } from './llama.js';
export { sampleToken, checkSampling } from './sampling.js';
export type { SamplingOptions } from './sampling.js';
