/**
 * `SqliteLedger`: the `Ledger` the HTTP layer uses. Authentication is one indexed read; recording is
 * one durable transaction that ignores a repeated request id; summaries aggregate in SQL (integer
 * sums, exact) and price each (tenant, model) group once.
 */
import type { Ledger, Principal, UsageRecord, UsageSummaryRow } from '../types.js';
import { ValueError } from '../../errors.js';
import { type LedgerDatabase, openDatabase, prepared } from './db.js';
import { authenticateKey } from './keys.js';
import { type PriceTable, EMPTY_PRICES, costMicros, microsToNumber, priceFor } from './prices.js';

const ENDPOINTS = new Set(['/v1/completions', '/v1/chat/completions']);
const FINISH_REASONS = new Set(['stop', 'length', 'cancelled', 'error']);

/** A summary row with its exact cost and whether the price table priced its model. */
export interface PricedSummaryRow extends UsageSummaryRow {
  /** `cost` in millionths of the currency unit, exact. */
  costMicros: bigint;
  /** False when the model had no price (and no default): `cost` is 0. */
  priced: boolean;
}

/** A query of {@link summarizeUsage}: [from, to) in epoch ms of `startedAt`, one tenant or all. */
export interface SummaryQuery {
  from: number;
  to: number;
  tenantId?: string;
}

interface SumRow {
  tenantId: string;
  tenantName: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

const SUMMARY_SELECT = `SELECT u.tenant_id AS tenantId, t.name AS tenantName, u.model, COUNT(*) AS requests,
    SUM(u.prompt_tokens) AS promptTokens, SUM(u.completion_tokens) AS completionTokens, SUM(u.cached_tokens) AS cachedTokens
  FROM usage u JOIN tenants t ON t.id = u.tenant_id
  WHERE u.started_at >= ? AND u.started_at < ?`;
const SUMMARY_ORDER = 'GROUP BY u.tenant_id, u.model ORDER BY t.name, u.model';

/**
 * Usage per (tenant, model) with requests started in [from, to), priced with `prices`, ordered by
 * tenant name then model. Cost is linear in tokens, so pricing the summed tokens is exact.
 */
export function summarizeUsage(db: LedgerDatabase, prices: PriceTable, q: SummaryQuery): PricedSummaryRow[] {
  if (!Number.isFinite(q.from) || !Number.isFinite(q.to))
    throw new ValueError(`summary range must be finite epoch milliseconds, got [${q.from}, ${q.to})`);
  const rows = (
    q.tenantId === undefined
      ? prepared(db, `${SUMMARY_SELECT} ${SUMMARY_ORDER}`).all(q.from, q.to)
      : prepared(db, `${SUMMARY_SELECT} AND u.tenant_id = ? ${SUMMARY_ORDER}`).all(q.from, q.to, q.tenantId)
  ) as SumRow[];
  return rows.map((r) => {
    const price = priceFor(prices, r.model);
    const micros = price ? costMicros(price, r) : 0n;
    return { ...r, cost: microsToNumber(micros), costMicros: micros, priced: price !== undefined };
  });
}

/** Check a usage record's fields. @throws ValueError naming the first bad field. */
export function checkRecord(r: UsageRecord): void {
  const bad = (what: string): never => {
    throw new ValueError(`usage record '${r.requestId}': ${what}`);
  };
  if (typeof r.requestId !== 'string' || r.requestId.length === 0)
    throw new ValueError('usage record: requestId must be a non-empty string');
  for (const k of ['promptTokens', 'completionTokens', 'cachedTokens'] as const) {
    if (!Number.isSafeInteger(r[k]) || r[k] < 0) bad(`${k} must be an integer >= 0, got ${r[k]}`);
  }
  if (r.cachedTokens > r.promptTokens)
    bad(`cachedTokens (${r.cachedTokens}) exceeds promptTokens (${r.promptTokens})`);
  if (!ENDPOINTS.has(r.endpoint))
    bad(`endpoint must be /v1/completions or /v1/chat/completions, got '${r.endpoint}'`);
  if (!FINISH_REASONS.has(r.finishReason))
    bad(`finishReason must be stop, length, cancelled or error, got '${r.finishReason}'`);
  if (!Number.isInteger(r.status) || r.status < 100 || r.status > 599)
    bad(`status must be an HTTP status code, got ${r.status}`);
  if (!Number.isFinite(r.startedAt)) bad(`startedAt must be epoch milliseconds, got ${r.startedAt}`);
  if (!Number.isFinite(r.durationMs) || r.durationMs < 0) bad(`durationMs must be >= 0, got ${r.durationMs}`);
  if (
    r.timeToFirstTokenMs !== undefined &&
    (!Number.isFinite(r.timeToFirstTokenMs) || r.timeToFirstTokenMs < 0)
  )
    bad(`timeToFirstTokenMs must be >= 0, got ${r.timeToFirstTokenMs}`);
}

// ON CONFLICT (request_id) DO NOTHING rather than INSERT OR IGNORE: both skip a repeated request id,
// but OR IGNORE would also silently drop a row failing a CHECK or NOT NULL constraint.
export const INSERT_USAGE = `INSERT INTO usage (request_id, tenant_id, key_id, model, endpoint, prompt_tokens, completion_tokens, cached_tokens,
    status, finish_reason, started_at, duration_ms, ttft_ms)
  VALUES (@requestId, @tenantId, @keyId, @model, @endpoint, @promptTokens, @completionTokens, @cachedTokens,
    @status, @finishReason, @startedAt, @durationMs, @ttft)
  ON CONFLICT (request_id) DO NOTHING`;

export interface SqliteLedgerOptions {
  /** Prices for `summary` costs (default: none, costs 0). */
  prices?: PriceTable;
}

/** The SQLite-backed {@link Ledger}. Synchronous by design: each call is well under a millisecond. */
export class SqliteLedger implements Ledger {
  /** The connection, for administration (keys, billing) on the same handle. */
  readonly db: LedgerDatabase;
  /** Prices used by `summary`; replace to reload the table. */
  prices: PriceTable;
  private readonly owned: boolean;
  private readonly insert: (r: UsageRecord) => boolean;

