/**
 * Tenants and API keys. A key is `tsk-<key id>-<secret>`: the key id makes lookup one primary-key
 * read, and only the SHA-256 of the whole key is stored, so a copy of the database (or a backup) holds
 * no usable credential.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal, Tenant, TenantLimits } from '../types.js';
import { ValueError } from '../../errors.js';
import { type LedgerDatabase, prepared } from './db.js';

/** Key prefix, so a leaked key is recognisable by secret scanners and in logs. */
export const KEY_PREFIX = 'tsk-';

const TENANT_ID = /^ten_[0-9a-f]{16}$/;
const KEY_ID = /^[0-9a-f]{12}$/;
/** base64url of 32 random bytes: 43 characters, no padding. */
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** A newly created key: the only time its secret is available. */
export interface CreatedKey {
  keyId: string;
  tenantId: string;
  /** The full API key, `tsk-<key id>-<secret>`: show it once, it is not stored. */
  secret: string;
  /** The non-secret part shown in listings. */
  prefix: string;
  createdAt: number;
}

/** A key as listings show it (never the secret). */
export interface ApiKeyInfo {
  keyId: string;
  tenantId: string;
  tenantName: string;
  prefix: string;
  createdAt: number;
  revokedAt?: number;
}

export interface CreateTenantOptions {
  name: string;
  admin?: boolean;
  limits?: TenantLimits;
}

interface TenantRow {
  id: string;
  name: string;
  admin: number;
  rpm: number | null;
  tpm: number | null;
}

function toTenant(r: TenantRow): Tenant {
  const limits: TenantLimits = {};
  if (r.rpm !== null) limits.requestsPerMinute = r.rpm;
  if (r.tpm !== null) limits.tokensPerMinute = r.tpm;
  return { id: r.id, name: r.name, admin: r.admin === 1, limits };
}

function checkLimit(name: string, v: number | undefined): number | null {
  if (v === undefined) return null;
  if (!Number.isSafeInteger(v) || v < 0)
    throw new ValueError(`${name} must be an integer >= 0 (or unset for unlimited), got ${v}`);
  return v;
}

/**
 * Create a tenant. Names are unique, 1-100 characters, and may not look like a tenant id, so that
 * commands taking "name or id" are never ambiguous.
 * @throws ValueError for a bad or taken name or a negative limit.
 */
export function createTenant(
  db: LedgerDatabase,
  options: CreateTenantOptions,
  now: number = Date.now(),
): Tenant {
  const name = options.name.trim();
  if (name.length === 0 || name.length > 100)
    throw new ValueError(`tenant name must be 1 to 100 characters, got '${options.name}'`);
  if (TENANT_ID.test(name))
    throw new ValueError(
      `tenant name '${name}' looks like a tenant id (ten_ + 16 hex digits): choose another name`,
    );
  const rpm = checkLimit('requestsPerMinute', options.limits?.requestsPerMinute);
  const tpm = checkLimit('tokensPerMinute', options.limits?.tokensPerMinute);
  if (findTenant(db, name)) throw new ValueError(`tenant '${name}' already exists`);
  const id = `ten_${randomBytes(8).toString('hex')}`;
  prepared(db, 'INSERT INTO tenants (id, name, admin, rpm, tpm, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
    id,
    name,
    options.admin ? 1 : 0,
    rpm,
    tpm,
    now,
  );
  return toTenant({ id, name, admin: options.admin ? 1 : 0, rpm, tpm });
}

/** Change a tenant's limits (undefined fields become unlimited) or admin flag. */
export function updateTenant(
  db: LedgerDatabase,
  nameOrId: string,
  change: { admin?: boolean; limits?: TenantLimits },
): Tenant {
  const t = requireTenant(db, nameOrId);
  const limits = change.limits ?? t.limits;
  const admin = change.admin ?? t.admin;
  const rpm = checkLimit('requestsPerMinute', limits.requestsPerMinute);
  const tpm = checkLimit('tokensPerMinute', limits.tokensPerMinute);
  prepared(db, 'UPDATE tenants SET admin = ?, rpm = ?, tpm = ? WHERE id = ?').run(
    admin ? 1 : 0,
    rpm,
    tpm,
    t.id,
  );
  return toTenant({ id: t.id, name: t.name, admin: admin ? 1 : 0, rpm, tpm });
}

/** All tenants, by name. */
export function listTenants(db: LedgerDatabase): Tenant[] {
  return (
    prepared(db, 'SELECT id, name, admin, rpm, tpm FROM tenants ORDER BY name').all() as TenantRow[]
  ).map(toTenant);
}

/** The tenant with this id or name, or undefined. */
export function findTenant(db: LedgerDatabase, nameOrId: string): Tenant | undefined {
  const r = prepared(db, 'SELECT id, name, admin, rpm, tpm FROM tenants WHERE id = ? OR name = ?').get(
    nameOrId,
    nameOrId,
  ) as TenantRow | undefined;
  return r && toTenant(r);
}

