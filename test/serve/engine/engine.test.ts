/**
 * The engine on a real (tiny, random) Llama exported to GGUF, on the native cpu device: continuous
 * batching of requests arriving at different times, chunked prefill, prefix caching, preemption under a
 * tiny KV budget, cancellation, admission errors — all with exactly the tokens of sequential greedy
 * `Llama.generate` — and the worker-thread engine end to end while the main event loop keeps ticking.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../../src/runtime/node_devices.js';
import { manualSeed } from '../../../src/index.js';
import { exportGGUF, loadGGUFModel } from '../../../src/models/gguf.js';
import { Llama } from '../../../src/nn/llama.js';
import { setDefaultDevice } from '../../../src/runtime/registry.js';
import { createEngine, createInProcessEngine, type InProcessEngine } from '../../../src/serve/engine/index.js';
import { EngineOverloadedError, EngineRequestError, type Engine, type EngineRequest, type EngineUsage, type FinishReason } from '../../../src/serve/types.js';

setDefaultDevice('cpu');

const V = 96;
const BLOCK = 16;
const dir = mkdtempSync(join(tmpdir(), 'tessera-engine-'));
const path = join(dir, 'tiny.gguf');
let model: Llama;
/** KV bytes of one block of this model: 2 x 2 layers x 2 kv heads x 16 x 16 tokens x 4. */
const blockBytes = 2 * 2 * 2 * 16 * BLOCK * 4;

const promptOf = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 17 + seed * 29 + 3) % V);
const refs = new Map<string, number[]>();
/** Greedy tokens of sequential `Llama.generate` (memoised by prompt and length). */
function reference(prompt: number[], maxTokens: number): number[] {
  const key = `${prompt.join(',')}/${maxTokens}`;
  if (!refs.has(key)) refs.set(key, model.generate([prompt], { temperature: 0, maxNewTokens: maxTokens })[0]!);
  return refs.get(key)!;
}

interface Result {
  tokens: number[];
  done: Promise<{ reason: FinishReason; usage: EngineUsage; error?: string }>;
  handle: { cancel(): void; finish(): void };
}

function submit(engine: Engine, id: string, prompt: number[], maxTokens: number, onToken?: (n: number) => void): Result {
  const tokens: number[] = [];
  let resolve!: (v: { reason: FinishReason; usage: EngineUsage; error?: string }) => void;
  const done = new Promise<{ reason: FinishReason; usage: EngineUsage; error?: string }>((r) => (resolve = r));
  const req: EngineRequest = { id, promptTokens: prompt, maxTokens, sampling: { temperature: 0, topP: 1, seed: 0 }, stopTokenIds: [] };
  const handle = engine.submit(req, {
    onToken: (t) => {
      tokens.push(t);
      onToken?.(tokens.length);
    },
    onDone: (reason, usage, error) => resolve({ reason, usage, ...(error !== undefined ? { error } : {}) }),
  });
  return { tokens, done, handle };
}

const nextTurn = () => new Promise((r) => setImmediate(r));

function engineOf(opts: { blocks?: number; maxBatch?: number; prefill?: number; maxWaiting?: number } = {}): InProcessEngine {
  return createInProcessEngine({
    model: path,
    device: 'cpu',
    kvCacheBytes: (opts.blocks ?? 32) * blockBytes,
    blockSize: BLOCK,
    maxBatch: opts.maxBatch ?? 4,
    maxPrefillTokensPerStep: opts.prefill ?? 16,
    maxWaiting: opts.maxWaiting ?? 16,
  });
}

beforeAll(async () => {
  manualSeed(1234);
  const m = new Llama({ vocabSize: V, dim: 64, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 128, maxSeqLen: 128 });
  await exportGGUF(path, { arch: 'llama', model: m }, { type: 'F32', name: 'tiny-engine-test' });
  const loaded = loadGGUFModel(path, { device: 'cpu' });
  model = loaded.model as Llama;
});

