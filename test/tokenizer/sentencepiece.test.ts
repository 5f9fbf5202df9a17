/**
 * SentencePiece-style BPE on hand-made vocabularies whose segmentations are derived by hand from
 * llama.cpp's rule (merge the adjacent pair whose concatenation is the best-scoring token, leftmost on
 * ties; characters without a token fall back to byte tokens), plus the dummy space prefix, special
 * tokens, exact round trips, and the GGUF metadata path.
 */
import { describe, expect, it } from 'vitest';
import { FormatError, ValueError } from '../../src/errors.js';
import { GGUF_KEYS, SentencePieceBPE, TokenType, toGGUFMetadata, tokenizerFromGGUFMetadata } from '../../src/tokenizer/index.js';
import { randomTexts, VARIED_TEXTS } from './fixtures.js';

const hex = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

/** <unk>, <s>, </s>, the 256 byte tokens, then scored pieces. */
function vocab(pieces: readonly (readonly [string, number])[], opts: { bytes?: boolean } = {}): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const scores = [0, 0, 0];
  const types: number[] = [TokenType.Unknown, TokenType.Control, TokenType.Control];
  if (opts.bytes ?? true) {
    for (let b = 0; b < 256; b++) {
      tokens.push(hex(b));
      scores.push(0);
      types.push(TokenType.Byte);
    }
  }
  for (const [p, s] of pieces) {
    tokens.push(p);
    scores.push(s);
    types.push(TokenType.Normal);
  }
  return { tokens, scores, types };
}

const PIECES = [
  ['▁', -1],
  ['a', -2],
  ['b', -2],
  ['c', -2],
  ['ab', -3],
  ['bc', -1.5],
  ['abc', -1],
  ['▁a', -4],
  ['aa', -1],
  ['▁b', -2.5],
  ['x', -2],
  ['y', -2],
  ['z', -2],
  ['xy', -1],
  ['yz', -0.5],
] as const;

function make(pieces: readonly (readonly [string, number])[] = PIECES, extra: Partial<ConstructorParameters<typeof SentencePieceBPE>[0]> = {}): SentencePieceBPE {
  const v = vocab(pieces);
  return new SentencePieceBPE({ tokens: v.tokens, scores: v.scores, tokenTypes: v.types, ...extra });
}

