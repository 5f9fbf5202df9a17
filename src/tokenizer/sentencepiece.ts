/**
 * SentencePiece-style BPE, as llama.cpp runs it for `tokenizer.ggml.model` = 'llama' (Llama 1/2,
 * Mistral, TinyLlama, ...): spaces become U+2581 '▁', a '▁' is put in front of the text (the "dummy
 * prefix"), and adjacent symbols merge while their concatenation is a token, highest score first.
 * Characters no token covers fall back to byte tokens `<0xXX>`.
 */
import { FormatError, ValueError } from '../errors.js';
import { GGUF_KEYS, MetaReader, type TokenizerMetadata } from './meta.js';
import { TokenType, type DecodeOptions, type EncodeOptions, type Tokenizer } from './types.js';
import { ByteSink, Heap, isSpecialType, utf8, utf8Text, Vocab } from './vocab.js';

/** U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
export const SPM_SPACE = '\u2581';

/** Everything a {@link SentencePieceBPE} is made of. */
export interface SentencePieceConfig {
  /** Token text per id ('▁' for spaces, `<0xXX>` for byte tokens). */
  tokens: readonly string[];
  /** Score per id: among mergeable pairs, the one whose merged token scores highest merges first. */
  scores: ArrayLike<number>;
  /** {@link TokenType} per id; default all normal. */
  tokenTypes?: ArrayLike<number>;
  /** Default 1 (llama.cpp's), when the vocabulary has that id. */
  bosId?: number;
  /** Default 2 (llama.cpp's), when the vocabulary has that id. */
  eosId?: number;
  /** Default 0 (llama.cpp's), when the vocabulary has that id. */
  unkId?: number;
  padId?: number;
  /** Put BOS first when `addSpecial` (default true, as llama.cpp for this model type). */
  addBos?: boolean;
  /** Put EOS last when `addSpecial` (default false). */
  addEos?: boolean;
  /** Put a space in front of the text and after each special token (default true). */
  addSpacePrefix?: boolean;
  /** Names used in error messages: the tokens and scores fields. */
  where?: { tokens?: string; scores?: string };
}

interface Bigram {
  left: number;
  right: number;
  score: number;
  /** Length of the merged text; a popped bigram whose symbols no longer add up to it is stale. */
  size: number;
}

/** llama.cpp's queue order: higher score first, then the leftmost pair. */
const bigramFirst = (a: Bigram, b: Bigram): boolean => a.score > b.score || (a.score === b.score && a.left < b.left);

/** Which token types plain text may merge into: never control, unknown, unused or byte tokens. */
const MERGEABLE = new Set<number>([TokenType.Undefined, TokenType.Normal, TokenType.UserDefined]);

