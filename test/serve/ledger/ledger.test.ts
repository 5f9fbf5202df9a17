// SqliteLedger: idempotent durable records, summaries per tenant and for all tenants with exact costs,
// validation of records, and two processes writing at once under WAL without losing a record.
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import {
  SqliteLedger,
  createKey,
  createTenant,
  integrityCheck,
  openDatabase,
  parsePrices,
} from '../../../src/serve/ledger/index.js';
import { tempDbPath, tempDir, usage } from './helpers.js';

const root = join(import.meta.dirname, '../../..');
const prices = parsePrices({
  currency: 'USD',
  models: { tiny: { input: 0.15, output: 0.6, cached: 0.075 }, big: { input: 3, output: 15 } },
});

function setup() {
  const path = tempDbPath();
  const ledger = new SqliteLedger(path, { prices });
  const a = createTenant(ledger.db, { name: 'acme' });
  const b = createTenant(ledger.db, { name: 'beta' });
  const ka = createKey(ledger.db, a.id);
  const kb = createKey(ledger.db, b.id);
  return { path, ledger, a, b, ka, kb };
}

const JAN = { from: Date.UTC(2025, 0, 1), to: Date.UTC(2025, 1, 1) };

describe('SqliteLedger', () => {
  it('authenticates through the ledger', () => {
    const { ledger, a, ka } = setup();
    expect(ledger.authenticate(ka.secret)?.tenant.id).toBe(a.id);
    expect(ledger.authenticate('tsk-nope')).toBeUndefined();
    ledger.close();
  });

  it('records a request id once: a repeat writes nothing and leaves totals unchanged', () => {
    const { ledger, a, ka } = setup();
    const r = usage(a.id, ka.keyId, { requestId: 'chatcmpl-1-0' });
    expect(ledger.record(r)).toBe(true);
    const before = ledger.summary({ ...JAN });
    expect(ledger.record(r)).toBe(false);
    expect(ledger.record({ ...r, promptTokens: 9999 })).toBe(false);
    expect(ledger.summary({ ...JAN })).toEqual(before);
    expect(ledger.db.prepare('SELECT COUNT(*) AS n FROM usage').get()).toEqual({ n: 1 });
    expect(before[0]).toMatchObject({ requests: 1, promptTokens: 100, completionTokens: 50 });
    ledger.close();
  });

  it('stores every field of a record', () => {
    const { ledger, a, ka } = setup();
    ledger.record(
      usage(a.id, ka.keyId, {
        requestId: 'r1',
        endpoint: '/v1/completions',
        cachedTokens: 64,
        status: 499,
        finishReason: 'cancelled',
        durationMs: 33.5,
        timeToFirstTokenMs: undefined,
      }),
    );
    expect(ledger.db.prepare('SELECT * FROM usage').get()).toEqual({
      request_id: 'r1',
      tenant_id: a.id,
      key_id: ka.keyId,
      model: 'tiny',
      endpoint: '/v1/completions',
      prompt_tokens: 100,
      completion_tokens: 50,
      cached_tokens: 64,
      status: 499,
      finish_reason: 'cancelled',
      started_at: Date.UTC(2025, 0, 15),
      duration_ms: 33.5,
      ttft_ms: null,
    });
    ledger.close();
  });

  it('summarises per tenant and model, for one tenant or all, within [from, to), with exact costs', () => {
    const { ledger, a, b, ka, kb } = setup();
    // acme/tiny: prompt 1000+500, cached 200+0, completion 500+250.
    ledger.record(usage(a.id, ka.keyId, { promptTokens: 1000, cachedTokens: 200, completionTokens: 500 }));
    ledger.record(usage(a.id, ka.keyId, { promptTokens: 500, completionTokens: 250 }));
    ledger.record(usage(a.id, ka.keyId, { model: 'big', promptTokens: 2000, completionTokens: 1000 }));
    ledger.record(usage(b.id, kb.keyId, { promptTokens: 10, completionTokens: 3 }));
    ledger.record(usage(b.id, kb.keyId, { model: 'unknown', startedAt: JAN.to })); // February: outside
    ledger.record(usage(b.id, kb.keyId, { model: 'unknown', startedAt: JAN.from - 1 })); // December: outside
    const all = ledger.summary({ ...JAN });
    // (1300*0.15 + 200*0.075 + 750*0.6) / 1e6 = (195 + 15 + 450) / 1e6
    expect(all).toEqual([
      {
        tenantId: a.id,
        tenantName: 'acme',
        model: 'big',
        requests: 1,
        promptTokens: 2000,
        completionTokens: 1000,
        cachedTokens: 0,
        cost: 0.021,
      },
      {
        tenantId: a.id,
        tenantName: 'acme',
        model: 'tiny',
        requests: 2,
        promptTokens: 1500,
        completionTokens: 750,
        cachedTokens: 200,
        cost: 0.00066,
      },
      // (10*0.15 + 3*0.6) / 1e6 = 3.3e-6 → rounds to 0.000003
      {
        tenantId: b.id,
        tenantName: 'beta',
        model: 'tiny',
        requests: 1,
        promptTokens: 10,
        completionTokens: 3,
        cachedTokens: 0,
        cost: 0.000003,
      },
    ]);
    expect(ledger.summary({ ...JAN, tenantId: b.id })).toEqual([all[2]]);
    expect(ledger.summary({ from: JAN.to, to: JAN.to + 1 })).toMatchObject([{ model: 'unknown', cost: 0 }]);
    expect(ledger.summary({ ...JAN, tenantId: 'ten_0000000000000000' })).toEqual([]);
    ledger.close();
  });

  it('refuses invalid records and a key of another tenant, with clear messages', () => {
    const { ledger, a, ka, kb } = setup();
    expect(() => ledger.record(usage(a.id, ka.keyId, { promptTokens: -1 }))).toThrow(
      /promptTokens must be an integer >= 0/,
    );
    expect(() => ledger.record(usage(a.id, ka.keyId, { cachedTokens: 101 }))).toThrow(
      /cachedTokens \(101\) exceeds promptTokens \(100\)/,
    );
    expect(() => ledger.record(usage(a.id, ka.keyId, { completionTokens: 1.5 }))).toThrow(/completionTokens/);
    expect(() => ledger.record(usage(a.id, ka.keyId, { endpoint: '/v1/embeddings' as never }))).toThrow(
      /endpoint/,
    );
    expect(() => ledger.record(usage(a.id, ka.keyId, { requestId: '' }))).toThrow(/requestId/);
    expect(() => ledger.record(usage(a.id, kb.keyId, { requestId: 'x' }))).toThrow(
      /no key '.*' belonging to tenant/,
    );
    expect(ledger.db.prepare('SELECT COUNT(*) AS n FROM usage').get()).toEqual({ n: 0 });
    ledger.close();
  });

  it('keeps the connection open when given one, closes it when it opened it', () => {
    const path = tempDbPath();
    const db = openDatabase(path);
    new SqliteLedger(db).close();
    expect(db.open).toBe(true);
    db.close();
    const own = new SqliteLedger(path);
    own.close();
    own.close();
    expect(own.db.open).toBe(false);
  });

  it('two processes writing at once under WAL lose no record and count overlapping ids once', async () => {
    const { path, ledger, a, ka } = setup();
    ledger.close();
    // Bundle the ledger (TypeScript) into one CommonJS file that plain `node` can run; better-sqlite3
    // stays external and resolves through NODE_PATH from the repository's node_modules.
    const dir = tempDir();
    const entry = join(dir, 'writer.ts');
    writeFileSync(
      entry,
      `import { SqliteLedger } from ${JSON.stringify(join(root, 'src/serve/ledger/ledger.ts'))};
       const [path, tenantId, keyId, tag, n] = process.argv.slice(2);
       const ledger = new SqliteLedger(path);
       let written = 0;
       for (let i = 0; i < Number(n); i++) {
         // Even ids are shared by both writers (a retried request); odd ids are this writer's own.
         const requestId = i % 2 === 0 ? 'shared-' + i : tag + '-' + i;
         if (ledger.record({ requestId, tenantId, keyId, model: 'tiny', endpoint: '/v1/completions', promptTokens: 10, completionTokens: 1,
           cachedTokens: 0, status: 200, finishReason: 'stop', startedAt: Date.UTC(2025, 0, 2), durationMs: 1 })) written++;
       }
       ledger.close();
       process.send!(written);`,
    );
    const bundle = join(dir, 'writer.cjs');
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      outfile: bundle,
      external: ['better-sqlite3'],
      logLevel: 'silent',
    });
    const n = 400;
    const run = (tag: string) =>
      new Promise<number>((resolve, reject) => {
        const child = fork(bundle, [path, a.id, ka.keyId, tag, String(n)], {
          env: { ...process.env, NODE_PATH: join(root, 'node_modules') },
        });
        let written = -1;
        child.on('message', (m) => (written = m as number));
        child.on('error', reject);
        child.on('exit', (code) =>
          code === 0 ? resolve(written) : reject(new Error(`writer ${tag} exited with ${code}`)),
        );
      });
    const [w1, w2] = await Promise.all([run('p1'), run('p2')]);
    const shared = n / 2;
    // Each process's own ids are all written; each shared id by exactly one of them.
    expect(w1 + w2).toBe(2 * (n / 2) + shared);
    const check = new SqliteLedger(path, { prices });
    expect(check.db.prepare('SELECT COUNT(*) AS n FROM usage').get()).toEqual({ n: n + shared });
    expect(check.summary({ ...JAN })).toMatchObject([
      { requests: n + shared, promptTokens: 10 * (n + shared) },
    ]);
    expect(integrityCheck(check.db)).toEqual({ ok: true, problems: [] });
    check.close();
  });
});
