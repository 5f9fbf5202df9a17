/**
 * Test doubles for the HTTP layer: a byte-level tokenizer (one id per UTF-8 byte, so multi-byte
 * characters really are split across tokens), an in-memory ledger, and helpers that start the real
 * Fastify app on a loopback port.
 */
import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildAppOptions } from '../../../src/serve/http/app.js';
import type { Ledger, Principal, Tenant, UsageRecord, UsageSummaryRow } from '../../../src/serve/types.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from '../../../src/tokenizer/types.js';
import { FakeEngine, type FakeEngineOptions } from './fake_engine.js';

const SPECIALS = ['<s>', '</s>', '<|im_start|>', '<|im_end|>'] as const;
export const BOS = 256;
export const EOS = 257;
export const IM_START = 258;
export const IM_END = 259;

/** Ids 0-255 are bytes; 256.. are the special tokens above. */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte-bpe' as const;
  readonly vocabSize = 256 + SPECIALS.length;
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly specialTokens: ReadonlyMap<string, number> = new Map(SPECIALS.map((s, i) => [s, 256 + i]));

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = opts.addSpecial === false ? [] : [BOS];
    let i = 0;
    while (i < text.length) {
      const sp = opts.parseSpecial ? SPECIALS.find((s) => text.startsWith(s, i)) : undefined;
      if (sp) {
        out.push(this.specialTokens.get(sp)!);
        i += sp.length;
        continue;
      }
      const cp = text.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      out.push(...new TextEncoder().encode(ch));
      i += ch.length;
    }
    return out;
  }

  decodeBytes(ids: readonly number[], opts: DecodeOptions = {}): Uint8Array {
    const bytes: number[] = [];
    for (const id of ids) {
      if (id < 256) bytes.push(id);
      else if (!opts.skipSpecial) bytes.push(...new TextEncoder().encode(SPECIALS[id - 256]));
    }
    return Uint8Array.from(bytes);
  }

  decode(ids: readonly number[], opts?: DecodeOptions): string {
    return new TextDecoder().decode(this.decodeBytes(ids, opts));
  }

  tokenToId(token: string): number | undefined {
    return this.specialTokens.get(token) ?? (token.length === 1 && token.charCodeAt(0) < 256 ? token.charCodeAt(0) : undefined);
  }

  idToToken(id: number): string | undefined {
    return id < 256 ? String.fromCharCode(id) : SPECIALS[id - 256];
  }
}

/** Byte tokens of `text` (no BOS): what a scripted engine "generates". */
export const bytesOf = (text: string): number[] => [...new TextEncoder().encode(text)];

export const ACME: Tenant = { id: 'tenant-acme', name: 'acme', admin: false, limits: {} };
export const ADMIN: Tenant = { id: 'tenant-root', name: 'root', admin: true, limits: {} };
/** A tenant allowed one request a minute. */
export const SLOW: Tenant = { id: 'tenant-slow', name: 'slow', admin: false, limits: { requestsPerMinute: 1 } };
export const ACME_KEY = 'tsk-acme-secret';
export const SLOW_KEY = 'tsk-slow-secret';
export const ADMIN_KEY = 'tsk-root-secret';

/** An in-memory {@link Ledger} with the SQLite ledger's idempotence. */
export class MemoryLedger implements Ledger {
  readonly records: UsageRecord[] = [];
  readonly keys = new Map<string, Principal>([
    [ACME_KEY, { tenant: ACME, keyId: 'key-acme' }],
    [ADMIN_KEY, { tenant: ADMIN, keyId: 'key-root' }],
    [SLOW_KEY, { tenant: SLOW, keyId: 'key-slow' }],
  ]);
  summaryQueries: Array<{ from: number; to: number; tenantId?: string }> = [];
  /** When set, `record` throws it (a failing disk). */
  failWith: Error | undefined;

  authenticate(apiKey: string): Principal | undefined {
    return this.keys.get(apiKey);
  }

  record(r: UsageRecord): void {
    if (this.failWith) throw this.failWith;
    if (this.records.some((x) => x.requestId === r.requestId)) return;
    this.records.push({ ...r });
  }

  summary(q: { from: number; to: number; tenantId?: string }): UsageSummaryRow[] {
    this.summaryQueries.push(q);
    const rows = new Map<string, UsageSummaryRow>();
    for (const r of this.records) {
      if (r.startedAt < q.from || r.startedAt >= q.to || (q.tenantId !== undefined && r.tenantId !== q.tenantId)) continue;
      const key = `${r.tenantId}/${r.model}`;
      const row = rows.get(key) ?? { tenantId: r.tenantId, tenantName: r.tenantId === ACME.id ? ACME.name : ADMIN.name, model: r.model, requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, cost: 0 };
      row.requests++;
      row.promptTokens += r.promptTokens;
      row.completionTokens += r.completionTokens;
      row.cachedTokens += r.cachedTokens;
      rows.set(key, row);
    }
    return [...rows.values()];
  }

  close(): void {}
}

/** A running app over fakes. */
export interface TestServer {
  url: string;
  app: FastifyInstance;
  engine: FakeEngine;
  ledger: MemoryLedger;
  tokenizer: ByteTokenizer;
  close(): Promise<void>;
  /** POST JSON with the acme key (or `key`). */
  post(path: string, body: unknown, key?: string | null): Promise<Response>;
  get(path: string, key?: string | null): Promise<Response>;
}

export async function startTestServer(opts: { engine?: FakeEngineOptions; app?: Partial<BuildAppOptions> } = {}): Promise<TestServer> {
  const tokenizer = new ByteTokenizer();
  const engine = new FakeEngine(opts.engine);
  const ledger = new MemoryLedger();
  const app = buildApp({ engine, ledger, tokenizer, ...opts.app });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const headers = (key: string | null | undefined): Record<string, string> => (key === null ? {} : { authorization: `Bearer ${key ?? ACME_KEY}` });
  return {
    url,
    app,
    engine,
    ledger,
    tokenizer,
    // undici opens a spare connection after an aborted one; Node's close() waits for it to time out.
    close: async () => {
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
    },
    post: (path, body, key) => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers(key) }, body: typeof body === 'string' ? body : JSON.stringify(body) }),
    get: (path, key) => fetch(url + path, { headers: headers(key) }),
  };
}

/** The `data:` payloads of an SSE body, in order ('[DONE]' kept as a string). */
export function parseSse(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))
    .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

/** Poll until `cond` holds (for effects that follow a disconnect). */
export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