/** SentencePiece-style BPE tokenizer (llama.cpp's SPM vocabulary). */
export class SentencePieceBPE implements Tokenizer {
  readonly kind = 'spm' as const;
  readonly vocab: Vocab;
  readonly scores: Float32Array;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  readonly padId: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  /** Token id of each byte (`<0xXX>`), -1 where the vocabulary lacks it. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly pieces: (Uint8Array | undefined)[] = [];

  constructor(config: SentencePieceConfig) {
    const tokensWhere = config.where?.tokens ?? 'tokens';
    const vocab = new Vocab(config.tokens, config.tokenTypes, tokensWhere);
    this.vocab = vocab;
    if (config.scores.length !== vocab.size) {
      throw new FormatError(`${config.where?.scores ?? 'scores'}: ${config.scores.length} scores for ${vocab.size} tokens`);
    }
    this.scores = Float32Array.from(config.scores);
    const dflt = (id: number): number | undefined => (id < vocab.size ? id : undefined);
    this.bosId = vocab.checkOptionalId(config.bosId ?? dflt(1), 'BOS id', tokensWhere);
    this.eosId = vocab.checkOptionalId(config.eosId ?? dflt(2), 'EOS id', tokensWhere);
    this.unkId = vocab.checkOptionalId(config.unkId ?? dflt(0), 'UNK id', tokensWhere);
    this.padId = vocab.checkOptionalId(config.padId, 'PAD id', tokensWhere);
    this.addBos = config.addBos ?? true;
    this.addEos = config.addEos ?? false;
    this.addSpacePrefix = config.addSpacePrefix ?? true;
    if (this.addBos && this.bosId === undefined) throw new FormatError(`${tokensWhere}: BOS is to be added but there is no BOS id`);
    if (this.addEos && this.eosId === undefined) throw new FormatError(`${tokensWhere}: EOS is to be added but there is no EOS id`);
    for (let b = 0; b < 256; b++) {
      const id = vocab.index.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      // llama.cpp falls back to a token that is the byte itself; only ASCII bytes are strings on their own.
      this.byteIds[b] = id ?? (b < 0x80 ? (vocab.index.get(String.fromCharCode(b)) ?? -1) : -1);
    }
  }

  /**
   * From GGUF metadata with `tokenizer.ggml.model` = 'llama': `tokens`, `scores`, `token_type`, the
   * special ids, `add_bos_token`, `add_eos_token` and `add_space_prefix`, with llama.cpp's defaults.
   */
  static fromGGUFMetadata(meta: TokenizerMetadata, label = 'GGUF metadata'): SentencePieceBPE {
    const r = new MetaReader(meta, label);
    const model = r.requireString(GGUF_KEYS.model);
    if (model !== 'llama') throw new FormatError(`${label}: '${GGUF_KEYS.model}' is '${model}'; a SentencePiece BPE needs 'llama'`);
    const tokens = r.requireStrings(GGUF_KEYS.tokens);
    const scores = r.numbers(GGUF_KEYS.scores, tokens.length) ?? new Float32Array(tokens.length);
    return new SentencePieceBPE({
      tokens,
      scores,
      tokenTypes: r.numbers(GGUF_KEYS.tokenType, tokens.length),
      bosId: r.id(GGUF_KEYS.bosId),
      eosId: r.id(GGUF_KEYS.eosId),
      unkId: r.id(GGUF_KEYS.unkId),
      padId: r.id(GGUF_KEYS.padId),
      addBos: r.bool(GGUF_KEYS.addBos),
      addEos: r.bool(GGUF_KEYS.addEos),
      addSpacePrefix: r.bool(GGUF_KEYS.addSpacePrefix),
      where: { tokens: `${label}: '${GGUF_KEYS.tokens}'`, scores: `${label}: '${GGUF_KEYS.scores}'` },
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

  /**
   * Token ids of `text`, as llama.cpp's `llama_tokenize`: special tokens split the text first, each
   * text piece that starts the sequence or follows a special token gets the dummy space prefix.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecial ?? true;
    const out: number[] = [];
    if (addSpecial && this.addBos) out.push(this.bosId!);
    let afterSpecial = true;
    for (const frag of this.vocab.partition(text, opts.parseSpecial ?? false)) {
      if (typeof frag === 'number') {
        out.push(frag);
        afterSpecial = true;
        continue;
      }
      const raw = this.addSpacePrefix && afterSpecial ? ' ' + frag : frag;
      this.encodePiece(raw.replaceAll(' ', SPM_SPACE), out);
      afterSpecial = false;
    }
    if (addSpecial && this.addEos) out.push(this.eosId!);
    return out;
  }

  /** llama.cpp's `llm_tokenizer_spm_session::tokenize` over one escaped text piece. */
  private encodePiece(text: string, out: number[]): void {
    const sym: string[] = [];
    for (const ch of text) {
      const c = ch.charCodeAt(0);
      // A lone surrogate is not a character; UTF-8 would carry U+FFFD, so the tokens do too.
      sym.push(ch.length === 1 && c >= 0xd800 && c <= 0xdfff ? '\ufffd' : ch);
    }
    const n = sym.length;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const queue = new Heap<Bigram>(bigramFirst);
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const merged = sym[left]! + sym[right]!;
      const id = this.vocab.index.get(merged);
      if (id === undefined || !MERGEABLE.has(this.vocab.types[id]!)) return;
      queue.push({ left, right, score: this.scores[id]!, size: merged.length });
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);
    while (queue.size > 0) {
      const bg = queue.pop()!;
      const l = sym[bg.left]!;
      const r = sym[bg.right]!;
      if (l.length === 0 || r.length === 0 || l.length + r.length !== bg.size) continue;
      sym[bg.left] = l + r;
      sym[bg.right] = '';
      const k = next[bg.right]!;
      next[bg.left] = k;
      if (k >= 0) prev[k] = bg.left;
      tryAdd(prev[bg.left]!, bg.left);
      tryAdd(bg.left, k);
    }
    for (let i = 0; i !== -1 && n > 0; i = next[i]!) {
      const s = sym[i]!;
      const id = this.vocab.index.get(s);
      if (id !== undefined && MERGEABLE.has(this.vocab.types[id]!)) {
        out.push(id);
        continue;
      }
      for (const b of utf8(s)) {
        const bid = this.byteIds[b]!;
        if (bid >= 0) out.push(bid);
        // Only a real unknown token stands in: the default id 0 may be an ordinary token (character vocabularies).
        else if (this.unkId !== undefined && this.vocab.types[this.unkId] === TokenType.Unknown) out.push(this.unkId);
        else {
          throw new ValueError(
            `SentencePieceBPE: ${JSON.stringify(s)} is not in the vocabulary, which has neither byte token <0x${b.toString(16).toUpperCase().padStart(2, '0')}> nor an unknown token`,
          );
        }
      }
    }
  }

  /** Bytes of one token: '▁' as space for normal tokens, the byte of a byte token, raw text otherwise. */
  private tokenBytes(id: number): Uint8Array {
    const cached = this.pieces[id];
    if (cached !== undefined) return cached;
    const text = this.vocab.texts[id]!;
    const type = this.vocab.types[id]!;
    let bytes: Uint8Array;
    if (type === TokenType.Unused) bytes = new Uint8Array(0);
    else if (type === TokenType.Byte && /^<0x[0-9A-Fa-f]{2}>$/.test(text)) bytes = Uint8Array.of(parseInt(text.slice(3, 5), 16));
    else if (type === TokenType.Normal || type === TokenType.Undefined) bytes = utf8(text.replaceAll(SPM_SPACE, ' '));
    else bytes = utf8(text);
    this.pieces[id] = bytes;
    return bytes;
  }

  /**
   * The bytes of `ids`. The dummy space the encoder put at the start and after each special token is
   * removed again (one leading space of the first normal token there), so decode inverts encode.
   */
  decodeBytes(ids: readonly number[], opts: DecodeOptions = {}): Uint8Array {
    const sink = new ByteSink();
    let afterSpecial = true;
    for (const id of ids) {
      this.vocab.checkId(id, 'SentencePieceBPE.decode');
      const type = this.vocab.types[id]!;
      const special = isSpecialType(type) || type === TokenType.UserDefined;
      if (!(opts.skipSpecial && isSpecialType(type))) {
        let bytes = this.tokenBytes(id);
        if (this.addSpacePrefix && afterSpecial && !special && bytes[0] === 0x20) bytes = bytes.subarray(1);
        sink.push(bytes);
      }
      if (type !== TokenType.Unused) afterSpecial = special;
    }
    return sink.bytes();
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    return utf8Text(this.decodeBytes(ids, opts));
  }
}
