// Shared fixtures of the ledger tests: a fresh database file in its own temp dir, and usage records.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UsageRecord } from '../../../src/serve/types.js';

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tessera-ledger-'));
}

export function tempDbPath(): string {
  return join(tempDir(), 'ledger.db');
}

let n = 0;
/** A valid record; override what the test is about. */
export function usage(tenantId: string, keyId: string, over: Partial<UsageRecord> = {}): UsageRecord {
  return {
    requestId: `req-${++n}`,
    tenantId,
    keyId,
    model: 'tiny',
    endpoint: '/v1/chat/completions',
    promptTokens: 100,
    completionTokens: 50,
    cachedTokens: 0,
    status: 200,
    finishReason: 'stop',
    startedAt: Date.UTC(2025, 0, 15),
    durationMs: 120,
    timeToFirstTokenMs: 20,
    ...over,
  };
}
