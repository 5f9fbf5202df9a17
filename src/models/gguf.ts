/**
 * Language models to and from GGUF, with llama.cpp's tensor names and metadata keys, so that a model
 * trained here runs in llama.cpp and a llama.cpp model runs here. Architectures: 'llama' ({@link Llama})
 * and 'gpt2' ({@link GPT}).
 *
 * Weight layout: a Tessera Linear weight is [out, in] and GGUF stores `ne = [in, out]` (innermost
 * first), which the GGUF reader returns as [out, in]: matrices map without transposes. Rotary
 * embeddings rotate adjacent pairs in both, so q/k projections map as they are.
 */
import { FormatError, ValueError } from '../errors.js';
import type { GGUFFile, GGUFMetadataInput, GGUFTensorInput, GGUFValue } from '../io/gguf.js';
import { openGGUF, writeGGUF } from '../io/gguf.js';
import { GPT } from '../nn/gpt.js';
import type { LlamaConfig } from '../nn/llama.js';
import { Llama } from '../nn/llama.js';
import type { Module } from '../nn/module.js';
import { getDefaultDevice, setDefaultDevice } from '../runtime/registry.js';
import { noGrad } from '../tensor/context.js';
import { realize, tensor } from '../tensor/tensor.js';
import { tokenizerFromGGUFMetadata, toGGUFMetadata } from '../tokenizer/gguf.js';
import type { Tokenizer } from '../tokenizer/types.js';

export type LanguageModel = { arch: 'llama'; model: Llama } | { arch: 'gpt2'; model: GPT };

/** A model read from a GGUF file, with its tokenizer when the file carries one. */
export type LoadedModel = LanguageModel & { tokenizer: Tokenizer | undefined; file: string; name: string | undefined };

/** Storage of exported weight matrices; norms, biases and position tables always stay F32. */
export type ExportType = 'F32' | 'F16' | 'BF16' | 'Q8_0';

const FILE_TYPE: Record<ExportType, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

/** Tessera state-dict key -> llama.cpp tensor name. */
function ggufName(arch: 'llama' | 'gpt2', key: string): string {
  const m = /^(layers|h)\.(\d+)\.(.*)$/.exec(key);
  if (arch === 'llama') {
    if (m) {
      const map: Record<string, string> = {
        'input_layernorm.weight': 'attn_norm.weight',
        'self_attn.q_proj.weight': 'attn_q.weight',
        'self_attn.k_proj.weight': 'attn_k.weight',
        'self_attn.v_proj.weight': 'attn_v.weight',
        'self_attn.o_proj.weight': 'attn_output.weight',
        'post_attention_layernorm.weight': 'ffn_norm.weight',
        'mlp.gate_proj.weight': 'ffn_gate.weight',
        'mlp.up_proj.weight': 'ffn_up.weight',
        'mlp.down_proj.weight': 'ffn_down.weight',
      };
      const t = map[m[3]!];
      if (t) return `blk.${m[2]}.${t}`;
    }
    const top: Record<string, string> = { 'embed_tokens.weight': 'token_embd.weight', 'norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
    if (top[key]) return top[key];
  } else {
    if (m) {
      const [part, kind] = [m[3]!.slice(0, m[3]!.lastIndexOf('.')), m[3]!.slice(m[3]!.lastIndexOf('.') + 1)];
      const map: Record<string, string> = { ln_1: 'attn_norm', 'attn.c_attn': 'attn_qkv', 'attn.c_proj': 'attn_output', ln_2: 'ffn_norm', 'mlp.c_fc': 'ffn_up', 'mlp.c_proj': 'ffn_down' };
      const t = map[part];
      if (t) return `blk.${m[2]}.${t}.${kind}`;
    }
    const top: Record<string, string> = { 'wte.weight': 'token_embd.weight', 'wpe.weight': 'position_embd.weight', 'ln_f.weight': 'output_norm.weight', 'ln_f.bias': 'output_norm.bias' };
    if (top[key]) return top[key];
  }
  throw new ValueError(`GGUF export: no llama.cpp tensor name for parameter '${key}' of a ${arch} model`);
}

/** A numeric metadata value of any integer or float type, or the fallback. */
function num(f: GGUFFile, key: string, fallback?: number): number {
  const v = f.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`${f.label}: metadata key '${key}' is missing`);
  }
  if (v.type === 'array' || v.type === 'string' || v.type === 'bool') throw new FormatError(`${f.label}: metadata key '${key}' holds a ${v.type}, expected a number`);
  return Number(v.value);
}

