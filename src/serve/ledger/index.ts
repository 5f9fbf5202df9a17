/** The usage ledger: tenants, API keys, metering, billing and rate limits of the OpenAI-compatible server. */
export {
  openDatabase,
  defaultDbPath,
  integrityCheck,
  schemaVersion,
  SCHEMA_VERSION,
  prepared,
} from './db.js';
export type { LedgerDatabase, OpenDatabaseOptions, IntegrityReport } from './db.js';
export {
  createTenant,
  updateTenant,
  listTenants,
  findTenant,
  requireTenant,
  createKey,
  listKeys,
  revokeKey,
  parseApiKey,
  authenticateKey,
  KEY_PREFIX,
} from './keys.js';
export type { CreatedKey, ApiKeyInfo, CreateTenantOptions } from './keys.js';
export { SqliteLedger, summarizeUsage } from './ledger.js';
export type { SqliteLedgerOptions, PricedSummaryRow, SummaryQuery } from './ledger.js';
export {
  loadPrices,
  parsePrices,
  priceFor,
  cost,
  costMicros,
  formatMicros,
  microsToNumber,
  EMPTY_PRICES,
} from './prices.js';
export type { ModelPrice, PriceTable, TokenCounts } from './prices.js';
export { billingReport, monthRange, formatBillingReport } from './billing.js';
export type { BillingReport, TenantInvoice, InvoiceLine } from './billing.js';
export { RateLimiter } from './rate_limit.js';
export { LedgerWriterThread, ThreadedLedger } from './writer_thread.js';
export type { RateLimitDecision, RateLimiterOptions } from './rate_limit.js';
