/**
 * Usage records written on a thread of their own. A durable commit (WAL, `synchronous = FULL`) waits for
 * the disk (milliseconds on the benchmark VM), during which the HTTP thread could not deliver the next
 * token of any other stream. The writer owns a second connection to the same database (WAL: one writer,
 * readers alongside) and answers each record once it is committed, so a response still goes out only
 * after its usage is durable.
 *
 * The thread runs a few lines of plain JavaScript (`eval`), needing only better-sqlite3, so it starts the
 * same way from the built package and from the TypeScript sources under test.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ValueError } from '../../errors.js';
import type { Ledger, Principal, UsageRecord, UsageSummaryRow } from '../types.js';
import { INSERT_USAGE, SqliteLedger, checkRecord } from './ledger.js';

const WRITER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('foreign_keys = ON');
const st = db.prepare(workerData.insert);
const insert = db.transaction((r) => st.run(r).changes === 1);
parentPort.on('message', (m) => {
  if (m.close) {
    db.close();
    parentPort.postMessage({ closed: true });
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ id: m.id, inserted: insert(m.record) });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { message: String(e && e.message || e), code: e && e.code } });
  }
});
parentPort.postMessage({ ready: true });
`;

interface Reply {
  id?: number;
  inserted?: boolean;
  error?: { message: string; code?: string };
  ready?: boolean;
  closed?: boolean;
}

/** A thread that writes usage records to the ledger at `path` (which must exist, migrated). */
export class LedgerWriterThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (inserted: boolean) => void; reject: (e: Error) => void; requestId: string }>();
  private next = 0;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  constructor(path: string, options: { busyTimeoutMs?: number } = {}) {
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WRITER_SOURCE, { eval: true, workerData: { path, sqlite, insert: INSERT_USAGE, busyTimeoutMs: options.busyTimeoutMs ?? 10_000 } });
    this.worker.unref();
    this.worker.on('message', (m: Reply) => this.onReply(m));
    this.worker.on('error', (e) => this.fail(new Error(`ledger writer thread failed: ${e.message}`)));
    this.worker.on('exit', (code) => this.fail(new Error(`ledger writer thread exited (code ${code})`)));
  }

  /**
   * Write one record (checked here first); resolves once it is committed: true when inserted, false
   * when a record with its request id already existed.
   * @throws (rejects) ValueError for an invalid record or a tenant/key pair that does not exist.
   */
  record(r: UsageRecord): Promise<boolean> {
    checkRecord(r);
    if (this.closing) return Promise.reject(new Error('ledger writer: closed'));
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise<boolean>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, requestId: r.requestId });
      // The thread keeps the process alive only while a write is in flight.
      this.worker.ref();
      const { timeToFirstTokenMs, ...fields } = r;
      this.worker.postMessage({ id, record: { ...fields, ttft: timeToFirstTokenMs ?? null } });
    });
  }

  /** Finish the writes in flight, then close the connection and end the thread. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.failure) return resolve();
      this.worker.ref();
      this.worker.once('exit', () => resolve());
      // Messages are handled in order: every record sent before this is committed first.
      this.worker.postMessage({ close: true });
    });
    return this.closing;
  }

  private onReply(m: Reply): void {
    if (m.id === undefined) return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0 && !this.closing) this.worker.unref();
    if (!m.error) return p.resolve(m.inserted === true);
    if (m.error.code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
      p.reject(new ValueError(`usage record '${p.requestId}': its tenant/key pair does not exist`));
    } else {
      p.reject(new Error(`usage record '${p.requestId}': ${m.error.message}`));
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

/**
 * The server's ledger: authentication and summaries on the calling thread's connection (indexed reads),
 * usage records through a {@link LedgerWriterThread} (durable commits off the HTTP thread).
 */
export class ThreadedLedger implements Ledger {
  private readonly writer: LedgerWriterThread;

  constructor(readonly reader: SqliteLedger, path: string) {
    this.writer = new LedgerWriterThread(path);
  }

  authenticate(apiKey: string): Principal | undefined {
    return this.reader.authenticate(apiKey);
  }

  /** Resolves once the record is committed (see {@link LedgerWriterThread.record}). */
  async record(r: UsageRecord): Promise<void> {
    await this.writer.record(r);
  }

  summary(q: { from: number; to: number; tenantId?: string }): UsageSummaryRow[] {
    return this.reader.summary(q);
  }

  /** Waits for the records in flight, then closes both connections. */
  async close(): Promise<void> {
    await this.writer.close();
    this.reader.close();
  }
}
