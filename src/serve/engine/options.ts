/**
 * Engine options, their defaults, and building the pieces they describe (model on a device, paged KV
 * pool sized by the memory budget, scheduler). Used by the in-process engine and inside the worker.
 */
import { basename } from 'node:path';
import { ValueError } from '../../errors.js';
import { openGGUF } from '../../io/gguf.js';
import { loadGGUFModel } from '../../models/gguf.js';
import { Llama } from '../../nn/llama.js';
import { kvBlockBytes } from '../block_manager.js';
import type { ServedModelInfo } from '../types.js';
import { logitBucket, PagedLlama, tokenBucket } from './paged_model.js';
import { Scheduler } from './scheduler.js';

/** Options of `createEngine` (see the defaults in {@link ENGINE_DEFAULTS}). */
export interface EngineOptions {
  /** Path of a GGUF model file (architecture 'llama'). */
  model: string;
  /** Device the model runs on (default 'cpu'). */
  device?: string;
  /** Memory for the paged KV cache, in bytes: the pool holds `floor(kvCacheBytes / blockBytes)` blocks. */
  kvCacheBytes: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Sequences decoded together at most (default 64); 1 serves one request at a time. */
  maxBatch?: number;
  /** Requests queued at most before `submit` throws EngineOverloadedError (default 256). */
  maxWaiting?: number;
  /** Prompt tokens prefilled per step at most, the chunk budget (default 256). */
  maxPrefillTokensPerStep?: number;
  /**
   * While sequences are decoding, tokens per step at most, decodes included (default 20): a new prompt
   * is prefilled in chunks of what the decodes leave (at least 4 tokens), so the running streams'
   * inter-token latency stays near a decode step's.
   */
  maxBatchedTokens?: number;
  /** The id clients pass as `model` (default: the GGUF's general.name, else the file name). */
  modelId?: string;
  /** Write one JSON line per step to this file (see `step_trace.ts`); unset: no trace. */
  stepTrace?: string;
}

/** Defaults of the optional {@link EngineOptions}. */
export const ENGINE_DEFAULTS = { device: 'cpu', blockSize: 16, maxBatch: 64, maxWaiting: 256, maxPrefillTokensPerStep: 256, maxBatchedTokens: 20 } as const;

export type ResolvedEngineOptions = Required<Omit<EngineOptions, 'modelId' | 'model' | 'stepTrace'>> & { modelId?: string; stepTrace?: string };

/** Apply defaults and check every size. @throws ValueError naming the option. */
export function resolveEngineOptions(o: Omit<EngineOptions, 'model'>): ResolvedEngineOptions {
  const r = {
    device: o.device ?? ENGINE_DEFAULTS.device,
    kvCacheBytes: o.kvCacheBytes,
    blockSize: o.blockSize ?? ENGINE_DEFAULTS.blockSize,
    maxBatch: o.maxBatch ?? ENGINE_DEFAULTS.maxBatch,
    maxWaiting: o.maxWaiting ?? ENGINE_DEFAULTS.maxWaiting,
    maxPrefillTokensPerStep: o.maxPrefillTokensPerStep ?? ENGINE_DEFAULTS.maxPrefillTokensPerStep,
    maxBatchedTokens: o.maxBatchedTokens ?? ENGINE_DEFAULTS.maxBatchedTokens,
    ...(o.modelId !== undefined ? { modelId: o.modelId } : {}),
    ...(o.stepTrace !== undefined ? { stepTrace: o.stepTrace } : {}),
  };
  if (!(r.kvCacheBytes > 0)) throw new ValueError(`engine: kvCacheBytes must be a positive number of bytes, got ${o.kvCacheBytes}`);
  for (const k of ['blockSize', 'maxBatch', 'maxPrefillTokensPerStep', 'maxBatchedTokens'] as const) {
    if (!(Number.isInteger(r[k]) && r[k] >= 1)) throw new ValueError(`engine: ${k} must be a positive integer, got ${r[k]}`);
  }
  if (!(Number.isInteger(r.maxWaiting) && r.maxWaiting >= 0)) throw new ValueError(`engine: maxWaiting must be a non-negative integer, got ${r.maxWaiting}`);
  return r;
}

/** A model ready to serve: the paged step, the scheduler around it, and what clients see. */
export interface ServingStack {
  info: ServedModelInfo;
  model: PagedLlama;
  scheduler: Scheduler;
}

