/**
 * The paged-KV model step against the plain full-recompute forward pass: prefill in chunks, decodes of
 * several sequences mixed in one step, blocks scattered over the pool, give the same logits.
 */
import { describe, expect, it } from 'vitest';
import '../../../src/runtime/node_devices.js';
import { manualSeed, tensor } from '../../../src/index.js';
import { Llama } from '../../../src/nn/llama.js';
import { setDefaultDevice } from '../../../src/runtime/registry.js';
import { PagedLlama, PROMOTION_EXTRA_BEFORE_COMPILE, PROMOTIONS_BEFORE_COMPILE } from '../../../src/serve/engine/paged_model.js';
import { expectClose } from '../../helpers/check.js';

setDefaultDevice('cpu');

function tinyLlama(): Llama {
  manualSeed(5);
  return new Llama({ vocabSize: 50, dim: 32, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 64, maxSeqLen: 64 });
}

/** A logits row the step returned (not a greedy token). */
function rowOf(x: Float32Array | number | undefined): number[] {
  if (!(x instanceof Float32Array)) throw new Error(`expected a row of logits, got ${x}`);
  return Array.from(x);
}

function argmaxOf(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

function fullLogits(m: Llama, ids: number[]): Float32Array {
  const out = m.forward(tensor(ids, { dtype: 'i32', shape: [1, ids.length] })).logits.dataSync() as Float32Array;
  return out.slice((ids.length - 1) * m.config.vocabSize);
}

describe('PagedLlama', () => {
  it.each([
    ['one mixed step', undefined],
    ['decodes and chunks apart (gather bound)', 1],
  ])('chunked prefill and mixed decode steps match the full forward pass: %s', (_, maxGatherBytes) => {
    const m = tinyLlama();
    const pm = new PagedLlama(m, { numBlocks: 16, blockSize: 4, ...(maxGatherBytes !== undefined ? { maxGatherBytes } : {}) });
    const a = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
    const b = [2, 7, 1, 8, 2];
    const ta = [9, 2, 14];
    const tb = [5, 12, 0];
    // Prefill a in two chunks (7 + 4), b in one, in the same steps.
    let r = pm.run([
      { tokens: a.slice(0, 7), start: 0, blockTable: ta, wantLogits: false },
      { tokens: b, start: 0, blockTable: tb, wantLogits: true },
    ]);
    expect(r[0]).toBeUndefined();
    expectClose(rowOf(r[1]), Array.from(fullLogits(m, b)), { atol: 1e-4, rtol: 1e-4 }, 'b prefill');
    r = pm.run([{ tokens: a.slice(7), start: 7, blockTable: ta, wantLogits: true }]);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, a)), { atol: 1e-4, rtol: 1e-4 }, 'a prefill');
    // One decode step for both.
    r = pm.run([
      { tokens: [7], start: a.length, blockTable: ta, wantLogits: true },
      { tokens: [11], start: b.length, blockTable: tb, wantLogits: true },
    ]);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, [...a, 7])), { atol: 1e-4, rtol: 1e-4 }, 'a decode');
    expectClose(rowOf(r[1]), Array.from(fullLogits(m, [...b, 11])), { atol: 1e-4, rtol: 1e-4 }, 'b decode');
    // A chunk after a decode, in one step.
    r = pm.run([
      { tokens: [4], start: a.length + 1, blockTable: ta, wantLogits: true },
      { tokens: [13, 2, 6], start: b.length + 1, blockTable: tb, wantLogits: true },
    ]);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, [...a, 7, 4])), { atol: 1e-4, rtol: 1e-4 }, 'a decode 2');
    expectClose(rowOf(r[1]), Array.from(fullLogits(m, [...b, 11, 13, 2, 6])), { atol: 1e-4, rtol: 1e-4 }, 'b chunk');
    expect([...pm.shapes].some((k) => k.startsWith('chunk:'))).toBe(maxGatherBytes !== undefined);
    pm.dispose();
  });

  it('a step whose bucket is not compiled runs in a compiled larger one (padding masked) instead of compiling', () => {
    const m = tinyLlama();
    const pm = new PagedLlama(m, { numBlocks: 16, blockSize: 4 });
    const a = [3, 1, 4, 1, 5, 9, 2];
    const b = [2, 7, 1];
    // 10 tokens, past 0, 2 logit rows: bucket 16 x 4 x 2.
    let r = pm.run([
      { tokens: a, start: 0, blockTable: [0, 1, 2], wantLogits: true },
      { tokens: b, start: 0, blockTable: [3, 4], wantLogits: true },
    ]);
    expect([...pm.shapes]).toEqual(['mixed:16x4x2']);
    // 9 tokens with a past of 7 (bucket 16 x 8 x 1): 16 x 4 x 2 does not hold that past, so it compiles.
    r = pm.run([{ tokens: [6, 5, 3, 5, 8, 9, 7, 9, 3], start: 7, blockTable: [0, 1, 2, 5], wantLogits: true }]);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, [...a, 6, 5, 3, 5, 8, 9, 7, 9, 3])), { atol: 1e-4, rtol: 1e-4 }, 'a chunk');
    expect(pm.compiledShapes).toBe(2);
    // Two decodes, a's past 16 and b's 3: bucket 2 x 16 x 2, compiled.
    r = pm.run([
      { tokens: [4], start: 16, blockTable: [0, 1, 2, 5, 6], wantLogits: true },
      { tokens: [8], start: 3, blockTable: [3, 4], wantLogits: true },
    ]);
    expect(pm.compiledShapes).toBe(3);
    expect(pm.promotedSteps).toBe(0);
    // A prompt alone (4 x 4 x 1, nothing decoding): within 4x the cost of 16 x 4 x 2, so it runs there.
    const c = [1, 2, 3, 4];
    pm.run([{ tokens: c, start: 0, blockTable: [7, 8], wantLogits: false }]);
    expect([pm.compiledShapes, pm.promotedSteps]).toEqual([3, 1]);
    // Two decodes with pasts of 4 (bucket 2 x 4 x 2): promoted into 2 x 16 x 2, a cheap padding of the past.
    r = pm.run([
      { tokens: [2], start: 4, blockTable: [3, 4], wantLogits: true },
      { tokens: [5], start: 4, blockTable: [7, 8], wantLogits: true },
    ]);
    expect([pm.compiledShapes, pm.promotedSteps]).toEqual([3, 2]);
    // One decode (1 x 8 x 1): 2 x 16 x 2 would double its token rows, over 1.5x: it compiles its own.
    pm.run([{ tokens: [9], start: 5, blockTable: [3, 4], wantLogits: true }]);
    expect([pm.compiledShapes, pm.promotedSteps, pm.lastCompiled]).toEqual([4, 2, 'mixed:1x8x1']);
    // A promoted bucket with decodes that keeps coming back is compiled once its promotions have cost
    // PROMOTION_EXTRA_BEFORE_COMPILE of its own steps extra (2 x 16 x 2 costs ~1.3x 2 x 4 x 2 here: about
    // 20 promotions), later than a prompt-only bucket (PROMOTIONS_BEFORE_COMPILE) and exactly once.
    const twoDecodes = () =>
      pm.run([
        { tokens: [2], start: 4, blockTable: [3, 4], wantLogits: true },
        { tokens: [5], start: 4, blockTable: [7, 8], wantLogits: true },
      ]);
    let steps = 1;
    while (pm.compiledShapes === 4 && steps < 200) {
      twoDecodes();
      steps++;
    }
    expect([pm.compiledShapes, pm.lastCompiled]).toEqual([5, 'mixed:2x4x2']);
    expect(steps).toBeGreaterThan(PROMOTIONS_BEFORE_COMPILE + 1);
    expect(steps).toBeLessThan(1 + Math.ceil(PROMOTION_EXTRA_BEFORE_COMPILE / 0.2));
    expect(pm.promotedSteps).toBe(1 + steps - 1);
    twoDecodes();
    expect(pm.compiledShapes).toBe(5);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, [...b, 8, 2])), { atol: 1e-4, rtol: 1e-4 }, 'b decode, promoted');
    expectClose(rowOf(r[1]), Array.from(fullLogits(m, [...c, 5])), { atol: 1e-4, rtol: 1e-4 }, 'c decode, promoted');
    pm.dispose();
  });

  it('greedy sequences get their arg max computed on the device; a step with any sampled sequence returns rows', () => {
    const m = tinyLlama();
    const pm = new PagedLlama(m, { numBlocks: 16, blockSize: 4 });
    const a = [3, 1, 4, 1, 5];
    const b = [2, 7, 1];
    const r = pm.run([
      { tokens: a, start: 0, blockTable: [3, 4], wantLogits: true, greedy: true },
      { tokens: b, start: 0, blockTable: [7], wantLogits: true, greedy: true },
    ]);
    expect(r).toEqual([argmaxOf(fullLogits(m, a)), argmaxOf(fullLogits(m, b))]);
    // One sequence samples: every wanted row comes back as logits (the greedy one included).
    const r2 = pm.run([
      { tokens: [9], start: 5, blockTable: [3, 4], wantLogits: true, greedy: true },
      { tokens: [6], start: 3, blockTable: [7], wantLogits: true },
    ]);
    expectClose(rowOf(r2[0]), Array.from(fullLogits(m, [...a, 9])), { atol: 1e-4, rtol: 1e-4 }, 'a, greedy among sampled');
    expectClose(rowOf(r2[1]), Array.from(fullLogits(m, [...b, 6])), { atol: 1e-4, rtol: 1e-4 }, 'b, sampled');
    pm.dispose();
  });

  it('a precompiled prompt bucket takes prompts arriving together without compiling, and leaves the pool alone', () => {
    const m = tinyLlama();
    const pm = new PagedLlama(m, { numBlocks: 16, blockSize: 4 });
    const pool = pm.kPool[0]!.dataSync().slice();
    pm.precompile({ tokens: 16, past: 4, logits: 4 });
    expect(pm.compiledShapes).toBe(1);
    expect(Array.from(pm.kPool[0]!.dataSync())).toEqual(Array.from(pool));
    pm.precompile({ tokens: 16, past: 4, logits: 4 }); // known: nothing to do
    expect(() => pm.precompile({ tokens: 2, past: 4, logits: 4 })).toThrow(/logit rows \(4\) exceed token rows \(2\)/);
    const a = [3, 1, 4, 1, 5];
    const b = [2, 7, 1];
    // 8 tokens, 2 logit rows, no decodes: promoted into 16 x 4 x 4 (within 4x of its own cost).
    const r = pm.run([
      { tokens: a, start: 0, blockTable: [3, 4], wantLogits: true },
      { tokens: b, start: 0, blockTable: [7], wantLogits: true },
    ]);
    expect([pm.compiledShapes, pm.promotedSteps, pm.lastBuckets]).toEqual([1, 1, ['mixed:16x4x4']]);
    expectClose(rowOf(r[0]), Array.from(fullLogits(m, a)), { atol: 1e-4, rtol: 1e-4 }, 'a');
    expectClose(rowOf(r[1]), Array.from(fullLogits(m, b)), { atol: 1e-4, rtol: 1e-4 }, 'b');
    // Prompt-only steps compile their own bucket sooner (nobody is decoding to be stalled).
    const again = () => pm.run([
      { tokens: a, start: 0, blockTable: [3, 4], wantLogits: true },
      { tokens: b, start: 0, blockTable: [7], wantLogits: true },
    ]);
    for (let i = 1; i < PROMOTIONS_BEFORE_COMPILE; i++) again();
    expect([pm.compiledShapes, pm.promotedSteps]).toEqual([1, PROMOTIONS_BEFORE_COMPILE]);
    again();
    expect([pm.compiledShapes, pm.lastBuckets]).toEqual([2, ['mixed:8x4x2']]);
    // Idle-time compilation: a promoted bucket is compiled by compilePending, the costliest first.
    expect(pm.compilePending()).toBeUndefined();
    const c = [1, 2, 3, 4];
    pm.run([{ tokens: c, start: 0, blockTable: [9], wantLogits: true }]); // 4 x 4 x 1: promoted into 8 x 4 x 2
    expect([pm.compiledShapes, pm.lastBuckets]).toEqual([2, ['mixed:8x4x2']]);
    expect(pm.compilePending()).toBe('mixed:4x4x1');
    expect(pm.compilePending()).toBeUndefined();
    const r2 = pm.run([{ tokens: c, start: 0, blockTable: [9], wantLogits: true }]);
    expect([pm.compiledShapes, pm.lastBuckets]).toEqual([3, ['mixed:4x4x1']]);
    expectClose(rowOf(r2[0]), Array.from(fullLogits(m, c)), { atol: 1e-4, rtol: 1e-4 }, 'c in its own bucket');
    pm.dispose();
  });
});
