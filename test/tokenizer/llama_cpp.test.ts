/**
 * Tessera's tokenizers against llama.cpp itself (the node-llama-cpp peer, test/helpers/llama_cpp.ts):
 * each tokenizer's `toGGUFMetadata` goes into a tiny Llama model file, llama.cpp loads it, and both
 * tokenize the same texts. Covers GPT-2's real vocabulary under four of llama.cpp's pre-tokenizers, a
 * vocabulary trained here, SentencePiece vocabularies and the exported character tokenizer. Skipped,
 * with the reason, when the peer is not installed.
 *
 * The model file is written by a minimal encoder private to this test (GGUF v3, f32 tensors, the value
 * types that toGGUFMetadata produces), so the check does not depend on Tessera's GGUF writer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mobyDickText } from '../../src/data/moby_dick.js';
import type { GGUFValue } from '../../src/io/gguf.js';
import {
  ByteLevelBPE,
  CharTokenizerAdapter,
  SentencePieceBPE,
  TokenType,
  toGGUFMetadata,
  trainByteLevelBPE,
  type Tokenizer,
} from '../../src/tokenizer/index.js';
import { llamaCppMissing, openLlamaCpp, type LlamaCppModel, type LlamaCppPeer } from '../helpers/llama_cpp.js';
import { gpt2Files, randomProse, randomTexts, rng, VARIED_TEXTS } from './fixtures.js';

// ---------------------------------------------------------------------------------------------------
// TEST-ONLY GGUF v3 encoder: metadata of the types toGGUFMetadata emits, f32 tensors.

const TYPE_ID = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

function encodeGgufTestOnly(meta: Record<string, GGUFValue>, tensors: { name: string; ne: number[]; data: Float32Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    size += b.length;
  };
  const num = (bytes: number, set: (v: DataView) => void): void => {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    push(b);
  };
  const u32 = (x: number): void => num(4, (v) => v.setUint32(0, x, true));
  const u64 = (x: number): void => num(8, (v) => v.setBigUint64(0, BigInt(x), true));
  const str = (s: string): void => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    push(b);
  };
  const scalar = (type: string, x: unknown): void => {
    if (type === 'u32') u32(x as number);
    else if (type === 'i32') num(4, (v) => v.setInt32(0, x as number, true));
    else if (type === 'f32') num(4, (v) => v.setFloat32(0, x as number, true));
    else if (type === 'bool') push(Uint8Array.of(x ? 1 : 0));
    else if (type === 'string') str(x as string);
    else throw new Error(`test encoder: type ${type}`);
  };
  push(new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(meta).length);
  for (const [key, val] of Object.entries(meta)) {
    str(key);
    u32(TYPE_ID[val.type as keyof typeof TYPE_ID]);
    if (val.type === 'array') {
      u32(TYPE_ID[val.elementType as keyof typeof TYPE_ID]);
      const items = Array.from(val.value as ArrayLike<unknown>);
      u64(items.length);
      for (const x of items) scalar(val.elementType, x);
    } else scalar(val.type, val.value);
  }
  const align = (): void => {
    if (size % 32 !== 0) push(new Uint8Array(32 - (size % 32)));
  };
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(0); // GGML_TYPE_F32
    offsets.push(offset);
    u64(offset);
    offset += Math.ceil((t.data.length * 4) / 32) * 32;
  }
  align();
  for (const t of tensors) {
    push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    align();
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A one-layer Llama with random weights: only its vocabulary matters here. */
function tinyLlama(meta: Record<string, GGUFValue>, nVocab: number): Uint8Array {
  const E = 8;
  const FF = 8;
  const r = rng(nVocab);
  const mat = (n: number): Float32Array => Float32Array.from({ length: n }, () => r() - 0.5);
  const u32 = (value: number): GGUFValue => ({ type: 'u32', value });
  return encodeGgufTestOnly(
    {
      'general.architecture': { type: 'string', value: 'llama' },
      'general.name': { type: 'string', value: 'tessera-tokenizer-check' },
      'llama.context_length': u32(256),
      'llama.embedding_length': u32(E),
      'llama.block_count': u32(1),
      'llama.feed_forward_length': u32(FF),
      'llama.rope.dimension_count': u32(E),
      'llama.attention.head_count': u32(1),
      'llama.attention.head_count_kv': u32(1),
      'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
      ...meta,
    },
    [
      { name: 'token_embd.weight', ne: [E, nVocab], data: mat(E * nVocab) },
      { name: 'blk.0.attn_norm.weight', ne: [E], data: mat(E) },
      { name: 'blk.0.attn_q.weight', ne: [E, E], data: mat(E * E) },
      { name: 'blk.0.attn_k.weight', ne: [E, E], data: mat(E * E) },
      { name: 'blk.0.attn_v.weight', ne: [E, E], data: mat(E * E) },
      { name: 'blk.0.attn_output.weight', ne: [E, E], data: mat(E * E) },
      { name: 'blk.0.ffn_norm.weight', ne: [E], data: mat(E) },
      { name: 'blk.0.ffn_gate.weight', ne: [E, FF], data: mat(E * FF) },
      { name: 'blk.0.ffn_up.weight', ne: [E, FF], data: mat(E * FF) },
      { name: 'blk.0.ffn_down.weight', ne: [FF, E], data: mat(E * FF) },
      { name: 'output_norm.weight', ne: [E], data: mat(E) },
      { name: 'output.weight', ne: [E, nVocab], data: mat(E * nVocab) },
    ],
  );
}

// ---------------------------------------------------------------------------------------------------