describe('SentencePiece BPE segmentation (hand-derived)', () => {
  const tok = make();
  const pieces = (text: string, opts: Parameters<SentencePieceBPE['encode']>[1] = { addSpecial: false }): string[] =>
    tok.encode(text, opts).map((i) => tok.idToToken(i)!);

  it('merges the best-scoring pair first', () => {
    // ▁ a b: "▁a" (-4) vs "ab" (-3): ab wins; "▁ab" is no token.
    expect(pieces('ab')).toEqual(['▁', 'ab']);
    // ▁ a b c: "bc" (-1.5) beats "ab" (-3) and "▁a" (-4); then "abc" (-1) beats "▁a".
    expect(pieces('abc')).toEqual(['▁', 'abc']);
    // ▁ x y z: "yz" (-0.5) before "xy" (-1); "xyz" is no token.
    expect(pieces('xyz')).toEqual(['▁', 'x', 'yz']);
    // The same text with the scores of xy and yz swapped merges the other pair.
    const swapped = make(PIECES.map(([p, s]) => [p, p === 'xy' ? -0.5 : p === 'yz' ? -1 : s] as const));
    expect(swapped.encode('xyz', { addSpecial: false }).map((i) => swapped.idToToken(i))).toEqual(['▁', 'xy', 'z']);
  });

  it('breaks ties leftmost first', () => {
    // ▁ a a a: "aa" at 1 and at 2 score the same; the left one merges, the right a is left over.
    expect(pieces('aaa')).toEqual(['▁', 'aa', 'a']);
    expect(pieces('aaaa')).toEqual(['▁', 'aa', 'aa']);
  });

  it('turns spaces into ▁ and puts one in front (the dummy prefix)', () => {
    // ▁ a ▁ b: "▁b" (-2.5) merges before "▁a" (-4).
    expect(pieces('a b')).toEqual(['▁a', '▁b']);
    expect(pieces(' b')).toEqual(['▁', '▁b']);
    expect(pieces('b')).toEqual(['▁b']);
    const noPrefix = make(PIECES, { addSpacePrefix: false });
    expect(noPrefix.encode('ab', { addSpecial: false }).map((i) => noPrefix.idToToken(i))).toEqual(['ab']);
  });

  it('falls back to byte tokens for characters without a token', () => {
    expect(pieces('ca')).toEqual(['▁', 'c', 'a']);
    expect(pieces('é')).toEqual(['▁', '<0xC3>', '<0xA9>']);
    expect(pieces('a🙂')).toEqual(['▁a', '<0xF0>', '<0x9F>', '<0x99>', '<0x82>']);
    expect(pieces('\n')).toEqual(['▁', '<0x0A>']);
  });

  it('without byte tokens, unknown characters become <unk>; without an unknown token, a ValueError', () => {
    const v = vocab(PIECES, { bytes: false });
    const noBytes = new SentencePieceBPE({ tokens: v.tokens, scores: v.scores, tokenTypes: v.types });
    expect(noBytes.encode('aé', { addSpecial: false }).map((i) => noBytes.idToToken(i))).toEqual(['▁a', '<unk>', '<unk>']);
    const plain = new SentencePieceBPE({ tokens: ['▁', 'a'], scores: [0, 0], addBos: false });
    expect(plain.encode('a a')).toEqual([0, 1, 0, 1]);
    expect(() => plain.encode('é')).toThrow(ValueError);
    expect(() => plain.encode('é')).toThrow(/"é" is not in the vocabulary/);
  });

  it('BOS/EOS with addSpecial, llama.cpp defaults (BOS 1, EOS 2, UNK 0, add BOS)', () => {
    expect([tok.bosId, tok.eosId, tok.unkId, tok.addBos, tok.addEos, tok.addSpacePrefix]).toEqual([1, 2, 0, true, false, true]);
    expect(tok.encode('b')).toEqual([1, tok.tokenToId('▁b')]);
    expect(tok.encode('')).toEqual([1]);
    expect(tok.encode('', { addSpecial: false })).toEqual([]);
    const withEos = make(PIECES, { addEos: true });
    expect(withEos.encode('b')).toEqual([1, tok.tokenToId('▁b'), 2]);
    expect([...tok.specialTokens.keys()].sort()).toEqual(['</s>', '<s>', '<unk>']);
  });

  it('parses special tokens only when asked; text after one gets the prefix again', () => {
    const b = tok.tokenToId('▁b')!;
    expect(tok.encode('<s>b', { addSpecial: false, parseSpecial: true })).toEqual([1, b]);
    expect(tok.encode('b</s>b', { addSpecial: false, parseSpecial: true })).toEqual([b, 2, b]);
    expect(pieces('<s>b')).toEqual(['▁', '<0x3C>', '<0x73>', '<0x3E>', 'b']);
  });
});

describe('SentencePiece BPE decoding', () => {
  const tok = make();

  it('decode(encode(s)) === s for text without U+2581, with and without specials', () => {
    const texts = [...VARIED_TEXTS, ' a', '  b', 'a ', 'abc abc  abc', ...randomTexts(21, 200, 50)].filter((s) => !s.includes('▁'));
    for (const s of texts) {
      expect(tok.decode(tok.encode(s, { addSpecial: false }))).toBe(s);
      expect(tok.decode(tok.encode(s), { skipSpecial: true })).toBe(s);
      expect(tok.decodeBytes(tok.encode(s, { addSpecial: false }))).toEqual(new TextEncoder().encode(s));
    }
    const s = 'a</s>b <s> c';
    expect(tok.decode(tok.encode(s, { addSpecial: false, parseSpecial: true }))).toBe(s);
  });

  it('writes control tokens unless skipSpecial, and strips the dummy space after them', () => {
    const ids = [1, tok.tokenToId('▁a')!, tok.tokenToId('▁b')!, 2];
    expect(tok.decode(ids)).toBe('<s>a b</s>');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('a b');
    expect(tok.decode([tok.tokenToId('▁b')!, tok.tokenToId('▁a')!])).toBe('b a');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([tok.vocabSize])).toThrow(/SentencePieceBPE\.decode: token id \d+ is outside the vocabulary/);
  });
});

