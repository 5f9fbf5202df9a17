/**
 * The byte-level BPE trainer and `tessera tokenizer train`: hand-predictable first merges,
 * determinism, the requested vocabulary size, round trips on held-out text, speed on ~1 MB, and the
 * files it writes loading back as the same tokenizer.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mobyDickText } from '../../src/data/moby_dick.js';
import { ValueError } from '../../src/errors.js';
import {
  BYTE_ORDER,
  BYTE_TO_UNICODE,
  ByteLevelBPE,
  CharTokenizerAdapter,
  GGUF_KEYS,
  SentencePieceBPE,
  TokenType,
  saveTokenizerFiles,
  toGGUFMetadata,
  tokenizerFromGGUFMetadata,
  trainByteLevelBPE,
  trainTokenizerCommand,
} from '../../src/tokenizer/index.js';
import { CharTokenizer } from '../../src/io/char_tokenizer.js';
import { gpt2Tokenizer, randomTexts, VARIED_TEXTS } from './fixtures.js';

const MOBY = mobyDickText();
const TRAIN = MOBY.slice(0, 200_000);
const HELD_OUT = MOBY.slice(600_000, 640_000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-tokenizer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('trainByteLevelBPE', () => {
  it('learns the most frequent pair first, then the next, and stops below minFrequency', () => {
    // Words: "ab" x1, " ab" x3, " cd" x1. Pairs: (a,b) 4, (Ġ,a) 3, (Ġ,c) 1, (c,d) 1.
    // Merge 1: a+b (4). Then (Ġ,ab) has 3: merge 2. The rest occur once (< minFrequency 2).
    const tok = trainByteLevelBPE('ab ab ab ab cd', { vocabSize: 1000 });
    expect(tok.mergeStrings()).toEqual(['a b', 'Ġ ab']);
    expect(tok.vocabSize).toBe(256 + 2 + 1);
    expect(tok.idToToken(256)).toBe('ab');
    expect(tok.idToToken(257)).toBe('Ġab');
    expect(tok.idToToken(258)).toBe('<|endoftext|>');
    expect(tok.encode(' ab ab')).toEqual([257, 257]);
    // minFrequency 1: the once-seen pairs tie at 1 and go by smaller ids: (c,d) = (66,67) before (Ġ,c) = (220,66).
    const all = trainByteLevelBPE('ab ab ab ab cd', { vocabSize: 1000, minFrequency: 1 });
    expect(all.mergeStrings()).toEqual(['a b', 'Ġ ab', 'c d', 'Ġ cd']);
  });

  it('counts a pair once per occurrence, merging overlapping runs left to right', () => {
    // "aaaa" x3: (a,a) occurs 3 times per word -> merge a+a; words become [aa, aa]; (aa,aa) -> merge.
    const tok = trainByteLevelBPE('aaaa aaaa aaaa', { vocabSize: 300, specialTokens: [] });
    expect(tok.mergeStrings().slice(0, 2)).toEqual(['a a', 'aa aa']);
    expect(tok.encode('aaaa')).toEqual([tok.tokenToId('aaaa')]);
    expect(tok.encode('aaa').map((i) => tok.idToToken(i))).toEqual(['aa', 'a']);
  });

  it('is deterministic and honours the vocabulary size exactly when the corpus allows', () => {
    const a = trainByteLevelBPE(TRAIN, { vocabSize: 1000 });
    const b = trainByteLevelBPE(TRAIN, { vocabSize: 1000 });
    expect(a.vocabSize).toBe(1000);
    expect(a.merges.size).toBe(1000 - 256 - 1);
    expect(b.mergeStrings()).toEqual(a.mergeStrings());
    expect(b.vocab.texts).toEqual(a.vocab.texts);
    // Merges only ever use earlier tokens, and the ids 0..255 are GPT-2's.
    const gpt2 = gpt2Tokenizer();
    for (let i = 0; i < 256; i++) expect(a.idToToken(i)).toBe(gpt2.idToToken(i));
    expect(a.idToToken(0)).toBe(BYTE_TO_UNICODE[BYTE_ORDER[0]!]);
    const seen = new Set(a.vocab.texts.slice(0, 256));
    a.merges.list().forEach(([l, r], i) => {
      expect(seen.has(a.idToToken(l)!) && seen.has(a.idToToken(r)!), `merge ${i}`).toBe(true);
      seen.add(a.idToToken(l)! + a.idToToken(r)!);
    });
    // Common English pieces are learned early.
    expect(a.tokenToId('Ġthe')).toBeLessThan(300);
  });

  it('round-trips held-out and arbitrary text exactly, and compresses English', () => {
    const tok = trainByteLevelBPE(TRAIN, { vocabSize: 2000 });
    for (const s of [HELD_OUT, ...VARIED_TEXTS, ...randomTexts(3, 100, 50)]) expect(tok.decode(tok.encode(s))).toBe(s);
    const bytesPerToken = new TextEncoder().encode(HELD_OUT).length / tok.encode(HELD_OUT).length;
    expect(bytesPerToken).toBeGreaterThan(2.5); // 2.93 here; raw bytes would be 1
  });

  it('keeps special tokens whole: their text in the corpus is cut out, never merged into', () => {
    const corpus = 'the cat<|endoftext|>the dog<|endoftext|>'.repeat(50);
    const tok = trainByteLevelBPE(corpus, { vocabSize: 400 });
    const eot = tok.tokenToId('<|endoftext|>')!;
    expect(eot).toBe(tok.vocabSize - 1);
    expect(tok.vocab.types[eot]).toBe(TokenType.Control);
    expect([tok.bosId, tok.eosId]).toEqual([eot, eot]);
    expect(tok.vocab.texts.some((t) => t !== '<|endoftext|>' && (t.includes('endoftext') || t.includes('|>')))).toBe(false);
    expect(tok.encode('the cat<|endoftext|>', { parseSpecial: true }).at(-1)).toBe(eot);
    const custom = trainByteLevelBPE(corpus, { vocabSize: 400, specialTokens: ['<s>', '</s>'], eosToken: '</s>' });
    expect([custom.idToToken(custom.bosId!), custom.idToToken(custom.eosId!)]).toEqual(['<s>', '</s>']);
  });

  it('trains on ~1 MB (Moby Dick, 1.19 MB) with a 4096-token vocabulary in well under 10 s', () => {
    const t0 = performance.now();
    const tok = trainByteLevelBPE(MOBY, { vocabSize: 4096 });
    const seconds = (performance.now() - t0) / 1000;
    expect(tok.vocabSize).toBe(4096);
    expect(seconds).toBeLessThan(10); // about 0.5 s here: a 20x margin for slow CI machines
  });

  it('rejects bad options', () => {
    expect(() => trainByteLevelBPE('x', { vocabSize: 256 })).toThrow(/vocabSize must be an integer from 257/);
    expect(() => trainByteLevelBPE('x', { vocabSize: 300, minFrequency: 0 })).toThrow(ValueError);
    expect(() => trainByteLevelBPE('x', { vocabSize: 300, specialTokens: ['a', 'a'] })).toThrow(/listed twice/);
    expect(() => trainByteLevelBPE('x', { vocabSize: 300, bosToken: '<s>' })).toThrow(/bosToken "<s>" is not one of specialTokens/);
  });
});

describe('saving and the tokenizer train command', () => {
  it('vocab.json + merges.txt and tokenizer.json load back to the same tokenizer', async () => {
    const tok = trainByteLevelBPE(TRAIN, { vocabSize: 800 });
    const files = await saveTokenizerFiles(tok, join(dir, 'saved'));
    const fromFiles = ByteLevelBPE.fromFiles(await readFile(files.vocab, 'utf8'), await readFile(files.merges, 'utf8'));
    const fromJson = ByteLevelBPE.fromTokenizerJSON(await readFile(files.tokenizerJson, 'utf8'));
    expect((await readFile(files.merges, 'utf8')).split('\n')[0]).toBe('#version: 0.2');
    for (const t of [fromFiles, fromJson]) {
      expect(t.vocab.texts).toEqual(tok.vocab.texts);
      expect([...t.vocab.types]).toEqual([...tok.vocab.types]);
      expect(t.mergeStrings()).toEqual(tok.mergeStrings());
      expect([t.bosId, t.eosId]).toEqual([tok.bosId, tok.eosId]);
      for (const s of [HELD_OUT.slice(0, 5000), ...VARIED_TEXTS]) expect(t.encode(s, { parseSpecial: true })).toEqual(tok.encode(s, { parseSpecial: true }));
    }
  });

  it("trainTokenizerCommand trains, writes the files and summarises; GGUF metadata is llama.cpp's 'gpt2'/'gpt-2'", async () => {
    const input = join(dir, 'corpus.txt');
    await writeFile(input, TRAIN);
    const out = join(dir, 'cmd');
    const s = await trainTokenizerCommand({ input, vocabSize: 600, out });
    expect(s.vocabSize).toBe(600);
    expect(s.merges).toBe(600 - 257);
    expect(s.specialTokens).toEqual(['<|endoftext|>']);
    expect(s.inputBytes).toBe(Buffer.byteLength(TRAIN));
    expect(s.corpusTokens).toBe(s.tokenizer.encode(TRAIN).length);
    expect(s.bytesPerToken).toBeCloseTo(s.inputBytes / s.corpusTokens, 10);
    expect(s.files.vocab).toBe(join(out, 'vocab.json'));
    expect(s.lines.join('\n')).toMatch(/600 tokens .* 343 merges/);
    const reloaded = ByteLevelBPE.fromTokenizerJSON(await readFile(s.files.tokenizerJson, 'utf8'));
    expect(reloaded.encode(HELD_OUT)).toEqual(s.tokenizer.encode(HELD_OUT));

    const meta = toGGUFMetadata(s.tokenizer);
    expect(meta[GGUF_KEYS.model]!.value).toBe('gpt2');
    expect(meta[GGUF_KEYS.pre]!.value).toBe('gpt-2');
    expect(meta[GGUF_KEYS.eosId]).toEqual({ type: 'u32', value: 599 });
    const back = tokenizerFromGGUFMetadata(meta);
    expect(back.encode(HELD_OUT)).toEqual(s.tokenizer.encode(HELD_OUT));
  });

  it('names an unreadable input', async () => {
    const missing = join(dir, 'nope.txt');
    await expect(trainTokenizerCommand({ input: missing, vocabSize: 300, out: join(dir, 'x') })).rejects.toThrow(
      new RegExp(`cannot read input '${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`),
    );
  });
});

describe('the character tokenizer behind the common interface', () => {
  const text = 'Call me Ishmael. Some years ago—never mind how long precisely.\n🙂';

  it('encodes and decodes like CharTokenizer', () => {
    const char = CharTokenizer.fromText(text);
    const tok = new CharTokenizerAdapter(char);
    expect(tok.kind).toBe('char');
    expect(tok.vocabSize).toBe(char.vocabSize);
    expect(tok.encode(text)).toEqual(char.encode(text));
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decodeBytes(tok.encode(text))).toEqual(new TextEncoder().encode(text));
    expect(tok.tokenToId('C')).toBe(char.encode('C')[0]);
    expect(tok.idToToken(char.encode('🙂')[0]!)).toBe('🙂');
    expect([tok.bosId, tok.eosId, tok.specialTokens.size]).toEqual([undefined, undefined, 0]);
    expect(CharTokenizerAdapter.fromJSON(char.toJSON()).encode('me')).toEqual(char.encode('me'));
    expect(() => tok.encode('Z')).toThrow(/character "Z" is not in the vocabulary/);
    expect(() => tok.decode([999])).toThrow(ValueError);
  });

  it("exports to GGUF as a 'llama' vocabulary that tokenizes one id per character, identically", () => {
    const tok = CharTokenizerAdapter.fromText(text);
    const meta = toGGUFMetadata(tok);
    expect(meta[GGUF_KEYS.model]!.value).toBe('llama');
    expect(meta[GGUF_KEYS.addSpacePrefix]!.value).toBe(false);
    expect(meta[GGUF_KEYS.addBos]!.value).toBe(false);
    expect((meta[GGUF_KEYS.tokens]!.value as string[]).includes(' ')).toBe(false);
    const spm = tokenizerFromGGUFMetadata(meta) as SentencePieceBPE;
    expect(spm).toBeInstanceOf(SentencePieceBPE);
    for (const s of [text, '  me  ', 'Ishmael\n\n']) {
      expect(spm.encode(s)).toEqual(tok.encode(s));
      expect(spm.decode(tok.encode(s))).toBe(s);
    }
    expect(() => spm.encode('Z')).toThrow(ValueError);
    expect(() => toGGUFMetadata(CharTokenizerAdapter.fromText('a▁b'))).toThrow(/contains '▁'/);
  });
});
