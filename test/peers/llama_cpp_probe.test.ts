/**
 * Probe of the llama.cpp peer (node-llama-cpp, CPU prebuilt binary; test/helpers/llama_cpp.ts): a tiny
 * Llama-architecture GGUF with random f32 weights loads, tokenizes (SentencePiece-style 'llama' vocabulary
 * and byte-level 'gpt2' BPE vocabulary), returns next-token log-probabilities of the vocabulary's length
 * that match a float64 reference forward pass written here from llama.cpp's conventions, and greedy-decodes
 * token for token like that reference. Skipped, with the reason, when the peer is not installed.
 *
 * The GGUF is written by a minimal encoder private to this test (TEST-ONLY: GGUF v3, f32 tensors, the
 * few metadata types llama.cpp reads here), so that the peer is checked independently of Tessera's own
 * writer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeGGUF, type GGUFMetadataInput } from '../../src/io/gguf.js';
import {
  llamaCppMissing,
  openLlamaCpp,
  type LlamaCppModel,
  type LlamaCppPeer,
} from '../helpers/llama_cpp.js';

// ---------------------------------------------------------------------------------------------------
// TEST-ONLY minimal GGUF v3 encoder (little-endian; f32 tensors only). Not Tessera's writer.
// ---------------------------------------------------------------------------------------------------

type GgufValue =
  | { t: 'u32'; v: number }
  | { t: 'i32'; v: number }
  | { t: 'f32'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'arr_str'; v: string[] }
  | { t: 'arr_f32'; v: number[] }
  | { t: 'arr_i32'; v: number[] };

interface GgufTensor {
  name: string;
  /** ggml order: ne[0] is the innermost (contiguous) dimension. */
  ne: number[];
  data: Float32Array;
}

const GGUF_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9 } as const;
const ALIGN = 32;