describe('SentencePiece BPE from GGUF metadata', () => {
  it('round-trips through toGGUFMetadata with the types llama.cpp expects', () => {
    const tok = make(PIECES, { addEos: true, addSpacePrefix: false });
    const meta = toGGUFMetadata(tok);
    expect(meta[GGUF_KEYS.model]).toEqual({ type: 'string', value: 'llama' });
    expect(meta[GGUF_KEYS.scores]).toMatchObject({ type: 'array', elementType: 'f32' });
    expect(meta[GGUF_KEYS.scores]!.value).toBeInstanceOf(Float32Array);
    expect(meta[GGUF_KEYS.tokenType]!.value).toBeInstanceOf(Int32Array);
    expect(meta[GGUF_KEYS.bosId]).toEqual({ type: 'u32', value: 1 });
    expect(meta[GGUF_KEYS.addSpacePrefix]).toEqual({ type: 'bool', value: false });
    const back = tokenizerFromGGUFMetadata(meta);
    expect(back).toBeInstanceOf(SentencePieceBPE);
    for (const s of ['abc', 'a b', 'xyz é', '<s>x']) {
      expect(back.encode(s)).toEqual(tok.encode(s));
      expect(back.encode(s, { parseSpecial: true })).toEqual(tok.encode(s, { parseSpecial: true }));
    }
  });

  it('names the key on errors', () => {
    const v = vocab(PIECES);
    const meta = { [GGUF_KEYS.model]: 'llama', [GGUF_KEYS.tokens]: v.tokens, [GGUF_KEYS.scores]: Float32Array.from(v.scores), [GGUF_KEYS.tokenType]: v.types };
    expect(tokenizerFromGGUFMetadata(meta).vocabSize).toBe(v.tokens.length);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.scores]: [0, 1] })).toThrow(FormatError);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.scores]: [0, 1] })).toThrow(
      /'tokenizer\.ggml\.scores' has 2 entries but the vocabulary has \d+ tokens/,
    );
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.scores]: ['x'] })).toThrow(/'tokenizer\.ggml\.scores' is an array, expected an array of numbers/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.addBos]: 1 })).toThrow(/'tokenizer\.ggml\.add_bos_token' is a number, expected a bool/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.tokenType]: [...v.types.slice(1), 9] })).toThrow(/has type 9/);
    expect(() => new SentencePieceBPE({ tokens: ['a', 'b'], scores: [0] })).toThrow(/scores: 1 scores for 2 tokens/);
  });
});

describe("the llama.cpp probe's vocabularies (segmentations llama.cpp produced, test/peers)", () => {
  it("SentencePiece ('llama')", () => {
    const pieces = ['▁', ...'abcdefghijklmnopqrstuvwxyz'.split(''), 'he', 'll', 'llo', '▁he', '▁hello', 'or', '▁w', '▁wor', 'ld', '▁world', 'th', '▁th', '▁the', ',', '.'];
    const tok = make(pieces.map((p, i) => [p, p.length > 1 ? -i / 100 : -10 - i / 100] as const));
    const seg = (s: string): string[] => tok.encode(s, { addSpecial: false }).map((i) => tok.idToToken(i)!);
    expect(seg('hello world')).toEqual(['▁hello', '▁world']);
    // 'he' outscores 'th' and there is no '▁t', so 'the' stays ▁ t he.
    expect(seg('the world, hello.')).toEqual(['▁', 't', 'he', '▁world', ',', '▁hello', '.']);
    expect(seg(' the')).toEqual(['▁', '▁', 't', 'he']);
    expect(seg('hé')).toEqual(['▁', 'h', '<0xC3>', '<0xA9>']);
    expect(tok.encode('hello')[0]).toBe(1);
    expect(tok.encode('<s>hello', { parseSpecial: true, addSpecial: false })[0]).toBe(1);
    expect(tok.encode('<s>hello', { addSpecial: false })).not.toContain(1);
  });
});
