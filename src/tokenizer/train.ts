/**
 * Learning a byte-level BPE vocabulary from a corpus (what `tessera tokenizer train` runs), and writing
 * it as GPT-2 files plus a tokenizer.json. The result uses llama.cpp's 'gpt-2' pre-tokenizer, so a model
 * trained with it exports to GGUF with a tokenizer llama.cpp reproduces exactly.
 *
 * The trainer is the classic one (Sennrich et al.; GPT-2; Hugging Face `BpeTrainer`): words from the
 * pre-tokenizer with their counts, all adjacent symbol pairs counted, and the most frequent pair merged
 * into a new token, over and over. Pair counts are updated incrementally, touching only the words that
 * contain the merged pair, and a lazy max-heap finds the next best pair, so a few MB of text and a few
 * thousand merges take seconds.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ValueError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { BYTE_ORDER, BYTE_TO_UNICODE, ByteLevelBPE } from './byte_level.js';
import { PreTokenizer } from './pretokenize.js';
import { TokenType } from './types.js';
import { Heap, utf8 } from './vocab.js';

/** Options of {@link trainByteLevelBPE}. */
export interface TrainBPEOptions {
  /**
   * Total vocabulary size: 256 byte tokens, the learned merges and the special tokens. Training stops
   * earlier when no pair occurs `minFrequency` times any more.
   */
  vocabSize: number;
  /**
   * Control tokens, appended after the learned tokens; their text in the corpus is never merged into
   * (documents may be separated by it). Default `['<|endoftext|>']`, GPT-2's document separator, which
   * also serves as BOS and EOS.
   */
  specialTokens?: readonly string[];
  /** Fewest occurrences a pair needs to be merged (default 2: a pair seen once teaches nothing). */
  minFrequency?: number;
  /** BOS token text, one of `specialTokens` (default: the first special token). */
  bosToken?: string;
  /** EOS token text, one of `specialTokens` (default: the first special token). */
  eosToken?: string;
}

/** Pair keys pack two ids below 2^21 into one exact double. */
const ID_SPAN = 2 ** 21;

/**
 * Learn a byte-level BPE vocabulary from `corpus`.
 *
 * Ids 0..255 are the bytes in GPT-2's order (so they equal GPT-2's first 256 tokens), then the merged
 * tokens in the order they were learned, then the special tokens. Ties between equally frequent pairs
 * go to the pair with the smaller (left id, right id), so the same corpus always gives the same
 * vocabulary. A merge whose text already exists (two merge paths to one string) reuses that token.
 *
 * @throws ValueError for a vocabSize too small for the bytes and special tokens, or bad options.
 */
