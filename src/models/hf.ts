/**
 * Language models to and from Hugging Face checkpoints: a directory with `config.json` and
 * `model.safetensors` (or shards listed by `model.safetensors.index.json`). Architectures: 'llama'
 * (`LlamaForCausalLM`, {@link Llama}) and 'gpt2' (`GPT2LMHeadModel`, {@link GPT}).
 *
 * Weight layout:
 * - Llama: names are Tessera's with a leading `model.` (except `lm_head.weight`). Hugging Face rotates
 *   q/k halves (pairs (i, i + hd/2), `rotate_half`) where Tessera rotates adjacent pairs (2i, 2i+1), so
 *   the output rows of `q_proj` (per attention head) and `k_proj` (per key/value head) are permuted:
 *   Tessera row `h·hd + 2i + j` is Hugging Face row `h·hd + j·hd/2 + i` (llama.cpp's
 *   `convert_hf_to_gguf` permutation on load, its inverse on save). Attention scores are unchanged.
 * - GPT-2: names are Tessera's (nanoGPT's) with a leading `transformer.` (also accepted without it, as
 *   in the original `gpt2` checkpoint). GPT-2's Conv1D stores `c_attn`, `c_proj` and `c_fc` weights
 *   as [in, out]: they are transposed to Linear's [out, in]. The causal-mask buffers `attn.bias` /
 *   `attn.masked_bias` of old checkpoints and a tied `lm_head.weight` are ignored.
 *
 * Weights stored as F32, F16 or BF16 become f32 tensors.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../dtype.js';
import { FormatError, TesseraError, ValueError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { HostTensor } from '../io/safetensors.js';
import { encodeSafetensors, openSafetensors } from '../io/safetensors.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { GPT } from '../nn/gpt.js';
import type { LlamaConfig, RopeScaling } from '../nn/llama.js';
import { Llama } from '../nn/llama.js';
import { getDefaultDevice, setDefaultDevice } from '../runtime/registry.js';
import { noGrad } from '../tensor/context.js';
import { realize, tensor } from '../tensor/tensor.js';
import type { LanguageModel } from './gguf.js';

/** A model read from a Hugging Face checkpoint directory, with its parsed `config.json`. */
export type LoadedHFModel = LanguageModel & { config: Record<string, unknown>; dir: string };

/** Options of {@link loadHFModel}. */
export interface LoadHFOptions {
  /** Device of the parameters (default: the default device). */
  device?: string;
  /**
   * Cap on the context (rotary tables / learned positions kept): Llama's `max_position_embeddings` may
   * be 128k. For GPT-2 only `wpe` rows below the cap are loaded.
   */
  maxSeqLen?: number;
}

/** Options of {@link saveHFModel}. */
export interface SaveHFOptions {
  /** Storage of every tensor (default f32). */
  dtype?: 'f32' | 'f16' | 'bf16';
}

const TORCH_DTYPE = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const;

// ---- row permutation of q/k projections ----

/**
 * Hugging Face (rotate_half) row order -> Tessera (adjacent pairs) row order of a `[nHead·hd, cols]`
 * matrix: out row `h·hd + 2i + j` = in row `h·hd + j·hd/2 + i`. `inverse` maps Tessera -> Hugging Face.
 */
