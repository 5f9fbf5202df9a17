/**
 * The paged KV cache's block manager: pool sizing from a byte budget, block tables that follow a
 * sequence's growth, admission control, prefix sharing (reference counts, cached tokens, the last
 * prompt token always recomputed), LRU reuse of freed prefixes, and release on completion/cancel.
 */
import { describe, expect, it } from 'vitest';
import { ValueError } from '../../src/index.js';
import { BlockManager, kvBlockBytes } from '../../src/serve/block_manager.js';

const mk = (blocks: number, blockSize = 4) => new BlockManager({ blockSize, blockBytes: 100, budgetBytes: blocks * 100 + 99 });
const seqOf = (n: number, start = 0) => Array.from({ length: n }, (_, i) => start + i);

describe('BlockManager', () => {
  it('sizes the pool from the budget and block bytes', () => {
    expect(kvBlockBytes(2, 4, 64, 16)).toBe(2 * 2 * 4 * 64 * 16 * 4);
    expect(mk(7).totalBlocks).toBe(7);
    expect(() => new BlockManager({ blockSize: 4, blockBytes: 100, budgetBytes: 99 })).toThrow(ValueError);
    expect(() => new BlockManager({ blockSize: 0, blockBytes: 100, budgetBytes: 1000 })).toThrow(/blockSize/);
  });

  it('allocates blocks as a sequence grows and frees them on release', () => {
    const m = mk(4);
    const s = m.admit('a', seqOf(5)); // 5 tokens -> 2 blocks
    expect(s.table.length).toBe(2);
    expect(s.cachedTokens).toBe(0);
    m.append('a', [9, 9, 9]); // 8 tokens -> still 2 blocks
    expect(m.seq('a').table.length).toBe(2);
    m.append('a', [9]); // 9 -> 3 blocks
    expect(m.seq('a').table.length).toBe(3);
    expect(m.stats()).toMatchObject({ usedBlocks: 3, freeBlocks: 1, sequences: 1 });
    m.release('a');
    m.release('a'); // idempotent
    expect(m.stats()).toMatchObject({ usedBlocks: 0, freeBlocks: 4, sequences: 0 });
  });

  it('admission control: refuses what does not fit, and growth beyond the pool', () => {
    const m = mk(3);
    expect(m.canAdmit(seqOf(13))).toBe(false); // 4 blocks
    expect(() => m.admit('big', seqOf(13))).toThrow(/no room/);
    m.admit('a', seqOf(8)); // 2 blocks
    expect(m.canAdmit(seqOf(5, 100))).toBe(false);
    expect(m.canAppend('a', 4)).toBe(true);
    m.append('a', seqOf(4, 50));
    expect(m.canAppend('a', 1)).toBe(false);
    expect(() => m.append('a', [1])).toThrow(/no free block/);
  });

  it('shares full prefix blocks between sequences, counts them as cached, and recomputes the last prompt token', () => {
    const m = mk(8);
    const prompt = seqOf(10); // blocks [0..3], [4..7], partial [8, 9]
    const a = m.admit('a', prompt);
    const b = m.admit('b', [...prompt.slice(0, 8), 77, 78, 79]);
    expect(b.cachedTokens).toBe(8);
    expect(b.table.slice(0, 2)).toEqual(a.table.slice(0, 2));
    expect(b.table[2]).not.toBe(a.table[2]);
    expect(m.stats().usedBlocks).toBe(4);
    // A prompt equal to a cached prefix of exactly 8 tokens: only the first block is reused, because
    // the last prompt token must be computed to produce logits.
    const c = m.admit('c', prompt.slice(0, 8));
    expect(c.cachedTokens).toBe(4);
    // A different first block shares nothing (prefix hashes chain).
    const d = m.admit('d', [99, ...prompt.slice(1, 10)]);
    expect(d.cachedTokens).toBe(0);
    m.release('a');
    m.release('b');
    m.release('c');
    m.release('d');
    expect(m.stats().usedBlocks).toBe(0);
    expect(m.stats().cachedBlocks).toBeGreaterThan(0);
    // Freed prefixes stay reusable until the pool needs their blocks.
    expect(m.admit('e', prompt).cachedTokens).toBe(8);
  });

  it('evicts cached prefixes only when the pool runs out (blocks without a prefix go first)', () => {
    const m = mk(4);
    m.admit('a', seqOf(9)); // 2 full blocks cached + 1 partial
    m.release('a');
    expect(m.stats().cachedBlocks).toBe(2);
    m.admit('x', seqOf(2, 500)); // takes the uncached free block
    expect(m.stats().cachedBlocks).toBe(2);
    m.admit('y', seqOf(8, 600)); // needs 2 more: evicts
    expect(m.admit('z', seqOf(1, 900)).table.length).toBe(1);
    expect(m.stats().freeBlocks).toBe(0);
    m.release('y');
    m.release('z');
    // y took the blocks of a's prefix: nothing of it is cached any more.
    expect(m.admit('w', seqOf(9)).cachedTokens).toBe(0);
  });

  it('rejects duplicate and unknown sequence ids', () => {
    const m = mk(4);
    m.admit('a', [1]);
    expect(() => m.admit('a', [1])).toThrow(/already admitted/);
    expect(() => m.append('nope', [1])).toThrow(/unknown sequence/);
  });
});
