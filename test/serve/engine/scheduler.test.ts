/**
 * The scheduler against a fake model whose KV "pool" stores (position, token) per slot: every step
 * checks that the past it is handed is exactly the sequence's own tokens at their positions, and its
 * next token is a function of that whole history. So wrong block tables, stale prefix-cache blocks or a
 * bad recompute after preemption change the outputs, and outputs equal to a plain loop prove them right.
 */
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../../src/serve/engine/scheduler.js';
import { slotOf, type StepModel, type StepSequence } from '../../../src/serve/engine/step_model.js';
import { EngineOverloadedError, EngineRequestError, type EngineRequest, type EngineUsage, type FinishReason } from '../../../src/serve/types.js';

const V = 37;

/** The fake model's next token after `hist`. */
function nextOf(hist: readonly number[]): number {
  let h = hist.length;
  hist.forEach((t, i) => (h = (h * 31 + t * (i + 7)) % 1000003));
  return h % V;
}

function reference(prompt: readonly number[], maxTokens: number, stops: readonly number[] = []): number[] {
  const hist = [...prompt];
  const out: number[] = [];
  while (out.length < maxTokens) {
    const t = nextOf(hist);
    if (stops.includes(t)) break;
    out.push(t);
    hist.push(t);
  }
  return out;
}

class FakeModel implements StepModel {
  readonly vocabSize = V;
  readonly pool: ({ pos: number; tok: number } | undefined)[];
  steps: { seqs: number; tokens: number }[] = [];
  constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
    readonly contextLength = 256,
  ) {
    this.pool = new Array(blockSize * numBlocks).fill(undefined);
  }
  run(seqs: readonly StepSequence[]): (Float32Array | undefined)[] {
    const writes: [number, { pos: number; tok: number }][] = [];
    const out = seqs.map((s) => {
      const hist: number[] = [];
      for (let p = 0; p < s.start; p++) {
        const e = this.pool[slotOf(s.blockTable, this.blockSize, p)];
        if (!e || e.pos !== p) throw new Error(`slot of position ${p} holds ${JSON.stringify(e)}`);
        hist.push(e.tok);
      }
      s.tokens.forEach((tok, i) => {
        hist.push(tok);
        writes.push([slotOf(s.blockTable, this.blockSize, s.start + i), { pos: s.start + i, tok }]);
      });
      if (!s.wantLogits) return undefined;
      const l = new Float32Array(V);
      l[nextOf(hist)] = 5;
      return l;
    });
    // Like the real model: the step's keys/values land in the pool after the step.
    for (const [slot, e] of writes) this.pool[slot] = e;
    this.steps.push({ seqs: seqs.length, tokens: seqs.reduce((n, s) => n + s.tokens.length, 0) });
    return out;
  }
}

interface Result {
  tokens: number[];
  reason?: FinishReason;
  usage?: EngineUsage;
}

function make(opts: { blockSize?: number; blocks?: number; maxBatch?: number; maxWaiting?: number; prefill?: number; batched?: number; ctx?: number } = {}) {
  const model = new FakeModel(opts.blockSize ?? 4, opts.blocks ?? 64, opts.ctx ?? 256);
  const sched = new Scheduler(model, {
    maxBatch: opts.maxBatch ?? 8,
    maxWaiting: opts.maxWaiting ?? 100,
    maxPrefillTokensPerStep: opts.prefill ?? 16,
    ...(opts.batched !== undefined ? { maxBatchedTokens: opts.batched } : {}),
    blockBytes: 1,
  });
  const results = new Map<string, Result>();
  const submit = (id: string, prompt: number[], maxTokens: number, extra: Partial<EngineRequest> = {}) => {
    const r: Result = { tokens: [] };
    results.set(id, r);
    return sched.submit(
      { id, promptTokens: prompt, maxTokens, sampling: { temperature: 0, topP: 1, seed: 0 }, stopTokenIds: [], ...extra },
      {
        onToken: (t) => {
          if (r.reason) throw new Error('token after done');
          r.tokens.push(t);
        },
        onDone: (reason, usage) => {
          if (r.reason) throw new Error('done twice');
          r.reason = reason;
          r.usage = usage;
        },
      },
    );
  };
  const drain = (max = 10_000) => {
    for (let i = 0; i < max && sched.hasWork(); i++) sched.step();
    expect(sched.hasWork()).toBe(false);
  };
  return { model, sched, results, submit, drain };
}

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + 1) % V);

