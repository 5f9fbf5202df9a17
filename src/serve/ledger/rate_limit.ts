/**
 * Per-tenant rate limits (requests per minute, tokens per minute) over a sliding 60-second window,
 * in memory: one process serves, and a restart forgetting the last minute is harmless.
 *
 * A request is admitted against the window plus the tokens of requests still running (their estimate,
 * reserved at admission), so a burst of concurrent requests cannot all pass before any has finished;
 * `commit` then replaces the estimate with the tokens actually used.
 */
import type { Tenant } from '../types.js';

/** The limiter's decision; a refusal maps to HTTP 429 with `Retry-After: retryAfterSeconds`. */
export type RateLimitDecision =
  | { ok: true; /** Pass to `commit` to release exactly this request's reservation. */ ticket: number }
  | { ok: false; retryAfterSeconds: number; limit: 'requests_per_minute' | 'tokens_per_minute' };

export interface RateLimiterOptions {
  /** Milliseconds clock (default Date.now); tests inject a fake one. */
  now?: () => number;
  /** Window length in ms (default 60 000). */
  windowMs?: number;
}

interface TenantWindow {
  /** Admission times of the requests in the window, ascending. */
  requests: number[];
  /** Committed token usage in the window: [time, tokens], ascending by time. */
  tokens: [number, number][];
  tokenSum: number;
  /** Estimates of admitted requests not yet committed, by ticket. */
  reserved: Map<number, number>;
  reservedSum: number;
}

/** Sliding-window limiter; see the module comment. Deterministic given its clock. */
export class RateLimiter {
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly windows = new Map<string, TenantWindow>();
  private nextTicket = 1;

  constructor(options: RateLimiterOptions = {}) {
    this.now = options.now ?? Date.now;
    this.windowMs = options.windowMs ?? 60_000;
  }

  /**
   * Admit (and count) a request of `tenant` expected to use `estimatedTokens` (prompt + max tokens),
   * or refuse it with the seconds after which it would be admitted if nothing else arrives.
   * A request larger than the whole token limit is admitted when the tenant's window is empty,
   * since it could otherwise never run.
   */
  check(tenant: Tenant, estimatedTokens: number): RateLimitDecision {
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = tenant.limits;
    const now = this.now();
    const w = this.window(tenant.id, now);
    if (rpm !== undefined && w.requests.length >= rpm) {
      // Admitted once the oldest requests leave the window (all of them when rpm is 0: never, so a minute).
      const oldest = rpm === 0 ? now : w.requests[w.requests.length - rpm]!;
      return {
        ok: false,
        limit: 'requests_per_minute',
        retryAfterSeconds: this.secondsUntil(oldest + this.windowMs, now),
      };
    }
    const est = Math.max(0, estimatedTokens);
    if (tpm !== undefined) {
      const used = w.tokenSum + w.reservedSum;
      const idle = used === 0;
      if (used + est > tpm && !(idle && tpm > 0)) {
        // The earliest time enough committed usage expires; if reservations alone exceed the limit,
        // the time the whole window has expired (an estimate: running requests end when they end).
        let excess = used + est - tpm;
        let at = now + this.windowMs;
        for (const [t, n] of w.tokens) {
          excess -= n;
          at = t + this.windowMs;
          if (excess <= 0) break;
        }
        return { ok: false, limit: 'tokens_per_minute', retryAfterSeconds: this.secondsUntil(at, now) };
      }
    }
    w.requests.push(now);
    const ticket = this.nextTicket++;
    w.reserved.set(ticket, est);
    w.reservedSum += est;
    return { ok: true, ticket };
  }

  /**
   * Record the tokens a finished request actually used (0 for one that failed before running),
   * releasing its reservation: the given ticket's, or else the tenant's oldest.
   */
  commit(tenantId: string, actualTokens: number, ticket?: number): void {
    const now = this.now();
    const w = this.window(tenantId, now);
    const t = ticket !== undefined && w.reserved.has(ticket) ? ticket : w.reserved.keys().next().value;
    if (t !== undefined) {
      w.reservedSum -= w.reserved.get(t)!;
      w.reserved.delete(t);
    }
    const n = Math.max(0, actualTokens);
    if (n > 0) {
      w.tokens.push([now, n]);
      w.tokenSum += n;
    }
  }

  /** Tokens and requests counted now for a tenant (for /metrics and tests). */
  usage(tenantId: string): { requests: number; tokens: number; reservedTokens: number } {
    const w = this.window(tenantId, this.now());
    return { requests: w.requests.length, tokens: w.tokenSum, reservedTokens: w.reservedSum };
  }

  /** The tenant's window with entries older than the window dropped. */
  private window(tenantId: string, now: number): TenantWindow {
    let w = this.windows.get(tenantId);
    if (!w) {
      w = { requests: [], tokens: [], tokenSum: 0, reserved: new Map(), reservedSum: 0 };
      this.windows.set(tenantId, w);
    }
    const cutoff = now - this.windowMs;
    let i = 0;
    while (i < w.requests.length && w.requests[i]! <= cutoff) i++;
    if (i > 0) w.requests.splice(0, i);
    let j = 0;
    while (j < w.tokens.length && w.tokens[j]![0] <= cutoff) w.tokenSum -= w.tokens[j++]![1];
    if (j > 0) w.tokens.splice(0, j);
    return w;
  }

  private secondsUntil(at: number, now: number): number {
    return Math.max(1, Math.ceil((at - now) / 1000));
  }
}
