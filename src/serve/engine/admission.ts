/**
 * What `submit` checks synchronously, before a request is queued: that it can ever run (fields, context,
 * pool), and that the waiting queue has room. Shared by the in-process scheduler and the worker client,
 * so both answer the same request the same way.
 */
import { ValueError } from '../../errors.js';
import { checkSampling } from '../../nn/sampling.js';
import { EngineOverloadedError, EngineRequestError, type EngineRequest } from '../types.js';

/** The fixed sizes a request is checked against. */
export interface AdmissionLimits {
  contextLength: number;
  vocabSize: number;
  blockSize: number;
  /** Blocks in the whole KV pool. */
  totalBlocks: number;
}

/** `checkSampling`'s result: what `sampleToken` takes. */
export type CheckedSampling = ReturnType<typeof checkSampling>;

/**
 * Check that `req` can ever run here; returns its sampling options, checked.
 * @throws EngineRequestError naming the field at fault ('id', 'prompt', 'max_tokens', 'temperature', ...).
 */
export function validateRequest(req: EngineRequest, lim: AdmissionLimits): CheckedSampling {
  if (typeof req.id !== 'string' || req.id.length === 0) throw new EngineRequestError('the request id must be a non-empty string', 'id');
  const n = req.promptTokens.length;
  if (n === 0) throw new EngineRequestError('the prompt has no tokens', 'prompt');
  for (const t of req.promptTokens) {
    if (!(Number.isInteger(t) && t >= 0 && t < lim.vocabSize)) throw new EngineRequestError(`prompt token id ${t} is outside the vocabulary [0, ${lim.vocabSize})`, 'prompt');
  }
  if (!(Number.isInteger(req.maxTokens) && req.maxTokens >= 1)) throw new EngineRequestError(`max_tokens must be a positive integer, got ${req.maxTokens}`, 'max_tokens');
  if (n >= lim.contextLength) throw new EngineRequestError(`the prompt has ${n} tokens; the model's context is ${lim.contextLength} (prompt + completion)`, 'prompt');
  if (n + req.maxTokens > lim.contextLength) {
    throw new EngineRequestError(`prompt (${n} tokens) + max_tokens (${req.maxTokens}) exceeds the model's context of ${lim.contextLength} tokens`, 'max_tokens');
  }
  const poolTokens = lim.totalBlocks * lim.blockSize;
  if (n >= poolTokens) throw new EngineRequestError(`the prompt has ${n} tokens; the KV cache holds ${poolTokens} tokens in all`, 'prompt');
  if (n + req.maxTokens > poolTokens) {
    throw new EngineRequestError(`prompt (${n} tokens) + max_tokens (${req.maxTokens}) exceeds the KV cache of ${poolTokens} tokens`, 'max_tokens');
  }
  for (const t of req.stopTokenIds) {
    if (!Number.isInteger(t)) throw new EngineRequestError(`stop token id ${t} is not an integer`, 'stop');
  }
  const s = req.sampling;
  try {
    return checkSampling({ temperature: s.temperature, topP: s.topP, topK: s.topK, seed: s.seed }, 'engine');
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    const field = ['temperature', 'topP', 'topK', 'seed'].find((f) => e.message.includes(`${f} `)) ?? 'sampling';
    throw new EngineRequestError(e.message, field === 'topP' ? 'top_p' : field === 'topK' ? 'top_k' : field);
  }
}

/**
 * Throw `EngineOverloadedError` when `waiting` requests already fill the queue.
 * @param retryAfterSeconds - the caller's estimate of when the queue drains enough.
 */
export function checkQueue(waiting: number, maxWaiting: number, retryAfterSeconds: number): void {
  if (waiting >= maxWaiting) {
    throw new EngineOverloadedError(`the engine's waiting queue is full (${waiting} of ${maxWaiting} requests); retry later`, Math.max(1, Math.ceil(retryAfterSeconds)));
  }
}
