/**
 * What the BPE tokenizers share: the token table (text, type, score per id), the split of input text on
 * special tokens, a growable byte buffer for decoding, and a binary heap.
 */
import { FormatError, ValueError } from '../errors.js';
import { TokenType } from './types.js';

/** Token types whose text is matched in the input before any other processing (llama.cpp's special cache). */
const PARTITION_TYPES = new Set<number>([TokenType.Control, TokenType.UserDefined, TokenType.Unknown]);

/** A special token as the partitioner sees it. */
interface SpecialEntry {
  text: string;
  id: number;
  /** Control and unknown tokens are matched only when the caller asks (`parseSpecial`). */
  needsParseSpecial: boolean;
}

/**
 * The token table: every id's text and type (and score, for SentencePiece), plus the reverse index.
 * Texts must be unique and non-empty, as llama.cpp requires of a GGUF vocabulary.
 */
export class Vocab {
  readonly texts: readonly string[];
  readonly types: Uint8Array;
  readonly index: ReadonlyMap<string, number>;
  /** Special tokens, longest first (ties by id), the order llama.cpp tries them in. */
  private readonly partitionOrder: readonly SpecialEntry[];
  readonly specialTokens: ReadonlyMap<string, number>;

  /**
   * @param texts - token text per id.
   * @param types - token type per id ({@link TokenType}); missing means all normal.
   * @param where - the field the texts came from, for error messages (`tokenizer.ggml.tokens`).
   */
  constructor(texts: readonly string[], types: ArrayLike<number> | undefined, where: string) {
    if (texts.length === 0) throw new FormatError(`${where}: the vocabulary is empty`);
    if (types !== undefined && types.length !== texts.length) {
      throw new FormatError(`${where}: ${texts.length} tokens but ${types.length} token types`);
    }
    const index = new Map<string, number>();
    const typeArr = new Uint8Array(texts.length);
    for (let i = 0; i < texts.length; i++) {
      const t = texts[i];
      if (typeof t !== 'string' || t.length === 0) {
        throw new FormatError(`${where}[${i}]: token text must be a non-empty string, got ${JSON.stringify(t)}`);
      }
      const prev = index.get(t);
      if (prev !== undefined) throw new FormatError(`${where}: duplicate token ${JSON.stringify(t)} at ids ${prev} and ${i}`);
      index.set(t, i);
      const ty = types === undefined ? TokenType.Normal : types[i]!;
      if (!Number.isInteger(ty) || ty < 0 || ty > 6) {
        throw new FormatError(`${where}: token ${i} (${JSON.stringify(t)}) has type ${ty}; expected an integer 0..6`);
      }
      typeArr[i] = ty;
    }
    this.texts = texts.slice();
    this.types = typeArr;
    this.index = index;
    const specials: SpecialEntry[] = [];
    const specialMap = new Map<string, number>();
    for (let i = 0; i < texts.length; i++) {
      if (!PARTITION_TYPES.has(typeArr[i]!)) continue;
      specials.push({ text: texts[i]!, id: i, needsParseSpecial: typeArr[i] !== TokenType.UserDefined });
      specialMap.set(texts[i]!, i);
    }
    specials.sort((a, b) => b.text.length - a.text.length || a.id - b.id);
    this.partitionOrder = specials;
    this.specialTokens = specialMap;
  }

  get size(): number {
    return this.texts.length;
  }

  /** Throw a ValueError unless `id` is a valid id (used by decode). */
  checkId(id: number, who: string): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.texts.length) {
      throw new ValueError(`${who}: token id ${id} is outside the vocabulary of ${this.texts.length}`);
    }
  }

  /** An optional special id from metadata, checked against the table. */
  checkOptionalId(id: number | undefined, what: string, where: string): number | undefined {
    if (id === undefined) return undefined;
    if (!Number.isInteger(id) || id < 0 || id >= this.texts.length) {
      throw new FormatError(`${where}: ${what} ${id} is outside the vocabulary of ${this.texts.length}`);
    }
    return id;
  }

  /**
   * Split `text` into raw-text pieces (strings) and special-token ids, the way llama.cpp's
   * `tokenizer_st_partition` does: each special token in turn (longest first) cuts every remaining
   * raw piece at each of its occurrences. User-defined tokens always match; control and unknown ones
   * only with `parseSpecial`.
   */
  partition(text: string, parseSpecial: boolean): (string | number)[] {
    if (text.length === 0) return [];
    let frags: (string | number)[] = [text];
    for (const sp of this.partitionOrder) {
      if (sp.needsParseSpecial && !parseSpecial) continue;
      if (!text.includes(sp.text)) continue;
      const next: (string | number)[] = [];
      for (const f of frags) {
        if (typeof f === 'number') {
          next.push(f);
          continue;
        }
        let from = 0;
        for (;;) {
          const at = f.indexOf(sp.text, from);
          if (at < 0) break;
          if (at > from) next.push(f.slice(from, at));
          next.push(sp.id);
          from = at + sp.text.length;
        }
        if (from < f.length) next.push(from === 0 ? f : f.slice(from));
      }
      frags = next;
    }
    return frags;
  }
}

/** True for the types whose text is written raw on decode (and skipped with `skipSpecial`). */
export function isSpecialType(type: number): boolean {
  return type === TokenType.Control || type === TokenType.Unknown;
}

const utf8Encoder = new TextEncoder();
/** Non-fatal: byte-level tokens may cut a character, and such bytes decode to U+FFFD as in every other decoder. */
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Decode bytes once, after all tokens are joined (never per token: a token may hold part of a character). */
export function utf8Text(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** An append-only byte buffer. */
export class ByteSink {
  private buf = new Uint8Array(256);
  private len = 0;

  push(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  pushByte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** A binary min-heap under `less`. */
export class Heap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
