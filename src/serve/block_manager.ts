import { ValueError } from '../errors.js';

/**
 * The paged KV cache's bookkeeping (vLLM's block manager): a pool of fixed-size blocks sized by a memory
 * budget, a block table per sequence, and prefix caching. A full block's identity is a hash of its
 * tokens and of every token before it, so two requests with the same prompt prefix share its blocks
 * (reference-counted); a freed block whose hash is known stays reusable until the pool needs it (LRU).
 *
 * This module owns no device memory: block ids index the cache tensors the engine allocates once.
 */

/** One sequence's view of the cache. */
export interface SequenceBlocks {
  readonly id: string;
  /** Block ids in order: position p lives in block `table[p / blockSize]`, slot `p % blockSize`. */
  readonly table: number[];
  /** Tokens whose keys and values are (or will be, after the step) in the cache. */
  length: number;
  /** Leading tokens found in the prefix cache when the sequence was admitted (not recomputed). */
  readonly cachedTokens: number;
}

interface Block {
  refs: number;
  /** Prefix hash of a full block (undefined while filling or never full). */
  hash?: string;
}

export interface BlockManagerStats {
  totalBlocks: number;
  freeBlocks: number;
  usedBlocks: number;
  /** Free blocks that still hold a cached prefix. */
  cachedBlocks: number;
  sequences: number;
}

/** Bytes of K and V for one block: 2 x layers x kv heads x head size x block size x bytes per value. */
export function kvBlockBytes(layers: number, kvHeads: number, headDim: number, blockSize: number, bytesPerValue = 4): number {
  return 2 * layers * kvHeads * headDim * blockSize * bytesPerValue;
}

function hashTokens(prev: string, tokens: readonly number[]): string {
  // FNV-1a over the previous hash and the tokens: cheap, deterministic, collision-resistant enough when
  // combined with the exact token check below.
  let h = 0x811c9dc5;
  const mix = (x: number) => {
    h ^= x & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 8) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 16) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= x >>> 24;
    h = Math.imul(h, 0x01000193);
  };
  for (let i = 0; i < prev.length; i++) mix(prev.charCodeAt(i));
  for (const t of tokens) mix(t);
  return `${(h >>> 0).toString(16)}:${tokens.length}:${prev.length ? prev.slice(0, 8) : '-'}`;
}

/** A sequence with what prefix caching needs: its tokens and its full blocks' hashes. */
type Tracked = SequenceBlocks & { hashes: string[]; tokens: number[] };

export class BlockManager {
  readonly blockSize: number;
  readonly totalBlocks: number;
  private readonly blocks: Block[];
  /** Free block ids; a freed block with a hash keeps it (reusable prefix) until taken. Oldest first. */
  private free: number[] = [];
  private readonly byHash = new Map<string, { block: number; tokens: readonly number[] }>();
  private readonly seqs = new Map<string, Tracked>();

  /**
   * @param budgetBytes - memory for the cache; the pool holds `floor(budget / blockBytes)` blocks.
   * @throws ValueError when the budget holds no block, or sizes are not positive integers.
   */
  constructor(opts: { blockSize: number; blockBytes: number; budgetBytes: number }) {
    const { blockSize, blockBytes, budgetBytes } = opts;
    if (!(Number.isInteger(blockSize) && blockSize > 0)) throw new ValueError(`BlockManager: blockSize must be a positive integer, got ${blockSize}`);
    if (!(blockBytes > 0)) throw new ValueError(`BlockManager: blockBytes must be positive, got ${blockBytes}`);
    const n = Math.floor(budgetBytes / blockBytes);
    if (n < 1) throw new ValueError(`BlockManager: a budget of ${budgetBytes} bytes holds no block of ${blockBytes} bytes`);
    this.blockSize = blockSize;
    this.totalBlocks = n;
    this.blocks = Array.from({ length: n }, () => ({ refs: 0 }));
    this.free = Array.from({ length: n }, (_, i) => i);
  }

  stats(): BlockManagerStats {
    const cached = this.free.filter((b) => this.blocks[b]!.hash !== undefined).length;
    return { totalBlocks: this.totalBlocks, freeBlocks: this.free.length, usedBlocks: this.totalBlocks - this.free.length, cachedBlocks: cached, sequences: this.seqs.size };
  }

  /** Blocks a sequence of `tokens` tokens needs. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  private takeFree(): number {
    // Prefer a block with no cached prefix, so reusable prefixes survive as long as possible.
    let at = this.free.findIndex((b) => this.blocks[b]!.hash === undefined);
    if (at < 0) at = 0;
    const b = this.free.splice(at, 1)[0]!;
    const blk = this.blocks[b]!;
    if (blk.hash !== undefined) {
      this.byHash.delete(blk.hash);
      blk.hash = undefined;
    }
    blk.refs = 1;
    return b;
  }

  /** Full-block prefix hashes of `tokens`. */
  private prefixHashes(tokens: readonly number[]): string[] {
    const out: string[] = [];
    let prev = '';
    for (let i = 0; i + this.blockSize <= tokens.length; i += this.blockSize) {
      prev = hashTokens(prev, tokens.slice(i, i + this.blockSize));
      out.push(prev);
    }
    return out;
  }

