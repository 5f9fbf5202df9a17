// The admin commands, driven through commander as `tessera` would: tenants, keys (the secret printed
// once, working against the ledger, then revoked), billing reports, and errors as ValueError.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerAdminCommands } from '../../../src/cli/admin.js';
import { ValueError } from '../../../src/errors.js';
import { SqliteLedger } from '../../../src/serve/ledger/index.js';
import { tempDir, usage } from './helpers.js';

/** A fresh program per command, as each `tessera` invocation is; returns what it printed. */
function cli(env: NodeJS.ProcessEnv = {}) {
  return async (...args: string[]): Promise<string> => {
    let out = '';
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {} });
    registerAdminCommands(program, { write: (s) => (out += s), env });
    await program.parseAsync(args, { from: 'user' });
    return out;
  };
}

describe('admin CLI', () => {
  it('creates tenants and keys, lists them, authenticates and revokes, in the --db file', async () => {
    const db = join(tempDir(), 'ledger.db');
    const run = cli();
    expect(await run('tenants', 'create', 'acme', '--rpm', '60', '--tpm', '100000', '--db', db)).toMatch(
      /^created tenant acme \(ten_[0-9a-f]{16}\); next: tessera keys create --tenant acme\n$/,
    );
    expect(await run('tenants', 'create', 'ops', '--admin', '--db', db)).toMatch(/, admin;/);
    const created = await run('keys', 'create', '--tenant', 'acme', '--db', db);
    const secret = /^(tsk-\S+)$/m.exec(created)![1]!;
    const keyId = secret.slice(4, 16);
    expect(created).toMatch(/store this secret now: it cannot be shown again/);
    const quiet = (await run('keys', 'create', '--tenant', 'ops', '--quiet', '--db', db)).trim();
    expect(quiet).toMatch(/^tsk-[0-9a-f]{12}-[A-Za-z0-9_-]{43}$/);

    const tenants = await run('tenants', 'list', '--db', db);
    expect(tenants).toMatch(/^id\s+name\s+admin\s+rpm\s+tpm\s+active keys\n/);
    expect(tenants).toMatch(/ten_\w+\s+acme\s+no\s+60\s+100000\s+1\n/);
    expect(tenants).toMatch(/ten_\w+\s+ops\s+yes\s+unlimited\s+unlimited\s+1\n/);
    const keys = await run('keys', 'list', '--tenant', 'acme', '--db', db);
    expect(keys).toContain(keyId);
    expect(keys).not.toContain(secret.slice(17));
    expect(keys).toMatch(/\s-\n$/);

    const ledger = new SqliteLedger(db);
    expect(ledger.authenticate(secret)?.tenant).toMatchObject({
      name: 'acme',
      limits: { requestsPerMinute: 60, tokensPerMinute: 100_000 },
    });
    expect(ledger.authenticate(quiet)?.tenant.admin).toBe(true);
    expect(await run('keys', 'revoke', keyId, '--db', db)).toBe(`revoked key ${keyId}\n`);
    expect(await run('keys', 'revoke', keyId, '--db', db)).toBe(`key ${keyId} was already revoked\n`);
    expect(ledger.authenticate(secret)).toBeUndefined();
    expect(await run('keys', 'list', '--db', db)).toMatch(
      new RegExp(`${keyId}.*\\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\n`),
    );
    ledger.close();
  });

  it('uses TESSERA_DB when --db is absent', async () => {
    const db = join(tempDir(), 'env.db');
    await cli({ TESSERA_DB: db })('tenants', 'create', 'acme');
    expect(existsSync(db)).toBe(true);
    expect(await cli({ TESSERA_DB: db })('tenants', 'list')).toContain('acme');
  });

  it('prints the billing report for a month with a price file', async () => {
    const dir = tempDir();
    const db = join(dir, 'ledger.db');
    const run = cli();
    await run('tenants', 'create', 'acme', '--db', db);
    const ledger = new SqliteLedger(db);
    const t = ledger.db.prepare('SELECT id FROM tenants').get() as { id: string };
    const k = /^(tsk-\S+)$/m.exec(await run('keys', 'create', '--tenant', 'acme', '--db', db))![1]!;
    ledger.record(
      usage(t.id, k.slice(4, 16), {
        startedAt: Date.UTC(2025, 0, 31, 23, 59, 59, 999),
        promptTokens: 1000,
        cachedTokens: 200,
        completionTokens: 500,
      }),
    );
    ledger.close();
    const prices = join(dir, 'prices.json');
    writeFileSync(
      prices,
      JSON.stringify({ currency: 'USD', models: { tiny: { input: 0.15, output: 0.6, cached: 0.075 } } }),
    );
    const report = await run('billing', 'report', '--month', '2025-01', '--prices', prices, '--db', db);
    expect(report).toContain('Tenant acme');
    expect(report).toMatch(/total\s+1\s+1,000\s+200\s+500\s+1,500\s+0\.000435\n/);
    expect(await run('billing', 'report', '--month', '2025-02', '--prices', prices, '--db', db)).toMatch(
      /no usage in this month/,
    );
    expect(await run('billing', 'report', '--month', '2025-01', '--db', db)).toMatch(
      /warning: no price for tiny/,
    );
  });

  it('fails with ValueErrors that say what is wrong', async () => {
    const dir = tempDir();
    const db = join(dir, 'ledger.db');
    const run = cli();
    const fails = async (args: string[], message: RegExp) => {
      const e = await run(...args).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e, args.join(' ')).toBeInstanceOf(ValueError);
      expect((e as Error).message).toMatch(message);
    };
    await fails(['tenants', 'list', '--db', db], /no ledger database at '.*ledger\.db'/);
    expect(existsSync(db)).toBe(false);
    await fails(
      ['tenants', 'create', 'acme', '--rpm', 'ten', '--db', db],
      /--rpm must be an integer >= 0, got 'ten'/,
    );
    await run('tenants', 'create', 'acme', '--db', db);
    await fails(['tenants', 'create', 'acme', '--db', db], /tenant 'acme' already exists/);
    await fails(['keys', 'create', '--tenant', 'nobody', '--db', db], /no tenant named or with id 'nobody'/);
    await fails(['keys', 'revoke', 'abcdefabcdef', '--db', db], /no API key with id 'abcdefabcdef'/);
    await fails(['billing', 'report', '--month', '2025-1', '--db', db], /month must be YYYY-MM/);
    writeFileSync(join(dir, 'prices.json'), '{ "models": { "tiny": { "input": 1, "output": -2 } } }');
    await fails(
      ['billing', 'report', '--month', '2025-01', '--prices', join(dir, 'prices.json'), '--db', db],
      /prices\.json: models\.tiny\.output must be a number >= 0/,
    );
    // A missing required option is commander's own error.
    await expect(run('billing', 'report', '--db', db)).rejects.toThrow(
      /required option '--month <YYYY-MM>' not specified/,
    );
  });
});