export function permuteRotaryRows(w: Float32Array, nHead: number, hd: number, cols: number, inverse = false): Float32Array {
  const out = new Float32Array(w.length);
  const half = hd / 2;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const tess = h * hd + 2 * i + j;
        const hf = h * hd + j * half + i;
        const [dst, src] = inverse ? [hf, tess] : [tess, hf];
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

// ---- config.json ----

type Json = Record<string, unknown>;

function readJson(path: string, what: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FormatError(`${path}: cannot read ${what}: ${(err as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${path}: ${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError(`${path}: ${what} must be a JSON object`);
  return v as Json;
}

function posInt(file: string, c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`${file}: key '${key}' is missing`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FormatError(`${file}: key '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function posNum(file: string, c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`${file}: key '${key}' is missing`);
  }
  if (typeof v !== 'number' || !(v > 0)) throw new FormatError(`${file}: key '${key}' must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function archOf(file: string, c: Json): 'llama' | 'gpt2' {
  const mt = c['model_type'];
  const archs = Array.isArray(c['architectures']) ? (c['architectures'] as unknown[]) : [];
  if (mt === 'llama' || (mt === undefined && archs.includes('LlamaForCausalLM'))) return 'llama';
  if (mt === 'gpt2' || (mt === undefined && archs.includes('GPT2LMHeadModel'))) return 'gpt2';
  throw new FormatError(
    `${file}: model_type ${JSON.stringify(mt)} (architectures ${JSON.stringify(c['architectures'])}) is not supported (llama, gpt2)`,
  );
}

function ropeScalingOf(file: string, c: Json): RopeScaling | undefined {
  const rs = c['rope_scaling'];
  if (rs === undefined || rs === null) return undefined;
  if (typeof rs !== 'object' || Array.isArray(rs)) throw new FormatError(`${file}: key 'rope_scaling' must be an object or null`);
  const r = rs as Json;
  const type = r['rope_type'] ?? r['type'];
  if (type === 'default') return undefined;
  if (type === 'linear') return { type: 'linear', factor: posNum(file, r, 'factor') };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: posNum(file, r, 'factor'),
      lowFreqFactor: posNum(file, r, 'low_freq_factor'),
      highFreqFactor: posNum(file, r, 'high_freq_factor'),
      originalContext: posInt(file, r, 'original_max_position_embeddings'),
    };
  }
  throw new FormatError(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported (default, linear, llama3)`);
}

function llamaConfigOf(file: string, c: Json, maxSeqLen: number | undefined): LlamaConfig {
  const dim = posInt(file, c, 'hidden_size');
  const nHead = posInt(file, c, 'num_attention_heads');
  if (dim % nHead !== 0) throw new FormatError(`${file}: hidden_size ${dim} is not divisible by num_attention_heads ${nHead}`);
  const hd = c['head_dim'];
  if (hd !== undefined && hd !== null && hd !== dim / nHead)
    throw new FormatError(`${file}: head_dim ${JSON.stringify(hd)} differs from hidden_size / num_attention_heads = ${dim / nHead} (not supported)`);
  const act = c['hidden_act'];
  if (act !== undefined && act !== 'silu') throw new FormatError(`${file}: hidden_act ${JSON.stringify(act)} is not supported (silu)`);
  for (const k of ['attention_bias', 'mlp_bias']) {
    if (c[k] === true) throw new FormatError(`${file}: ${k}: true is not supported (Llama has no biases here)`);
  }
  const ctx = posInt(file, c, 'max_position_embeddings');
  return {
    vocabSize: posInt(file, c, 'vocab_size'),
    dim,
    nLayer: posInt(file, c, 'num_hidden_layers'),
    nHead,
    nKVHead: posInt(file, c, 'num_key_value_heads', nHead),
    hiddenDim: posInt(file, c, 'intermediate_size'),
    maxSeqLen: maxSeqLen !== undefined ? Math.min(ctx, maxSeqLen) : ctx,
    normEps: posNum(file, c, 'rms_norm_eps', 1e-6),
    ropeTheta: posNum(file, c, 'rope_theta', 10000),
    ropeScaling: ropeScalingOf(file, c),
    tieEmbeddings: c['tie_word_embeddings'] === true,
  };
}

function gpt2ConfigOf(file: string, c: Json, maxSeqLen: number | undefined): { vocabSize: number; blockSize: number; nLayer: number; nHead: number; nEmbd: number; positions: number } {
  const nEmbd = posInt(file, c, 'n_embd');
  const nHead = posInt(file, c, 'n_head');
  if (nEmbd % nHead !== 0) throw new FormatError(`${file}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  const inner = c['n_inner'];
  if (inner !== undefined && inner !== null && inner !== 4 * nEmbd) throw new FormatError(`${file}: n_inner ${JSON.stringify(inner)} is not 4 x n_embd (${4 * nEmbd})`);
  const act = c['activation_function'];
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh')
    throw new FormatError(`${file}: activation_function ${JSON.stringify(act)} is not supported (gelu_new, gelu_pytorch_tanh)`);
  const eps = posNum(file, c, 'layer_norm_epsilon', 1e-5);
  if (Math.abs(eps - 1e-5) > 1e-12) throw new FormatError(`${file}: layer_norm_epsilon ${eps} is not supported (GPT uses 1e-5)`);
  const positions = c['n_positions'] !== undefined ? posInt(file, c, 'n_positions') : posInt(file, c, 'n_ctx');
  const blockSize = maxSeqLen !== undefined ? Math.min(positions, maxSeqLen) : positions;
  return { vocabSize: posInt(file, c, 'vocab_size'), blockSize, nLayer: posInt(file, c, 'n_layer'), nHead, nEmbd, positions };
}

// ---- weights ----

interface StoredTensor {
  file: string;
  dtype: HostTensor['dtype'];
  shape: number[];
  /** Read the values (only this tensor's bytes). */
  read(): HostTensor;
}

/** Open a weights file lazily; `opened` collects it so the caller can close it. */
function readSafetensors(path: string, opened: SafetensorsFile[]): Map<string, StoredTensor> {
  const f = openSafetensors(path);
  opened.push(f);
  return new Map([...f.tensors].map(([name, info]) => [name, { file: path, dtype: info.dtype, shape: info.shape, read: () => f.read(name) }]));
}

/** Every tensor of the checkpoint, by name, with the file it lives in. */
function readWeights(dir: string, opened: SafetensorsFile[]): Map<string, StoredTensor> {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const out = new Map<string, StoredTensor>();
  if (existsSync(single)) {
    return readSafetensors(single, opened);
  }
  let index: Json;
  try {
    index = readJson(indexPath, 'the shard index');
  } catch (err) {
    if (err instanceof FormatError && err.message.includes('cannot read'))
      throw new FormatError(`${dir}: no weights: neither model.safetensors nor model.safetensors.index.json is there`);
    throw err;
  }
  const map = index['weight_map'];
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new FormatError(`${indexPath}: key 'weight_map' is missing or not an object`);
  const entries = Object.entries(map as Json);
  for (const [name, f] of entries) {
    if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) throw new FormatError(`${indexPath}: weight_map entry '${name}' must be a file name, got ${JSON.stringify(f)}`);
  }
  const shards = [...new Set(entries.map(([, f]) => f as string))];
  for (const shard of shards) {
    const path = join(dir, shard);
    for (const [name, t] of readSafetensors(path, opened)) {
      const prev = out.get(name);
      if (prev) throw new FormatError(`${path}: tensor '${name}' is also in ${prev.file}`);
      out.set(name, t);
    }
  }
  for (const [name, f] of entries) {
    const got = out.get(name);
    if (!got) throw new FormatError(`${join(dir, f as string)}: tensor '${name}' (listed in ${indexPath}) is missing`);
    if (got.file !== join(dir, f as string)) throw new FormatError(`${indexPath}: tensor '${name}' is mapped to ${f as string} but found in ${got.file}`);
  }
  return out;
}

function toF32(file: string, name: string, t: HostTensor): Float32Array {
  if (t.dtype === 'f32') return t.data as Float32Array;
  const src = t.data as Uint16Array;
  if (t.dtype === 'f16') return Float32Array.from(src, f16BitsToF32);
  if (t.dtype === 'bf16') return Float32Array.from(src, bf16BitsToF32);
  throw new FormatError(`${file}: tensor '${name}' has dtype ${t.dtype}; weights must be F32, F16 or BF16`);
}

/** How a Tessera parameter is stored in the checkpoint. */
interface Mapping {
  /** Hugging Face names, the first being the one written. */
  names: string[];
  /** The stored shape. */
  shape: number[];
  /** Stored data -> Tessera data. */
  load: (w: Float32Array) => Float32Array;
  /** Tessera data -> stored data. */
  save: (w: Float32Array) => Float32Array;
}

const same = (w: Float32Array) => w;

function mappingOf(lm: LanguageModel, key: string, shape: readonly number[]): Mapping {
  if (lm.arch === 'llama') {
    const c = lm.model.config;
    const hd = c.dim / c.nHead;
    const name = key === 'lm_head.weight' ? key : `model.${key}`;
    const heads = /\.self_attn\.q_proj\.weight$/.test(key) ? c.nHead : /\.self_attn\.k_proj\.weight$/.test(key) ? c.nKVHead : 0;
    if (heads) {
      const cols = shape[1]!;
      return { names: [name], shape: [...shape], load: (w) => permuteRotaryRows(w, heads, hd, cols), save: (w) => permuteRotaryRows(w, heads, hd, cols, true) };
    }
    return { names: [name], shape: [...shape], load: same, save: same };
  }
  const names = [`transformer.${key}`, key];
  if (/\.(c_attn|c_proj|c_fc)\.weight$/.test(key)) {
    const [out, inp] = shape as [number, number];
    return { names, shape: [inp, out], load: (w) => transpose2d(w, inp, out), save: (w) => transpose2d(w, out, inp) };
  }
  return { names, shape: [...shape], load: same, save: same };
}

/** Stored tensors that carry no parameter and are skipped. */
function ignorable(lm: LanguageModel, name: string): boolean {
  if (lm.arch === 'llama') return /\.rotary_emb\.inv_freq$/.test(name) || (lm.model.config.tieEmbeddings && name === 'lm_head.weight');
  return /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/.test(name) || name === 'lm_head.weight';
}

function loadWeights(lm: LanguageModel, weights: Map<string, StoredTensor>, dir: string, device: string | undefined, gptPositions: number | undefined): void {
  const params = lm.model.namedParameters();
  const used = new Set<string>();
  for (const [key, p] of params) {
    const m = mappingOf(lm, key, p.shape);
    const name = m.names.find((n) => weights.has(n));
    if (name === undefined) throw new FormatError(`${dir}: tensor '${m.names[0]}' (for ${key}) is missing`);
    const stored = weights.get(name)!;
    const file = stored.file;
    const t = { dtype: stored.dtype, shape: stored.shape };
    used.add(name);
    let data: Float32Array;
    if (lm.arch === 'gpt2' && key === 'wpe.weight' && gptPositions !== undefined && gptPositions !== p.shape[0]) {
      // The context was capped: keep the first rows of the position table.
      const want = [gptPositions, p.shape[1]!];
      if (t.shape.join() !== want.join()) throw new FormatError(`${file}: tensor '${name}' has shape [${t.shape}], the ${lm.arch} config needs [${want}]`);
      data = toF32(file, name, stored.read()).slice(0, p.numel);
    } else {
      if (t.shape.join() !== m.shape.join()) throw new FormatError(`${file}: tensor '${name}' has shape [${t.shape}], the ${lm.arch} config needs [${m.shape}]`);
      data = m.load(toF32(file, name, stored.read()));
    }
    // Realized one at a time: at most one tensor's host copy is alive besides the loaded weights.
    noGrad(() => p.assign(tensor(data, { shape: p.shape, device })));
    realize(p);
  }
  const extra = [...weights.keys()].filter((n) => !used.has(n) && !ignorable(lm, n));
  if (extra.length) {
    const shown = extra.slice(0, 5).map((n) => `${n} (${weights.get(n)!.file})`);
    throw new FormatError(`${dir}: tensors not used by the ${lm.arch} model: ${shown.join(', ')}${extra.length > 5 ? ', ...' : ''}`);
  }
}

/**
 * Read a language model from a Hugging Face checkpoint directory: `config.json` and `model.safetensors`
 * or the shards of `model.safetensors.index.json`. F32/F16/BF16 weights become f32 tensors on `device`.
 *
 * @throws FormatError naming the file and the key or tensor for a missing config or weights, an
 *   unsupported model_type, rope_scaling or head_dim, a missing or invalid key, a missing tensor, a
 *   shape mismatch (expected and found), or tensors the model does not use.
 */
export function loadHFModel(dir: string, opts: LoadHFOptions = {}): LoadedHFModel {
  const cfgPath = join(dir, 'config.json');
  const config = readJson(cfgPath, 'config.json');
  const arch = archOf(cfgPath, config);
  if (opts.maxSeqLen !== undefined && !(Number.isInteger(opts.maxSeqLen) && opts.maxSeqLen > 0))
    throw new ValueError(`loadHFModel: maxSeqLen must be a positive integer, got ${opts.maxSeqLen}`);
  const llamaCfg = arch === 'llama' ? llamaConfigOf(cfgPath, config, opts.maxSeqLen) : undefined;
  const gptCfg = arch === 'gpt2' ? gpt2ConfigOf(cfgPath, config, opts.maxSeqLen) : undefined;
  const opened: SafetensorsFile[] = [];
  try {
    return loadFrom(dir, opts, arch, config, cfgPath, llamaCfg, gptCfg, readWeights(dir, opened));
  } finally {
    for (const f of opened) f.close();
  }
}

function loadFrom(
  dir: string,
  opts: LoadHFOptions,
  arch: 'llama' | 'gpt2',
  config: Json,
  cfgPath: string,
  llamaCfg: ReturnType<typeof llamaConfigOf> | undefined,
  gptCfg: ReturnType<typeof gpt2ConfigOf> | undefined,
  weights: Map<string, StoredTensor>,
): LoadedHFModel {
  // Modules create their parameters on the default device: build the model on the requested one.
  const prev = getDefaultDevice();
  let lm: LanguageModel;
  try {
    if (opts.device) setDefaultDevice(opts.device);
    if (llamaCfg) lm = { arch: 'llama', model: new Llama(llamaCfg) };
    else {
      const g = gptCfg!;
      lm = { arch: 'gpt2', model: new GPT({ vocabSize: g.vocabSize, blockSize: g.blockSize, nLayer: g.nLayer, nHead: g.nHead, nEmbd: g.nEmbd }) };
    }
  } catch (err) {
    if (err instanceof TesseraError && !(err instanceof FormatError)) throw new FormatError(`${cfgPath}: ${err.message}`);
    throw err;
  } finally {
    setDefaultDevice(prev);
  }
  loadWeights(lm, weights, dir, opts.device, gptCfg?.positions);
  return { ...lm, config, dir };
}

/** The `config.json` Hugging Face transformers reads for a model. */
function hfConfig(lm: LanguageModel, dtype: 'f32' | 'f16' | 'bf16'): Json {
  if (lm.arch === 'llama') {
    const c = lm.model.config;
    let rope: Json | null = null;
    const rs = c.ropeScaling;
    if (rs?.type === 'linear') rope = { rope_type: 'linear', factor: rs.factor };
    else if (rs?.type === 'llama3')
      rope = { rope_type: 'llama3', factor: rs.factor, low_freq_factor: rs.lowFreqFactor, high_freq_factor: rs.highFreqFactor, original_max_position_embeddings: rs.originalContext };
    return {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: c.dim,
      intermediate_size: c.hiddenDim,
      num_hidden_layers: c.nLayer,
      num_attention_heads: c.nHead,
      num_key_value_heads: c.nKVHead,
      head_dim: c.dim / c.nHead,
      max_position_embeddings: c.maxSeqLen,
      rms_norm_eps: c.normEps,
      rope_theta: c.ropeTheta,
      rope_scaling: rope,
      vocab_size: c.vocabSize,
      tie_word_embeddings: c.tieEmbeddings,
      hidden_act: 'silu',
      attention_bias: false,
      mlp_bias: false,
      torch_dtype: TORCH_DTYPE[dtype],
    };
  }
  const c = lm.model.config;
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_embd: c.nEmbd,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_positions: c.blockSize,
    n_ctx: c.blockSize,
    n_inner: null,
    vocab_size: c.vocabSize,
    layer_norm_epsilon: 1e-5,
    activation_function: 'gelu_new',
    tie_word_embeddings: true,
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

/**
 * Write a model as a Hugging Face checkpoint: `dir/config.json` and `dir/model.safetensors` (both
 * atomically; the directory is created), with Hugging Face's names and layouts (Llama q/k rows in
 * rotate_half order, GPT-2 Conv1D weights [in, out]), so that `transformers` and {@link loadHFModel}
 * read it back.
 *
 * @throws ValueError for a GPT built with `bias: false` (GPT-2 checkpoints have biases) or an unknown dtype.
 */
export async function saveHFModel(dir: string, lm: LanguageModel, opts: SaveHFOptions = {}): Promise<void> {
  const dtype = opts.dtype ?? 'f32';
  if (!(dtype in TORCH_DTYPE)) throw new ValueError(`saveHFModel: dtype must be f32, f16 or bf16, got '${dtype}'`);
  if (lm.arch === 'gpt2' && lm.model.config.bias === false) throw new ValueError('saveHFModel: GPT-2 checkpoints have biases; this GPT was built with bias: false');
  const tensors: Record<string, HostTensor> = {};
  for (const [key, p] of lm.model.namedParameters()) {
    const m = mappingOf(lm, key, p.shape);
    const w = m.save(Float32Array.from(p.dataSync()));
    const data = dtype === 'f32' ? w : Uint16Array.from(w, dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits);
    tensors[m.names[0]!] = { dtype, shape: m.shape, data };
  }
  const bytes = encodeSafetensors(tensors, { format: 'pt' });
  await writeFileAtomic(join(dir, 'model.safetensors'), bytes);
  await writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(hfConfig(lm, dtype), null, 2)}\n`);
}
