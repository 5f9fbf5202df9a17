/**
 * Llama: a decoder-only transformer in the Llama layout — RMSNorm pre-norm blocks, rotary position
 * embeddings, SwiGLU feed-forward, grouped-query attention, no biases. Module names follow Hugging Face
 * (`embed_tokens`, `layers.<i>.self_attn.q_proj`, `mlp.gate_proj`, `norm`, `lm_head`), so checkpoints
 * map key for key; GGUF files map through llama.cpp's tensor names.
 *
 * Rotary embeddings rotate adjacent pairs (x[2i], x[2i+1]), as llama.cpp and Meta's reference do; Hugging
 * Face checkpoints (rotate-half convention) have their q/k projection rows permuted on load.
 *
 * Decoding uses a preallocated {@link KVCache}: a step writes its keys and values at positions
 * [pos, pos + T) of the cache and attends to every cached position ≤ its own, with `pos` a device tensor
 * so that one jitted step serves every position.
 */
import { checkpoint } from '../tensor/checkpoint.js';
import { isFloat } from '../dtype.js';
import { DTypeError, ShapeError, ValueError } from '../errors.js';
import { jit, type Jitted } from '../jit/jit.js';
import { noGrad } from '../tensor/context.js';
import { arange, cat, realize, tensor, where, zeros, type Tensor } from '../tensor/tensor.js';
import * as F from './functional.js';
import { Embedding, Linear, normalInit, RMSNorm } from './layers.js';
import { Module, ModuleList } from './module.js';
import type { SamplingOptions } from './sampling.js';
import { checkSampling, mulberry32, sampleToken } from './sampling.js';

/** Rotary frequency scaling, as in Hugging Face's `rope_scaling`. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number };

/** Hyperparameters of {@link Llama}. */
export interface LlamaConfig {
  vocabSize: number;
  /** Model width. */
  dim: number;
  nLayer: number;
  nHead: number;
  /** Key/value heads (grouped-query attention); must divide nHead. Default nHead. */
  nKVHead?: number;
  /** Width of the SwiGLU feed-forward. */
  hiddenDim: number;
  /** Longest context (positions of the rotary tables and the KV cache). */
  maxSeqLen: number;
  /** RMSNorm epsilon (default 1e-5). */
  normEps?: number;
  /** Rotary base (default 10000). */
  ropeTheta?: number;
  ropeScaling?: RopeScaling;
  /** The LM head shares the token embedding (default false). */
  tieEmbeddings?: boolean;
}

export type ResolvedLlamaConfig = Required<Omit<LlamaConfig, 'ropeScaling'>> & { ropeScaling?: RopeScaling };

