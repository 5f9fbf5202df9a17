/**
 * Byte-level BPE against GPT-2's real vocabulary: known ids, agreement with an independent GPT-2
 * implementation (the `gpt-3-encoder` package), exact round trips for arbitrary UTF-8, and the
 * tokenizer.json and GGUF-metadata loaders agreeing with the original files.
 */
import { encode as referenceEncode } from 'gpt-3-encoder';
import { describe, expect, it } from 'vitest';
import { FormatError, ValueError } from '../../src/errors.js';
import { encodeGGUF, parseGGUF } from '../../src/io/gguf.js';
import { mobyDickText } from '../../src/data/moby_dick.js';
import {
  BYTE_ORDER,
  BYTE_TO_UNICODE,
  ByteLevelBPE,
  GGUF_KEYS,
  PreTokenizer,
  TokenType,
  toByteLevel,
  toGGUFMetadata,
  tokenizerFromGGUFMetadata,
} from '../../src/tokenizer/index.js';
import { gpt2Files, gpt2Tokenizer, randomProse, randomTexts, VARIED_TEXTS } from './fixtures.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** GPT-2's tokenizer.json as Hugging Face ships it, built from the original files. */
function gpt2TokenizerJSON(mergesAsPairs: boolean): Record<string, unknown> {
  const { vocabJson, merges } = gpt2Files();
  const lines = merges.split('\n').slice(1).filter((l) => l.length > 0);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      vocab: JSON.parse(vocabJson) as Record<string, number>,
      merges: mergesAsPairs ? lines.map((l) => l.split(' ')) : lines,
    },
  };
}

const MOBY_SLICE = mobyDickText().slice(20_000, 60_000);

