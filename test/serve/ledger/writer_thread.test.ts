// LedgerWriterThread / ThreadedLedger: records committed on their own thread are visible to another
// connection when the promise resolves, a repeated request id is not counted twice, bad records and
// unknown tenant/key pairs reject with the reason, and close() waits for the writes in flight.
import { describe, expect, it } from 'vitest';
import { LedgerWriterThread, SqliteLedger, ThreadedLedger, createKey, createTenant, integrityCheck } from '../../../src/serve/ledger/index.js';
import { ValueError } from '../../../src/errors.js';
import { tempDbPath, usage } from './helpers.js';

const JAN = { from: Date.UTC(2025, 0, 1), to: Date.UTC(2025, 1, 1) };

function setup() {
  const path = tempDbPath();
  const store = new SqliteLedger(path);
  const a = createTenant(store.db, { name: 'acme' });
  const ka = createKey(store.db, a.id);
  return { path, store, a, ka };
}

describe('LedgerWriterThread', () => {
  it('commits before resolving, ignores a repeated request id and rejects what the ledger refuses', async () => {
    const { path, store, a, ka } = setup();
    const writer = new LedgerWriterThread(path);
    const r = usage(a.id, ka.keyId, { requestId: 'cmpl-1', promptTokens: 10, completionTokens: 7, cachedTokens: 4 });
    await expect(writer.record(r)).resolves.toBe(true);
    // Read on the other connection: the row is there as soon as the promise resolved.
    expect(store.summary({ ...JAN, tenantId: a.id })).toMatchObject([{ requests: 1, promptTokens: 10, completionTokens: 7, cachedTokens: 4 }]);
    const row = store.db.prepare('SELECT ttft_ms AS ttft FROM usage WHERE request_id = ?').get('cmpl-1') as { ttft: number };
    expect(row.ttft).toBe(r.timeToFirstTokenMs);
    await expect(writer.record(r)).resolves.toBe(false);
    await expect(writer.record(usage(a.id, 'key-unknown'))).rejects.toThrow(ValueError);
    expect(() => writer.record(usage(a.id, ka.keyId, { completionTokens: -1 }))).toThrow(/completionTokens must be an integer >= 0/);
    await writer.close();
    expect(store.summary({ ...JAN, tenantId: a.id })[0]!.requests).toBe(1);
    store.close();
  });

  it('finishes every write sent before close(), in order', async () => {
    const { path, store, a, ka } = setup();
    const writer = new LedgerWriterThread(path);
    const writes = Array.from({ length: 50 }, (_, i) => writer.record(usage(a.id, ka.keyId, { requestId: `cmpl-${i}`, completionTokens: i })));
    const closed = writer.close();
    await expect(Promise.all(writes)).resolves.toEqual(Array(50).fill(true));
    await closed;
    await expect(writer.record(usage(a.id, ka.keyId))).rejects.toThrow(/closed/);
    expect(store.summary({ ...JAN, tenantId: a.id })[0]).toMatchObject({ requests: 50, completionTokens: (49 * 50) / 2 });
    expect(integrityCheck(store.db).ok).toBe(true);
    store.close();
  });

  it('ThreadedLedger authenticates and summarises on the caller, records through the thread', async () => {
    const { path, store, a, ka } = setup();
    const ledger = new ThreadedLedger(store, path);
    expect(ledger.authenticate(ka.secret)?.tenant.id).toBe(a.id);
    await ledger.record(usage(a.id, ka.keyId, { promptTokens: 3 }));
    expect(ledger.summary({ ...JAN })).toMatchObject([{ tenantId: a.id, requests: 1, promptTokens: 3 }]);
    await ledger.close();
    expect(store.db.open).toBe(false);
  });
});