function str(f: GGUFFile, key: string): string | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'string') throw new FormatError(`${f.label}: metadata key '${key}' holds a ${v.type}, expected a string`);
  return v.value;
}

function llamaConfigOf(f: GGUFFile): LlamaConfig {
  const p = 'llama.';
  const dim = num(f, `${p}embedding_length`);
  const nHead = num(f, `${p}attention.head_count`);
  if (!f.hasTensor('token_embd.weight')) throw new FormatError(`${f.label}: tensor 'token_embd.weight' is missing`);
  const embd = f.tensor('token_embd.weight');
  const cfg: LlamaConfig = {
    vocabSize: num(f, `${p}vocab_size`, embd.shape[0]),
    dim,
    nLayer: num(f, `${p}block_count`),
    nHead,
    nKVHead: num(f, `${p}attention.head_count_kv`, nHead),
    hiddenDim: num(f, `${p}feed_forward_length`),
    maxSeqLen: num(f, `${p}context_length`),
    normEps: num(f, `${p}attention.layer_norm_rms_epsilon`, 1e-5),
    ropeTheta: num(f, `${p}rope.freq_base`, 10000),
    tieEmbeddings: !f.hasTensor('output.weight'),
  };
  const rot = num(f, `${p}rope.dimension_count`, dim / nHead);
  if (rot !== dim / nHead) throw new FormatError(`${f.label}: llama.rope.dimension_count ${rot} differs from the head size ${dim / nHead} (partial rotary embeddings are not supported)`);
  const scaling = str(f, `${p}rope.scaling.type`);
  if (scaling === 'linear') cfg.ropeScaling = { type: 'linear', factor: num(f, `${p}rope.scaling.factor`) };
  else if (scaling !== undefined && scaling !== 'none') throw new FormatError(`${f.label}: llama.rope.scaling.type '${scaling}' is not supported (none, linear)`);
  return cfg;
}

function gpt2Model(f: GGUFFile): GPT {
  const p = 'gpt2.';
  if (!f.hasTensor('token_embd.weight')) throw new FormatError(`${f.label}: tensor 'token_embd.weight' is missing`);
  const embd = f.tensor('token_embd.weight');
  const nEmbd = num(f, `${p}embedding_length`);
  const ff = num(f, `${p}feed_forward_length`, 4 * nEmbd);
  if (ff !== 4 * nEmbd) throw new FormatError(`${f.label}: gpt2.feed_forward_length ${ff} is not 4 x embedding_length (${nEmbd})`);
  return new GPT({ vocabSize: embd.shape[0]!, blockSize: num(f, `${p}context_length`), nLayer: num(f, `${p}block_count`), nHead: num(f, `${p}attention.head_count`), nEmbd });
}

