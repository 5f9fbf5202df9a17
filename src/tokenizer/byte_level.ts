/**
 * Byte-level BPE, the GPT-2 scheme (also GPT-NeoX, Llama 3, Qwen, ... with other pre-tokenizers): text
 * becomes UTF-8 bytes, each byte one of 256 printable stand-in characters, and ranked merges build
 * tokens from those. Every byte string is encodable, so any text round-trips exactly.
 *
 * Loads from GPT-2's `vocab.json` + `merges.txt`, from a Hugging Face `tokenizer.json`, and from GGUF
 * metadata (`tokenizer.ggml.model` = 'gpt2'), and tokenizes as llama.cpp does for the same metadata.
 */
import { FormatError, ValueError } from '../errors.js';
import { applyMerges, MergeTable } from './bpe.js';
import { GGUF_KEYS, MetaReader, type TokenizerMetadata } from './meta.js';
import { PreTokenizer } from './pretokenize.js';
import { TokenType, type DecodeOptions, type EncodeOptions, type Tokenizer } from './types.js';
import { ByteSink, isSpecialType, utf8, utf8Text, Vocab } from './vocab.js';

/**
 * GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes (controls,
 * space, 0x7F-0xA0, 0xAD) map to U+0100.. in byte order. `BYTE_ORDER` is the table's own order, which is
 * also the order of GPT-2's ids 0..255.
 */
function buildByteTables(): { toChar: string[]; order: number[]; fromChar: Map<string, number> } {
  const order: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) order.push(b);
  for (let b = 0xa1; b <= 0xac; b++) order.push(b);
  for (let b = 0xae; b <= 0xff; b++) order.push(b);
  const printable = new Set(order);
  const toChar: string[] = new Array<string>(256);
  for (const b of order) toChar[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (printable.has(b)) continue;
    order.push(b);
    toChar[b] = String.fromCharCode(256 + n++);
  }
  const fromChar = new Map<string, number>();
  for (let b = 0; b < 256; b++) fromChar.set(toChar[b]!, b);
  return { toChar, order, fromChar };
}
const TABLES = buildByteTables();
/** Stand-in character of each byte. */
export const BYTE_TO_UNICODE: readonly string[] = TABLES.toChar;
/** Bytes in GPT-2's vocabulary order (`BYTE_ORDER[i]` is the byte of GPT-2 token id i, for i < 256). */
export const BYTE_ORDER: readonly number[] = TABLES.order;
const UNICODE_TO_BYTE: ReadonlyMap<string, number> = TABLES.fromChar;

/** Byte-level text of a string: its UTF-8 bytes as stand-in characters (`" the"` -> `"Ġthe"`). */
export function toByteLevel(s: string): string {
  let out = '';
  for (const b of utf8(s)) out += BYTE_TO_UNICODE[b];
  return out;
}

/** Text normalizations a tokenizer.json may ask for before pre-tokenization. */
export type Normalization = 'NFC' | 'NFKC';

/** Everything a {@link ByteLevelBPE} is made of. */
export interface ByteLevelBPEConfig {
  /** Token text per id, in byte-level form for normal tokens; control and user-defined tokens as raw text. */
  tokens: readonly string[];
  /** {@link TokenType} per id; default all normal. */
  tokenTypes?: ArrayLike<number>;
  /** Merges in rank order, as token-text pairs. */
  merges: readonly (readonly [string, string])[];
  /** Pre-tokenizer; default llama.cpp's 'gpt-2' preset. */
  pre?: PreTokenizer;
  /** Take a word that is itself a token whole, skipping merges (Llama 3); default from the preset. */
  ignoreMerges?: boolean;
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  /** Put BOS before each sequence when `addSpecial` (default: the preset's, false for GPT-2). */
  addBos?: boolean;
  /** Put EOS after each sequence when `addSpecial` (default false). */
  addEos?: boolean;
  /** Unicode normalization applied to raw text before splitting (tokenizer.json's normalizer). */
  normalization?: Normalization;
  /** Names used in error messages: the tokens field and the i-th merge. */
  where?: { tokens?: string; merge?: (i: number) => string };
}

/** Options of {@link ByteLevelBPE.fromFiles}. */
export interface ByteLevelFileOptions {
  /** Tokens of vocab.json that are control tokens (default: `<|endoftext|>` when present). */
  specialTokens?: readonly string[];
  /** BOS/EOS token text (default: `<|endoftext|>` when present, GPT-2's convention). */
  bosToken?: string;
  eosToken?: string;
  /** llama.cpp pre-tokenizer preset (default 'gpt-2'). */
  pre?: string;
}

