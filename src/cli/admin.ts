/**
 * `tessera tenants|keys|billing`: administration of the serving ledger (a SQLite file, `--db`,
 * default `$TESSERA_DB` or ./tessera.db). Every command opens the database, does one thing, closes it.
 */
import type { Command } from 'commander';
import { ValueError } from '../errors.js';
import { billingReport, monthRange } from '../serve/ledger/billing.js';
import { type LedgerDatabase, defaultDbPath, openDatabase } from '../serve/ledger/db.js';
import {
  createKey,
  createTenant,
  listKeys,
  listTenants,
  requireTenant,
  revokeKey,
} from '../serve/ledger/keys.js';
import { EMPTY_PRICES, loadPrices } from '../serve/ledger/prices.js';

/** Where the commands write and which environment they read; tests inject both. */
export interface AdminIO {
  /** Default: process.stdout.write. */
  write?: (text: string) => void;
  /** Default: process.env (TESSERA_DB). */
  env?: NodeJS.ProcessEnv;
}

/** A non-negative integer option value, or a ValueError naming the option. */
function count(option: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
    throw new ValueError(`${option} must be an integer >= 0, got '${v}'`);
  return n;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/**
 * Add `tenants create|list`, `keys create|list|revoke` and `billing report` to `program`.
 * Errors are thrown as ValueError (the caller prints them and exits 2).
 */
export function registerAdminCommands(program: Command, io: AdminIO = {}): void {
  const write = io.write ?? ((s: string) => void process.stdout.write(s));
  const dbPath = (o: { db?: string }) => o.db ?? defaultDbPath(io.env ?? process.env);
  /** Run `fn` on the database, closing it even when `fn` throws. */
  const withDb = <T>(o: { db?: string }, mustExist: boolean, fn: (db: LedgerDatabase) => T): T => {
    const db = openDatabase(dbPath(o), { mustExist });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  const dbOption = '--db <file>';
  const dbHelp = 'ledger database (default: $TESSERA_DB or ./tessera.db)';

  const tenants = program
    .command('tenants')
    .description('tenants of the API server (who is billed and rate-limited)');
  tenants
    .command('create <name>')
    .description('create a tenant (and the database if needed)')
    .option('--admin', "may read every tenant's usage")
    .option('--rpm <n>', 'requests per minute (default: unlimited)')
    .option('--tpm <n>', 'prompt + completion tokens per minute (default: unlimited)')
    .option(dbOption, dbHelp)
    .action((name: string, o: { admin?: boolean; rpm?: string; tpm?: string; db?: string }) => {
      const limits = { requestsPerMinute: count('--rpm', o.rpm), tokensPerMinute: count('--tpm', o.tpm) };
      const t = withDb(o, false, (db) => createTenant(db, { name, admin: o.admin === true, limits }));
      // The hint names the tenant by id when its name would need shell quoting.
      const ref = /^[\w.-]+$/.test(t.name) ? t.name : t.id;
      write(
        `created tenant ${t.name} (${t.id})${t.admin ? ', admin' : ''}; next: tessera keys create --tenant ${ref}\n`,
      );
    });
  tenants
    .command('list')
    .description('list tenants with their limits and active keys')
    .option(dbOption, dbHelp)
    .action((o: { db?: string }) => {
      const rows = withDb(o, true, (db) =>
        listTenants(db).map((t) => ({
          t,
          keys: listKeys(db, t.id).filter((k) => k.revokedAt === undefined).length,
        })),
      );
      if (rows.length === 0) return write('no tenants (create one with `tessera tenants create <name>`)\n');
      const lim = (v: number | undefined) => (v === undefined ? 'unlimited' : String(v));
      write(
        columns([
          ['id', 'name', 'admin', 'rpm', 'tpm', 'active keys'],
          ...rows.map(({ t, keys }) => [
            t.id,
            t.name,
            t.admin ? 'yes' : 'no',
            lim(t.limits.requestsPerMinute),
            lim(t.limits.tokensPerMinute),
            String(keys),
          ]),
        ]),
      );
    });

  const keys = program
    .command('keys')
    .description('API keys (stored as SHA-256 hashes: a secret is shown only when created)');
  keys
    .command('create')
    .description('create an API key for a tenant and print its secret (once)')
    .requiredOption('--tenant <name-or-id>', 'the tenant that the key bills to')
    .option('--quiet', 'print only the secret (for scripts)')
    .option(dbOption, dbHelp)
    .action((o: { tenant: string; quiet?: boolean; db?: string }) => {
      const { k, name } = withDb(o, true, (db) => {
        const t = requireTenant(db, o.tenant);
        return { k: createKey(db, t.id), name: t.name };
      });
      if (o.quiet) return write(`${k.secret}\n`);
      write(
        `created key ${k.keyId} for tenant ${name} (${k.tenantId})\n${k.secret}\nstore this secret now: it cannot be shown again (only its hash is kept)\n`,
      );
    });
  keys
    .command('list')
    .description('list keys (id, tenant, created, revoked), never secrets')
    .option('--tenant <name-or-id>', "only this tenant's keys")
    .option(dbOption, dbHelp)
    .action((o: { tenant?: string; db?: string }) => {
      const list = withDb(o, true, (db) => listKeys(db, o.tenant));
      if (list.length === 0) return write('no keys\n');
      write(
        columns([
          ['key id', 'prefix', 'tenant', 'created', 'revoked'],
          ...list.map((k) => [
            k.keyId,
            k.prefix,
            k.tenantName,
            iso(k.createdAt),
            k.revokedAt === undefined ? '-' : iso(k.revokedAt),
          ]),
        ]),
      );
    });
  keys
    .command('revoke <key-id>')
    .description('revoke a key: requests with it fail authentication from now on')
    .option(dbOption, dbHelp)
    .action((keyId: string, o: { db?: string }) => {
      const changed = withDb(o, true, (db) => revokeKey(db, keyId));
      write(changed ? `revoked key ${keyId}\n` : `key ${keyId} was already revoked\n`);
    });

  const billing = program.command('billing').description('usage invoices');
  billing
    .command('report')
    .description("print each tenant's usage and cost for a calendar month (UTC)")
    .requiredOption('--month <YYYY-MM>', 'the month to bill')
    .option('--prices <file>', 'price table JSON (default: none, costs 0 and models flagged unpriced)')
    .option(dbOption, dbHelp)
    .action((o: { month: string; prices?: string; db?: string }) => {
      // Month and prices first: a typo should fail before touching the database.
      monthRange(o.month);
      const prices = o.prices === undefined ? EMPTY_PRICES : loadPrices(o.prices);
      write(withDb(o, true, (db) => billingReport(db, prices, o.month).text));
    });
}