/** Copy every parameter of `model` from the file's tensors, checking names and shapes. */
function loadWeights(f: GGUFFile, arch: 'llama' | 'gpt2', model: Module, device: string | undefined): void {
  const params = model.namedParameters();
  const used = new Set<string>();
  for (const [key, p] of params) {
    const name = ggufName(arch, key);
    if (!f.hasTensor(name)) throw new FormatError(`${f.label}: tensor '${name}' (for ${key}) is missing`);
    const info = f.tensor(name);
    if (info.shape.join() !== p.shape.join())
      throw new FormatError(`${f.label}: tensor '${name}' has shape [${info.shape}], the ${arch} config needs [${p.shape}]`);
    const data = f.readTensorF32(name);
    // Realized one at a time: at most one tensor's host copy is alive besides the loaded weights.
    noGrad(() => p.assign(tensor(data, { shape: p.shape, device })));
    realize(p);
    used.add(name);
  }
  // GPT-2 files may carry the tied head separately; llama.cpp may add non-parameter tensors (rope_freqs).
  const extra = f.tensors.filter((t) => !used.has(t.name) && t.name !== 'output.weight' && t.name !== 'rope_freqs.weight');
  if (extra.length) throw new FormatError(`${f.label}: tensors not used by the ${arch} model: ${extra.slice(0, 5).map((t) => t.name).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
}

/**
 * Read a language model (and its tokenizer) from a GGUF file. Weights of any supported storage type
 * (F32, F16, BF16, Q8_0) are expanded to f32 tensors on `device`.
 *
 * @throws FormatError naming the file and the key or tensor for unsupported architectures, missing or
 *   mistyped metadata, missing tensors, shape mismatches, and corrupt files.
 */
export function loadGGUFModel(path: string, opts: { device?: string } = {}): LoadedModel {
  const f = openGGUF(path);
  try {
    const arch = str(f, 'general.architecture');
    if (arch === undefined) throw new FormatError(`${path}: metadata key 'general.architecture' is missing`);
    if (arch !== 'llama' && arch !== 'gpt2') throw new FormatError(`${path}: architecture '${arch}' is not supported (llama, gpt2)`);
    // Modules create their parameters on the default device: build the model on the requested one.
    const prev = getDefaultDevice();
    let lm: LanguageModel;
    try {
      if (opts.device) setDefaultDevice(opts.device);
      lm = arch === 'llama' ? { arch, model: new Llama(llamaConfigOf(f)) } : { arch, model: gpt2Model(f) };
    } finally {
      setDefaultDevice(prev);
    }
    loadWeights(f, lm.arch, lm.model, opts.device);
    const tokenizer = f.metadata.has('tokenizer.ggml.model') ? tokenizerFromGGUFMetadata(f.metadata, path) : undefined;
    return { ...lm, tokenizer, file: path, name: str(f, 'general.name') };
  } finally {
    f.close();
  }
}

/** Options of {@link exportGGUF}. */
export interface ExportGGUFOptions {
  /** Storage of the weight matrices (default F32). Q8_0 needs rows that are multiples of 32. */
  type?: ExportType;
  /** Tokenizer written as `tokenizer.ggml.*` metadata (needed by llama.cpp to run the model). */
  tokenizer?: Tokenizer;
  /** `general.name`. */
  name?: string;
}

const u32 = (value: number): GGUFMetadataInput => ({ type: 'u32', value });
const f32 = (value: number): GGUFMetadataInput => ({ type: 'f32', value });

/** The architecture metadata llama.cpp reads for a model. */
function archMetadata(lm: LanguageModel): Record<string, GGUFMetadataInput> {
  if (lm.arch === 'llama') {
    const c = lm.model.config;
    const md: Record<string, GGUFMetadataInput> = {
      'llama.context_length': u32(c.maxSeqLen),
      'llama.embedding_length': u32(c.dim),
      'llama.block_count': u32(c.nLayer),
      'llama.feed_forward_length': u32(c.hiddenDim),
      'llama.rope.dimension_count': u32(c.dim / c.nHead),
      'llama.attention.head_count': u32(c.nHead),
      'llama.attention.head_count_kv': u32(c.nKVHead),
      'llama.attention.layer_norm_rms_epsilon': f32(c.normEps),
      'llama.rope.freq_base': f32(c.ropeTheta),
      'llama.vocab_size': u32(c.vocabSize),
    };
    if (c.ropeScaling?.type === 'linear') {
      md['llama.rope.scaling.type'] = 'linear';
      md['llama.rope.scaling.factor'] = f32(c.ropeScaling.factor);
    } else if (c.ropeScaling) throw new ValueError(`GGUF export: rope scaling '${c.ropeScaling.type}' has no llama.cpp metadata here (use linear or none)`);
    return md;
  }
  const c = lm.model.config;
  return {
    'gpt2.context_length': u32(c.blockSize),
    'gpt2.embedding_length': u32(c.nEmbd),
    'gpt2.block_count': u32(c.nLayer),
    'gpt2.feed_forward_length': u32(4 * c.nEmbd),
    'gpt2.attention.head_count': u32(c.nHead),
    'gpt2.attention.layer_norm_epsilon': f32(1e-5),
  };
}

/**
 * Write a model to GGUF (atomically) with llama.cpp's names and metadata for its architecture.
 * Matrices are stored as `opts.type`; 1-D tensors (norms, biases) stay F32, as llama.cpp expects.
 */
export async function exportGGUF(path: string, lm: LanguageModel, opts: ExportGGUFOptions = {}): Promise<void> {
  const type = opts.type ?? 'F32';
  if (!(type in FILE_TYPE)) throw new ValueError(`GGUF export: type must be one of ${Object.keys(FILE_TYPE).join(', ')}, got '${type}'`);
  if (lm.arch === 'gpt2' && lm.model.config.bias === false) throw new ValueError('GGUF export: llama.cpp gpt2 models have biases; this GPT was built with bias: false');
  const metadata: Record<string, GGUFMetadataInput | GGUFValue> = {
    'general.architecture': lm.arch,
    'general.name': opts.name ?? `tessera-${lm.arch}`,
    'general.file_type': u32(FILE_TYPE[type]),
    ...archMetadata(lm),
    ...(opts.tokenizer ? toGGUFMetadata(opts.tokenizer) : {}),
  };
  if (opts.tokenizer && opts.tokenizer.vocabSize !== lm.model.config.vocabSize)
    throw new ValueError(`GGUF export: the tokenizer has ${opts.tokenizer.vocabSize} tokens, the model ${lm.model.config.vocabSize}`);
  const tensors: GGUFTensorInput[] = [];
  for (const [key, p] of lm.model.namedParameters()) {
    const data = Float32Array.from(p.dataSync());
    const matrix = p.ndim === 2;
    const t: ExportType = !matrix ? 'F32' : type === 'Q8_0' && p.shape[1]! % 32 !== 0 ? 'F16' : type;
    tensors.push({ name: ggufName(lm.arch, key), shape: p.shape, type: t, data });
  }
  await writeGGUF(path, { metadata: metadata as Record<string, GGUFMetadataInput>, tensors });
}

/** What `tessera info file.gguf` prints: architecture, sizes, storage types, memory to run it. */
export interface GGUFModelInfo {
  file: string;
  architecture: string;
  name: string | undefined;
  parameters: number;
  tensorTypes: Record<string, number>;
  fileBytes: number;
  /** Bytes of f32 weights once loaded (Tessera expands every type to f32 today). */
  loadedBytes: number;
  /** KV cache bytes for one sequence of the full context (llama: 2 x layers x kv heads x head size x context x 4). */
  kvCacheBytes: number | undefined;
  contextLength: number | undefined;
  tokenizer: string | undefined;
  vocabSize: number | undefined;
}

export function describeGGUFModel(path: string): GGUFModelInfo {
  const f = openGGUF(path);
  try {
    const arch = str(f, 'general.architecture') ?? 'unknown';
    const tensorTypes: Record<string, number> = {};
    let parameters = 0;
    for (const t of f.tensors) {
      tensorTypes[t.typeName] = (tensorTypes[t.typeName] ?? 0) + 1;
      parameters += t.numel;
    }
    let kv: number | undefined;
    let ctx: number | undefined;
    if (arch === 'llama') {
      const c = llamaConfigOf(f);
      ctx = c.maxSeqLen;
      kv = 2 * c.nLayer * (c.nKVHead ?? c.nHead) * (c.dim / c.nHead) * c.maxSeqLen * 4;
    } else if (arch === 'gpt2') {
      ctx = num(f, 'gpt2.context_length');
      kv = 2 * num(f, 'gpt2.block_count') * num(f, 'gpt2.embedding_length') * ctx * 4;
    }
    const tokens = f.metadata.get('tokenizer.ggml.tokens');
    return {
      file: path,
      architecture: arch,
      name: str(f, 'general.name'),
      parameters,
      tensorTypes,
      fileBytes: f.size,
      loadedBytes: parameters * 4,
      kvCacheBytes: kv,
      contextLength: ctx,
      tokenizer: str(f, 'tokenizer.ggml.model'),
      vocabSize: tokens && tokens.type === 'array' ? tokens.value.length : undefined,
    };
  } finally {
    f.close();
  }
}