export function checkLlamaConfig(c: LlamaConfig): ResolvedLlamaConfig {
  for (const k of ['vocabSize', 'dim', 'nLayer', 'nHead', 'hiddenDim', 'maxSeqLen'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new ValueError(`Llama: config.${k} must be a positive integer, got ${c[k]}`);
  }
  const nKVHead = c.nKVHead ?? c.nHead;
  if (!Number.isInteger(nKVHead) || nKVHead <= 0 || c.nHead % nKVHead !== 0)
    throw new ValueError(`Llama: config.nKVHead ${c.nKVHead} must be a positive divisor of nHead ${c.nHead}`);
  if (c.dim % c.nHead !== 0) throw new ValueError(`Llama: dim ${c.dim} is not divisible by nHead ${c.nHead}`);
  if ((c.dim / c.nHead) % 2 !== 0) throw new ValueError(`Llama: head size ${c.dim / c.nHead} must be even (rotary pairs)`);
  const normEps = c.normEps ?? 1e-5;
  const ropeTheta = c.ropeTheta ?? 10000;
  if (!(normEps > 0)) throw new ValueError(`Llama: normEps must be > 0, got ${c.normEps}`);
  if (!(ropeTheta > 1)) throw new ValueError(`Llama: ropeTheta must be > 1, got ${c.ropeTheta}`);
  if (c.ropeScaling && !(c.ropeScaling.factor > 0)) throw new ValueError(`Llama: ropeScaling.factor must be > 0, got ${c.ropeScaling.factor}`);
  return { ...c, nKVHead, normEps, ropeTheta, tieEmbeddings: c.tieEmbeddings ?? false, ropeScaling: c.ropeScaling };
}

/** Inverse frequency of each rotary pair (head size `hd`), with the configured scaling. */
export function ropeInvFreq(hd: number, theta: number, scaling?: RopeScaling): Float64Array {
  const f = Float64Array.from({ length: hd / 2 }, (_, i) => 1 / theta ** ((2 * i) / hd));
  if (!scaling) return f;
  if (scaling.type === 'linear') return f.map((x) => x / scaling.factor);
  // Llama 3.1: long wavelengths scaled by `factor`, short ones kept, smooth in between.
  const { factor, lowFreqFactor, highFreqFactor, originalContext } = scaling;
  const lowWave = originalContext / lowFreqFactor;
  const highWave = originalContext / highFreqFactor;
  return f.map((x) => {
    const wave = (2 * Math.PI) / x;
    if (wave < highWave) return x;
    if (wave > lowWave) return x / factor;
    const smooth = (originalContext / wave - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (x / factor) + smooth * x;
  });
}

/** cos and sin of every (position, pair) angle: two `[maxT, hd/2]` f32 tables, computed in float64. */
export function ropeTables(maxT: number, hd: number, theta: number, scaling?: RopeScaling): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(hd, theta, scaling);
  const half = hd / 2;
  const cos = new Float32Array(maxT * half);
  const sin = new Float32Array(maxT * half);
  for (let p = 0; p < maxT; p++) {
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * inv[i]!);
      sin[p * half + i] = Math.sin(p * inv[i]!);
    }
  }
  return { cos, sin };
}

/** Rotate adjacent pairs of `x` `[B, H, T, hd]` by angles with cos/sin `[T, hd/2]`. */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, H, T, hd] = x.shape as [number, number, number, number];
  const pairs = x.reshape([B, H, T, hd / 2, 2]);
  const x0 = pairs.narrow(4, 0, 1);
  const x1 = pairs.narrow(4, 1, 1);
  const c = cos.reshape([T, hd / 2, 1]);
  const s = sin.reshape([T, hd / 2, 1]);
  return cat([x0.mul(c).sub(x1.mul(s)), x0.mul(s).add(x1.mul(c))], 4).reshape([B, H, T, hd]);
}

/** Preallocated keys and values of every layer: `[B, nKVHead, maxT, headDim]` each. */
export class KVCache {
  readonly k: Tensor[];
  readonly v: Tensor[];
  /** Positions filled so far (host-side bookkeeping of the caller's decode loop). */
  length = 0;

  constructor(
    readonly batch: number,
    readonly maxT: number,
    cfg: ResolvedLlamaConfig,
    device?: string,
  ) {
    const hd = cfg.dim / cfg.nHead;
    const shape = [batch, cfg.nKVHead, maxT, hd];
    const make = (kind: string) => (_: unknown, i: number) => zeros(shape, { device }).realize().setMemoryOwner('kv-cache', `kv.${kind}.${i}`);
    this.k = Array.from({ length: cfg.nLayer }, make('k'));
    this.v = Array.from({ length: cfg.nLayer }, make('v'));
  }

  /** Bytes held by the cache. */
  get bytes(): number {
    return [...this.k, ...this.v].reduce((s, t) => s + t.numel * 4, 0);
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}

/** Where a forward pass sits in the cache: tensors derived from the start position. */
interface Positions {
  /** cos/sin of the step's positions, `[T, hd/2]`. */
  cos: Tensor;
  sin: Tensor;
  /** `[maxT, T]` one-hot: cache row r takes the step's token t when r = pos + t. */
  place?: Tensor;
  /** `[maxT, 1]` rows written by this step. */
  written?: Tensor;
  /** `[T, Tk]` key positions each query may attend to. */
  allowed: Tensor;
}

export class LlamaAttention extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly oProj: Linear;