  /**
   * Whether a prompt of these tokens can be admitted now (its uncached blocks fit in the free pool,
   * plus `reserve` blocks of headroom for growth).
   */
  canAdmit(tokens: readonly number[], reserve = 0): boolean {
    const hashes = this.prefixHashes(tokens);
    let hits = 0;
    let freeHits = 0;
    for (const h of hashes) {
      const e = this.byHash.get(h);
      if (!e) break;
      hits++;
      if (this.blocks[e.block]!.refs === 0) freeHits++;
    }
    const need = this.blocksFor(Math.max(tokens.length, 1)) - hits;
    return need + reserve <= this.free.length - freeHits;
  }

  /**
   * Admit a sequence: reuse cached full blocks of its prompt prefix, allocate the rest. The last
   * prompt token is always recomputed (its logits are needed), so at most `tokens.length - 1` are cached.
   *
   * @throws ValueError for a duplicate id, or when the pool cannot hold the prompt (call `canAdmit` first).
   */
  admit(id: string, tokens: readonly number[]): SequenceBlocks {
    if (this.seqs.has(id)) throw new ValueError(`BlockManager: sequence '${id}' is already admitted`);
    if (!this.canAdmit(tokens)) throw new ValueError(`BlockManager: no room for ${tokens.length} tokens (${this.free.length} free blocks of ${this.blockSize})`);
    const hashes = this.prefixHashes(tokens);
    const table: number[] = [];
    const known: string[] = [];
    for (let i = 0; i < hashes.length; i++) {
      const e = this.byHash.get(hashes[i]!);
      // The exact tokens are compared too: a hash collision must never share a wrong block.
      const toks = tokens.slice(i * this.blockSize, (i + 1) * this.blockSize);
      if (!e || e.tokens.length !== toks.length || e.tokens.some((t, j) => t !== toks[j])) break;
      if ((i + 1) * this.blockSize > tokens.length - 1) break; // keep the last prompt token to compute
      const blk = this.blocks[e.block]!;
      if (blk.refs === 0) this.free.splice(this.free.indexOf(e.block), 1);
      blk.refs++;
      table.push(e.block);
      known.push(hashes[i]!);
    }
    const cachedTokens = table.length * this.blockSize;
    while (table.length < this.blocksFor(Math.max(tokens.length, 1))) table.push(this.takeFree());
    const seq = { id, table, length: tokens.length, cachedTokens, hashes: known, tokens: [...tokens] };
    this.seqs.set(id, seq);
    this.registerFull(seq);
    return seq;
  }

  /** Record hashes of blocks that became full (so later prompts can share them). */
  private registerFull(seq: Tracked): void {
    while ((seq.hashes.length + 1) * this.blockSize <= seq.tokens.length) {
      const i = seq.hashes.length;
      const prev = i ? seq.hashes[i - 1]! : '';
      const toks = seq.tokens.slice(i * this.blockSize, (i + 1) * this.blockSize);
      const h = hashTokens(prev, toks);
      seq.hashes.push(h);
      const b = seq.table[i]!;
      if (!this.byHash.has(h)) {
        this.blocks[b]!.hash = h;
        this.byHash.set(h, { block: b, tokens: toks });
      }
    }
  }

  /** Whether `id` can grow by `n` tokens without preempting anyone. */
  canAppend(id: string, n = 1): boolean {
    const s = this.seq(id);
    return this.blocksFor(s.length + n) - s.table.length <= this.free.length;
  }

  /**
   * Grow a sequence by generated tokens, allocating blocks as positions cross block boundaries.
   * @throws ValueError when the pool is exhausted (the scheduler should preempt first).
   */
  append(id: string, tokens: readonly number[]): void {
    const s = this.seq(id);
    if (!this.canAppend(id, tokens.length)) throw new ValueError(`BlockManager: no free block to grow sequence '${id}'`);
    while (s.table.length < this.blocksFor(s.length + tokens.length)) s.table.push(this.takeFree());
    s.length += tokens.length;
    s.tokens.push(...tokens);
    this.registerFull(s);
  }

  /** Release a sequence's blocks (completion, error, cancellation, preemption). Idempotent. */
  release(id: string): void {
    const s = this.seqs.get(id);
    if (!s) return;
    this.seqs.delete(id);
    for (const b of s.table) {
      const blk = this.blocks[b]!;
      if (--blk.refs === 0) this.free.push(b);
    }
  }

  seq(id: string): Tracked {
    const s = this.seqs.get(id);
    if (!s) throw new ValueError(`BlockManager: unknown sequence '${id}'`);
    return s;
  }
}