describe('Scheduler', () => {
  it('while sequences decode, a prompt joins in chunks of what maxBatchedTokens leaves (at least 4 tokens); alone, in prefill-budget chunks', () => {
    const { sched, model, results, submit, drain } = make({ prefill: 32, batched: 16, blockSize: 4 });
    for (let i = 0; i < 6; i++) submit(`d${i}`, prompt(3, i), 40);
    sched.step(); // six prompts of 3 tokens: 18 prefill tokens, nothing decoding yet
    expect(model.steps.at(-1)).toEqual({ seqs: 6, tokens: 18 });
    submit('long', prompt(30, 9), 5);
    const r1 = sched.step()!; // 6 decodes leave 10 tokens of 16
    expect([r1.decodeTokens, r1.prefillTokens]).toEqual([6, 10]);
    for (let i = 0; i < 3; i++) submit(`e${i}`, prompt(2, 20 + i), 40);
    const r2 = sched.step()!; // 7 running, 6 decode (long is mid-prompt): 10 again, 10 of long's remaining 20
    expect([r2.decodeTokens, r2.prefillTokens]).toEqual([6, 10]);
    const r3 = sched.step()!; // long's last 10 tokens, then e0..e2 (2 each) admitted: over 10 → stops at budget
    expect([r3.decodeTokens, r3.prefillTokens]).toEqual([6, 10]);
    const r4 = sched.step()!; // 7 decode + e's leftovers; 16 - 7 = 9 ≥ the 4-token floor
    expect(r4.decodeTokens).toBe(7);
    expect(r4.prefillTokens).toBeLessThanOrEqual(9);
    // With more decodes than the budget, prefill still gets the 4-token floor.
    const busy = make({ prefill: 32, batched: 4, blockSize: 4 });
    for (let i = 0; i < 6; i++) busy.submit(`d${i}`, prompt(2, i), 20);
    busy.sched.step();
    busy.submit('late', prompt(20, 3), 2);
    const b1 = busy.sched.step()!;
    expect([b1.decodeTokens, b1.prefillTokens]).toEqual([6, 4]);
    busy.drain();
    expect(busy.results.get('late')!.tokens).toEqual(reference(prompt(20, 3), 2));
    drain();
    for (const [id, r] of results) expect(r.tokens.length, id).toBe(id === 'long' ? 5 : 40);
    expect(results.get('long')!.tokens).toEqual(reference(prompt(30, 9), 5));
    // Without decodes, the whole prefill budget: a 30-token prompt in one step.
    const solo = make({ prefill: 32, batched: 10 });
    solo.submit('x', prompt(30, 1), 2);
    solo.sched.step();
    expect(solo.model.steps[0]).toEqual({ seqs: 1, tokens: 30 });
  });

  it('batches requests that arrive at different steps, prefill chunked, with outputs of a plain loop', () => {
    const { sched, model, results, submit, drain } = make({ prefill: 6 });
    const lens = [3, 17, 9, 1, 30, 5];
    submit('r0', prompt(lens[0]!, 0), 12);
    submit('r1', prompt(lens[1]!, 1), 7);
    for (let i = 0; i < 3; i++) sched.step();
    submit('r2', prompt(lens[2]!, 2), 15);
    submit('r3', prompt(lens[3]!, 3), 4);
    sched.step();
    submit('r4', prompt(lens[4]!, 4), 10);
    submit('r5', prompt(lens[5]!, 5), 20);
    drain();
    lens.forEach((n, i) => {
      const r = results.get(`r${i}`)!;
      expect(r.reason).toBe('length');
      expect(r.tokens).toEqual(reference(prompt(n, i), r.usage!.completionTokens));
      expect(r.usage!.completionTokens).toBe([12, 7, 15, 4, 10, 20][i]);
      expect(r.usage!.promptTokens).toBe(n);
    });
    // Several sequences shared steps, and no step exceeded the budget of decodes + one chunk.
    expect(Math.max(...model.steps.map((s) => s.seqs))).toBeGreaterThan(3);
    expect(Math.max(...model.steps.map((s) => s.tokens))).toBeLessThanOrEqual(8 + 6);
    const st = sched.stats();
    expect(st).toMatchObject({ running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksFree: 64 });
    expect(st.decodeTokens + st.prefillTokens).toBe(model.steps.reduce((n, s) => n + s.tokens, 0));
  });

  it('stop tokens end a sequence without emitting them', () => {
    const { results, submit, drain } = make();
    const p = prompt(5, 9);
    const full = reference(p, 10);
    submit('s', p, 10, { stopTokenIds: [full[3]!] });
    drain();
    const r = results.get('s')!;
    expect(r.reason).toBe('stop');
    expect(r.tokens).toEqual(reference(p, 10, [full[3]!]));
  });

  it('prefix caching: a later request sharing a prompt prefix reuses computed blocks', () => {
    const { sched, results, submit, drain } = make({ blockSize: 4, prefill: 64 });
    const shared = prompt(21, 3);
    submit('a', [...shared, 1, 2], 5);
    sched.step(); // a's prompt computed
    submit('b', [...shared, 5], 5);
    // Submitted together with an identical prompt still in flight: shares blocks, recomputes them.
    submit('c', [...shared, 5], 5);
    drain();
    expect(results.get('a')!.usage!.cachedTokens).toBe(0);
    expect(results.get('b')!.usage!.cachedTokens).toBe(20);
    for (const id of ['a', 'b', 'c']) {
      const r = results.get(id)!;
      const p = id === 'a' ? [...shared, 1, 2] : [...shared, 5];
      expect(r.tokens).toEqual(reference(p, 5));
    }
    expect(sched.stats().kvBlocksUsed).toBe(0);
  });

  it('an uncomputed shared block is recomputed, never read', () => {
    // a and b admitted in the same step: b's cached blocks are a's, not yet computed.
    const { sched, results, submit, drain } = make({ blockSize: 4, prefill: 64 });
    const p = prompt(19, 4);
    submit('a', p, 6);
    submit('b', p, 6);
    sched.step();
    expect(sched.stats().running).toBe(2);
    drain();
    expect(results.get('b')!.usage!.cachedTokens).toBe(0);
    expect(results.get('a')!.tokens).toEqual(reference(p, 6));
    expect(results.get('b')!.tokens).toEqual(reference(p, 6));
  });

  it('preempts by recomputation when the pool is full, with the same outputs and every block freed', () => {
    const { sched, results, submit, drain } = make({ blockSize: 2, blocks: 24, prefill: 8 });
    const lens = [6, 8, 5, 7, 9];
    lens.forEach((n, i) => submit(`p${i}`, prompt(n, i + 20), 30));
    drain();
    lens.forEach((n, i) => expect(results.get(`p${i}`)!.tokens).toEqual(reference(prompt(n, i + 20), 30)));
    const st = sched.stats();
    expect(st.preemptions).toBeGreaterThan(0);
    expect(lens.reduce((n, _, i) => n + results.get(`p${i}`)!.usage!.preemptions, 0)).toBe(st.preemptions);
    expect(st.kvBlocksUsed).toBe(0);
  });

  it('cancel and finish free blocks at once and end with their reasons', () => {
    const { sched, results, submit, drain } = make();
    const a = submit('a', prompt(10, 1), 50);
    const b = submit('b', prompt(10, 2), 50);
    const c = submit('c', prompt(10, 3), 50);
    for (let i = 0; i < 4; i++) sched.step();
    expect(sched.stats().kvBlocksUsed).toBeGreaterThan(0);
    a.cancel();
    b.finish();
    expect(results.get('a')!.reason).toBe('cancelled');
    expect(results.get('b')!.reason).toBe('stop');
    c.cancel();
    a.cancel(); // idempotent
    expect(sched.stats()).toMatchObject({ running: 0, kvBlocksUsed: 0 });
    expect(results.get('a')!.tokens.length).toBeGreaterThan(0);
    drain();
    // Cancelled while waiting: no tokens, queue time still reported.
    const { sched: s2, results: r2, submit: sub2 } = make();
    sub2('w', prompt(4, 1), 5).cancel();
    expect(r2.get('w')!.reason).toBe('cancelled');
    expect(r2.get('w')!.usage!.completionTokens).toBe(0);
    expect(s2.hasWork()).toBe(false);
  });

  it('a callback that ends its own request mid-step is applied after the step', () => {
    const { sched, results, drain } = make();
    const got: number[] = [];
    const handle = sched.submit(
      { id: 'x', promptTokens: prompt(6, 1), maxTokens: 20, sampling: { temperature: 0, topP: 1, seed: 0 }, stopTokenIds: [] },
      {
        onToken: (t) => {
          got.push(t);
          if (got.length === 3) handle.finish();
        },
        onDone: (reason) => results.set('x', { tokens: got, reason }),
      },
    );
    drain();
    expect(results.get('x')!.reason).toBe('stop');
    expect(got).toEqual(reference(prompt(6, 1), 3));
    expect(sched.stats().kvBlocksUsed).toBe(0);
  });

  it('maxBatch 1 runs one sequence at a time', () => {
    const { model, results, submit, drain } = make({ maxBatch: 1 });
    for (let i = 0; i < 3; i++) submit(`q${i}`, prompt(5 + i, i), 6);
    drain();
    expect(Math.max(...model.steps.map((s) => s.seqs))).toBe(1);
    for (let i = 0; i < 3; i++) expect(results.get(`q${i}`)!.tokens).toEqual(reference(prompt(5 + i, i), 6));
  });

  it('seeded sampling gives equal outputs for equal seeds, whatever the batch', () => {
    const run = (others: number) => {
      const { sched, results, submit, drain } = make();
      for (let i = 0; i < others; i++) submit(`o${i}`, prompt(4 + i, i), 8);
      sched.step();
      submit('t', prompt(7, 2), 12, { sampling: { temperature: 1.5, topP: 0.9, seed: 42 } });
      drain();
      return results.get('t')!.tokens;
    };
    expect(run(0)).toEqual(run(3));
  });

  it('rejects requests that can never run, naming the field, and a full queue with a retry delay', () => {
    const { sched, submit } = make({ blocks: 8, blockSize: 4, maxWaiting: 2, ctx: 40 });
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(EngineRequestError);
        return (e as EngineRequestError).field;
      }
      throw new Error('expected an EngineRequestError');
    };
    expect(bad(() => submit('a', [], 4))).toBe('prompt');
    expect(bad(() => submit('a', [1, V], 4))).toBe('prompt');
    expect(bad(() => submit('a', prompt(40, 1), 1))).toBe('prompt');
    expect(bad(() => submit('a', prompt(30, 1), 11))).toBe('max_tokens');
    expect(bad(() => submit('a', prompt(30, 1), 3))).toBe('max_tokens'); // pool: 32 tokens
    expect(bad(() => submit('a', prompt(3, 1), 0))).toBe('max_tokens');
    expect(bad(() => submit('a', prompt(3, 1), 2, { sampling: { temperature: -1, topP: 1, seed: 0 } }))).toBe('temperature');
    submit('q1', prompt(3, 1), 2);
    expect(bad(() => submit('q1', prompt(3, 1), 2))).toBe('id');
    submit('q2', prompt(3, 1), 2);
    let err: unknown;
    try {
      submit('q3', prompt(3, 1), 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineOverloadedError);
    expect((err as EngineOverloadedError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    sched.step();
    submit('q3', prompt(3, 1), 2); // admitted ones left the queue
  });
});