const ENDOFTEXT = '<|endoftext|>';
/** Entries kept in the per-word cache before it is cleared (bounds memory on endless streams). */
const CACHE_LIMIT = 100_000;
/** Words longer than this are not cached: they are rare and would pin a lot of memory. */
const CACHE_MAX_WORD = 256;
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/** GPT-2-style byte-level BPE tokenizer. */
export class ByteLevelBPE implements Tokenizer {
  readonly kind = 'byte-bpe' as const;
  readonly vocab: Vocab;
  readonly merges: MergeTable;
  readonly pre: PreTokenizer;
  readonly ignoreMerges: boolean;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  readonly padId: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly normalization: Normalization | undefined;
  /** Token id of each byte's stand-in character, -1 where the vocabulary lacks it. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly cache = new Map<string, number[]>();
  private readonly pieces: (Uint8Array | undefined)[] = [];

  constructor(config: ByteLevelBPEConfig) {
    const tokensWhere = config.where?.tokens ?? 'tokens';
    const vocab = new Vocab(config.tokens, config.tokenTypes, tokensWhere);
    this.vocab = vocab;
    this.pre = config.pre ?? PreTokenizer.preset('gpt-2');
    this.ignoreMerges = config.ignoreMerges ?? this.pre.ignoreMerges;
    this.bosId = vocab.checkOptionalId(config.bosId, 'BOS id', tokensWhere);
    this.eosId = vocab.checkOptionalId(config.eosId, 'EOS id', tokensWhere);
    this.unkId = vocab.checkOptionalId(config.unkId, 'UNK id', tokensWhere);
    this.padId = vocab.checkOptionalId(config.padId, 'PAD id', tokensWhere);
    this.addBos = config.addBos ?? this.pre.defaultAddBos;
    this.addEos = config.addEos ?? false;
    if (this.addBos && this.bosId === undefined) throw new FormatError(`${tokensWhere}: BOS is to be added but there is no BOS id`);
    if (this.addEos && this.eosId === undefined) throw new FormatError(`${tokensWhere}: EOS is to be added but there is no EOS id`);
    this.normalization = config.normalization;
    for (let b = 0; b < 256; b++) this.byteIds[b] = vocab.index.get(BYTE_TO_UNICODE[b]!) ?? -1;

    const table = new MergeTable(vocab.size);
    const mergeWhere = config.where?.merge ?? ((i: number) => `merges[${i}]`);
    config.merges.forEach(([a, b], i) => {
      const left = vocab.index.get(a);
      const right = vocab.index.get(b);
      const merged = vocab.index.get(a + b);
      if (left === undefined || right === undefined || merged === undefined) {
        const missing = left === undefined ? a : right === undefined ? b : a + b;
        throw new FormatError(`${mergeWhere(i)}: merge "${a} ${b}" refers to ${JSON.stringify(missing)}, which is not in the vocabulary`);
      }
      table.add(left, right, merged);
    });
    this.merges = table;
  }

  /**
   * From GPT-2's files: `vocab.json` (token -> id) and `merges.txt` (a `#version` line, then one merge
   * per line, best first). Ids missing from vocab.json become unused `[PAD<i>]` placeholders.
   */
  static fromFiles(vocabJson: string | Readonly<Record<string, number>>, mergesText: string, opts: ByteLevelFileOptions = {}): ByteLevelBPE {
    let parsed: unknown = vocabJson;
    if (typeof vocabJson === 'string') {
      try {
        parsed = JSON.parse(vocabJson);
      } catch (err) {
        throw new FormatError(`vocab.json: not valid JSON (${(err as Error).message})`);
      }
    }
    const { tokens, types } = denseVocab(parsed, 'vocab.json');
    const specials = opts.specialTokens ?? (tokens.includes(ENDOFTEXT) ? [ENDOFTEXT] : []);
    for (const s of specials) {
      const id = tokens.indexOf(s);
      if (id < 0) throw new FormatError(`vocab.json: special token ${JSON.stringify(s)} is not in the vocabulary`);
      types[id] = TokenType.Control;
    }
    const merges = parseMergesText(mergesText);
    const index = new Map(tokens.map((t, i) => [t, i]));
    const idOf = (t: string | undefined, what: string): number | undefined => {
      if (t === undefined) return undefined;
      const id = index.get(t);
      if (id === undefined) throw new FormatError(`vocab.json: ${what} ${JSON.stringify(t)} is not in the vocabulary`);
      return id;
    };
    const fallback = index.has(ENDOFTEXT) ? ENDOFTEXT : undefined;
    return new ByteLevelBPE({
      tokens,
      tokenTypes: types,
      merges: merges.pairs,
      pre: PreTokenizer.preset(opts.pre ?? 'gpt-2', 'pre'),
      bosId: idOf(opts.bosToken ?? fallback, 'BOS token'),
      eosId: idOf(opts.eosToken ?? fallback, 'EOS token'),
      where: { tokens: 'vocab.json', merge: (i) => `merges.txt line ${merges.lines[i]}` },
    });
  }