  /**
   * @param dbOrPath A database path (opened, created and migrated here, and closed by `close`) or an
   *   open connection from {@link openDatabase} (left open by `close`: its owner closes it).
   */
  constructor(dbOrPath: string | LedgerDatabase, options: SqliteLedgerOptions = {}) {
    this.owned = typeof dbOrPath === 'string';
    this.db = typeof dbOrPath === 'string' ? openDatabase(dbOrPath) : dbOrPath;
    this.prices = options.prices ?? EMPTY_PRICES;
    const st = prepared(this.db, INSERT_USAGE);
    this.insert = this.db.transaction(
      (r: UsageRecord) => st.run({ ...r, ttft: r.timeToFirstTokenMs ?? null }).changes === 1,
    );
  }

  /** @inheritdoc */
  authenticate(apiKey: string): Principal | undefined {
    return authenticateKey(this.db, apiKey);
  }

  /**
   * Write one usage record in its own transaction (durable on return: WAL, synchronous = FULL).
   * @returns false when a record with this request id already exists (nothing is written).
   * @throws ValueError for invalid fields, or a tenant/key pair that does not exist.
   */
  record(r: UsageRecord): boolean {
    checkRecord(r);
    try {
      return this.insert(r);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
        throw new ValueError(
          `usage record '${r.requestId}': no key '${r.keyId}' belonging to tenant '${r.tenantId}'`,
        );
      }
      throw e;
    }
  }

  /** @inheritdoc */
  summary(q: { from: number; to: number; tenantId?: string }): UsageSummaryRow[] {
    return summarizeUsage(this.db, this.prices, q).map(({ costMicros: _m, priced: _p, ...row }) => row);
  }

  /** Close the connection if this ledger opened it. Idempotent. */
  close(): void {
    if (this.owned && this.db.open) this.db.close();
  }
}