function encodeGgufTestOnly(kv: Record<string, GgufValue>, tensors: GgufTensor[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    size += b.length;
  };
  const u32 = (x: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x, true);
    push(b);
  };
  const i32 = (x: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, x, true);
    push(b);
  };
  const f32 = (x: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, true);
    push(b);
  };
  const u64 = (x: number): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(x), true);
    push(b);
  };
  const str = (s: string): void => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    push(b);
  };
  push(new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(kv).length);
  for (const [key, val] of Object.entries(kv)) {
    str(key);
    switch (val.t) {
      case 'u32':
        u32(GGUF_TYPE.u32);
        u32(val.v);
        break;
      case 'i32':
        u32(GGUF_TYPE.i32);
        i32(val.v);
        break;
      case 'f32':
        u32(GGUF_TYPE.f32);
        f32(val.v);
        break;
      case 'bool':
        u32(GGUF_TYPE.bool);
        push(Uint8Array.of(val.v ? 1 : 0));
        break;
      case 'str':
        u32(GGUF_TYPE.str);
        str(val.v);
        break;
      case 'arr_str':
      case 'arr_f32':
      case 'arr_i32': {
        const [elemType, put] =
          val.t === 'arr_str'
            ? [GGUF_TYPE.str, str]
            : val.t === 'arr_f32'
              ? [GGUF_TYPE.f32, f32]
              : [GGUF_TYPE.i32, i32];
        u32(GGUF_TYPE.arr);
        u32(elemType);
        u64(val.v.length);
        for (const x of val.v) (put as (x: number | string) => void)(x);
        break;
      }
    }
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.data.length !== t.ne.reduce((a, b) => a * b, 1))
      throw new Error(`${t.name}: ${t.data.length} values for ne ${t.ne}`);
    str(t.name);
    u32(t.ne.length);
    t.ne.forEach(u64);
    u32(0); // GGML_TYPE_F32
    u64(offset);
    offset += Math.ceil((t.data.length * 4) / ALIGN) * ALIGN;
  }
  push(new Uint8Array((ALIGN - (size % ALIGN)) % ALIGN));
  for (const t of tensors) {
    const b = new Uint8Array(Math.ceil((t.data.length * 4) / ALIGN) * ALIGN);
    const dv = new DataView(b.buffer);
    t.data.forEach((x, i) => dv.setFloat32(i * 4, x, true));
    push(b);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// A tiny Llama model: hyperparameters, random weights, vocabularies
// ---------------------------------------------------------------------------------------------------

const HP = {
  nEmbd: 64,
  nHead: 4,
  nHeadKv: 2,
  nFf: 96,
  nLayer: 2,
  ctx: 256,
  eps: 1e-5,
  ropeBase: 10000,
} as const;
const HEAD_DIM = HP.nEmbd / HP.nHead;

function xorshift(seed: number): () => number {
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

interface Weights {
  nVocab: number;
  /** Row-major [rows][cols] with ggml ne = [cols, rows]: a matmul weight is [out][in]. */
  tokEmbd: Float32Array; // [nVocab][nEmbd]
  layers: {
    attnNorm: Float32Array;
    wq: Float32Array; // [nEmbd][nEmbd]
    wk: Float32Array; // [nHeadKv*headDim][nEmbd]
    wv: Float32Array;
    wo: Float32Array; // [nEmbd][nEmbd]
    ffnNorm: Float32Array;
    wGate: Float32Array; // [nFf][nEmbd]
    wUp: Float32Array;
    wDown: Float32Array; // [nEmbd][nFf]
  }[];
  outNorm: Float32Array;
  output: Float32Array; // [nVocab][nEmbd]
}

/**
 * Random weights. `eosLike`: make token `id`'s output row 1.5 × token `like`'s, so that `id` (EOS) wins
 * wherever `like` would with a positive logit: greedy decoding then meets EOS mid-sequence.
 */
function randomWeights(nVocab: number, seed: number, eosLike?: { id: number; like: number }): Weights {
  const rnd = xorshift(seed);
  const mat = (rows: number, cols: number, scale: number): Float32Array =>
    Float32Array.from({ length: rows * cols }, () => (rnd() * 2 - 1) * scale);
  const norm = (n: number): Float32Array => Float32Array.from({ length: n }, () => 0.8 + 0.4 * rnd());
  const kvDim = HP.nHeadKv * HEAD_DIM;
  const s = (fanIn: number): number => Math.sqrt(3 / fanIn); // unit-variance outputs for unit-variance inputs
  const w: Weights = {
    nVocab,
    tokEmbd: mat(nVocab, HP.nEmbd, 1),
    layers: Array.from({ length: HP.nLayer }, () => ({
      attnNorm: norm(HP.nEmbd),
      wq: mat(HP.nEmbd, HP.nEmbd, s(HP.nEmbd)),
      wk: mat(kvDim, HP.nEmbd, s(HP.nEmbd)),
      wv: mat(kvDim, HP.nEmbd, s(HP.nEmbd)),
      wo: mat(HP.nEmbd, HP.nEmbd, s(HP.nEmbd)),
      ffnNorm: norm(HP.nEmbd),
      wGate: mat(HP.nFf, HP.nEmbd, s(HP.nEmbd)),
      wUp: mat(HP.nFf, HP.nEmbd, s(HP.nEmbd)),
      wDown: mat(HP.nEmbd, HP.nFf, s(HP.nFf)),
    })),
    outNorm: norm(HP.nEmbd),
    output: mat(nVocab, HP.nEmbd, 2 * s(HP.nEmbd)),
  };
  if (eosLike !== undefined) {
    for (let c = 0; c < HP.nEmbd; c++)
      w.output[eosLike.id * HP.nEmbd + c] = 1.5 * w.output[eosLike.like * HP.nEmbd + c]!;
  }
  return w;
}

interface Vocab {
  kv: Record<string, GgufValue>;
  size: number;
}

/** SentencePiece-style ('llama') vocabulary: <unk>, <s>, </s>, 256 byte tokens, then scored pieces. */
function spmVocab(): Vocab {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // BYTE
    scores.push(0);
  }
  const pieces = [
    '▁',
    ...'abcdefghijklmnopqrstuvwxyz'.split(''),
    'he',
    'll',
    'llo',
    '▁he',
    '▁hello',
    'or',
    '▁w',
    '▁wor',
    'ld',
    '▁world',
    'th',
    '▁th',
    '▁the',
    ',',
    '.',
  ];
  pieces.forEach((p, i) => {
    tokens.push(p);
    types.push(1); // NORMAL
    scores.push(p.length > 1 ? -i / 100 : -10 - i / 100); // multi-character pieces merge first
  });
  return {
    size: tokens.length,
    kv: {
      'tokenizer.ggml.model': { t: 'str', v: 'llama' },
      'tokenizer.ggml.tokens': { t: 'arr_str', v: tokens },
      'tokenizer.ggml.scores': { t: 'arr_f32', v: scores },
      'tokenizer.ggml.token_type': { t: 'arr_i32', v: types },
      'tokenizer.ggml.unknown_token_id': { t: 'u32', v: 0 },
      'tokenizer.ggml.bos_token_id': { t: 'u32', v: 1 },
      'tokenizer.ggml.eos_token_id': { t: 'u32', v: 2 },
      'tokenizer.ggml.add_bos_token': { t: 'bool', v: true },
    },
  };
}

/** GPT-2's byte → printable-character table (the byte-level BPE alphabet). */
function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const table = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return table;
}