  /**
   * From a Hugging Face `tokenizer.json` with a byte-level `BPE` model: `model.vocab`, `model.merges`
   * (`"a b"` strings or `["a", "b"]` pairs), `added_tokens` (special ones become control tokens, others
   * user-defined), the pre-tokenizer (`ByteLevel`, or a `Sequence` of `Split` regexes ending in
   * `ByteLevel`), an NFC/NFKC normalizer, and BOS/EOS from a `TemplateProcessing` post-processor.
   * tokenizer.json does not name BOS/EOS otherwise; pass them (tokenizer_config.json has them).
   */
  static fromTokenizerJSON(json: unknown, opts: { bosToken?: string; eosToken?: string } = {}): ByteLevelBPE {
    const W = 'tokenizer.json';
    let obj: unknown = json;
    if (typeof json === 'string') {
      try {
        obj = JSON.parse(json);
      } catch (err) {
        throw new FormatError(`${W}: not valid JSON (${(err as Error).message})`);
      }
    }
    if (!isRecord(obj)) throw new FormatError(`${W}: expected a JSON object`);
    const model = obj.model;
    if (!isRecord(model)) throw new FormatError(`${W}: missing "model"`);
    if (model.type !== undefined && model.type !== 'BPE') {
      throw new FormatError(`${W}: model.type is ${JSON.stringify(model.type)}; only "BPE" is supported`);
    }
    if (model.byte_fallback === true) {
      throw new FormatError(`${W}: model.byte_fallback is set (a SentencePiece-style BPE); load it from GGUF metadata instead`);
    }
    if (typeof model.continuing_subword_prefix === 'string' && model.continuing_subword_prefix !== '') {
      throw new FormatError(`${W}: model.continuing_subword_prefix is not supported`);
    }
    if (typeof model.end_of_word_suffix === 'string' && model.end_of_word_suffix !== '') {
      throw new FormatError(`${W}: model.end_of_word_suffix is not supported`);
    }
    const { tokens, types } = denseVocab(model.vocab, `${W} model.vocab`);
    const added = obj.added_tokens ?? [];
    if (!Array.isArray(added)) throw new FormatError(`${W}: added_tokens must be an array`);
    const byText = new Map(tokens.map((t, i) => [t, i]));
    added.forEach((t: unknown, i) => {
      if (!isRecord(t) || typeof t.content !== 'string' || !isIndex(t.id)) {
        throw new FormatError(`${W}: added_tokens[${i}] needs a string "content" and a non-negative integer "id"`);
      }
      const existing = byText.get(t.content) ?? -1;
      if (existing >= 0 && existing !== t.id) {
        throw new FormatError(`${W}: added_tokens[${i}] ${JSON.stringify(t.content)} has id ${t.id} but model.vocab gives ${existing}`);
      }
      while (tokens.length <= t.id) {
        types.push(TokenType.Unused);
        tokens.push(`[PAD${tokens.length}]`);
      }
      if (types[t.id] !== TokenType.Unused && tokens[t.id] !== t.content) {
        throw new FormatError(`${W}: added_tokens[${i}] id ${t.id} is already ${JSON.stringify(tokens[t.id])} in model.vocab`);
      }
      tokens[t.id] = t.content;
      byText.set(t.content, t.id);
      types[t.id] = t.special === true ? TokenType.Control : TokenType.UserDefined;
    });
    const mergesRaw = model.merges;
    if (!Array.isArray(mergesRaw)) throw new FormatError(`${W}: model.merges must be an array`);
    const merges = mergesRaw.map((m: unknown, i): [string, string] => {
      if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
      if (typeof m === 'string') {
        const pair = splitMerge(m);
        if (pair !== undefined) return pair;
      }
      throw new FormatError(`${W}: model.merges[${i}] must be "a b" or ["a", "b"], got ${JSON.stringify(m)}`);
    });
    const pre = preFromJSON(obj.pre_tokenizer, `${W} pre_tokenizer`, model.ignore_merges === true);
    const normalization = normalizationFromJSON(obj.normalizer, `${W} normalizer`);
    const index = new Map(tokens.map((t, i) => [t, i]));
    const post = postFromJSON(obj.post_processor, index, `${W} post_processor`);
    const idOf = (t: string | undefined, what: string): number | undefined => {
      if (t === undefined) return undefined;
      const id = index.get(t);
      if (id === undefined) throw new ValueError(`${W}: ${what} ${JSON.stringify(t)} is not in the vocabulary`);
      return id;
    };
    const fallback = index.has(ENDOFTEXT) ? index.get(ENDOFTEXT) : undefined;
    return new ByteLevelBPE({
      tokens,
      tokenTypes: types,
      merges,
      pre,
      ignoreMerges: model.ignore_merges === true,
      bosId: idOf(opts.bosToken, 'BOS token') ?? post.bos ?? fallback,
      eosId: idOf(opts.eosToken, 'EOS token') ?? post.eos ?? fallback,
      addBos: post.bos !== undefined,
      addEos: post.eos !== undefined,
      normalization,
      where: { tokens: `${W} model.vocab`, merge: (i) => `${W} model.merges[${i}]` },
    });
  }

