/**
 * The ledger's SQLite database: opening it with the pragmas that make every commit durable, the schema
 * and its migrations (numbered by `PRAGMA user_version`), a cache of prepared statements, and an
 * integrity check for tests and operators.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { FormatError, ValueError } from '../../errors.js';

/** A better-sqlite3 connection. */
export type LedgerDatabase = Database.Database;

/**
 * Migrations, in order; migration i brings the schema from version i to i + 1. Never edit a shipped
 * one: append a new one, so a database written by any older Tessera upgrades in place.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    admin       INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    rpm         INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    tpm         INTEGER CHECK (tpm IS NULL OR tpm >= 0),
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    secret_hash  BLOB NOT NULL CHECK (length(secret_hash) = 32),
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    -- lets usage reference (key, tenant) together, so a row can never pair a key with another tenant
    UNIQUE (id, tenant_id)
  );
  CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
  CREATE TABLE usage (
    request_id         TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    key_id             TEXT NOT NULL,
    model              TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    prompt_tokens      INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens      INTEGER NOT NULL CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens),
    status             INTEGER NOT NULL,
    finish_reason      TEXT NOT NULL,
    started_at         INTEGER NOT NULL,
    duration_ms        REAL NOT NULL CHECK (duration_ms >= 0),
    ttft_ms            REAL,
    FOREIGN KEY (key_id, tenant_id) REFERENCES api_keys(id, tenant_id)
  );
  CREATE INDEX usage_tenant_time ON usage(tenant_id, started_at);
  CREATE INDEX usage_time ON usage(started_at);
  `,
];

/** The schema version this code writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The database path when none is given: `$TESSERA_DB`, else `tessera.db` in the current directory. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.TESSERA_DB && env.TESSERA_DB.length > 0 ? env.TESSERA_DB : 'tessera.db';
}

export interface OpenDatabaseOptions {
  /** Fail with a ValueError instead of creating the file when it does not exist (read-only commands). */
  mustExist?: boolean;
  /** Milliseconds a writer waits for another process's write lock before failing (default 10 000). */
  busyTimeoutMs?: number;
}

/**
 * Open (or create) the ledger database and bring its schema up to date.
 *
 * WAL lets readers (summaries, billing) run while the server writes; `synchronous = FULL` makes each
 * committed usage record survive a power loss, not only a process crash; foreign keys are off by
 * default in SQLite and must be switched on per connection.
 *
 * @throws ValueError when `mustExist` and the file is missing; FormatError when the file is not a
 *   SQLite database or was written by a newer Tessera.
 */
export function openDatabase(path: string, options: OpenDatabaseOptions = {}): LedgerDatabase {
  if (options.mustExist && path !== ':memory:' && !existsSync(path)) {
    throw new ValueError(
      `no ledger database at '${path}' (create one with \`tessera tenants create\`, or pass --db / set TESSERA_DB)`,
    );
  }
  const db = new Database(path, { timeout: options.busyTimeoutMs ?? 10_000 });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db, path);
  } catch (e) {
    db.close();
    if (e instanceof Error && (e as { code?: string }).code === 'SQLITE_NOTADB') {
      throw new FormatError(`'${path}' is not a SQLite database (expected a Tessera ledger)`);
    }
    throw e;
  }
  return db;
}

/** The schema version stored in the database. */
export function schemaVersion(db: LedgerDatabase): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** Apply the migrations the database lacks, each in its own transaction together with its version bump. */
function migrate(db: LedgerDatabase, path: string): void {
  const found = schemaVersion(db);
  if (found > SCHEMA_VERSION) {
    throw new FormatError(
      `'${path}' has ledger schema version ${found}, newer than this Tessera's ${SCHEMA_VERSION}: upgrade Tessera`,
    );
  }
  for (let v = found; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      // user_version cannot be bound as a parameter; v + 1 is an integer we computed.
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

const statementCache = new WeakMap<LedgerDatabase, Map<string, Database.Statement>>();

/**
 * A prepared statement for `sql` on `db`, compiled once per connection: the server authenticates and
 * records on every request, and preparing costs more than running these small statements.
 */
export function prepared(db: LedgerDatabase, sql: string): Database.Statement {
  let cache = statementCache.get(db);
  if (!cache) statementCache.set(db, (cache = new Map()));
  let st = cache.get(sql);
  if (!st) cache.set(sql, (st = db.prepare(sql)));
  return st;
}

/** The result of {@link integrityCheck}. */
export interface IntegrityReport {
  ok: boolean;
  /** SQLite's messages: page-level problems and foreign-key violations; empty when ok. */
  problems: string[];
}

/** `PRAGMA integrity_check` plus `PRAGMA foreign_key_check`: both must be clean for `ok`. */
export function integrityCheck(db: LedgerDatabase): IntegrityReport {
  const problems = (db.pragma('integrity_check') as { integrity_check: string }[])
    .map((r) => r.integrity_check)
    .filter((m) => m !== 'ok');
  for (const r of db.pragma('foreign_key_check') as { table: string; rowid: number; parent: string }[]) {
    problems.push(`foreign key violation: ${r.table} row ${r.rowid} references a missing ${r.parent} row`);
  }
  return { ok: problems.length === 0, problems };
}
