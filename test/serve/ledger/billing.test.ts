// Monthly billing: UTC month boundaries to the millisecond, per-tenant invoices whose totals add up,
// unpriced models flagged, and month strings validated.
import { describe, expect, it } from 'vitest';
import {
  SqliteLedger,
  billingReport,
  createKey,
  createTenant,
  monthRange,
  parsePrices,
} from '../../../src/serve/ledger/index.js';
import { tempDbPath, usage } from './helpers.js';

const prices = parsePrices({
  currency: 'USD',
  models: { tiny: { input: 0.15, output: 0.6, cached: 0.075 }, big: { input: 3, output: 15 } },
});

describe('billing report', () => {
  it('maps YYYY-MM to a UTC [from, to) range and rejects anything else', () => {
    expect(monthRange('2025-01')).toEqual({
      from: Date.parse('2025-01-01T00:00:00Z'),
      to: Date.parse('2025-02-01T00:00:00Z'),
    });
    expect(monthRange('2024-12')).toEqual({
      from: Date.parse('2024-12-01T00:00:00Z'),
      to: Date.parse('2025-01-01T00:00:00Z'),
    });
    expect(monthRange('2024-02').to - monthRange('2024-02').from).toBe(29 * 86_400_000);
    for (const bad of ['2025-13', '2025-00', '2025-1', '25-01', '2025/01', '2025-01-01', '', 'january']) {
      expect(() => monthRange(bad), bad).toThrow(`month must be YYYY-MM (e.g. 2025-01), got '${bad}'`);
    }
  });

  it('bills 23:59:59.999 on the last day to that month and 00:00 the next day to the next', () => {
    const ledger = new SqliteLedger(tempDbPath());
    const t = createTenant(ledger.db, { name: 'acme' });
    const k = createKey(ledger.db, t.id);
    ledger.record(
      usage(t.id, k.keyId, {
        requestId: 'last',
        startedAt: Date.parse('2025-01-31T23:59:59.999Z'),
        promptTokens: 1000,
        completionTokens: 0,
      }),
    );
    ledger.record(
      usage(t.id, k.keyId, {
        requestId: 'first',
        startedAt: Date.parse('2025-02-01T00:00:00.000Z'),
        promptTokens: 2000,
        completionTokens: 0,
      }),
    );
    const jan = billingReport(ledger, prices, '2025-01');
    const feb = billingReport(ledger.db, prices, '2025-02');
    expect(jan.tenants).toHaveLength(1);
    expect(jan.totals).toMatchObject({ requests: 1, promptTokens: 1000, cost: 0.00015 });
    expect(feb.totals).toMatchObject({ requests: 1, promptTokens: 2000, cost: 0.0003 });
    expect(billingReport(ledger, prices, '2025-03').text).toMatch(/no usage in this month/);
    ledger.close();
  });

  it('builds per-tenant invoices with model lines and totals that add up, flagging unpriced models', () => {
    const ledger = new SqliteLedger(tempDbPath());
    const a = createTenant(ledger.db, { name: 'acme' });
    const b = createTenant(ledger.db, { name: 'beta' });
    const ka = createKey(ledger.db, a.id);
    const kb = createKey(ledger.db, b.id);
    const jan = Date.UTC(2025, 0, 10);
    ledger.record(
      usage(a.id, ka.keyId, { startedAt: jan, promptTokens: 1000, cachedTokens: 200, completionTokens: 500 }),
    ); // 0.000435
    ledger.record(
      usage(a.id, ka.keyId, {
        startedAt: jan,
        model: 'big',
        promptTokens: 1_000_000,
        completionTokens: 100_000,
      }),
    ); // 3 + 1.5
    ledger.record(usage(b.id, kb.keyId, { startedAt: jan, promptTokens: 10, completionTokens: 3 })); // 0.0000033 → 0.000003
    ledger.record(
      usage(b.id, kb.keyId, { startedAt: jan, model: 'mystery', promptTokens: 7, completionTokens: 7 }),
    );
    const r = billingReport(ledger, prices, '2025-01');
    expect(r.tenants.map((t) => [t.tenantName, t.requests, t.cost])).toEqual([
      ['acme', 2, 4.500435],
      ['beta', 2, 0.000003],
    ]);
    expect(r.tenants[0]!.lines.map((l) => [l.model, l.cost])).toEqual([
      ['big', 4.5],
      ['tiny', 0.000435],
    ]);
    expect(r.totals).toMatchObject({
      requests: 4,
      promptTokens: 1_001_017,
      completionTokens: 100_510,
      cachedTokens: 200,
      totalTokens: 1_101_527,
      cost: 4.500438,
      costMicros: 4_500_438n,
    });
    expect(r.unpriced).toEqual(['mystery']);
    expect(r.text).toContain(
      'Tessera usage invoice: 2025-01 (UTC 2025-01-01T00:00:00.000Z to 2025-02-01T00:00:00.000Z), USD',
    );
    expect(r.text).toContain(`Tenant acme (${a.id})`);
    expect(r.text).toMatch(/\ntotal\s+2\s+1,001,000\s+200\s+100,500\s+1,101,500\s+4\.500435\n/);
    expect(r.text).toMatch(/mystery \(unpriced\)\s+1\s+7\s+0\s+7\s+14\s+0\.000000\n/);
    expect(r.text).toContain(
      'All tenants: 4 requests, 1,101,527 tokens (1,001,017 prompt, 200 cached, 100,510 completion), total 4.500438 USD',
    );
    expect(r.text).toContain('warning: no price for mystery');
    ledger.close();
  });
});