  constructor(readonly cfg: ResolvedLlamaConfig) {
    super();
    const hd = cfg.dim / cfg.nHead;
    this.qProj = this.registerModule('q_proj', new Linear(cfg.dim, cfg.nHead * hd, { bias: false }));
    this.kProj = this.registerModule('k_proj', new Linear(cfg.dim, cfg.nKVHead * hd, { bias: false }));
    this.vProj = this.registerModule('v_proj', new Linear(cfg.dim, cfg.nKVHead * hd, { bias: false }));
    this.oProj = this.registerModule('o_proj', new Linear(cfg.nHead * hd, cfg.dim, { bias: false }));
  }

  forward(x: Tensor, pos: Positions, cache?: { k: Tensor; v: Tensor }): { y: Tensor; k?: Tensor; v?: Tensor } {
    const [B, T] = x.shape as [number, number, number];
    const { nHead: H, nKVHead: KV } = this.cfg;
    const hd = this.cfg.dim / H;
    const heads = (t: Tensor, n: number) => t.reshape([B, T, n, hd]).transpose(1, 2);
    const q = applyRope(heads(this.qProj.forward(x), H), pos.cos, pos.sin);
    let k = applyRope(heads(this.kProj.forward(x), KV), pos.cos, pos.sin);
    let v = heads(this.vProj.forward(x), KV);
    if (cache) {
      // Write this step's keys/values at their positions; every other row keeps the cached value.
      k = where(pos.written!, pos.place!.matmul(k), cache.k);
      v = where(pos.written!, pos.place!.matmul(v), cache.v);
    }
    const Tk = k.shape[2]!;
    const rep = H / KV;
    const expand = (t: Tensor) => (rep === 1 ? t : t.reshape([B, KV, 1, Tk, hd]).expand([B, KV, rep, Tk, hd]).reshape([B, H, Tk, hd]));
    let att = q.matmul(expand(k).transpose(-1, -2)).mul(1 / Math.sqrt(hd)); // [B, H, T, Tk]
    att = where(pos.allowed, att, -Infinity).softmax(-1);
    const y = att.matmul(expand(v)).transpose(1, 2).reshape([B, T, H * hd]);
    return { y: this.oProj.forward(y), k: cache ? k : undefined, v: cache ? v : undefined };
  }
}

export class LlamaMLP extends Module {
  readonly gateProj: Linear;
  readonly upProj: Linear;
  readonly downProj: Linear;

  constructor(cfg: ResolvedLlamaConfig) {
    super();
    this.gateProj = this.registerModule('gate_proj', new Linear(cfg.dim, cfg.hiddenDim, { bias: false }));
    this.upProj = this.registerModule('up_proj', new Linear(cfg.dim, cfg.hiddenDim, { bias: false }));
    this.downProj = this.registerModule('down_proj', new Linear(cfg.hiddenDim, cfg.dim, { bias: false }));
  }

  /** SwiGLU: down(silu(gate(x)) · up(x)). */
  forward(x: Tensor): Tensor {
    // Each product stored on its own: fused together (two accumulators in one loop) they would run as a
    // plain reduction, not the GEMM, which costs batched decoding and prefill several times over.
    const gate = this.gateProj.forward(x).contiguous();
    const up = this.upProj.forward(x).contiguous();
    return this.downProj.forward(gate.silu().mul(up));
  }
}