  /**
   * From GGUF metadata with `tokenizer.ggml.model` = 'gpt2': `tokens`, `token_type`, `merges`
   * (`"a b"`), `pre` (llama.cpp's pre-tokenizer name; 'default' when absent, as in llama.cpp), the
   * special ids and `add_bos_token`/`add_eos_token`. Defaults follow llama.cpp: BOS and EOS are id 11
   * when the file does not say (and that id exists), BOS is added only for the Llama 3 family.
   */
  static fromGGUFMetadata(meta: TokenizerMetadata, label = 'GGUF metadata'): ByteLevelBPE {
    const r = new MetaReader(meta, label);
    const model = r.requireString(GGUF_KEYS.model);
    if (model !== 'gpt2') throw new FormatError(`${label}: '${GGUF_KEYS.model}' is '${model}'; a byte-level BPE needs 'gpt2'`);
    const tokens = r.requireStrings(GGUF_KEYS.tokens);
    const types = r.numbers(GGUF_KEYS.tokenType, tokens.length);
    const mergeLines = r.requireStrings(GGUF_KEYS.merges);
    const merges = mergeLines.map((m, i): [string, string] => {
      const pair = splitMerge(m);
      if (pair === undefined) throw new FormatError(`${label}: '${GGUF_KEYS.merges}'[${i}] is ${JSON.stringify(m)}, expected "left right"`);
      return pair;
    });
    const pre = PreTokenizer.preset(r.string(GGUF_KEYS.pre), `${label}: '${GGUF_KEYS.pre}'`);
    // llama.cpp's defaults for a 'gpt2' vocabulary when the ids are absent: 11, if in range.
    const dflt = tokens.length > 11 ? 11 : undefined;
    return new ByteLevelBPE({
      tokens,
      tokenTypes: types,
      merges,
      pre,
      bosId: r.id(GGUF_KEYS.bosId) ?? dflt,
      eosId: r.id(GGUF_KEYS.eosId) ?? dflt,
      unkId: r.id(GGUF_KEYS.unkId),
      padId: r.id(GGUF_KEYS.padId),
      addBos: r.bool(GGUF_KEYS.addBos),
      addEos: r.bool(GGUF_KEYS.addEos),
      where: { tokens: `${label}: '${GGUF_KEYS.tokens}'`, merge: (i) => `${label}: '${GGUF_KEYS.merges}'[${i}]` },
    });
  }

  get vocabSize(): number {
    return this.vocab.size;
  }