export function trainByteLevelBPE(corpus: string, opts: TrainBPEOptions): ByteLevelBPE {
  const specials = [...(opts.specialTokens ?? ['<|endoftext|>'])];
  const minFrequency = opts.minFrequency ?? 2;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < 256 + specials.length || opts.vocabSize >= ID_SPAN) {
    throw new ValueError(
      `trainByteLevelBPE: vocabSize must be an integer from ${256 + specials.length} (256 bytes + ${specials.length} special tokens) to ${ID_SPAN - 1}, got ${opts.vocabSize}`,
    );
  }
  if (!Number.isInteger(minFrequency) || minFrequency < 1) {
    throw new ValueError(`trainByteLevelBPE: minFrequency must be a positive integer, got ${minFrequency}`);
  }
  specials.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0) throw new ValueError(`trainByteLevelBPE: specialTokens[${i}] must be a non-empty string`);
    if (specials.indexOf(s) !== i) throw new ValueError(`trainByteLevelBPE: special token ${JSON.stringify(s)} is listed twice`);
  });
  const pickSpecial = (t: string | undefined, what: string): string | undefined => {
    if (t === undefined) return specials[0];
    if (!specials.includes(t)) throw new ValueError(`trainByteLevelBPE: ${what} ${JSON.stringify(t)} is not one of specialTokens`);
    return t;
  };
  const bosText = pickSpecial(opts.bosToken, 'bosToken');
  const eosText = pickSpecial(opts.eosToken, 'eosToken');
  const pre = PreTokenizer.preset('gpt-2');

  // Word counts over the corpus, with special-token text cut out first (as encode will cut it).
  const counts = new Map<string, number>();
  for (const part of splitOnSpecials(corpus, specials)) {
    for (const w of pre.split(part)) counts.set(w, (counts.get(w) ?? 0) + 1);
  }

  // Token table: bytes first, in GPT-2's order.
  const texts: string[] = BYTE_ORDER.map((b) => BYTE_TO_UNICODE[b]!);
  const byteId = new Int32Array(256);
  BYTE_ORDER.forEach((b, i) => (byteId[b] = i));
  const textId = new Map(texts.map((t, i) => [t, i]));
  const target = opts.vocabSize - specials.filter((s) => !textId.has(s)).length;

  const words: Int32Array[] = [];
  const wordLen: number[] = [];
  const wordCount: number[] = [];
  for (const [w, c] of counts) {
    const bytes = utf8(w);
    if (bytes.length < 2) continue; // a single byte has no pair
    words.push(Int32Array.from(bytes, (b) => byteId[b]!));
    wordLen.push(bytes.length);
    wordCount.push(c);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addPair = (key: number, w: number, c: number): void => {
    const prev = pairCount.get(key);
    pairCount.set(key, (prev ?? 0) + c);
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [w]);
    else if (list[list.length - 1] !== w) list.push(w);
  };
  for (let w = 0; w < words.length; w++) {
    const s = words[w]!;
    for (let i = 0; i + 1 < wordLen[w]!; i++) addPair(s[i]! * ID_SPAN + s[i + 1]!, w, wordCount[w]!);
  }

  // Lazy max-heap of [count, key]: an entry whose count is stale is refreshed when it reaches the top.
  const heap = new Heap<[number, number]>((a, b) => a[0] > b[0] || (a[0] === b[0] && a[1] < b[1]));
  for (const [key, c] of pairCount) heap.push([c, key]);

  const merges: [string, string][] = [];
  const seen = new Int32Array(words.length).fill(-1);
  while (texts.length < target && heap.size > 0) {
    const [c, key] = heap.pop()!;
    const cur = pairCount.get(key) ?? 0;
    if (cur === 0) continue;
    if (cur !== c) {
      if (cur < c) heap.push([cur, key]); // a larger entry for this pair is still queued otherwise
      continue;
    }
    if (cur < minFrequency) break;
    const a = Math.floor(key / ID_SPAN);
    const b = key - a * ID_SPAN;
    const mergedText = texts[a]! + texts[b]!;
    let m = textId.get(mergedText);
    if (m === undefined) {
      m = texts.length;
      texts.push(mergedText);
      textId.set(mergedText, m);
    }
    merges.push([texts[a]!, texts[b]!]);

    const step = merges.length;
    const touched = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      if (seen[w] === step) continue;
      seen[w] = step;
      const s = words[w]!;
      const n = wordLen[w]!;
      const cw = wordCount[w]!;
      let has = false;
      for (let i = 0; i + 1 < n; i++) {
        if (s[i] === a && s[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue; // stale entry: an earlier merge already consumed the pair in this word
      for (let i = 0; i + 1 < n; i++) decPair(pairCount, s[i]! * ID_SPAN + s[i + 1]!, cw);
      let len = 0;
      for (let i = 0; i < n; i++) {
        if (i + 1 < n && s[i] === a && s[i + 1] === b) {
          s[len++] = m;
          i++;
        } else s[len++] = s[i]!;
      }
      wordLen[w] = len;
      for (let i = 0; i + 1 < len; i++) {
        const k = s[i]! * ID_SPAN + s[i + 1]!;
        addPair(k, w, cw);
        if (s[i] === m || s[i + 1] === m) touched.add(k);
      }
    }
    pairWords.delete(key);
    for (const k of touched) {
      const v = pairCount.get(k) ?? 0;
      if (v > 0) heap.push([v, k]);
    }
  }

  const types: number[] = texts.map(() => TokenType.Normal);
  for (const s of specials) {
    const existing = textId.get(s);
    if (existing !== undefined) types[existing] = TokenType.Control;
    else {
      textId.set(s, texts.length);
      texts.push(s);
      types.push(TokenType.Control);
    }
  }
  return new ByteLevelBPE({
    tokens: texts,
    tokenTypes: types,
    merges,
    pre,
    bosId: bosText === undefined ? undefined : textId.get(bosText),
    eosId: eosText === undefined ? undefined : textId.get(eosText),
  });
}

function decPair(pairCount: Map<number, number>, key: number, c: number): void {
  const v = (pairCount.get(key) ?? 0) - c;
  if (v > 0) pairCount.set(key, v);
  else pairCount.delete(key);
}

/** `text` with every occurrence of the special tokens removed, as the pieces between them. */
function splitOnSpecials(text: string, specials: readonly string[]): string[] {
  let parts = [text];
  for (const s of [...specials].sort((x, y) => y.length - x.length)) {
    if (!text.includes(s)) continue;
    parts = parts.flatMap((p) => p.split(s)).filter((p) => p.length > 0);
  }
  return parts;
}

/** Paths written by {@link saveTokenizerFiles}. */
export interface TokenizerFiles {
  vocab: string;
  merges: string;
  tokenizerJson: string;
}

/**
 * Write `vocab.json` + `merges.txt` (GPT-2's format) and `tokenizer.json` (Hugging Face's) into `dir`,
 * each atomically (a crash never leaves a half-written file behind), creating `dir` if needed.
 */
export async function saveTokenizerFiles(tok: ByteLevelBPE, dir: string): Promise<TokenizerFiles> {
  const files: TokenizerFiles = {
    vocab: join(dir, 'vocab.json'),
    merges: join(dir, 'merges.txt'),
    tokenizerJson: join(dir, 'tokenizer.json'),
  };
  await writeFileAtomic(files.vocab, JSON.stringify(tok.toVocabJSON()) + '\n');
  await writeFileAtomic(files.merges, tok.toMergesText());
  await writeFileAtomic(files.tokenizerJson, JSON.stringify(tok.toTokenizerJSON(), null, 2) + '\n');
  return files;
}

/** Options of {@link trainTokenizerCommand} (the CLI's `tessera tokenizer train` flags). */
export interface TrainTokenizerCommandOptions {
  /** Corpus file(s), UTF-8 text, concatenated in order. */
  input: string | readonly string[];
  /** `--vocab-size`: total vocabulary size including bytes and special tokens. */
  vocabSize: number;
  /** `--out`: directory for vocab.json, merges.txt and tokenizer.json. */
  out: string;
  specialTokens?: readonly string[];
  minFrequency?: number;
}

/** What {@link trainTokenizerCommand} did. */
export interface TrainTokenizerSummary {
  /** The trained tokenizer (export it to GGUF with `toGGUFMetadata`). */
  tokenizer: ByteLevelBPE;
  vocabSize: number;
  merges: number;
  specialTokens: string[];
  inputBytes: number;
  /** Tokens of the corpus under the trained vocabulary. */
  corpusTokens: number;
  /** inputBytes / corpusTokens: how much each token carries. */
  bytesPerToken: number;
  seconds: number;
  files: TokenizerFiles;
  /** A few human-readable lines for the CLI to print. */
  lines: string[];
}

/**
 * `tessera tokenizer train --input corpus.txt --vocab-size N --out dir`: read the corpus, train, write
 * the files, and summarise.
 *
 * @throws ValueError naming the file when an input cannot be read; ValueError for bad options.
 */
export async function trainTokenizerCommand(opts: TrainTokenizerCommandOptions): Promise<TrainTokenizerSummary> {
  const t0 = performance.now();
  const inputs = typeof opts.input === 'string' ? [opts.input] : [...opts.input];
  if (inputs.length === 0) throw new ValueError('tokenizer train: no --input file given');
  const parts: string[] = [];
  let inputBytes = 0;
  for (const path of inputs) {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new ValueError(`tokenizer train: cannot read input '${path}': ${(err as Error).message}`);
    }
    inputBytes += bytes.length;
    parts.push(new TextDecoder('utf-8').decode(bytes));
  }
  const corpus = parts.join('');
  const tokenizer = trainByteLevelBPE(corpus, {
    vocabSize: opts.vocabSize,
    ...(opts.specialTokens !== undefined ? { specialTokens: opts.specialTokens } : {}),
    ...(opts.minFrequency !== undefined ? { minFrequency: opts.minFrequency } : {}),
  });
  const files = await saveTokenizerFiles(tokenizer, opts.out);
  const corpusTokens = tokenizer.encode(corpus, { addSpecial: false }).length;
  const seconds = (performance.now() - t0) / 1000;
  const specialTokens = [...tokenizer.specialTokens.keys()];
  const bytesPerToken = corpusTokens === 0 ? 0 : inputBytes / corpusTokens;
  const lines = [
    `trained byte-level BPE: ${tokenizer.vocabSize} tokens (256 bytes, ${tokenizer.merges.size} merges, ${specialTokens.length} special: ${specialTokens.join(' ')})`,
    `corpus: ${inputBytes} bytes -> ${corpusTokens} tokens (${bytesPerToken.toFixed(2)} bytes/token) in ${seconds.toFixed(2)} s`,
    `wrote ${files.vocab}, ${files.merges}, ${files.tokenizerJson}`,
  ];
  if (tokenizer.vocabSize < opts.vocabSize) {
    lines.push(`note: stopped at ${tokenizer.vocabSize} < ${opts.vocabSize}: no pair occurs often enough for more merges`);
  }
  return {
    tokenizer,
    vocabSize: tokenizer.vocabSize,
    merges: tokenizer.merges.size,
    specialTokens,
    inputBytes,
    corpusTokens,
    bytesPerToken,
    seconds,
    files,
    lines,
  };
}