export class LlamaBlock extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: LlamaMLP;

  constructor(cfg: ResolvedLlamaConfig) {
    super();
    this.inputLayernorm = this.registerModule('input_layernorm', new RMSNorm(cfg.dim, { eps: cfg.normEps }));
    this.selfAttn = this.registerModule('self_attn', new LlamaAttention(cfg));
    this.postAttentionLayernorm = this.registerModule('post_attention_layernorm', new RMSNorm(cfg.dim, { eps: cfg.normEps }));
    this.mlp = this.registerModule('mlp', new LlamaMLP(cfg));
  }

  forward(x: Tensor, pos: Positions, cache?: { k: Tensor; v: Tensor }): { h: Tensor; k?: Tensor; v?: Tensor } {
    const a = this.selfAttn.forward(this.inputLayernorm.forward(x), pos, cache);
    const h = x.add(a.y);
    return { h: h.add(this.mlp.forward(this.postAttentionLayernorm.forward(h))), k: a.k, v: a.v };
  }
}

/** Options of {@link Llama.generate}. */
export interface LlamaGenerateOptions extends SamplingOptions {
  /** Tokens to generate at most (default 32). */
  maxNewTokens?: number;
  /** Token ids that end a sequence (not included in the output). */
  stopTokens?: readonly number[];
  /** Called with each new token of row 0 as it is sampled; return false to stop. */
  onToken?: (id: number) => boolean | void;
}

/**
 * A Llama-architecture language model. Initialisation: weights ~ N(0, 0.02), residual projections
 * (`o_proj`, `down_proj`) ~ N(0, 0.02/√(2·nLayer)), norms 1.
 */
export class Llama extends Module {
  readonly config: ResolvedLlamaConfig;
  readonly embedTokens: Embedding;
  readonly layers: ModuleList<LlamaBlock>;
  readonly norm: RMSNorm;
  readonly lmHead: Linear | undefined;
  /** Recompute each block's activations in the backward pass instead of storing them (see {@link checkpoint}). */
  checkpointing = false;
  private readonly cosTable: Float32Array;
  private readonly sinTable: Float32Array;
  private stepFns = new Map<string, Jitted<Tensor>>();

