/**
 * What the HTTP handlers share: the engine, the ledger, the tokenizer, limits, metrics and the set of
 * requests in flight (so a shutdown can cancel them).
 */
import type { Tokenizer } from '../../tokenizer/types.js';
import type { Engine, Ledger, Principal, Tenant } from '../types.js';
import type { Generation } from './generation.js';
import type { ServeMetrics } from './metrics.js';

/** The ledger's per-tenant rate limiter (src/serve/ledger/rate_limit.ts), as the HTTP layer uses it. */
export interface RateLimiter {
  /** May `tenant` start a request estimated at `estimatedTokens` (prompt + max completion) now? */
  check(tenant: Tenant, estimatedTokens: number): { ok: true; ticket?: number } | { ok: false; retryAfterSeconds: number; limit: string };
  /**
   * The tokens an admitted request really used (prompt + completion; 0 if it never ran), replacing the
   * estimate reserved under `ticket`.
   */
  commit(tenantId: string, tokens: number, ticket?: number): void;
}

/** Request limits of the server. */
export interface ServeLimits {
  /** Longest prompt accepted, in tokens (default: the model's context length). */
  maxPromptTokens?: number;
  /** `max_tokens` when a request gives none (default 1024, and never past the context). */
  maxTokensDefault?: number;
  /** Largest `n` (default 8). */
  maxN?: number;
}

/** {@link ServeLimits} with every default filled in. */
export type ResolvedLimits = Required<ServeLimits>;

export function resolveLimits(limits: ServeLimits, contextLength: number): ResolvedLimits {
  return {
    maxPromptTokens: Math.min(limits.maxPromptTokens ?? contextLength, contextLength),
    maxTokensDefault: limits.maxTokensDefault ?? 1024,
    maxN: limits.maxN ?? 8,
  };
}

/** A request being generated, as the shutdown path sees it. */
export interface InFlight {
  generation: Generation;
  /** Cancel because the server is stopping (recorded as 503, not as a client disconnect). */
  shutdown(): void;
}

export interface ServeContext {
  engine: Engine;
  ledger: Ledger;
  tokenizer: Tokenizer;
  rateLimiter?: RateLimiter;
  limits: ResolvedLimits;
  metrics: ServeMetrics;
  inFlight: Set<InFlight>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on /v1 routes. */
    principal: Principal | null;
    /** The status a usage record got, when it differs from the HTTP status (499 after a disconnect). */
    recordedStatus: number | null;
  }
}