describe('GPT-2 vocabulary from vocab.json + merges.txt', () => {
  const tok = gpt2Tokenizer();

  it('has GPT-2 shape: 50257 tokens, 50000 merges, <|endoftext|> as the only special token and BOS/EOS', () => {
    expect(tok.vocabSize).toBe(50257);
    expect(tok.merges.size).toBe(50000);
    expect([...tok.specialTokens]).toEqual([['<|endoftext|>', 50256]]);
    expect([tok.bosId, tok.eosId, tok.addBos, tok.addEos]).toEqual([50256, 50256, false, false]);
    expect(tok.pre.name).toBe('gpt-2');
  });

  it("encodes to GPT-2's known ids", () => {
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
    expect(tok.encode('<|endoftext|>', { parseSpecial: true })).toEqual([50256]);
    // Without parseSpecial the marker is plain text (as GPT-2's own encoder.py treats it).
    expect(tok.encode('<|endoftext|>')).toEqual([27, 91, 437, 1659, 5239, 91, 29]);
    // Ids read from the fixture itself.
    expect(tok.tokenToId('Ġthe')).toBe(262);
    expect(tok.tokenToId('Hello')).toBe(15496);
    expect(tok.encode('The')).toEqual([tok.tokenToId('The')]);
    expect(tok.encode(' world')).toEqual([tok.tokenToId('Ġworld')]);
    expect(tok.encode(' Ishmael').map((i) => tok.idToToken(i))).toEqual(['ĠIs', 'hma', 'el']);
    expect(tok.encode('\n\n')).toEqual([tok.tokenToId('ĊĊ')]);
    expect(tok.idToToken(262)).toBe('Ġthe');
    expect(tok.idToToken(50257)).toBeUndefined();
    expect(tok.tokenToId('no such token')).toBeUndefined();
    // Special tokens in the middle of text: split out first, merges never cross them.
    expect(tok.encode('a<|endoftext|>b', { parseSpecial: true })).toEqual([64, 50256, 65]);
    expect(tok.decode([64, 50256, 65])).toBe('a<|endoftext|>b');
    expect(tok.decode([64, 50256, 65], { skipSpecial: true })).toBe('ab');
  });

  it("byte table: GPT-2's ids 0..255 are the 256 byte stand-ins in bytes_to_unicode order", () => {
    expect(new Set(BYTE_TO_UNICODE).size).toBe(256);
    for (let i = 0; i < 256; i++) expect(tok.tokenToId(BYTE_TO_UNICODE[BYTE_ORDER[i]!]!)).toBe(i);
    expect(BYTE_TO_UNICODE[0x20]).toBe('Ġ');
    expect(BYTE_TO_UNICODE[0x0a]).toBe('Ċ');
    expect(BYTE_TO_UNICODE[0x00]).toBe('Ā');
    expect(toByteLevel(' héllo')).toBe('ĠhÃ©llo');
  });

  it('agrees with the gpt-3-encoder package (an independent GPT-2 implementation) on varied and random text', () => {
    const texts = [...VARIED_TEXTS, MOBY_SLICE, ...randomProse(7, 200, 80), ...randomTexts(11, 100, 40)];
    for (const s of texts) expect(tok.encode(s), JSON.stringify(s.slice(0, 80))).toEqual(referenceEncode(s));
  });

  it('decode(encode(s)) === s for arbitrary UTF-8, byte for byte', () => {
    const texts = [...VARIED_TEXTS, ...randomTexts(1, 300, 60), ...randomProse(2, 100, 100)];
    for (const s of texts) {
      const ids = tok.encode(s);
      expect(tok.decode(ids)).toBe(s);
      expect(tok.decodeBytes(ids)).toEqual(utf8(s));
    }
    // Every single code point class on its own, including U+FFFD and noncharacters.
    for (const s of ['\u{FFFD}', '\u{FFFF}', '\u{10FFFF}', '\u0085', '\ufeff', ' '.repeat(1000), '\n'.repeat(33)]) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('decodes the bytes of all ids at once, so tokens that split a character still join up', () => {
    const ids = tok.encode('世');
    expect(ids.length).toBeGreaterThan(1); // GPT-2 has no single token for 世
    expect(tok.decode(ids)).toBe('世');
    // Alone, the first token is an incomplete sequence: the bytes are exact, the text is U+FFFD.
    expect(tok.decodeBytes(ids.slice(0, 1))).toEqual(utf8('世').slice(0, tok.decodeBytes(ids.slice(0, 1)).length));
    expect(tok.decode(ids.slice(0, 1))).toContain('\ufffd');
  });

  it('lone surrogates encode as U+FFFD, as TextEncoder writes them', () => {
    expect(tok.decode(tok.encode('a\ud800b'))).toBe('a\ufffdb');
    expect(tok.encode('\udc00')).toEqual(tok.encode('\ufffd'));
  });

  it('rejects ids outside the vocabulary in decode, naming the id', () => {
    expect(() => tok.decode([15496, 50257])).toThrow(ValueError);
    expect(() => tok.decode([50257])).toThrow(/token id 50257 is outside the vocabulary of 50257/);
    expect(() => tok.decode([-1])).toThrow(/token id -1/);
    expect(() => tok.decode([1.5])).toThrow(ValueError);
  });

  it('merges a 100k-character word in well under a second (heap merge, no quadratic loop)', () => {
    const long = '7'.repeat(100_000) + 'a'.repeat(50_000);
    const t0 = performance.now();
    const ids = tok.encode(long);
    const ms = performance.now() - t0;
    expect(tok.decode(ids)).toBe(long);
    expect(ms).toBeLessThan(1000);
  });
});

describe('the same vocabulary from tokenizer.json and from GGUF metadata', () => {
  const files = gpt2Tokenizer();
  const texts = [...VARIED_TEXTS, MOBY_SLICE.slice(0, 10_000), ...randomTexts(5, 50, 40)];
  const sameAsFiles = (tok: ByteLevelBPE): void => {
    expect(tok.vocabSize).toBe(files.vocabSize);
    expect(tok.vocab.texts).toEqual(files.vocab.texts);
    expect([...tok.vocab.types]).toEqual([...files.vocab.types]);
    expect(tok.mergeStrings()).toEqual(files.mergeStrings());
    expect([tok.bosId, tok.eosId, tok.addBos, tok.addEos]).toEqual([files.bosId, files.eosId, files.addBos, files.addEos]);
    for (const s of texts) {
      expect(tok.encode(s)).toEqual(files.encode(s));
      expect(tok.encode(s, { parseSpecial: true })).toEqual(files.encode(s, { parseSpecial: true }));
    }
    expect(tok.encode('x<|endoftext|>y', { parseSpecial: true })).toEqual(files.encode('x<|endoftext|>y', { parseSpecial: true }));
  };

  it('tokenizer.json (merges as "a b" strings, and as [a, b] pairs; object or JSON text)', () => {
    sameAsFiles(ByteLevelBPE.fromTokenizerJSON(gpt2TokenizerJSON(false)));
    sameAsFiles(ByteLevelBPE.fromTokenizerJSON(JSON.stringify(gpt2TokenizerJSON(true))));
  });

  it('our own tokenizer.json output loads back to the same tokenizer', () => {
    sameAsFiles(ByteLevelBPE.fromTokenizerJSON(JSON.parse(JSON.stringify(files.toTokenizerJSON())) as unknown));
  });

  it("GGUF metadata (llama.cpp's keys and types), in memory and through a GGUF file", () => {
    const meta = toGGUFMetadata(files);
    expect(meta[GGUF_KEYS.model]).toEqual({ type: 'string', value: 'gpt2' });
    expect(meta[GGUF_KEYS.pre]).toEqual({ type: 'string', value: 'gpt-2' });
    expect(meta[GGUF_KEYS.tokens]).toMatchObject({ type: 'array', elementType: 'string' });
    expect(meta[GGUF_KEYS.merges]).toMatchObject({ type: 'array', elementType: 'string' });
    expect(meta[GGUF_KEYS.tokenType]).toMatchObject({ type: 'array', elementType: 'i32' });
    expect(meta[GGUF_KEYS.tokenType]!.value).toBeInstanceOf(Int32Array);
    expect(meta[GGUF_KEYS.bosId]).toEqual({ type: 'u32', value: 50256 });
    expect(meta[GGUF_KEYS.eosId]).toEqual({ type: 'u32', value: 50256 });
    expect(meta[GGUF_KEYS.addBos]).toEqual({ type: 'bool', value: false });
    expect((meta[GGUF_KEYS.merges]!.value as string[])[0]).toBe('Ġ t');
    expect((meta[GGUF_KEYS.tokenType]!.value as Int32Array)[50256]).toBe(TokenType.Control);
    sameAsFiles(ByteLevelBPE.fromGGUFMetadata(meta));
    const file = parseGGUF(encodeGGUF({ metadata: { 'general.architecture': 'gpt2', ...meta } }), 'gpt2.gguf');
    const back = tokenizerFromGGUFMetadata(file.metadata, file.label);
    expect(back).toBeInstanceOf(ByteLevelBPE);
    sameAsFiles(back as ByteLevelBPE);
  });

  it('GGUF metadata given as plain values (a record of arrays and numbers)', () => {
    const plain = {
      [GGUF_KEYS.model]: 'gpt2',
      [GGUF_KEYS.pre]: 'gpt-2',
      [GGUF_KEYS.tokens]: [...files.vocab.texts],
      [GGUF_KEYS.tokenType]: [...files.vocab.types],
      [GGUF_KEYS.merges]: files.mergeStrings(),
      [GGUF_KEYS.bosId]: 50256,
      [GGUF_KEYS.eosId]: 50256n,
    };
    sameAsFiles(tokenizerFromGGUFMetadata(new Map(Object.entries(plain))) as ByteLevelBPE);
  });
});

describe('format errors name the file and field', () => {
  const { vocabJson, merges } = gpt2Files();
  const small = (): { vocab: Record<string, number>; merges: string } => {
    const vocab: Record<string, number> = {};
    BYTE_ORDER.forEach((b, i) => (vocab[BYTE_TO_UNICODE[b]!] = i));
    vocab['he'] = 256;
    return { vocab, merges: '#version: 0.2\nh e\n' };
  };

  it('vocab.json / merges.txt', () => {
    expect(() => ByteLevelBPE.fromFiles('{not json', merges)).toThrow(/vocab\.json: not valid JSON/);
    expect(() => ByteLevelBPE.fromFiles('[1, 2]', merges)).toThrow(/vocab\.json: expected an object/);
    expect(() => ByteLevelBPE.fromFiles('{"a": 0, "b": 0}', '')).toThrow(/vocab\.json: tokens "a" and "b" share id 0/);
    expect(() => ByteLevelBPE.fromFiles('{"a": -1}', '')).toThrow(/vocab\.json: token "a" has id -1/);
    const s = small();
    expect(ByteLevelBPE.fromFiles(s.vocab, s.merges).encode('hehe')).toEqual([256, 256]);
    expect(() => ByteLevelBPE.fromFiles(s.vocab, '#version: 0.2\nh e\nhe x\n')).toThrow(FormatError);
    // 'x' exists, but "hex" does not: the merge's result is named, with its line.
    expect(() => ByteLevelBPE.fromFiles(s.vocab, '#version: 0.2\nh e\nhe x\n')).toThrow(/merges\.txt line 3: merge "he x" refers to "hex"/);
    expect(() => ByteLevelBPE.fromFiles(s.vocab, '#version: 0.2\nh e\nqq zz\n')).toThrow(/merges\.txt line 3: .*"qq"/);
    expect(() => ByteLevelBPE.fromFiles(s.vocab, 'h e\nnospace\n')).toThrow(/merges\.txt line 2: expected two tokens/);
    expect(() => ByteLevelBPE.fromFiles(vocabJson, merges, { specialTokens: ['<nope>'] })).toThrow(/special token "<nope>"/);
  });

  it('a vocabulary without some byte fails on encode, naming the byte', () => {
    const s = small();
    delete s.vocab[BYTE_TO_UNICODE[0x41]!];
    const tok = ByteLevelBPE.fromFiles(s.vocab, s.merges);
    expect(tok.tokenToId('[PAD32]')).toBe(32); // the hole left by 'A' (GPT-2 id 32)
    expect(tok.encode('he')).toEqual([256]);
    expect(() => tok.encode('A')).toThrow(/byte 0x41 \("A"\) has no token/);
  });

  it('tokenizer.json', () => {
    const j = gpt2TokenizerJSON(false);
    expect(() => ByteLevelBPE.fromTokenizerJSON('{')).toThrow(/tokenizer\.json: not valid JSON/);
    expect(() => ByteLevelBPE.fromTokenizerJSON({ ...j, model: { ...(j.model as object), type: 'WordPiece' } })).toThrow(/model\.type is "WordPiece"/);
    expect(() => ByteLevelBPE.fromTokenizerJSON({ ...j, model: { ...(j.model as object), merges: ['Ġ t', 'bad'] } })).toThrow(/model\.merges\[1\]/);
    expect(() => ByteLevelBPE.fromTokenizerJSON({ ...j, pre_tokenizer: { type: 'Whitespace' } })).toThrow(/pre_tokenizer: .*"Whitespace"/);
    expect(() => ByteLevelBPE.fromTokenizerJSON({ ...j, normalizer: { type: 'Lowercase' } })).toThrow(/normalizer "Lowercase"/);
    expect(() => ByteLevelBPE.fromTokenizerJSON({ ...j, added_tokens: [{ id: 5, content: '<|endoftext|>', special: true }] })).toThrow(
      /added_tokens\[0\] "<\|endoftext\|>" has id 5 but model\.vocab gives 50256/,
    );
  });

  it('GGUF metadata', () => {
    const meta = toGGUFMetadata(gpt2Tokenizer());
    const without = (k: string): Map<string, unknown> => new Map(Object.entries(meta).filter(([key]) => key !== k));
    expect(() => tokenizerFromGGUFMetadata(without(GGUF_KEYS.model))).toThrow(/key 'tokenizer\.ggml\.model' is missing/);
    expect(() => tokenizerFromGGUFMetadata(without(GGUF_KEYS.tokens), 'm.gguf')).toThrow(/m\.gguf: key 'tokenizer\.ggml\.tokens' is missing/);
    expect(() => tokenizerFromGGUFMetadata(without(GGUF_KEYS.merges))).toThrow(/'tokenizer\.ggml\.merges' is missing/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.model]: 'bert' })).toThrow(/'bert'; supported tokenizer models are 'gpt2' and 'llama'/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.pre]: 'klingon' })).toThrow(/unsupported pre-tokenizer 'klingon'/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.tokenType]: [1, 1, 1] })).toThrow(
      /'tokenizer\.ggml\.token_type' has 3 entries but the vocabulary has 50257 tokens/,
    );
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.tokens]: 'x' })).toThrow(/'tokenizer\.ggml\.tokens' is a string, expected an array of strings/);
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.merges]: ['Ġ t', 'Ġ nonsense'] })).toThrow(
      /'tokenizer\.ggml\.merges'\[1\]: merge "Ġ nonsense" refers to "nonsense"/,
    );
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.bosId]: 99999 })).toThrow(/BOS id 99999 is outside the vocabulary/);
    const dup = [...gpt2Tokenizer().vocab.texts];
    dup[5] = dup[6]!;
    expect(() => tokenizerFromGGUFMetadata({ ...meta, [GGUF_KEYS.tokens]: dup })).toThrow(/duplicate token .* at ids 5 and 6/);
  });
});

