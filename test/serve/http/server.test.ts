/**
 * `tessera serve` end to end with the real engine (worker thread, paged KV cache) and the SQLite ledger,
 * on a tiny random Llama exported to GGUF with a byte-level BPE tokenizer trained here:
 * - greedy completions equal sequential `Llama.generate`, and the usage rows equal what responses said;
 * - the official openai client, streaming and not;
 * - ledger integrity across a crash: a server child process is SIGKILLed under concurrent load and
 *   restarted on the same database; every request that got a complete response has exactly one usage
 *   record with its token counts, and the database passes integrity_check.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../../src/runtime/node_devices.js';
import { manualSeed } from '../../../src/index.js';
import { exportGGUF } from '../../../src/models/gguf.js';
import { Llama } from '../../../src/nn/llama.js';
import { setDefaultDevice } from '../../../src/runtime/registry.js';
import { createKey, createTenant, integrityCheck, openDatabase } from '../../../src/serve/ledger/index.js';
import { startServer, type RunningServer } from '../../../src/serve/server.js';
import type { ByteLevelBPE } from '../../../src/tokenizer/byte_level.js';
import { trainByteLevelBPE } from '../../../src/tokenizer/train.js';
import { parseSse } from './fakes.js';

setDefaultDevice('cpu');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tessera-serve-'));
const modelPath = join(dir, 'tiny.gguf');
const CORPUS = 'the cat sat on the mat. the dog sat on the log. a cat and a dog met on the mat by the log. '.repeat(20);
let tok: ByteLevelBPE;
let model: Llama;

/** A database with one tenant and its key. */
function newLedger(name: string): { db: string; key: string } {
  const db = join(dir, `${name}.db`);
  const conn = openDatabase(db);
  createTenant(conn, { name: 'acme' });
  const key = createKey(conn, 'acme').secret;
  conn.close();
  return { db, key };
}

beforeAll(async () => {
  tok = trainByteLevelBPE(CORPUS, { vocabSize: 300, specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] });
  manualSeed(3);
  model = new Llama({ vocabSize: tok.vocabSize, dim: 32, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 64, maxSeqLen: 128 });
  await exportGGUF(modelPath, { arch: 'llama', model }, { type: 'F32', tokenizer: tok, name: 'tiny-serve' });
});

