import { FormatError, ValueError } from '../errors.js';

/**
 * Character-level tokenizer: one token per distinct Unicode code point of the training text, ids
 * assigned in code-point order so the same text always gives the same vocabulary.
 */
export class CharTokenizer {
  private readonly index: Map<string, number>;

  constructor(readonly chars: readonly string[]) {
    if (chars.length === 0) throw new ValueError('CharTokenizer: the vocabulary is empty');
    this.index = new Map(chars.map((c, i) => [c, i]));
    if (this.index.size !== chars.length) throw new ValueError('CharTokenizer: the vocabulary has duplicate characters');
  }

  /** The vocabulary of `text`: its distinct code points, sorted. */
  static fromText(text: string): CharTokenizer {
    const set = new Set(Array.from(text));
    return new CharTokenizer([...set].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!));
  }

  /** Restore from `toJSON()` output (as stored in a checkpoint's metadata). */
  static fromJSON(json: string): CharTokenizer {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      throw new FormatError('CharTokenizer: vocabulary metadata is not valid JSON');
    }
    if (!Array.isArray(parsed) || !parsed.every((c) => typeof c === 'string')) {
      throw new FormatError('CharTokenizer: vocabulary metadata must be a JSON array of strings');
    }
    return new CharTokenizer(parsed as string[]);
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  /** Token ids of `text`. Characters outside the vocabulary are an error naming the first one. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const c of text) {
      const id = this.index.get(c);
      if (id === undefined) throw new ValueError(`CharTokenizer: character ${JSON.stringify(c)} is not in the vocabulary`);
      out.push(id);
    }
    return out;
  }

  decode(ids: Iterable<number>): string {
    let s = '';
    for (const id of ids) {
      const c = this.chars[id];
      if (c === undefined) throw new ValueError(`CharTokenizer: token id ${id} is outside the vocabulary of ${this.vocabSize}`);
      s += c;
    }
    return s;
  }

  toJSON(): string {
    return JSON.stringify(this.chars);
  }
}