/** Byte-level BPE ('gpt2') vocabulary: the 256 byte symbols, a few merges, then <|endoftext|>. */
function bpeVocab(): Vocab {
  const tokens = bytesToUnicode();
  const merges = ['h e', 'l l', 'll o', 'he llo', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld', 'Ġ t', 'Ġt he'];
  for (const m of merges) tokens.push(m.replace(' ', ''));
  tokens.push('<|endoftext|>');
  const types = tokens.map((_, i) => (i === tokens.length - 1 ? 3 : 1));
  return {
    size: tokens.length,
    kv: {
      'tokenizer.ggml.model': { t: 'str', v: 'gpt2' },
      'tokenizer.ggml.pre': { t: 'str', v: 'gpt-2' },
      'tokenizer.ggml.tokens': { t: 'arr_str', v: tokens },
      'tokenizer.ggml.token_type': { t: 'arr_i32', v: types },
      'tokenizer.ggml.merges': { t: 'arr_str', v: merges },
      'tokenizer.ggml.bos_token_id': { t: 'u32', v: tokens.length - 1 },
      'tokenizer.ggml.eos_token_id': { t: 'u32', v: tokens.length - 1 },
      'tokenizer.ggml.add_bos_token': { t: 'bool', v: false },
    },
  };
}

interface GgufSpec {
  kv: Record<string, GgufValue>;
  tensors: GgufTensor[];
}

function llamaGgufSpec(w: Weights, vocab: Vocab): GgufSpec {
  const kvDim = HP.nHeadKv * HEAD_DIM;
  const tensors: GgufTensor[] = [{ name: 'token_embd.weight', ne: [HP.nEmbd, w.nVocab], data: w.tokEmbd }];
  w.layers.forEach((l, i) => {
    tensors.push(
      { name: `blk.${i}.attn_norm.weight`, ne: [HP.nEmbd], data: l.attnNorm },
      { name: `blk.${i}.attn_q.weight`, ne: [HP.nEmbd, HP.nEmbd], data: l.wq },
      { name: `blk.${i}.attn_k.weight`, ne: [HP.nEmbd, kvDim], data: l.wk },
      { name: `blk.${i}.attn_v.weight`, ne: [HP.nEmbd, kvDim], data: l.wv },
      { name: `blk.${i}.attn_output.weight`, ne: [HP.nEmbd, HP.nEmbd], data: l.wo },
      { name: `blk.${i}.ffn_norm.weight`, ne: [HP.nEmbd], data: l.ffnNorm },
      { name: `blk.${i}.ffn_gate.weight`, ne: [HP.nEmbd, HP.nFf], data: l.wGate },
      { name: `blk.${i}.ffn_up.weight`, ne: [HP.nEmbd, HP.nFf], data: l.wUp },
      { name: `blk.${i}.ffn_down.weight`, ne: [HP.nFf, HP.nEmbd], data: l.wDown },
    );
  });
  tensors.push(
    { name: 'output_norm.weight', ne: [HP.nEmbd], data: w.outNorm },
    { name: 'output.weight', ne: [HP.nEmbd, w.nVocab], data: w.output },
  );
  return {
    kv: {
      'general.architecture': { t: 'str', v: 'llama' },
      'general.name': { t: 'str', v: 'tessera-llama-cpp-probe' },
      'general.file_type': { t: 'u32', v: 0 }, // ALL_F32
      'llama.context_length': { t: 'u32', v: HP.ctx },
      'llama.embedding_length': { t: 'u32', v: HP.nEmbd },
      'llama.block_count': { t: 'u32', v: HP.nLayer },
      'llama.feed_forward_length': { t: 'u32', v: HP.nFf },
      'llama.rope.dimension_count': { t: 'u32', v: HEAD_DIM },
      'llama.attention.head_count': { t: 'u32', v: HP.nHead },
      'llama.attention.head_count_kv': { t: 'u32', v: HP.nHeadKv },
      'llama.attention.layer_norm_rms_epsilon': { t: 'f32', v: HP.eps },
      'llama.rope.freq_base': { t: 'f32', v: HP.ropeBase },
      ...vocab.kv,
    },
    tensors,
  };
}

/** The same file through Tessera's writer (src/io/gguf.ts): shapes outermost-first, explicit numeric types. */
function encodeWithTessera(spec: GgufSpec): Uint8Array {
  const metadata: Record<string, GGUFMetadataInput> = {};
  for (const [key, val] of Object.entries(spec.kv)) {
    switch (val.t) {
      case 'u32':
      case 'i32':
      case 'f32':
        metadata[key] = { type: val.t, value: val.v };
        break;
      case 'bool':
      case 'str':
      case 'arr_str':
        metadata[key] = val.v;
        break;
      case 'arr_f32':
        metadata[key] = Float32Array.from(val.v);
        break;
      case 'arr_i32':
        metadata[key] = Int32Array.from(val.v);
        break;
    }
  }
  return encodeGGUF({
    metadata,
    tensors: spec.tensors.map((t) => ({
      name: t.name,
      shape: [...t.ne].reverse(),
      type: 'F32',
      data: t.data,
    })),
  });
}

// ---------------------------------------------------------------------------------------------------
// float64 reference forward pass with llama.cpp's LLM_ARCH_LLAMA conventions: RMSNorm (x / sqrt(mean x² + eps)
// times the weight), rotary embedding of type NORM (adjacent pairs (2i, 2i+1), θ = pos · base^(−2i/n_rot)),
// causal grouped-query attention (query head h reads KV head ⌊h / (nHead/nHeadKv)⌋, scale 1/√headDim), SwiGLU
// (down(silu(gate x) ⊙ up x)), final RMSNorm and output projection.
// ---------------------------------------------------------------------------------------------------

function matvec(w: Float32Array, rows: number, cols: number, x: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += w[r * cols + c]! * x[c]!;
    y[r] = acc;
  }
  return y;
}