describe('pre-tokenizers', () => {
  it("GPT-2's regex, with Unicode White_Space (as llama.cpp and Hugging Face) rather than JavaScript's \\s", () => {
    const gpt2 = PreTokenizer.preset('gpt-2');
    expect(gpt2.split("I'm  fine,thanks!!\n\n  ok 42x")).toEqual(['I', "'m", ' ', ' fine', ',', 'thanks', '!!', '\n\n ', ' ok', ' 42', 'x']);
    expect(gpt2.split('a\u0085b')).toEqual(['a', '\u0085', 'b']); // NEL is White_Space
    expect(gpt2.split('a\ufeffb')).toEqual(['a', '\ufeff', 'b']); // BOM is not: a symbol run of its own
    expect(gpt2.split('a \ufeff')).toEqual(['a', ' \ufeff']);
  });

  it("llama.cpp's llama3, qwen2 and default presets", () => {
    expect(PreTokenizer.preset('llama3').split("12345 I'LL go\n\n")).toEqual(['123', '45', ' I', "'LL", ' go', '\n\n']);
    expect(PreTokenizer.preset('qwen2').split('123 ab')).toEqual(['1', '2', '3', ' ab']);
    // default: punctuation runs first, then GPT-2, then digit runs, then groups of three digits.
    expect(PreTokenizer.preset(undefined).split('hi, 12345!')).toEqual(['hi', ',', ' ', '123', '45', '!']);
  });

  it('custom Split regexes from tokenizer.json survive a save/load and are refused by GGUF export', () => {
    const base = gpt2TokenizerJSON(false);
    const custom = {
      ...base,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: '\\p{N}{1,2}' }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        ],
      },
    };
    const tok = ByteLevelBPE.fromTokenizerJSON(custom);
    expect(tok.pre.name).toBe('custom');
    expect(tok.encode('12345').map((i) => tok.idToToken(i))).toEqual(['12', '34', '5']);
    expect(ByteLevelBPE.fromTokenizerJSON(tok.toTokenizerJSON()).encode('12345 abc')).toEqual(tok.encode('12345 abc'));
    expect(() => toGGUFMetadata(tok)).toThrow(/has no llama\.cpp 'tokenizer\.ggml\.pre' name/);
  });

  it("Llama 3's tokenizer.json Split pattern maps to llama.cpp's 'llama3' preset", () => {
    const pattern =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    expect(PreTokenizer.presetNameFor([pattern], true)).toBe('llama3');
    expect(PreTokenizer.presetNameFor([pattern], false)).toBe('dbrx'); // same regex, no ignore_merges
    expect(PreTokenizer.presetNameFor(PreTokenizer.preset('gpt-2').patterns)).toBe('gpt-2');
  });
});
