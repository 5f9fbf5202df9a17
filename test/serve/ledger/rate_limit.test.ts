// The per-tenant limiter on a fake clock: requests per minute and tokens per minute over a sliding
// window, refusals with the limit hit and a Retry-After that is exactly when a retry would pass.
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../src/serve/ledger/index.js';
import type { Tenant } from '../../../src/serve/types.js';

const tenant = (limits: Tenant['limits'], id = 't1'): Tenant => ({ id, name: id, admin: false, limits });

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('RateLimiter', () => {
  it('admits requestsPerMinute requests per sliding minute, then 429s with retryAfter', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now });
    const t = tenant({ requestsPerMinute: 3 });
    expect(rl.check(t, 0).ok).toBe(true); // t = 0 s
    c.t += 10_000;
    expect(rl.check(t, 0).ok).toBe(true); // 10 s
    c.t += 10_000;
    expect(rl.check(t, 0).ok).toBe(true); // 20 s
    c.t += 5_500;
    // 25.5 s: the first request leaves the window at 60 s, 34.5 s from now → 35.
    expect(rl.check(t, 0)).toEqual({ ok: false, limit: 'requests_per_minute', retryAfterSeconds: 35 });
    c.t += 34_499; // 59.999 s: still in
    expect(rl.check(t, 0).ok).toBe(false);
    c.t += 1; // 60 s: the first has left
    expect(rl.check(t, 0).ok).toBe(true);
    expect(rl.check(t, 0)).toEqual({ ok: false, limit: 'requests_per_minute', retryAfterSeconds: 10 });
    // Refusals are not counted, and tenants are independent.
    expect(rl.usage(t.id).requests).toBe(3);
    expect(rl.check(tenant({ requestsPerMinute: 1 }, 't2'), 0).ok).toBe(true);
  });

  it('counts committed tokens per minute, reserving estimates of requests still running', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now });
    const t = tenant({ tokensPerMinute: 1000 });
    const first = rl.check(t, 600);
    expect(first.ok).toBe(true);
    // 600 reserved: another 600 would exceed 1000 while the first runs. No committed usage to expire
    // yet, so the estimate is a full window.
    expect(rl.check(t, 600)).toEqual({ ok: false, limit: 'tokens_per_minute', retryAfterSeconds: 60 });
    c.t += 2_000;
    // The first used only 300 (stopped early): commit replaces its 600 estimate.
    rl.commit(t.id, 300, first.ok ? first.ticket : undefined);
    expect(rl.usage(t.id)).toEqual({ requests: 1, tokens: 300, reservedTokens: 0 });
    const second = rl.check(t, 600);
    expect(second.ok).toBe(true);
    c.t += 3_000;
    rl.commit(t.id, 650); // oldest reservation (the second's) released
    expect(rl.usage(t.id)).toEqual({ requests: 2, tokens: 950, reservedTokens: 0 });
    // 950 used at 2 s (300) and 5 s (650). 200 more needs 150 freed: the 300 at 2 s leaves at 62 s,
    // 57 s from now.
    expect(rl.check(t, 200)).toEqual({ ok: false, limit: 'tokens_per_minute', retryAfterSeconds: 57 });
    expect(rl.check(t, 50).ok).toBe(true);
    rl.commit(t.id, 50);
    c.t = 1_000_000 + 62_000;
    expect(rl.usage(t.id).tokens).toBe(700);
    expect(rl.check(t, 200).ok).toBe(true);
  });

  it('admits a request larger than the token limit only when the window is empty; 0 blocks all', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now });
    const t = tenant({ tokensPerMinute: 100 });
    const big = rl.check(t, 500);
    expect(big.ok).toBe(true);
    expect(rl.check(t, 1)).toMatchObject({ ok: false, limit: 'tokens_per_minute' });
    rl.commit(t.id, 500);
    c.t += 30_000;
    expect(rl.check(t, 1)).toEqual({ ok: false, limit: 'tokens_per_minute', retryAfterSeconds: 30 });
    expect(rl.check(tenant({ tokensPerMinute: 0 }, 'z'), 1)).toMatchObject({
      ok: false,
      limit: 'tokens_per_minute',
    });
    expect(rl.check(tenant({ requestsPerMinute: 0 }, 'y'), 1)).toEqual({
      ok: false,
      limit: 'requests_per_minute',
      retryAfterSeconds: 60,
    });
    // No limits: always admitted.
    for (let i = 0; i < 1000; i++) expect(rl.check(tenant({}, 'free'), 1e9).ok).toBe(true);
  });

  it('checks requests before tokens', () => {
    const rl = new RateLimiter({ now: clock().now });
    const t = tenant({ requestsPerMinute: 1, tokensPerMinute: 10 });
    expect(rl.check(t, 5).ok).toBe(true);
    expect(rl.check(t, 50)).toMatchObject({ ok: false, limit: 'requests_per_minute' });
  });
});