function rmsnorm(x: Float64Array, g: Float32Array): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + HP.eps);
  return x.map((v, i) => v * inv * g[i]!);
}

function rope(x: Float64Array, nHeads: number, pos: number): void {
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < HEAD_DIM; i += 2) {
      const theta = pos * Math.pow(HP.ropeBase, -i / HEAD_DIM);
      const a = x[h * HEAD_DIM + i]!;
      const b = x[h * HEAD_DIM + i + 1]!;
      x[h * HEAD_DIM + i] = a * Math.cos(theta) - b * Math.sin(theta);
      x[h * HEAD_DIM + i + 1] = a * Math.sin(theta) + b * Math.cos(theta);
    }
  }
}

/** Log-softmax of the logits after each prefix of `tokens`. */
function referenceLogProbs(w: Weights, tokens: readonly number[]): Float64Array[] {
  const kvDim = HP.nHeadKv * HEAD_DIM;
  const keys: Float64Array[][] = w.layers.map(() => []);
  const values: Float64Array[][] = w.layers.map(() => []);
  const rows: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from(w.tokEmbd.subarray(tok * HP.nEmbd, (tok + 1) * HP.nEmbd));
    w.layers.forEach((l, li) => {
      const h = rmsnorm(x, l.attnNorm);
      const q = matvec(l.wq, HP.nEmbd, HP.nEmbd, h);
      const k = matvec(l.wk, kvDim, HP.nEmbd, h);
      const v = matvec(l.wv, kvDim, HP.nEmbd, h);
      rope(q, HP.nHead, pos);
      rope(k, HP.nHeadKv, pos);
      keys[li]!.push(k);
      values[li]!.push(v);
      const att = new Float64Array(HP.nEmbd);
      for (let hd = 0; hd < HP.nHead; hd++) {
        const kvh = Math.floor(hd / (HP.nHead / HP.nHeadKv));
        const scores = keys[li]!.map((kk) => {
          let s = 0;
          for (let d = 0; d < HEAD_DIM; d++) s += q[hd * HEAD_DIM + d]! * kk[kvh * HEAD_DIM + d]!;
          return s / Math.sqrt(HEAD_DIM);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        e.forEach((p, t) => {
          for (let d = 0; d < HEAD_DIM; d++)
            att[hd * HEAD_DIM + d] += (p / z) * values[li]![t]![kvh * HEAD_DIM + d]!;
        });
      }
      const o = matvec(l.wo, HP.nEmbd, HP.nEmbd, att);
      x = x.map((v2, i) => v2 + o[i]!);
      const h2 = rmsnorm(x, l.ffnNorm);
      const g = matvec(l.wGate, HP.nFf, HP.nEmbd, h2);
      const u = matvec(l.wUp, HP.nFf, HP.nEmbd, h2);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
      const d = matvec(l.wDown, HP.nEmbd, HP.nFf, act);
      x = x.map((v2, i) => v2 + d[i]!);
    });
    const logits = matvec(w.output, w.nVocab, HP.nEmbd, rmsnorm(x, w.outNorm));
    const m = Math.max(...logits);
    const lse = m + Math.log(logits.reduce((a, b) => a + Math.exp(b - m), 0));
    rows.push(logits.map((v2) => v2 - lse));
  });
  return rows;
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

function topGap(a: ArrayLike<number>): number {
  const s = Array.from(a).sort((x, y) => y - x);
  return s[0]! - s[1]!;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// ---------------------------------------------------------------------------------------------------

const missing = llamaCppMissing();

describe.skipIf(missing !== undefined)(
  `llama.cpp peer (node-llama-cpp)${missing !== undefined ? ` — skipped: ${missing}` : ''}`,
  () => {
    let peer: LlamaCppPeer;
    let dir: string;
    type Built = { w: Weights; spec: GgufSpec; model: LlamaCppModel };
    let spm: Built;
    let bpe: Built;

    beforeAll(async () => {
      const opened = await openLlamaCpp({ threads: 2 });
      if ('missing' in opened) throw new Error(opened.missing);
      peer = opened;
      dir = mkdtempSync(join(tmpdir(), 'tessera-llama-cpp-'));
      const make = async (
        vocab: Vocab,
        seed: number,
        name: string,
        eosLike?: { id: number; like: number },
      ): Promise<Built> => {
        const w = randomWeights(vocab.size, seed, eosLike);
        const spec = llamaGgufSpec(w, vocab);
        const path = join(dir, name);
        // The file llama.cpp loads comes from the test-only encoder, so these checks do not depend on
        // Tessera's writer; that writer is checked against it byte for byte below.
        writeFileSync(path, encodeGgufTestOnly(spec.kv, spec.tensors));
        return { w, spec, model: await peer.load(path, { contextSize: 256 }) };
      };
      spm = await make(spmVocab(), 12345, 'tiny-llama-spm.gguf', { id: 2, like: 180 });
      bpe = await make(bpeVocab(), 777, 'tiny-llama-bpe.gguf');
    });

    afterAll(async () => {
      await peer?.close();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('opens the prebuilt CPU binary offline, 2 threads, f32 KV cache', () => {
      expect(peer.version).toBe('3.21.1');
      expect(peer.threads).toBe(2);
      expect(spm.model.threads).toBe(2);
      expect(spm.model.contextSize).toBeGreaterThanOrEqual(256);
      expect(spm.model.batchSize).toBeGreaterThanOrEqual(256);
      expect(spm.model.vocabSize).toBe(spmVocab().size);
      expect(bpe.model.vocabSize).toBe(bpeVocab().size);
    });

    it("Tessera's encodeGGUF (src/io/gguf.ts) writes the same bytes as the test-only encoder", () => {
      for (const b of [spm, bpe]) {
        const ours = encodeGgufTestOnly(b.spec.kv, b.spec.tensors);
        const tessera = encodeWithTessera(b.spec);
        expect(tessera.length).toBe(ours.length);
        expect(Buffer.compare(Buffer.from(tessera), Buffer.from(ours))).toBe(0);
      }
    });

    it("tokenizes with the GGUF's SentencePiece ('llama') vocabulary", () => {
      const m = spm.model;
      expect(m.vocabularyType).toBe('spm');
      expect([m.bos, m.eos, m.addBosByDefault]).toEqual([1, 2, true]);
      const tokens = spmVocab().kv['tokenizer.ggml.tokens']!.v as string[];
      const pieces = (ids: number[]): string[] => ids.map((i) => tokens[i]!);
      // A leading ▁ is added (add_space_prefix); the highest-scored merges win; unknown characters fall back to bytes.
      expect(pieces(m.tokenize('hello world'))).toEqual(['▁hello', '▁world']);
      // Merges go by score, not by length: 'he' outscores 'th' and there is no '▁t', so 'the' stays ▁ t he.
      expect(pieces(m.tokenize('the world, hello.'))).toEqual(['▁', 't', 'he', '▁world', ',', '▁hello', '.']);
      expect(pieces(m.tokenize(' the'))).toEqual(['▁', '▁', 't', 'he']);
      expect(pieces(m.tokenize('hé'))).toEqual(['▁', 'h', '<0xC3>', '<0xA9>']);
      expect(m.tokenize('hello', { addBos: true })[0]).toBe(1);
      expect(m.tokenize('<s>hello', { special: true })[0]).toBe(1);
      expect(m.tokenize('<s>hello', { special: false })).not.toContain(1);
      for (const text of ['hello world', 'the world, hello.', 'héllo wörld 123']) {
        // The space prefix comes off the first token again, but not after a BOS.
        expect(m.detokenize(m.tokenize(text))).toBe(text);
        expect(m.detokenize(m.tokenize(text, { addBos: true }))).toBe(` ${text}`);
        expect(m.detokenize(m.tokenize(text, { addBos: true }), { special: true })).toBe(`<s> ${text}`);
      }
    });

    it("tokenizes with the GGUF's byte-level BPE ('gpt2') vocabulary", () => {
      const m = bpe.model;
      expect(m.vocabularyType).toBe('bpe');
      const tokens = bpeVocab().kv['tokenizer.ggml.tokens']!.v as string[];
      const pieces = (ids: number[]): string[] => ids.map((i) => tokens[i]!);
      expect(pieces(m.tokenize('hello world'))).toEqual(['hello', 'Ġworld']);
      expect(pieces(m.tokenize('the world'))).toEqual(['t', 'he', 'Ġworld']);
      expect(pieces(m.tokenize(' the'))).toEqual(['Ġthe']);
      const eot = tokens.length - 1;
      expect(m.tokenize('<|endoftext|>hi', { special: true })).toEqual([
        eot,
        tokens.indexOf('h'),
        tokens.indexOf('i'),
      ]);
      for (const text of ['hello world', 'héllo wörld 123\n\ttab', 'ünïcödé ✓'])
        expect(m.detokenize(m.tokenize(text))).toBe(text);
    });

    it('next-token log-probabilities: vocabulary length, match a float64 reference forward pass', async () => {
      for (const { w, model } of [spm, bpe]) {
        const rnd = xorshift(99);
        const prompt = Array.from({ length: 12 }, () => Math.floor(rnd() * model.vocabSize));
        const ref = referenceLogProbs(w, prompt);
        const last = await model.nextTokenLogits(prompt);
        expect(last).toBeInstanceOf(Float32Array);
        expect(last.length).toBe(model.vocabSize);
        expect(last.every(Number.isFinite)).toBe(true);
        // log-probabilities: logsumexp 0
        expect(Math.abs(Math.log(last.reduce((a, b) => a + Math.exp(b), 0)))).toBeLessThan(1e-4);
        expect(topGap(ref.at(-1)!)).toBeGreaterThan(1e-3);
        expect(maxAbsDiff(last, ref.at(-1)!)).toBeLessThan(2e-5);
        const all = await model.allPositionLogits(prompt);
        expect(all.length).toBe(prompt.length);
        all.forEach((row, i) => expect(maxAbsDiff(row, ref[i]!)).toBeLessThan(2e-5));
        expect(maxAbsDiff(all.at(-1)!, last)).toBeLessThan(1e-5);
      }
    });

    it('greedy decoding matches the reference token for token (no penalties, past EOS)', async () => {
      const { w, model } = spm;
      const prompt = model.tokenize('hello world', { addBos: true });
      const n = 24;
      const got = await model.greedy(prompt, n);
      expect(got.length).toBe(n);
      const seq = [...prompt];
      for (let i = 0; i < n; i++) {
        const row = referenceLogProbs(w, seq).at(-1)!;
        expect(topGap(row), `near-tie at step ${i}`).toBeGreaterThan(1e-3);
        seq.push(argmax(row));
      }
      expect(got).toEqual(seq.slice(prompt.length));
      // The sequence meets EOS (2) mid-way and goes on; it repeats tokens, which a repeat penalty (llama.cpp's
      // usual 1.1) would have discouraged: the reference has none, and the match shows the peer has none.
      const firstEos = got.indexOf(2);
      expect(firstEos).toBeGreaterThanOrEqual(0);
      expect(firstEos).toBeLessThan(n - 1);
      expect(new Set(got).size).toBeLessThan(n);
      expect(await model.greedy(prompt, n, { stopAtEog: true })).toEqual(got.slice(0, firstEos + 1));
      expect(await model.greedy(prompt, n)).toEqual(got);
    });

    it('measures prefill and decode speed (2 threads)', async () => {
      const m = spm.model;
      const prompt = Array.from({ length: 64 }, (_, i) => 3 + (i % 200));
      const pre = await m.prefillSpeed(prompt, 2);
      const dec = await m.decodeSpeed(prompt.slice(0, 8), 32, 2);
      expect(pre.tokens).toBe(64);
      expect(pre.tokensPerSecond).toBeGreaterThan(0);
      expect(dec.tokens).toBe(31);
      expect(dec.tokensPerSecond).toBeGreaterThan(0);
      console.log(
        `llama.cpp tiny-llama (${peer.llamaCppRelease}): prefill ${pre.tokensPerSecond.toFixed(0)} tok/s, decode ${dec.tokensPerSecond.toFixed(0)} tok/s`,
      );
    });
  },
);
