/**
 * The merge step of rank-based BPE (GPT-2, Hugging Face `BPE`, llama.cpp's `llm_tokenizer_bpe`): inside
 * one word, repeatedly merge the adjacent pair with the lowest rank, leftmost first, until no pair has
 * a rank. A heap over (rank, position) with a linked list of symbols makes a word of n symbols cost
 * O(n log n), so a pathological 100k-character "word" (a long digit run) stays fast.
 */

/** Pair ranks are packed with positions into one double: rank * 2^32 + position, exact below 2^53. */
const POS_SPAN = 2 ** 32;

/** The merge list: (left id, right id) -> rank, and rank -> merged id. */
export class MergeTable {
  private readonly ranks = new Map<number, number>();
  private readonly results: number[] = [];
  private readonly pairs: [number, number][] = [];

  /** @param vocabSize - ids are below this; pairs are keyed as `left * vocabSize + right`. */
  constructor(private readonly vocabSize: number) {}

  /** Append a merge; a pair already present keeps its first (lower) rank, as in llama.cpp. Returns false then. */
  add(left: number, right: number, merged: number): boolean {
    const key = left * this.vocabSize + right;
    if (this.ranks.has(key)) return false;
    this.ranks.set(key, this.results.length);
    this.results.push(merged);
    this.pairs.push([left, right]);
    return true;
  }

  /** Rank of the pair, or -1 when it does not merge. */
  rank(left: number, right: number): number {
    return this.ranks.get(left * this.vocabSize + right) ?? -1;
  }

  result(rank: number): number {
    return this.results[rank]!;
  }

  /** The merges in rank order as (left id, right id). */
  list(): readonly (readonly [number, number])[] {
    return this.pairs;
  }

  get size(): number {
    return this.results.length;
  }
}

/** Min-heap of packed (rank, position) keys; plain numbers keep it allocation-free. */
class KeyHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(x: number): void {
    const a = this.a;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= x) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = x;
  }

  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r]! < a[l]! ? r : l;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/**
 * Merge a word given as symbol ids (initially one per byte) and append the resulting ids to `out`.
 * Equivalent to GPT-2's loop "merge every occurrence of the lowest-ranked pair, left to right":
 * equal ranks are the same pair and pop leftmost first, and a pair created by a merge always ranks
 * after the merge that created its token.
 */
export function applyMerges(symbols: ArrayLike<number>, table: MergeTable, out: number[]): void {
  const n = symbols.length;
  if (n === 1) {
    out.push(symbols[0]!);
    return;
  }
  const sym = Int32Array.from(symbols);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const heap = new KeyHeap();
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
    if (i + 1 < n) {
      const r = table.rank(sym[i]!, sym[i + 1]!);
      if (r >= 0) heap.push(r * POS_SPAN + i);
    }
  }
  while (heap.size > 0) {
    const key = heap.pop();
    const r = Math.floor(key / POS_SPAN);
    const i = key - r * POS_SPAN;
    if (sym[i]! < 0) continue; // merged away into its left neighbour
    const j = next[i]!;
    if (j < 0 || table.rank(sym[i]!, sym[j]!) !== r) continue; // stale: a neighbour changed
    sym[i] = table.result(r);
    sym[j] = -1;
    const k = next[j]!;
    next[i] = k;
    if (k >= 0) prev[k] = i;
    const p = prev[i]!;
    if (p >= 0) {
      const rp = table.rank(sym[p]!, sym[i]!);
      if (rp >= 0) heap.push(rp * POS_SPAN + p);
    }
    if (k >= 0) {
      const rn = table.rank(sym[i]!, sym[k]!);
      if (rn >= 0) heap.push(rn * POS_SPAN + i);
    }
  }
  for (let i = 0; i !== -1; i = next[i]!) out.push(sym[i]!);
}