describe('startServer with the real engine and ledger', () => {
  let server: RunningServer;
  let key: string;
  let db: string;
  beforeAll(async () => {
    ({ db, key } = newLedger('inproc'));
    server = await startServer({ model: modelPath, port: 0, db, kvCacheBytes: 4 << 20, handleSignals: false, logger: false });
    // A cold start compiles the engine's native kernels (cached on disk afterwards): minutes on 2 cores.
  }, 600_000);
  afterAll(() => server?.close());

  const post = (path: string, body: unknown) => fetch(server.url + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

  it('greedy completions are the tokens of Llama.generate, and usage rows equal the responses', async () => {
    const prompt = tok.encode('the cat sat on', { addSpecial: false });
    const eos = tok.eosId;
    const want = model.generate([prompt], { temperature: 0, maxNewTokens: 12 })[0]!;
    const cut = eos !== undefined && want.includes(eos) ? want.indexOf(eos) : want.length;
    const res = await post('/v1/completions', { model: 'tiny-serve', prompt, max_tokens: 12, temperature: 0 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.choices[0].text).toBe(tok.decode(want.slice(0, cut), { skipSpecial: true }));
    expect(body.usage).toMatchObject({ prompt_tokens: prompt.length, completion_tokens: cut });
    const streamed = await post('/v1/completions', { model: 'tiny-serve', prompt, max_tokens: 12, temperature: 0, stream: true });
    const text = (parseSse(await streamed.text()) as Json[]).filter((e) => (e as unknown) !== '[DONE]').map((c) => c.choices[0].text).join('');
    expect(text).toBe(body.choices[0].text);

    const conn = openDatabase(db);
    const row = conn.prepare('SELECT prompt_tokens, completion_tokens, status FROM usage WHERE request_id = ?').get(body.id) as Json;
    conn.close();
    expect(row).toEqual({ prompt_tokens: prompt.length, completion_tokens: cut, status: 200 });
    const metrics = await (await fetch(server.url + '/metrics')).text();
    expect(metrics).toMatch(/tessera_kv_blocks_total \d+/);
  }, 300_000);

  it('serves the official openai client, streaming and not', async () => {
    const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: key, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'tiny-serve', messages: [{ role: 'user', content: 'the dog' }], max_tokens: 6, temperature: 0 });
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({ model: 'tiny-serve', messages: [{ role: 'user', content: 'the dog' }], max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage ??= chunk.usage;
    }
    expect(text).toBe(r.choices[0]!.message.content);
    expect(usage).toMatchObject({ completion_tokens: r.usage!.completion_tokens, prompt_tokens: r.usage!.prompt_tokens });
  }, 300_000);
});

describe('ledger integrity across a crash', () => {
  const cache = join(repo, 'node_modules', '.cache', 'tessera-serve-test');
  const entry = join(cache, 'serve_child.mjs');
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // Three levels below the repository, like the engine's own worker bundle, so modules that find
    // files relative to themselves look in the same places; the worker sits where the client looks.
    mkdirSync(cache, { recursive: true });
    const esbuild = await import('esbuild');
    const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'silent' } as const;
    await esbuild.build({ ...common, entryPoints: [join(repo, 'test/serve/http/serve_child.ts')], outfile: entry });
    await esbuild.build({ ...common, entryPoints: [join(repo, 'src/serve/engine/worker.ts')], outfile: join(cache, 'worker.js') });
  }, 120_000);
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  /** Start a server child on `db`; resolves with its URL. */
  async function spawnServer(db: string): Promise<{ child: ChildProcess; url: string }> {
    const child = spawn(process.execPath, [entry, JSON.stringify({ model: modelPath, port: 0, db, kvCacheBytes: 4 << 20, maxBatch: 8 })], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const url = await new Promise<string>((resolve, reject) => {
      lines.once('line', (l) => resolve((JSON.parse(l) as { url: string }).url));
      child.once('exit', (code) => reject(new Error(`server child exited with ${code} before listening`)));
    });
    return { child, url };
  }

  /** One request; resolves with its id and usage if the response was complete, undefined if it broke. */
  async function request(url: string, key: string, i: number): Promise<{ id: string; prompt: number; completion: number } | undefined> {
    const stream = i % 2 === 0;
    try {
      const res = await fetch(url + '/v1/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: 'tiny-serve', prompt: `the cat ${i}`, max_tokens: 8 + (i % 5) * 6, temperature: 0.8, seed: i, stream, stream_options: { include_usage: true } }),
      });
      if (res.status !== 200) return undefined;
      if (!stream) {
        const b = (await res.json()) as Json;
        return { id: b.id, prompt: b.usage.prompt_tokens, completion: b.usage.completion_tokens };
      }
      const events = parseSse(await res.text()) as Json[];
      if ((events.at(-1) as unknown) !== '[DONE]') return undefined;
      const usage = events.at(-2)!;
      return { id: usage.id, prompt: usage.usage.prompt_tokens, completion: usage.usage.completion_tokens };
    } catch {
      return undefined;
    }
  }

  it('every complete response has exactly one usage record after SIGKILL and restart', async () => {
    const { db, key } = newLedger('crash');
    const first = await spawnServer(db);
    const completed: Array<{ id: string; prompt: number; completion: number }> = [];
    const load = Array.from({ length: 24 }, (_, i) =>
      request(first.url, key, i).then((r) => {
        if (r) completed.push(r);
      }),
    );
    // Kill it mid-load: some requests done, others streaming or queued.
    const t0 = Date.now();
    while (completed.length < 4 && Date.now() - t0 < 300_000) await new Promise((r) => setTimeout(r, 5));
    first.child.kill('SIGKILL');
    await Promise.all(load);
    expect(completed.length).toBeGreaterThanOrEqual(4);
    expect(completed.length).toBeLessThan(24);

    const second = await spawnServer(db);
    const after = (await Promise.all(Array.from({ length: 6 }, (_, i) => request(second.url, key, 100 + i)))).filter((r) => r !== undefined);
    expect(after).toHaveLength(6);
    completed.push(...after);
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
    expect(second.child.exitCode).toBe(0);

    const conn = openDatabase(db);
    try {
      expect(integrityCheck(conn)).toEqual({ ok: true, problems: [] });
      const rows = conn.prepare('SELECT request_id, prompt_tokens, completion_tokens, status FROM usage').all() as Json[];
      const byId = new Map(rows.map((r) => [r.request_id as string, r]));
      expect(byId.size).toBe(rows.length);
      for (const c of completed) {
        expect(byId.get(c.id), c.id).toEqual({ request_id: c.id, prompt_tokens: c.prompt, completion_tokens: c.completion, status: 200 });
      }
    } finally {
      conn.close();
    }
  }, 600_000);
});