  get specialTokens(): ReadonlyMap<string, number> {
    return this.vocab.specialTokens;
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.index.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.vocab.texts[id];
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecial ?? true;
    const out: number[] = [];
    if (addSpecial && this.addBos) out.push(this.bosId!);
    for (const frag of this.vocab.partition(text, opts.parseSpecial ?? false)) {
      if (typeof frag === 'number') {
        out.push(frag);
        continue;
      }
      const raw = this.normalization === undefined ? frag : frag.normalize(this.normalization);
      for (const word of this.pre.split(raw)) this.encodeWord(word, out);
    }
    if (addSpecial && this.addEos) out.push(this.eosId!);
    return out;
  }

  /** Ids of one pre-tokenized word, appended to `out`. */
  private encodeWord(word: string, out: number[]): void {
    const hit = this.cache.get(word);
    if (hit !== undefined) {
      for (const id of hit) out.push(id);
      return;
    }
    const start = out.length;
    const whole = this.ignoreMerges ? this.vocab.index.get(toByteLevel(word)) : undefined;
    if (whole !== undefined) out.push(whole);
    else applyMerges(this.wordBytes(word), this.merges, out);
    if (word.length <= CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, out.slice(start));
    }
  }

  /** The byte-token ids of a word's UTF-8 bytes (lone surrogates as U+FFFD, as TextEncoder does). */
  private wordBytes(word: string): number[] {
    const ids: number[] = [];
    const push = (b: number): void => {
      const id = this.byteIds[b]!;
      if (id < 0) {
        throw new ValueError(
          `ByteLevelBPE: byte 0x${b.toString(16).padStart(2, '0')} (${JSON.stringify(BYTE_TO_UNICODE[b])}) has no token in the vocabulary`,
        );
      }
      ids.push(id);
    };
    for (let i = 0; i < word.length; i++) {
      let c = word.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < word.length ? word.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        } else c = 0xfffd;
      }
      if (c < 0x80) push(c);
      else if (c < 0x800) {
        push(0xc0 | (c >> 6));
        push(0x80 | (c & 0x3f));
      } else if (c < 0x10000) {
        push(0xe0 | (c >> 12));
        push(0x80 | ((c >> 6) & 0x3f));
        push(0x80 | (c & 0x3f));
      } else {
        push(0xf0 | (c >> 18));
        push(0x80 | ((c >> 12) & 0x3f));
        push(0x80 | ((c >> 6) & 0x3f));
        push(0x80 | (c & 0x3f));
      }
    }
    return ids;
  }

  /** Bytes of one token: stand-ins mapped back for normal tokens, raw text for control/user-defined ones. */
  private tokenBytes(id: number): Uint8Array {
    const cached = this.pieces[id];
    if (cached !== undefined) return cached;
    const text = this.vocab.texts[id]!;
    const type = this.vocab.types[id]!;
    let bytes: Uint8Array;
    if (type === TokenType.Unused) bytes = new Uint8Array(0);
    else if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.UserDefined) bytes = utf8(text);
    else if (type === TokenType.Byte && BYTE_TOKEN.test(text)) bytes = Uint8Array.of(parseInt(text.slice(3, 5), 16));
    else {
      const out: number[] = [];
      for (const ch of text) {
        const b = UNICODE_TO_BYTE.get(ch);
        // A character outside the byte table (hand-made vocabularies) stands for its own UTF-8 bytes.
        if (b !== undefined) out.push(b);
        else for (const x of utf8(ch)) out.push(x);
      }
      bytes = Uint8Array.from(out);
    }
    this.pieces[id] = bytes;
    return bytes;
  }

  decodeBytes(ids: readonly number[], opts: DecodeOptions = {}): Uint8Array {
    const sink = new ByteSink();
    for (const id of ids) {
      this.vocab.checkId(id, 'ByteLevelBPE.decode');
      if (opts.skipSpecial && isSpecialType(this.vocab.types[id]!)) continue;
      sink.push(this.tokenBytes(id));
    }
    return sink.bytes();
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    return utf8Text(this.decodeBytes(ids, opts));
  }

  /** GPT-2 `vocab.json` content: token -> id, in id order. */
  toVocabJSON(): Record<string, number> {
    const out: Record<string, number> = {};
    this.vocab.texts.forEach((t, i) => (out[t] = i));
    return out;
  }

  /** GPT-2 `merges.txt` content. */
  toMergesText(): string {
    return ['#version: 0.2', ...this.mergeStrings()].join('\n') + '\n';
  }

  /** Merges as `"left right"` strings, in rank order (the form of merges.txt and GGUF). */
  mergeStrings(): string[] {
    const t = this.vocab.texts;
    return this.merges.list().map(([a, b]) => `${t[a]} ${t[b]}`);
  }

  /**
   * A Hugging Face `tokenizer.json` for this tokenizer, loadable by `tokenizers` and by
   * {@link ByteLevelBPE.fromTokenizerJSON}.
   */
  toTokenizerJSON(): Record<string, unknown> {
    const types = this.vocab.types;
    const added = this.vocab.texts.flatMap((content, id) =>
      types[id] === TokenType.Control || types[id] === TokenType.UserDefined || types[id] === TokenType.Unknown
        ? [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[id] !== TokenType.UserDefined }]
        : [],
    );
    const isGpt2 = this.pre.patterns.length === 1 && this.pre.patterns[0] === PreTokenizer.preset('gpt-2').patterns[0];
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: isGpt2 };
    const pre = isGpt2
      ? byteLevel
      : {
          type: 'Sequence',
          pretokenizers: [
            ...this.pre.patterns.map((p) => ({ type: 'Split', pattern: { Regex: p }, behavior: 'Isolated', invert: false })),
            byteLevel,
          ],
        };
    const template = (seq: string): unknown[] => [
      ...(this.addBos ? [{ SpecialToken: { id: this.vocab.texts[this.bosId!], type_id: 0 } }] : []),
      { Sequence: { id: seq, type_id: 0 } },
      ...(this.addEos ? [{ SpecialToken: { id: this.vocab.texts[this.eosId!], type_id: 0 } }] : []),
    ];
    const specials: Record<string, unknown> = {};
    for (const id of [this.bosId, this.eosId]) {
      if (id !== undefined) specials[this.vocab.texts[id]!] = { id: this.vocab.texts[id], ids: [id], tokens: [this.vocab.texts[id]] };
    }
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: this.normalization === undefined ? null : { type: this.normalization },
      pre_tokenizer: pre,
      post_processor:
        this.addBos || this.addEos
          ? { type: 'TemplateProcessing', single: template('A'), pair: [...template('A'), ...template('B')], special_tokens: specials }
          : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: this.ignoreMerges,
        vocab: this.toVocabJSON(),
        merges: this.mergeStrings(),
      },
    };
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isIndex(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0;
}

