/**
 * The contract between the serving layers: the HTTP front end (src/serve/http/), the continuous-batching
 * engine (src/serve/engine/) and the usage ledger (src/serve/ledger/). Each layer depends on these types
 * only, so each can be tested alone (the HTTP layer against a scripted engine, the engine without HTTP).
 *
 * Token ids cross the boundary, never text: the HTTP layer tokenizes prompts, applies chat templates,
 * detokenizes streamed tokens and checks stop strings; the engine schedules tokens.
 */

/** Sampling parameters of one request, already validated by the HTTP layer. */
export interface EngineSampling {
  /** 0 means greedy. */
  temperature: number;
  /** 1 means off. */
  topP: number;
  topK?: number;
  /** Seed of this request's sampler; equal seeds give equal outputs for equal prompts. */
  seed: number;
}

/** One generation request as the engine sees it. */
export interface EngineRequest {
  /** Unique per request (the HTTP layer's completion id plus choice index). */
  id: string;
  promptTokens: readonly number[];
  /** Completion tokens at most (the engine stops with reason 'length' there). */
  maxTokens: number;
  sampling: EngineSampling;
  /** Token ids that end the sequence (end-of-sequence); the stop token itself is not emitted. */
  stopTokenIds: readonly number[];
}

/** Why a sequence ended. 'stop': a stop token (or the HTTP layer's stop string via `finish`). */
export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

/** Token accounting of one finished request: what the ledger records and `usage` reports. */
export interface EngineUsage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the prefix cache (not recomputed). */
  cachedTokens: number;
  /** Milliseconds from submit to the first generated token (undefined if none was generated). */
  timeToFirstTokenMs?: number;
  /** Milliseconds spent queued before admission. */
  queueMs: number;
  /** Times the sequence was preempted (its KV blocks freed and later recomputed). */
  preemptions: number;
}

export interface EngineCallbacks {
  /** One generated token, in order. Not called for a stop token. */
  onToken(token: number): void;
  /** Called exactly once, after the last `onToken`. The sequence's KV blocks are already freed. */
  onDone(reason: FinishReason, usage: EngineUsage, error?: string): void;
}

/** A submitted request. */
export interface EngineHandle {
  /** Stop generating (client gone): frees the KV blocks; `onDone` follows with 'cancelled'. */
  cancel(): void;
  /** End normally (a stop string was found by the HTTP layer): `onDone` follows with 'stop'. */
  finish(): void;
}

/** Thrown by `submit` (synchronously) when the request cannot be queued; maps to HTTP 503 + Retry-After. */
export class EngineOverloadedError extends Error {
  constructor(
    message: string,
    /** Seconds after which a retry is likely to be admitted. */
    readonly retryAfterSeconds: number,
  ) {
    super(message);
    this.name = 'EngineOverloadedError';
  }
}

/** Thrown by `submit` when a request can never run (prompt + max tokens over the context or the pool); maps to HTTP 400. */
export class EngineRequestError extends Error {
  constructor(
    message: string,
    /** The request field at fault, e.g. 'prompt' or 'max_tokens'. */
    readonly field: string,
  ) {
    super(message);
    this.name = 'EngineRequestError';
  }
}

/** A snapshot for /metrics and /ready. */
export interface EngineStats {
  running: number;
  waiting: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  /** Sequences in the last decode step. */
  lastBatchSize: number;
  /** Steps run, and tokens processed (prefill and decode) since start. */
  steps: number;
  prefillTokens: number;
  decodeTokens: number;
  /** Fraction of wall time the engine spent computing over the last few seconds (a utilisation proxy). */
  busyFraction: number;
  preemptions: number;
}

/** What the HTTP layer needs from the model being served. */
export interface ServedModelInfo {
  /** The id clients pass as `model`. */
  id: string;
  /** Longest prompt + completion, in tokens. */
  contextLength: number;
  vocabSize: number;
  /** End-of-sequence token ids. */
  eosTokenIds: readonly number[];
  /** Jinja chat template from the model file, if it has one. */
  chatTemplate?: string;
  bosToken?: string;
  eosToken?: string;
}

/** How long one engine step took and what it computed (for metrics). */
export interface StepTiming {
  ms: number;
  prefillTokens: number;
  decodeTokens: number;
  /** Sequences in the step. */
  batchSize: number;
  /** The step compiled a shape bucket it had not seen before (compilation is in `ms`). */
  compiled: boolean;
  /** That bucket's name (e.g. `mixed:32x128x24`: token rows, past slots, logit rows). */
  compiledShape?: string;
}

/** The engine as the HTTP layer uses it; implemented on the main thread by a proxy to the worker. */
export interface Engine {
  /** Listen to every step's timing; returns the unsubscribe function. */
  onStep?(listener: (s: StepTiming) => void): () => void;
  readonly model: ServedModelInfo;
  /** @throws EngineOverloadedError when the waiting queue is full; EngineRequestError when it can never fit. */
  submit(req: EngineRequest, cb: EngineCallbacks): EngineHandle;
  stats(): EngineStats;
  /** True once the model is loaded and the first step compiled. */
  ready(): boolean;
  /** Stop accepting requests, cancel running ones, release the worker. */
  close(): Promise<void>;
}

// ---- tenants, keys, usage: implemented by src/serve/ledger/, used by the HTTP layer ----

/** Per-tenant limits; undefined means unlimited. */
export interface TenantLimits {
  requestsPerMinute?: number;
  /** Prompt + completion tokens per minute. */
  tokensPerMinute?: number;
}

export interface Tenant {
  id: string;
  name: string;
  /** Admins may read every tenant's usage (`GET /v1/usage?tenant=all`). */
  admin: boolean;
  limits: TenantLimits;
}

/** The result of authenticating an API key. */
export interface Principal {
  tenant: Tenant;
  keyId: string;
}

/** One finished request, as written to the ledger in the transaction that finalises it. */
export interface UsageRecord {
  /** Unique; recording the same id twice is a no-op (never double-counted). */
  requestId: string;
  tenantId: string;
  keyId: string;
  model: string;
  endpoint: '/v1/completions' | '/v1/chat/completions';
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** HTTP status the client got (200 for a completed stream). */
  status: number;
  finishReason: FinishReason;
  /** Epoch milliseconds when the request arrived. */
  startedAt: number;
  durationMs: number;
  timeToFirstTokenMs?: number;
}

/** Totals over a time range, per tenant and model, with the cost from the price table. */
export interface UsageSummaryRow {
  tenantId: string;
  tenantName: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** In the price table's currency, rounded to 6 decimals. */
  cost: number;
}

export interface Ledger {
  /** The principal for a presented key (compared by hash), or undefined for an unknown or revoked key. */
  authenticate(apiKey: string): Principal | undefined;
  /**
   * Write one usage record durably (one transaction; WAL). Idempotent on `requestId`. May return a
   * promise (a writer thread): the record is durable once it resolves; a rejection means it failed.
   */
  record(r: UsageRecord): unknown;
  /** Usage in [from, to) epoch ms, for one tenant or (tenantId undefined) all tenants. */
  summary(q: { from: number; to: number; tenantId?: string }): UsageSummaryRow[];
  close(): void | Promise<void>;
}