/** What the HTTP layer needs from a GGUF file's metadata and tokenizer. */
function infoFromGGUF(path: string, loaded: ReturnType<typeof loadGGUFModel>, modelId: string | undefined): ServedModelInfo {
  const tok = loaded.tokenizer;
  const f = openGGUF(path);
  let chatTemplate: string | undefined;
  try {
    const v = f.metadata.get('tokenizer.chat_template');
    if (v && v.type === 'string') chatTemplate = v.value as string;
  } finally {
    f.close();
  }
  const eos = tok?.eosId;
  const bos = tok?.bosId;
  const cfg = (loaded.model as Llama).config;
  return {
    id: modelId ?? loaded.name ?? basename(path).replace(/\.gguf$/i, ''),
    contextLength: cfg.maxSeqLen,
    vocabSize: cfg.vocabSize,
    eosTokenIds: eos !== undefined ? [eos] : [],
    ...(chatTemplate !== undefined ? { chatTemplate } : {}),
    ...(bos !== undefined && tok?.idToToken(bos) !== undefined ? { bosToken: tok.idToToken(bos)! } : {}),
    ...(eos !== undefined && tok?.idToToken(eos) !== undefined ? { eosToken: tok.idToToken(eos)! } : {}),
  };
}

/**
 * Load the model (a GGUF path, or a Llama already built on the device) and build the paged KV pool
 * and scheduler for `opts`.
 * @throws ValueError when the budget holds no block, FormatError for an unsupported model file.
 */
export function buildServingStack(model: string | Llama, opts: ResolvedEngineOptions): ServingStack {
  let llama: Llama;
  let info: ServedModelInfo;
  if (typeof model === 'string') {
    const loaded = loadGGUFModel(model, { device: opts.device });
    if (loaded.arch !== 'llama') throw new ValueError(`engine: ${model} is a '${loaded.arch}' model; the serving engine runs 'llama' models`);
    llama = loaded.model;
    info = infoFromGGUF(model, loaded, opts.modelId);
  } else {
    llama = model;
    const c = llama.config;
    info = { id: opts.modelId ?? 'llama', contextLength: c.maxSeqLen, vocabSize: c.vocabSize, eosTokenIds: [] };
  }
  const c = llama.config;
  const blockBytes = kvBlockBytes(c.nLayer, c.nKVHead, c.dim / c.nHead, opts.blockSize);
  const numBlocks = Math.floor(opts.kvCacheBytes / blockBytes);
  if (numBlocks < 1) throw new ValueError(`engine: kvCacheBytes ${opts.kvCacheBytes} holds no KV block (${blockBytes} bytes each: ${c.nLayer} layers x ${c.nKVHead} kv heads x ${c.dim / c.nHead} x ${opts.blockSize} tokens x K,V x f32)`);
  const paged = new PagedLlama(llama, { numBlocks, blockSize: opts.blockSize });
  const scheduler = new Scheduler(paged, { maxBatch: opts.maxBatch, maxWaiting: opts.maxWaiting, maxPrefillTokensPerStep: opts.maxPrefillTokensPerStep, maxBatchedTokens: opts.maxBatchedTokens, blockBytes });
  return { info, model: paged, scheduler };
}

/**
 * Compile the smallest step (one decode token) so the first request does not pay for it, and the
 * prompt-only buckets that requests arriving together need (doubling token rows from 64 up to the
 * prefill budget's bucket, one logit row per 16 tokens, the shortest past): without them the first step
 * after an idle spell compiles whatever mix happened to arrive (seconds, with a cold kernel cache), and
 * with them `bucketFor` promotes such a step into one of these (4x cost allowed when nothing decodes).
 */
export function warmUp(model: PagedLlama, opts: Pick<ResolvedEngineOptions, 'maxPrefillTokensPerStep' | 'maxBatch'>): void {
  model.run([{ tokens: [0], start: 0, blockTable: [0], wantLogits: true }]);
  const top = tokenBucket(Math.min(opts.maxPrefillTokensPerStep, model.contextLength));
  for (let n = 64; n <= top; n *= 2) model.precompile({ tokens: n, past: model.blockSize, logits: logitBucket(Math.min(opts.maxBatch, Math.ceil(n / 16))) });
}