/** Split a merge line at the first space after its first character (llama.cpp's rule). */
function splitMerge(line: string): [string, string] | undefined {
  const at = line.indexOf(' ', 1);
  if (at < 0 || at === line.length - 1) return undefined;
  return [line.slice(0, at), line.slice(at + 1)];
}

/** token -> id object to dense arrays; ids missing in between become unused `[PAD<i>]` tokens. */
function denseVocab(v: unknown, where: string): { tokens: string[]; types: number[] } {
  if (!isRecord(v)) throw new FormatError(`${where}: expected an object of token -> id`);
  const tokens: string[] = [];
  for (const [tok, id] of Object.entries(v)) {
    if (!isIndex(id)) throw new FormatError(`${where}: token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}; expected a non-negative integer`);
    if (tokens[id] !== undefined) throw new FormatError(`${where}: tokens ${JSON.stringify(tokens[id])} and ${JSON.stringify(tok)} share id ${id}`);
    tokens[id] = tok;
  }
  const types: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types.push(TokenType.Unused);
    } else types.push(TokenType.Normal);
  }
  return { tokens, types };
}

/** Parse merges.txt: an optional `#version` line, then `left right` per line; blank lines are skipped. */
function parseMergesText(text: string): { pairs: [string, string][]; lines: number[] } {
  const pairs: [string, string][] = [];
  const lines: number[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.length === 0 || (i === 0 && line.startsWith('#version'))) return;
    const pair = splitMerge(line);
    if (pair === undefined) throw new FormatError(`merges.txt line ${i + 1}: expected two tokens separated by a space, got ${JSON.stringify(line)}`);
    pairs.push(pair);
    lines.push(i + 1);
  });
  return { pairs, lines };
}