/** Like {@link findTenant}, but a missing tenant is a ValueError naming it. */
export function requireTenant(db: LedgerDatabase, nameOrId: string): Tenant {
  const t = findTenant(db, nameOrId);
  if (!t) throw new ValueError(`no tenant named or with id '${nameOrId}' (see \`tessera tenants list\`)`);
  return t;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Create an API key for a tenant. The returned `secret` is the only copy: the database keeps its hash. */
export function createKey(db: LedgerDatabase, tenantNameOrId: string, now: number = Date.now()): CreatedKey {
  const tenant = requireTenant(db, tenantNameOrId);
  // 48 random bits of id: a collision is astronomically unlikely, and the primary key catches one anyway.
  const keyId = randomBytes(6).toString('hex');
  const random = randomBytes(32).toString('base64url');
  const secret = `${KEY_PREFIX}${keyId}-${random}`;
  // The id alone is the display prefix: showing any of the random part would weaken the key for nothing.
  const prefix = `${KEY_PREFIX}${keyId}`;
  prepared(
    db,
    'INSERT INTO api_keys (id, tenant_id, secret_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)',
  ).run(keyId, tenant.id, sha256(secret), prefix, now);
  return { keyId, tenantId: tenant.id, secret, prefix, createdAt: now };
}

/** Keys, newest first; of one tenant (name or id) or of all. Includes revoked keys, marked. */
export function listKeys(db: LedgerDatabase, tenantNameOrId?: string): ApiKeyInfo[] {
  const sql = `SELECT k.id AS keyId, k.tenant_id AS tenantId, t.name AS tenantName, k.prefix, k.created_at AS createdAt, k.revoked_at AS revokedAt
               FROM api_keys k JOIN tenants t ON t.id = k.tenant_id`;
  const rows = (
    tenantNameOrId === undefined
      ? prepared(db, `${sql} ORDER BY k.created_at DESC, k.id`).all()
      : prepared(db, `${sql} WHERE k.tenant_id = ? ORDER BY k.created_at DESC, k.id`).all(
          requireTenant(db, tenantNameOrId).id,
        )
  ) as (Omit<ApiKeyInfo, 'revokedAt'> & { revokedAt: number | null })[];
  return rows.map(({ revokedAt, ...r }) => (revokedAt === null ? r : { ...r, revokedAt }));
}

/** The key id inside `tsk-<id>` or `tsk-<id>-<secret>`, or the argument itself when it is a bare id. */
function keyIdOf(s: string): string {
  const rest = s.startsWith(KEY_PREFIX) ? s.slice(KEY_PREFIX.length) : s;
  const dash = rest.indexOf('-');
  return dash < 0 ? rest : rest.slice(0, dash);
}

/**
 * Revoke a key (by id, or its displayed `tsk-<id>` prefix). Returns false when it was already revoked.
 * @throws ValueError for an unknown key.
 */
export function revokeKey(db: LedgerDatabase, keyIdOrPrefix: string, now: number = Date.now()): boolean {
  const keyId = keyIdOf(keyIdOrPrefix);
  const r = prepared(db, 'SELECT revoked_at FROM api_keys WHERE id = ?').get(keyId) as
    { revoked_at: number | null } | undefined;
  if (!r) throw new ValueError(`no API key with id '${keyIdOrPrefix}' (see \`tessera keys list\`)`);
  if (r.revoked_at !== null) return false;
  prepared(db, 'UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, keyId);
  return true;
}

/** Split a presented key; undefined when it is not of the form `tsk-<12 hex>-<43 base64url>`. */
export function parseApiKey(apiKey: string): { keyId: string } | undefined {
  if (!apiKey.startsWith(KEY_PREFIX)) return undefined;
  const rest = apiKey.slice(KEY_PREFIX.length);
  const keyId = rest.slice(0, 12);
  if (!KEY_ID.test(keyId) || rest[12] !== '-' || !SECRET.test(rest.slice(13))) return undefined;
  return { keyId };
}

/** Compared against when the key id is unknown, so that case costs the same hash and compare. */
const DUMMY_HASH = sha256('tessera: no such key');

/**
 * The principal for a presented API key, or undefined for a malformed, unknown or revoked key.
 * One primary-key lookup by the key id, then a constant-time comparison of SHA-256 digests (equal
 * lengths by construction, so `timingSafeEqual` never throws and leaks nothing through timing).
 */
export function authenticateKey(db: LedgerDatabase, apiKey: string): Principal | undefined {
  const parsed = parseApiKey(apiKey);
  const presented = sha256(apiKey);
  const row = parsed
    ? (prepared(
        db,
        `SELECT k.secret_hash AS hash, t.id, t.name, t.admin, t.rpm, t.tpm
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ? AND k.revoked_at IS NULL`,
      ).get(parsed.keyId) as (TenantRow & { hash: Buffer }) | undefined)
    : undefined;
  const match = timingSafeEqual(presented, row ? row.hash : DUMMY_HASH);
  if (!row || !match) return undefined;
  return { tenant: toTenant(row), keyId: parsed!.keyId };
}
