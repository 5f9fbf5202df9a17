// Tenants and API keys: secrets shown once and stored only as hashes; revoked, wrong and malformed
// keys fail authentication; the schema is versioned and the database passes its integrity check.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValueError } from '../../../src/errors.js';
import {
  SCHEMA_VERSION,
  authenticateKey,
  createKey,
  createTenant,
  findTenant,
  integrityCheck,
  listKeys,
  listTenants,
  openDatabase,
  parseApiKey,
  revokeKey,
  schemaVersion,
  updateTenant,
} from '../../../src/serve/ledger/index.js';
import { tempDbPath } from './helpers.js';

describe('tenants and keys', () => {
  it('creates tenants with limits and an admin flag, looked up by name or id', () => {
    const db = openDatabase(tempDbPath());
    const a = createTenant(db, { name: 'acme', limits: { requestsPerMinute: 60, tokensPerMinute: 10_000 } });
    const b = createTenant(db, { name: 'ops', admin: true });
    expect(a.id).toMatch(/^ten_[0-9a-f]{16}$/);
    expect(a).toEqual({
      id: a.id,
      name: 'acme',
      admin: false,
      limits: { requestsPerMinute: 60, tokensPerMinute: 10_000 },
    });
    expect(b.admin).toBe(true);
    expect(b.limits).toEqual({});
    expect(findTenant(db, 'acme')).toEqual(a);
    expect(findTenant(db, a.id)).toEqual(a);
    expect(listTenants(db).map((t) => t.name)).toEqual(['acme', 'ops']);
    expect(() => createTenant(db, { name: 'acme' })).toThrow(/tenant 'acme' already exists/);
    expect(() => createTenant(db, { name: '  ' })).toThrow(ValueError);
    expect(() => createTenant(db, { name: 'x', limits: { requestsPerMinute: -1 } })).toThrow(
      /requestsPerMinute must be an integer >= 0/,
    );
    expect(updateTenant(db, 'acme', { limits: { requestsPerMinute: 5 } }).limits).toEqual({
      requestsPerMinute: 5,
    });
    db.close();
  });

  it('stores only the hash: the secret appears nowhere in the database files', () => {
    const path = tempDbPath();
    const db = openDatabase(path);
    createTenant(db, { name: 'acme' });
    const k = createKey(db, 'acme');
    expect(k.secret).toMatch(/^tsk-[0-9a-f]{12}-[A-Za-z0-9_-]{43}$/);
    expect(k.secret.startsWith(`tsk-${k.keyId}-`)).toBe(true);
    const random = k.secret.slice(`tsk-${k.keyId}-`.length);
    // Check the WAL too (while open) and the main file after a checkpoint on close.
    const scan = () => {
      for (const f of readdirSync(dirname(path))) {
        const bytes = readFileSync(join(dirname(path), f));
        expect(bytes.includes(Buffer.from(k.secret)), f).toBe(false);
        expect(bytes.includes(Buffer.from(random)), f).toBe(false);
      }
    };
    scan();
    expect(listKeys(db)[0]).toEqual({
      keyId: k.keyId,
      tenantId: k.tenantId,
      tenantName: 'acme',
      prefix: `tsk-${k.keyId}`,
      createdAt: k.createdAt,
    });
    expect(JSON.stringify(listKeys(db))).not.toContain(random);
    db.close();
    scan();
  });

  it('authenticates a valid key and refuses wrong, malformed and revoked ones', () => {
    const db = openDatabase(tempDbPath());
    const t = createTenant(db, { name: 'acme', limits: { tokensPerMinute: 500 } });
    const k = createKey(db, t.id);
    const other = createKey(db, 'acme');
    expect(authenticateKey(db, k.secret)).toEqual({ tenant: t, keyId: k.keyId });
    // Same key id, different secret (one character changed).
    const last = k.secret.at(-1) === 'A' ? 'B' : 'A';
    expect(authenticateKey(db, k.secret.slice(0, -1) + last)).toBeUndefined();
    // Another key's secret under this key id.
    expect(authenticateKey(db, `tsk-${k.keyId}-${other.secret.slice(-43)}`)).toBeUndefined();
    for (const bad of [
      '',
      'tsk-',
      'sk-abc',
      k.secret + 'x',
      k.secret.slice(0, -1),
      `tsk-000000000000-${k.secret.slice(-43)}`,
    ]) {
      expect(authenticateKey(db, bad), bad).toBeUndefined();
    }
    expect(parseApiKey(k.secret)).toEqual({ keyId: k.keyId });
    expect(revokeKey(db, k.keyId)).toBe(true);
    expect(revokeKey(db, `tsk-${k.keyId}`)).toBe(false);
    expect(authenticateKey(db, k.secret)).toBeUndefined();
    expect(authenticateKey(db, other.secret)?.keyId).toBe(other.keyId);
    expect(listKeys(db, 'acme').find((x) => x.keyId === k.keyId)?.revokedAt).toBeTypeOf('number');
    expect(() => revokeKey(db, 'ffffffffffff')).toThrow(/no API key with id 'ffffffffffff'/);
    expect(() => createKey(db, 'nobody')).toThrow(/no tenant named or with id 'nobody'/);
    db.close();
  });

  it('opens with WAL, FULL sync and foreign keys, at the current schema version, integrity ok', () => {
    const path = tempDbPath();
    const db = openDatabase(path);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(schemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(integrityCheck(db)).toEqual({ ok: true, problems: [] });
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => openDatabase(path)).toThrow(/newer than this Tessera/);
    expect(() => openDatabase(join(dirname(path), 'missing.db'), { mustExist: true })).toThrow(
      /no ledger database at/,
    );
  });
});