/** The pre-tokenizer a tokenizer.json describes. */
function preFromJSON(pt: unknown, where: string, ignoreMerges: boolean): PreTokenizer {
  const gpt2 = PreTokenizer.preset('gpt-2');
  const unsupported = (what: string): never => {
    throw new FormatError(`${where}: ${what} is not supported (expected ByteLevel, or a Sequence of Split/Digits ending in ByteLevel)`);
  };
  if (!isRecord(pt)) return unsupported(`pre_tokenizer ${JSON.stringify(pt)}`);
  const byteLevel = (p: Record<string, unknown>): string[] => {
    if (p.add_prefix_space === true) return unsupported('ByteLevel with add_prefix_space=true');
    return p.use_regex === false ? [] : [...gpt2.patterns];
  };
  let patterns: string[];
  if (pt.type === 'ByteLevel') patterns = byteLevel(pt);
  else if (pt.type === 'Sequence' && Array.isArray(pt.pretokenizers)) {
    patterns = [];
    const parts = pt.pretokenizers as unknown[];
    parts.forEach((p, i) => {
      if (!isRecord(p)) return unsupported(`pretokenizers[${i}]`);
      if (p.type === 'ByteLevel') {
        if (i !== parts.length - 1) unsupported('ByteLevel before the end of the Sequence');
        patterns.push(...byteLevel(p));
      } else if (p.type === 'Split') {
        const pat = p.pattern;
        if (p.behavior !== 'Isolated' || p.invert === true) unsupported(`Split with behavior ${JSON.stringify(p.behavior)}, invert ${JSON.stringify(p.invert)}`);
        if (isRecord(pat) && typeof pat.Regex === 'string') patterns.push(pat.Regex);
        else if (isRecord(pat) && typeof pat.String === 'string') patterns.push(pat.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
        else unsupported(`Split pattern ${JSON.stringify(pat)}`);
      } else if (p.type === 'Digits') patterns.push(p.individual_digits === true ? '\\p{N}' : '\\p{N}+');
      else unsupported(`pre-tokenizer ${JSON.stringify(p.type)}`);
    });
    if (!isRecord(parts[parts.length - 1]) || (parts[parts.length - 1] as Record<string, unknown>).type !== 'ByteLevel') {
      unsupported('a Sequence that does not end in ByteLevel');
    }
  } else return unsupported(`pre-tokenizer ${JSON.stringify(pt.type)}`);
  if (patterns.length === 0) return unsupported('a pre-tokenizer without any split');
  const name = PreTokenizer.presetNameFor(patterns, ignoreMerges);
  return name !== undefined ? PreTokenizer.preset(name) : new PreTokenizer('custom', patterns, false, false, where);
}

function normalizationFromJSON(n: unknown, where: string): Normalization | undefined {
  if (n === null || n === undefined) return undefined;
  if (isRecord(n) && (n.type === 'NFC' || n.type === 'NFKC')) return n.type;
  if (isRecord(n) && n.type === 'Sequence' && Array.isArray(n.normalizers) && n.normalizers.length === 0) return undefined;
  throw new FormatError(`${where}: normalizer ${JSON.stringify(isRecord(n) ? n.type : n)} is not supported (null, NFC or NFKC)`);
}

/** BOS/EOS a post-processor adds around a single sequence. */
function postFromJSON(p: unknown, index: ReadonlyMap<string, number>, where: string): { bos?: number; eos?: number } {
  if (!isRecord(p)) return {};
  const idOf = (name: unknown): number => {
    const id = typeof name === 'string' ? index.get(name) : undefined;
    if (id === undefined) throw new FormatError(`${where}: special token ${JSON.stringify(name)} is not in the vocabulary`);
    return id;
  };
  if (p.type === 'Sequence' && Array.isArray(p.processors)) {
    const out: { bos?: number; eos?: number } = {};
    for (const q of p.processors) Object.assign(out, postFromJSON(q, index, where));
    return out;
  }
  if (p.type === 'TemplateProcessing' && Array.isArray(p.single)) {
    const single = p.single as unknown[];
    const special = (x: unknown): unknown => (isRecord(x) && isRecord(x.SpecialToken) ? x.SpecialToken.id : undefined);
    const first = special(single[0]);
    const last = single.length > 1 ? special(single[single.length - 1]) : undefined;
    return { ...(first !== undefined ? { bos: idOf(first) } : {}), ...(last !== undefined ? { eos: idOf(last) } : {}) };
  }
  if (p.type === 'RobertaProcessing' || p.type === 'BertProcessing') {
    const cls = Array.isArray(p.cls) ? p.cls[0] : undefined;
    const sep = Array.isArray(p.sep) ? p.sep[0] : undefined;
    return { bos: idOf(cls), eos: idOf(sep) };
  }
  return {};
}
