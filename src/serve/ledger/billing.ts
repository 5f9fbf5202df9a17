/**
 * Monthly invoices: usage of each tenant over one calendar month (UTC), priced per model, as data and
 * as a text table. Totals are sums of the rounded line amounts, so every printed column adds up.
 */
import { ValueError } from '../../errors.js';
import type { LedgerDatabase } from './db.js';
import { type PricedSummaryRow, SqliteLedger, summarizeUsage } from './ledger.js';
import { type PriceTable, formatMicros, microsToNumber } from './prices.js';

/** One model's line on a tenant's invoice. */
export type InvoiceLine = PricedSummaryRow;

/** A tenant's invoice for the month. */
export interface TenantInvoice {
  tenantId: string;
  tenantName: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Prompt + completion tokens. */
  totalTokens: number;
  /** Sum of the lines' rounded costs, in currency units. */
  cost: number;
  costMicros: bigint;
  lines: InvoiceLine[];
}

export interface BillingReport {
  /** 'YYYY-MM'. */
  month: string;
  /** The month as [from, to) epoch milliseconds, UTC. */
  from: number;
  to: number;
  currency: string;
  /** Tenants with usage in the month, by name. */
  tenants: TenantInvoice[];
  totals: Omit<TenantInvoice, 'tenantId' | 'tenantName' | 'lines'>;
  /** Models used this month that the price table does not price (their cost is counted as 0). */
  unpriced: string[];
  /** The invoices as a printable table. */
  text: string;
}

/**
 * The month 'YYYY-MM' as [from, to) epoch ms in UTC: from the first millisecond of its first day to
 * the first millisecond of the next month (so 23:59:59.999 on the last day is in, 00:00 next is not).
 * @throws ValueError for anything but a valid YYYY-MM.
 */
export function monthRange(month: string): { from: number; to: number } {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  const mm = m ? Number(m[2]) : 0;
  if (!m || mm < 1 || mm > 12) throw new ValueError(`month must be YYYY-MM (e.g. 2025-01), got '${month}'`);
  const y = Number(m[1]);
  return { from: Date.UTC(y, mm - 1, 1), to: Date.UTC(y, mm, 1) };
}

/** Build the invoices of `month` from a ledger or an open database, priced with `prices`. */
export function billingReport(
  source: SqliteLedger | LedgerDatabase,
  prices: PriceTable,
  month: string,
): BillingReport {
  const { from, to } = monthRange(month);
  const db = source instanceof SqliteLedger ? source.db : source;
  const rows = summarizeUsage(db, prices, { from, to });
  const tenants: TenantInvoice[] = [];
  for (const r of rows) {
    let inv = tenants.at(-1);
    // Rows come ordered by tenant name, then model: a tenant's lines are contiguous.
    if (!inv || inv.tenantId !== r.tenantId) {
      inv = { tenantId: r.tenantId, tenantName: r.tenantName, ...zeroTotals(), lines: [] };
      tenants.push(inv);
    }
    inv.lines.push(r);
    addTo(inv, r);
  }
  const totals = zeroTotals();
  for (const t of tenants) addTo(totals, t);
  const unpriced = [...new Set(rows.filter((r) => !r.priced).map((r) => r.model))].sort();
  const report = { month, from, to, currency: prices.currency, tenants, totals, unpriced, text: '' };
  report.text = formatBillingReport(report);
  return report;
}

function zeroTotals(): BillingReport['totals'] {
  return {
    requests: 0,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    totalTokens: 0,
    cost: 0,
    costMicros: 0n,
  };
}

function addTo(
  acc: BillingReport['totals'],
  r: {
    requests: number;
    promptTokens: number;
    completionTokens: number;
    cachedTokens: number;
    costMicros: bigint;
  },
): void {
  acc.requests += r.requests;
  acc.promptTokens += r.promptTokens;
  acc.completionTokens += r.completionTokens;
  acc.cachedTokens += r.cachedTokens;
  acc.totalTokens += r.promptTokens + r.completionTokens;
  acc.costMicros += r.costMicros;
  acc.cost = microsToNumber(acc.costMicros);
}

/** Lay out rows as columns: the first left-aligned, the rest right-aligned (numbers). */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** The invoice text: per tenant, a line per model and a tenant total; then the grand total. */
export function formatBillingReport(r: Omit<BillingReport, 'text'>): string {
  const out = [
    `Tessera usage invoice: ${r.month} (UTC ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}), ${r.currency}`,
  ];
  if (r.tenants.length === 0) {
    out.push('', 'no usage in this month');
    return out.join('\n') + '\n';
  }
  const n = (x: number) => x.toLocaleString('en-US');
  const head = [
    'model',
    'requests',
    'prompt',
    'cached',
    'completion',
    'total tokens',
    `cost (${r.currency})`,
  ];
  for (const t of r.tenants) {
    const rows = [head];
    for (const l of t.lines) {
      rows.push([
        l.model + (l.priced ? '' : ' (unpriced)'),
        n(l.requests),
        n(l.promptTokens),
        n(l.cachedTokens),
        n(l.completionTokens),
        n(l.promptTokens + l.completionTokens),
        formatMicros(l.costMicros),
      ]);
    }
    rows.push([
      'total',
      n(t.requests),
      n(t.promptTokens),
      n(t.cachedTokens),
      n(t.completionTokens),
      n(t.totalTokens),
      formatMicros(t.costMicros),
    ]);
    const lines = table(rows);
    const rule = '-'.repeat(Math.max(...lines.map((l) => l.length)));
    out.push(
      '',
      `Tenant ${t.tenantName} (${t.tenantId})`,
      lines[0]!,
      rule,
      ...lines.slice(1, -1),
      rule,
      lines.at(-1)!,
    );
  }
  const T = r.totals;
  out.push(
    '',
    `All tenants: ${n(T.requests)} requests, ${n(T.totalTokens)} tokens (${n(T.promptTokens)} prompt, ${n(T.cachedTokens)} cached, ${n(T.completionTokens)} completion), total ${formatMicros(T.costMicros)} ${r.currency}`,
  );
  if (r.unpriced.length > 0)
    out.push(
      `warning: no price for ${r.unpriced.join(', ')}: counted as 0 (add them, or a "default", to the price table)`,
    );
  return out.join('\n') + '\n';
}