/** Texts llama.cpp receives as C strings: no NUL. */
const TEXTS = [
  ...VARIED_TEXTS,
  mobyDickText().slice(300_000, 320_000),
  ...randomProse(31, 100, 80),
  ...randomTexts(37, 150, 40),
  // Where JavaScript's \s and Unicode White_Space disagree (U+0085, U+FEFF), and other invisible characters.
  'a\u0085b \ufeff c\u0085 \u0085\u0085x \ufeff\ufeffy  \u0085  \ufeffz  \u0085\u0085w',
  'zero\u200bwidth \u180e mongolian \u2060joiner \u00ad soft',
].map((s) => s.replaceAll('\0', ''));

const missing = llamaCppMissing();

describe.skipIf(missing !== undefined)(`tokenizers match llama.cpp${missing !== undefined ? ` — skipped: ${missing}` : ''}`, () => {
  let peer: LlamaCppPeer;
  let dir: string;
  let n = 0;

  const load = async (tok: Tokenizer): Promise<LlamaCppModel> => {
    const path = join(dir, `tok-${n++}.gguf`);
    writeFileSync(path, tinyLlama(toGGUFMetadata(tok), tok.vocabSize));
    return peer.load(path, { contextSize: 256 });
  };

  /** Same ids as llama.cpp for every text, plain and with special-token parsing; decode inverts. */
  const agree = (tok: Tokenizer, m: LlamaCppModel, texts: readonly string[]): void => {
    expect(m.vocabSize).toBe(tok.vocabSize);
    for (const s of texts) {
      const label = JSON.stringify(s.slice(0, 60));
      expect(tok.encode(s, { addSpecial: false }), label).toEqual(m.tokenize(s));
      expect(tok.encode(s, { addSpecial: false, parseSpecial: true }), label).toEqual(m.tokenize(s, { special: true }));
      expect(tok.decode(tok.encode(s, { addSpecial: false })), label).toBe(s);
    }
  };

  beforeAll(async () => {
    const opened = await openLlamaCpp({ threads: 1 });
    if ('missing' in opened) throw new Error(opened.missing);
    peer = opened;
    dir = mkdtempSync(join(tmpdir(), 'tessera-tokenizer-llama-cpp-'));
  });

  afterAll(async () => {
    await peer?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("GPT-2's vocabulary under the 'gpt-2', 'llama3', 'qwen2' and 'default' pre-tokenizers", async () => {
    const { vocabJson, merges } = gpt2Files();
    const specialText = ['<|endoftext|>', 'a<|endoftext|>b', 'x <|endoftext|> y<|endoftext|>'];
    for (const pre of ['gpt-2', 'llama3', 'qwen2', 'default']) {
      const tok = ByteLevelBPE.fromFiles(vocabJson, merges, { pre });
      const m = await load(tok);
      expect(m.vocabularyType).toBe('bpe');
      agree(tok, m, [...TEXTS, ...specialText]);
      // BOS as llama.cpp adds it for the preset (Llama 3 family: yes).
      expect(tok.encode('hi')).toEqual(m.tokenize('hi', { addBos: m.addBosByDefault }));
      await m.close();
    }
  });

  it('a vocabulary trained here', async () => {
    const tok = trainByteLevelBPE(mobyDickText().slice(0, 200_000), { vocabSize: 1500 });
    const m = await load(tok);
    agree(tok, m, [...TEXTS, 'end<|endoftext|>start']);
    await m.close();
  });

  it('SentencePiece vocabularies (with and without the dummy prefix, with BOS)', async () => {
    const tokens = ['<unk>', '<s>', '</s>'];
    const types: number[] = [TokenType.Unknown, TokenType.Control, TokenType.Control];
    for (let b = 0; b < 256; b++) {
      tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      types.push(TokenType.Byte);
    }
    // Every letter pair and some triples, with scores that make the merge order matter.
    const r = rng(5);
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    const pieces = new Set<string>(['▁', ...letters, ...'.,!?\'"0123456789'.split('')]);
    for (const a of letters) for (const b of 'aeiou ') pieces.add((a + b).replace(' ', '▁'));
    for (let i = 0; i < 300; i++) {
      const w = Array.from({ length: 2 + Math.floor(r() * 3) }, () => letters[Math.floor(r() * 26)]).join('');
      pieces.add(r() < 0.5 ? '▁' + w : w);
    }
    const scores: number[] = [0, 0, 0, ...new Array<number>(256).fill(0)];
    for (const p of pieces) {
      tokens.push(p);
      types.push(TokenType.Normal);
      scores.push(-Math.round(r() * 1000) / 100);
    }
    const english = TEXTS.slice(0, VARIED_TEXTS.length + 1).filter((s) => !s.includes('▁'));
    const more = [...english, ...randomProse(41, 100, 60).map((s) => s.toLowerCase()), '<s>hello</s> world', ' <s> '];
    for (const addSpacePrefix of [true, false]) {
      const tok = new SentencePieceBPE({ tokens, scores, tokenTypes: types, addSpacePrefix });
      const m = await load(tok);
      expect(m.vocabularyType).toBe('spm');
      agree(tok, m, more);
      expect(tok.encode('hello')).toEqual(m.tokenize('hello', { addBos: true }));
      // llama.cpp's own decode of a sequence without BOS drops the dummy space as well.
      for (const s of english) expect(tok.decode(m.tokenize(s))).toBe(m.detokenize(m.tokenize(s)));
      await m.close();
    }
  });

  it('the character tokenizer of the training demo, exported', async () => {
    const text = mobyDickText().slice(0, 50_000);
    const tok = CharTokenizerAdapter.fromText(text);
    const m = await load(tok);
    agree(tok, m, [text.slice(0, 5000), ' Call me  Ishmael.\n\n', text.slice(1000, 1100)]);
    await m.close();
  });
});