describe('continuous-batching engine (cpu)', () => {
  const engines: Engine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.close();
  });

  it('batches requests arriving at different times, prefill chunked, with the tokens of sequential greedy generate', async () => {
    const e = engineOf({ prefill: 16 });
    engines.push(e);
    expect(e.ready()).toBe(true);
    expect(e.model).toMatchObject({ id: 'tiny-engine-test', contextLength: 128, vocabSize: V });
    const lens = [5, 12, 23, 40];
    const max = [14, 9, 12, 10];
    let late: Result[] = [];
    const early = [0, 1].map((i) =>
      submit(e, `r${i}`, promptOf(lens[i]!, i), max[i]!, (n) => {
        // Two more join while the first two decode.
        if (i === 0 && n === 3) late = [2, 3].map((j) => submit(e, `r${j}`, promptOf(lens[j]!, j), max[j]!));
      }),
    );
    await Promise.all(early.map((r) => r.done));
    await Promise.all(late.map((r) => r.done));
    const all = [...early, ...late];
    for (const [i, r] of all.entries()) {
      const d = await r.done;
      expect(d.reason).toBe('length');
      expect(r.tokens, `request ${i}`).toEqual(reference(promptOf(lens[i]!, i), max[i]!));
      expect(d.usage).toMatchObject({ promptTokens: lens[i], completionTokens: max[i], preemptions: 0 });
      expect(d.usage.timeToFirstTokenMs).toBeGreaterThan(0);
    }
    const st = e.stats();
    expect(st).toMatchObject({ running: 0, waiting: 0, kvBlocksUsed: 0, preemptions: 0 });
    expect(st.decodeTokens + st.prefillTokens).toBeGreaterThan(lens.reduce((a, b) => a + b, 0));
    expect(st.steps).toBeLessThan(max.reduce((a, b) => a + b, 0));
  });

  it('compiles the buckets it had to promote while idle, so the next request finds them ready', async () => {
    const e = engineOf({ prefill: 16 });
    engines.push(e);
    // 12 prompt tokens: bucket 16 x 16 x 1, compiled for this request; its decodes: 1 x 16 x 1.
    const a = submit(e, 'a', promptOf(12, 3), 2);
    await a.done;
    expect(e.paged.shapes.has('mixed:16x16x1')).toBe(true);
    // Alone, a 3-token prompt (4 x 16 x 1) runs promoted in 16 x 16 x 1 instead of compiling.
    const before = e.paged.promotedSteps;
    const b = submit(e, 'b', promptOf(3, 4), 2);
    expect((await b.done).reason).toBe('length');
    expect(b.tokens).toEqual(reference(promptOf(3, 4), 2));
    expect(e.paged.promotedSteps).toBe(before + 1);
    expect(e.paged.shapes.has('mixed:4x16x1')).toBe(false);
    // Idle: the engine compiles it by itself.
    const deadline = Date.now() + 60_000;
    while (!e.paged.shapes.has('mixed:4x16x1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(e.paged.shapes.has('mixed:4x16x1')).toBe(true);
    const c = submit(e, 'c', promptOf(3, 5), 2);
    await c.done;
    expect(c.tokens).toEqual(reference(promptOf(3, 5), 2));
    expect(e.paged.promotedSteps).toBe(before + 1);
  });

  it('chunked prefill gives the same tokens as unchunked', async () => {
    const p = promptOf(45, 7);
    const outs: number[][] = [];
    for (const prefill of [4, 64]) {
      const e = engineOf({ prefill });
      engines.push(e);
      const r = submit(e, 'c', p, 8);
      await r.done;
      outs.push(r.tokens);
    }
    expect(outs[0]).toEqual(outs[1]);
    expect(outs[0]).toEqual(reference(p, 8));
  });

  it('prefix caching: a request sharing a long prompt prefix reports cached tokens and the same output', async () => {
    const e = engineOf({ prefill: 64 });
    engines.push(e);
    const shared = promptOf(34, 3);
    const a = submit(e, 'a', [...shared, 1, 2], 6);
    await a.done;
    const pb = [...shared, 9];
    const b = submit(e, 'b', pb, 6);
    const db = await b.done;
    expect((await a.done).usage.cachedTokens).toBe(0);
    expect(db.usage.cachedTokens).toBe(32);
    expect(b.tokens).toEqual(reference(pb, 6));
    expect(e.stats().kvBlocksUsed).toBe(0);
  });

  it('preempts under a tiny KV budget, still with the same outputs, and frees every block', async () => {
    const e = engineOf({ blocks: 7, prefill: 64 });
    engines.push(e);
    const lens = [20, 26, 18];
    const rs = lens.map((n, i) => submit(e, `p${i}`, promptOf(n, i + 10), 40));
    const ds = await Promise.all(rs.map((r) => r.done));
    rs.forEach((r, i) => expect(r.tokens, `request ${i}`).toEqual(reference(promptOf(lens[i]!, i + 10), 40)));
    const st = e.stats();
    expect(st.preemptions).toBeGreaterThan(0);
    expect(ds.reduce((n, d) => n + d.usage.preemptions, 0)).toBe(st.preemptions);
    expect(st).toMatchObject({ kvBlocksTotal: 7, kvBlocksUsed: 0, running: 0, waiting: 0 });
  });

  it('cancel mid-generation frees the blocks', async () => {
    const e = engineOf();
    engines.push(e);
    const r: Result = submit(e, 'x', promptOf(30, 1), 60, (n) => {
      if (n === 5) r.handle.cancel();
    });
    const other = submit(e, 'y', promptOf(10, 2), 6);
    const d = await r.done;
    expect(d.reason).toBe('cancelled');
    expect(r.tokens.length).toBe(5);
    await other.done;
    expect(other.tokens).toEqual(reference(promptOf(10, 2), 6));
    expect(e.stats().kvBlocksUsed).toBe(0);
  });

  it('rejects a full queue with EngineOverloadedError and an oversize request with EngineRequestError naming the field', async () => {
    const e = engineOf({ maxWaiting: 2, blocks: 4 });
    engines.push(e);
    const a = submit(e, 'q1', promptOf(4, 1), 4);
    const b = submit(e, 'q2', promptOf(4, 2), 4);
    expect(() => submit(e, 'q3', promptOf(4, 3), 4)).toThrow(EngineOverloadedError);
    const field = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        expect(err).toBeInstanceOf(EngineRequestError);
        return (err as EngineRequestError).field;
      }
      return 'accepted';
    };
    expect(field(() => submit(e, 'big1', promptOf(130, 1), 4))).toBe('prompt');
    expect(field(() => submit(e, 'big2', promptOf(100, 1), 40))).toBe('max_tokens'); // context 128
    expect(field(() => submit(e, 'big3', promptOf(60, 1), 10))).toBe('max_tokens'); // pool: 4 x 16 tokens
    await Promise.all([a.done, b.done]);
    await nextTurn();
    const c = submit(e, 'q3', promptOf(4, 3), 4);
    await c.done;
    expect(c.tokens).toEqual(reference(promptOf(4, 3), 4));
  });

  it('the worker-thread engine generates the same tokens while the main event loop keeps ticking', async () => {
    const e = await createEngine({ model: path, device: 'cpu', kvCacheBytes: 32 * blockBytes, blockSize: BLOCK, maxBatch: 4, maxPrefillTokensPerStep: 16, modelId: 'tiny' });
    engines.push(e);
    expect(e.ready()).toBe(true);
    expect(e.model.id).toBe('tiny');
    let ticks = 0;
    let last = performance.now();
    let maxGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const lens = [7, 19, 33];
    const rs = lens.map((n, i) => submit(e, `w${i}`, promptOf(n, i + 4), 24));
    expect(e.stats().waiting).toBe(3);
    const t0 = performance.now();
    const ds = await Promise.all(rs.map((r) => r.done));
    const ms = performance.now() - t0;
    clearInterval(timer);
    rs.forEach((r, i) => expect(r.tokens).toEqual(reference(promptOf(lens[i]!, i + 4), 24)));
    expect(ds.map((d) => d.reason)).toEqual(['length', 'length', 'length']);
    expect(ticks).toBeGreaterThan(Math.min(10, ms / 20));
    expect(maxGap).toBeLessThan(250);
    // Cancel through the worker: the done event arrives with the blocks already free.
    const c = submit(e, 'wc', promptOf(20, 1), 80, (n) => n === 3 && c.handle.cancel());
    expect((await c.done).reason).toBe('cancelled');
    expect(e.stats().kvBlocksUsed).toBe(0);
    await e.close();
    expect(e.ready()).toBe(false);
    expect(() => submit(e, 'late', promptOf(3, 1), 2)).toThrow(EngineOverloadedError);
  });
});