  constructor(config: LlamaConfig) {
    super();
    const cfg = (this.config = checkLlamaConfig(config));
    this.embedTokens = this.registerModule('embed_tokens', new Embedding(cfg.vocabSize, cfg.dim, { std: 0.02 }));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: cfg.nLayer }, () => new LlamaBlock(cfg))));
    this.norm = this.registerModule('norm', new RMSNorm(cfg.dim, { eps: cfg.normEps }));
    this.lmHead = cfg.tieEmbeddings ? undefined : this.registerModule('lm_head', new Linear(cfg.dim, cfg.vocabSize, { bias: false }));
    const residStd = 0.02 / Math.sqrt(2 * cfg.nLayer);
    for (const [name, m] of this.namedModules()) {
      if (!(m instanceof Linear)) continue;
      const value = normalInit(m.weight.shape, name.endsWith('o_proj') || name.endsWith('down_proj') ? residStd : 0.02);
      noGrad(() => m.weight.assign(value));
      value.dispose();
    }
    const t = ropeTables(cfg.maxSeqLen, cfg.dim / cfg.nHead, cfg.ropeTheta, cfg.ropeScaling);
    this.cosTable = t.cos;
    this.sinTable = t.sin;
  }

  get headDim(): number {
    return this.config.dim / this.config.nHead;
  }

  private checkIds(idx: Tensor, who: string): [number, number] {
    if (isFloat(idx.dtype) || idx.dtype === 'bool') throw new DTypeError(`${who}: idx must be integer token ids, got ${idx.dtype}[${idx.shape}]`);
    if (idx.ndim !== 2) throw new ShapeError(`${who}: idx must have shape [B, T], got [${idx.shape}]`);
    return idx.shape as [number, number];
  }

  private logits(x: Tensor): Tensor {
    x = this.norm.forward(x);
    return this.lmHead ? this.lmHead.forward(x) : x.matmul(this.embedTokens.weight.T);
  }

  /**
   * `idx` `[B, T]` (T ≤ maxSeqLen) → `logits` `[B, T, vocabSize]`, positions 0..T-1, causal; with
   * `targets`, also the mean cross-entropy `loss` (-100 ignored). No cache: for training and scoring.
   */
  forward(idx: Tensor, targets?: Tensor): { logits: Tensor; loss?: Tensor } {
    const [B, T] = this.checkIds(idx, 'Llama.forward');
    if (T > this.config.maxSeqLen) throw new ShapeError(`Llama.forward: sequence length ${T} exceeds maxSeqLen ${this.config.maxSeqLen}`);
    if (targets && targets.shape.join() !== idx.shape.join()) throw new ShapeError(`Llama.forward: targets of shape [${targets.shape}] differ from idx [${idx.shape}]`);
    const half = this.headDim / 2;
    const device = idx.device;
    const pos: Positions = {
      cos: tensor(this.cosTable.subarray(0, T * half), { shape: [T, half], device }),
      sin: tensor(this.sinTable.subarray(0, T * half), { shape: [T, half], device }),
      allowed: arange(T, undefined, 1, { device }).reshape([1, T]).le(arange(T, undefined, 1, { device }).reshape([T, 1])),
    };
    let x = this.embedTokens.forward(idx);
    for (const layer of this.layers) x = this.checkpointing ? checkpoint((h: Tensor) => layer.forward(h, pos).h)(x) : layer.forward(x, pos).h;
    const logits = this.logits(x);
    if (!targets) return { logits };
    const V = this.config.vocabSize;
    return { logits, loss: F.crossEntropy(logits.reshape([B * T, V]), targets.reshape([B * T])) };
  }

  /** A KV cache for `batch` sequences of up to `maxT` positions (default maxSeqLen) on `device`. */
  createCache(batch: number, maxT = this.config.maxSeqLen, device?: string): KVCache {
    if (!(Number.isInteger(maxT) && maxT > 0 && maxT <= this.config.maxSeqLen))
      throw new ValueError(`Llama.createCache: maxT must be in [1, ${this.config.maxSeqLen}], got ${maxT}`);
    return new KVCache(batch, maxT, this.config, device);
  }

  /**
   * One cached step: the tokens `idx` `[B, T]` sit at positions [pos, pos + T) (`pos`: a one-element
   * i32 tensor, so a jitted step serves every position). Writes their keys and values into `cache`
   * (in place, at the next realize) and returns the logits of the last position, `[B, vocabSize]`.
   */
  forwardCached(idx: Tensor, pos: Tensor, cache: KVCache): Tensor {
    const [B, T] = this.checkIds(idx, 'Llama.forwardCached');
    if (B !== cache.batch) throw new ShapeError(`Llama.forwardCached: batch ${B} differs from the cache's ${cache.batch}`);
    const maxT = cache.maxT;
    const half = this.headDim / 2;
    const device = idx.device;
    const rows = arange(maxT, undefined, 1, { dtype: 'i32', device }).reshape([maxT, 1]);
    const steps = pos.reshape([1, 1]).add(arange(T, undefined, 1, { dtype: 'i32', device }).reshape([1, T])); // [1, T]
    const place = rows.eq(steps).float(); // [maxT, T]
    const table = (t: Float32Array) => tensor(t.subarray(0, maxT * half), { shape: [maxT, half], device });
    const positions: Positions = {
      // Gather the step's rows of the rotary tables with the one-hot placement.
      cos: place.T.matmul(table(this.cosTable)),
      sin: place.T.matmul(table(this.sinTable)),
      place,
      written: place.sum(1, true).gt(0),
      allowed: rows.reshape([1, maxT]).le(steps.reshape([T, 1])),
    };
    let x = this.embedTokens.forward(idx);
    let i = 0;
    for (const layer of this.layers) {
      const r = layer.forward(x, positions, { k: cache.k[i]!, v: cache.v[i]! });
      cache.k[i]!.assign(r.k!);
      cache.v[i]!.assign(r.v!);
      x = r.h;
      i++;
    }
    const last = x.narrow(1, T - 1, 1).reshape([B, this.config.dim]);
    return this.logits(last);
  }

  /** `forwardCached` realized together with the cache updates (one schedule). */
  private step(idx: Tensor, pos: Tensor, cache: KVCache): Tensor {
    const logits = noGrad(() => this.forwardCached(idx, pos, cache));
    realize(logits, ...cache.k, ...cache.v);
    return logits;
  }

  /**
   * Continue each row of `prompt` (token ids, all rows the same length): batched prefill of the prompt
   * into a KV cache, then one jitted decode step per token, sampling on the host. Returns the new tokens
   * of each row (stopping at a stop token, which is not included).
   */
  generate(prompt: readonly (readonly number[])[], opts: LlamaGenerateOptions = {}): number[][] {
    const sampling = checkSampling(opts, 'Llama.generate');
    const maxNew = opts.maxNewTokens ?? 32;
    if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new ValueError(`Llama.generate: maxNewTokens must be a non-negative integer, got ${opts.maxNewTokens}`);
    const B = prompt.length;
    const T0 = prompt[0]?.length ?? 0;
    if (B === 0 || T0 === 0) throw new ShapeError('Llama.generate: the prompt needs at least one row with at least one token');
    if (prompt.some((r) => r.length !== T0)) throw new ShapeError('Llama.generate: prompt rows must have equal lengths');
    const V = this.config.vocabSize;
    for (const r of prompt) for (const t of r) if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new ValueError(`Llama.generate: token id ${t} is outside [0, ${V})`);
    if (T0 > this.config.maxSeqLen) throw new ShapeError(`Llama.generate: prompt of ${T0} tokens exceeds maxSeqLen ${this.config.maxSeqLen}`);
    const device = this.embedTokens.weight.device;
    const cache = this.createCache(B, this.config.maxSeqLen, device);
    const wasTraining = this.training;
    this.eval();
    const rnd = mulberry32(sampling.seed);
    const out: number[][] = prompt.map(() => []);
    // The history is only read by the repetition penalty: skip building it per token otherwise.
    const history = (b: number) => (sampling.repetitionPenalty !== 1 ? [...prompt[b]!, ...out[b]!] : undefined);
    const done = new Array<boolean>(B).fill(false);
    const stops = new Set(opts.stopTokens ?? []);
    try {
      let logits = this.step(tensor(prompt.flat(), { dtype: 'i32', shape: [B, T0], device }), tensor([0], { dtype: 'i32', device }), cache);
      const key = `${B}`;
      let decode = this.stepFns.get(key);
      if (!decode) this.stepFns.set(key, (decode = jit((idx: Tensor, pos: Tensor) => this.step(idx, pos, cache))));
      for (let n = 0; n < maxNew; n++) {
        const rowsLogits = logits.dataSync();
        logits.dispose();
        const next: number[] = [];
        for (let b = 0; b < B; b++) {
          const id = sampleToken(rowsLogits.subarray(b * V, (b + 1) * V), sampling, rnd, history(b));
          next.push(id);
          if (done[b]) continue;
          if (stops.has(id)) done[b] = true;
          else out[b]!.push(id);
        }
        if (!done[0] && opts.onToken && opts.onToken(next[0]!) === false) done[0] = true;
        // The token sampled now sits at position T0 + n: it needs a free cache row to be fed back.
        if (done.every((d) => d) || n + 1 >= maxNew || T0 + n >= this.config.maxSeqLen) break;
        logits = decode(tensor(next, { dtype: 'i32', shape: [B, 1], device }), tensor([T0 + n], { dtype: 'i32', device }));
      }
    } finally {
      // The jitted step captured this cache's buffers: it cannot serve another generation.
      this.stepFns.delete(`${B}`);
      cache.dispose();
      this.train(wasTraining);
    }
    return out;
  }
}
