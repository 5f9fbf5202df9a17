/**
 * Reading llama.cpp's `tokenizer.ggml.*` metadata. Values may come straight from the GGUF reader
 * (`GGUFFile.metadata`: each value wrapped with its type, arrays of numbers as typed arrays) or as plain
 * JavaScript values in a record; both are accepted, and every error names the key.
 */
import { FormatError } from '../errors.js';

/** GGUF metadata: `GGUFFile.metadata`, or any map/record of key -> value (plain or `{ type, value }`). */
export type TokenizerMetadata = ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>;

/** The metadata keys llama.cpp reads for a tokenizer (llama-arch.cpp's LLM_KV_TOKENIZER_*). */
export const GGUF_KEYS = {
  model: 'tokenizer.ggml.model',
  pre: 'tokenizer.ggml.pre',
  tokens: 'tokenizer.ggml.tokens',
  tokenType: 'tokenizer.ggml.token_type',
  scores: 'tokenizer.ggml.scores',
  merges: 'tokenizer.ggml.merges',
  bosId: 'tokenizer.ggml.bos_token_id',
  eosId: 'tokenizer.ggml.eos_token_id',
  unkId: 'tokenizer.ggml.unknown_token_id',
  padId: 'tokenizer.ggml.padding_token_id',
  addBos: 'tokenizer.ggml.add_bos_token',
  addEos: 'tokenizer.ggml.add_eos_token',
  addSpacePrefix: 'tokenizer.ggml.add_space_prefix',
} as const;

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  return v === null ? 'null' : `a ${typeof v}`;
}

/** Typed access to tokenizer metadata with errors that name the key. */
export class MetaReader {
  constructor(
    private readonly meta: TokenizerMetadata,
    readonly label = 'GGUF metadata',
  ) {}

  /** The raw value, unwrapped from the reader's `{ type, value }` form. */
  get(key: string): unknown {
    const v = this.meta instanceof Map ? this.meta.get(key) : (this.meta as Readonly<Record<string, unknown>>)[key];
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && 'value' in v && 'type' in v) {
      return (v as { value: unknown }).value;
    }
    return v;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  private missing(key: string, expected: string): never {
    throw new FormatError(`${this.label}: key '${key}' is missing (expected ${expected})`);
  }

  private wrong(key: string, v: unknown, expected: string): never {
    throw new FormatError(`${this.label}: '${key}' is ${describe(v)}, expected ${expected}`);
  }

  string(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return this.wrong(key, v, 'a string');
    return v;
  }

  requireString(key: string): string {
    return this.string(key) ?? this.missing(key, 'a string');
  }

  bool(key: string): boolean | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return this.wrong(key, v, 'a bool');
    return v;
  }

  /** A token id (u32 in files; any non-negative integer, number or bigint, is accepted). */
  id(key: string): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return this.wrong(key, v, 'a non-negative integer (u32)');
    return n;
  }

  strings(key: string): string[] | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return this.wrong(key, v, 'an array of strings');
    v.forEach((s, i) => {
      if (typeof s !== 'string') throw new FormatError(`${this.label}: '${key}'[${i}] is ${describe(s)}, expected a string`);
    });
    return v as string[];
  }

  requireStrings(key: string): string[] {
    return this.strings(key) ?? this.missing(key, 'an array of strings');
  }

  /** A numeric array (typed array or plain numbers), checked to have `length` entries. */
  numbers(key: string, length: number): ArrayLike<number> | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    let arr: ArrayLike<number>;
    if (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) {
      arr = v as unknown as ArrayLike<number>;
    } else if (Array.isArray(v) && v.every((x) => typeof x === 'number')) arr = v as number[];
    else return this.wrong(key, v, 'an array of numbers');
    if (arr.length !== length) {
      throw new FormatError(`${this.label}: '${key}' has ${arr.length} entries but the vocabulary has ${length} tokens`);
    }
    return arr;
  }
}
