/**
 * GPT: a decoder-only transformer in the GPT-2 layout (nanoGPT's module names, so state-dict keys read
 * `wte.weight`, `h.0.attn.c_attn.weight`, `ln_f.bias`, ...).
 *
 * token + learned position embeddings → dropout → N pre-norm blocks
 * `x + attn(ln_1(x))`, `x + mlp(ln_2(x))` → `ln_f` → LM head tied to the token embedding.
 */
import { isFloat } from '../dtype.js';
import { DTypeError, ShapeError, ValueError } from '../errors.js';
import { noGrad, tidy } from '../tensor/context.js';
import { arange, ones, tensor, where, type Tensor } from '../tensor/tensor.js';
import * as F from './functional.js';
import { Dropout, Embedding, LayerNorm, Linear, normalInit } from './layers.js';
import { Module, ModuleList } from './module.js';
import { jit } from '../jit/jit.js';
import { checkpoint } from '../tensor/checkpoint.js';
import { checkSampling, mulberry32, sampleToken } from './sampling.js';
import type { Jitted } from '../jit/jit.js';

/** Hyperparameters of {@link GPT}. */
export interface GPTConfig {
  /** Number of token ids. */
  vocabSize: number;
  /** Longest sequence (number of learned positions). */
  blockSize: number;
  /** Number of transformer blocks. */
  nLayer: number;
  /** Attention heads per block; must divide `nEmbd`. */
  nHead: number;
  /** Model width. */
  nEmbd: number;
  /** Dropout probability on embeddings, attention weights and residual branches (default 0). */
  dropout?: number;
  /** Biases in Linear and LayerNorm layers (default true, as GPT-2). */
  bias?: boolean;
}

/** Options of {@link GPT.generate}. */
export interface GenerateOptions {
  /** Divide the logits by this before sampling (default 1); 0 means greedy (argmax). */
  temperature?: number;
  /** Sample only among the `topK` most likely tokens (default: all). */
  topK?: number;
  /** Seed of the host-side sampler (default 0): equal seeds give equal samples. */
  seed?: number;
}

/** Set `p` to `value` (realized), in place. */
function reinit(p: Tensor, value: Tensor): void {
  noGrad(() => p.assign(value));
  value.dispose();
}

/** Causal multi-head self-attention with one fused q/k/v projection (`c_attn`) and an output projection (`c_proj`). */
export class CausalSelfAttention extends Module {
  readonly cAttn: Linear;
  readonly cProj: Linear;
  readonly attnDropout: Dropout;
  readonly residDropout: Dropout;
  readonly nHead: number;
  readonly nEmbd: number;

  /** @param cfg - a validated GPT config (see {@link GPTConfig}). */
  constructor(cfg: Required<GPTConfig>) {
    super();
    this.nHead = cfg.nHead;
    this.nEmbd = cfg.nEmbd;
    this.cAttn = this.registerModule('c_attn', new Linear(cfg.nEmbd, 3 * cfg.nEmbd, { bias: cfg.bias }));
    this.cProj = this.registerModule('c_proj', new Linear(cfg.nEmbd, cfg.nEmbd, { bias: cfg.bias }));
    this.attnDropout = this.registerModule('attn_dropout', new Dropout(cfg.dropout));
    this.residDropout = this.registerModule('resid_dropout', new Dropout(cfg.dropout));
  }

  /** `x` `[B, T, C]` → `[B, T, C]`; position t attends to positions ≤ t only. */
  forward(x: Tensor): Tensor {
    const [B, T, C] = x.shape as [number, number, number];
    const H = this.nHead;
    const hd = C / H;
    const [q, k, v] = this.cAttn
      .forward(x)
      .split(C, -1)
      .map((t) => t.reshape([B, T, H, hd]).transpose(1, 2)) as [Tensor, Tensor, Tensor];
    let att = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(hd)); // [B, H, T, T]
    const future = ones([T, T], { dtype: 'bool', device: x.device }).triu(1).bool(); // j > i
    att = where(future, -Infinity, att).softmax(-1);
    att = this.attnDropout.forward(att);
    const y = att.matmul(v).transpose(1, 2).reshape([B, T, C]);
    return this.residDropout.forward(this.cProj.forward(y));
  }
}

/** The 4x-wide feed-forward block with GPT-2's tanh GELU. */
export class MLP extends Module {
  readonly cFc: Linear;
  readonly cProj: Linear;
  readonly dropout: Dropout;

  /** @param cfg - a validated GPT config (see {@link GPTConfig}). */
  constructor(cfg: Required<GPTConfig>) {
    super();
    this.cFc = this.registerModule('c_fc', new Linear(cfg.nEmbd, 4 * cfg.nEmbd, { bias: cfg.bias }));
    this.cProj = this.registerModule('c_proj', new Linear(4 * cfg.nEmbd, cfg.nEmbd, { bias: cfg.bias }));
    this.dropout = this.registerModule('dropout', new Dropout(cfg.dropout));
  }

  /** `x` `[B, T, C]` → `[B, T, C]`. */
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.cProj.forward(this.cFc.forward(x).gelu({ approximate: 'tanh' })));
  }
}

/** One pre-norm transformer block. */
export class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: MLP;

  /** @param cfg - a validated GPT config (see {@link GPTConfig}). */
  constructor(cfg: Required<GPTConfig>) {
    super();
    this.ln1 = this.registerModule('ln_1', new LayerNorm(cfg.nEmbd, { bias: cfg.bias }));
    this.attn = this.registerModule('attn', new CausalSelfAttention(cfg));
    this.ln2 = this.registerModule('ln_2', new LayerNorm(cfg.nEmbd, { bias: cfg.bias }));
    this.mlp = this.registerModule('mlp', new MLP(cfg));
  }

  /** `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`; `[B, T, C]` → `[B, T, C]`. */
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.mlp.forward(this.ln2.forward(h)));
  }
}

function checkConfig(cfg: GPTConfig): Required<GPTConfig> {
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) {
    const v = cfg[k];
    if (!Number.isInteger(v) || v <= 0)
      throw new ValueError(`GPT: config.${k} must be a positive integer, got ${v}`);
  }
  if (cfg.nEmbd % cfg.nHead !== 0)
    throw new ValueError(`GPT: nEmbd ${cfg.nEmbd} is not divisible by nHead ${cfg.nHead}`);
  const dropout = cfg.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new ValueError(`GPT: dropout must be in [0, 1), got ${dropout}`);
  return { ...cfg, dropout, bias: cfg.bias ?? true };
}

/**
 * A GPT-2 style language model. Parameters (registered names): `wte` (token embedding, also the LM
 * head: weight tying), `wpe` (positions), `h.<i>` blocks, `ln_f`. Initialisation as GPT-2: every
 * Linear and Embedding weight ~ N(0, 0.02), biases 0, and the residual projections (`attn.c_proj`,
 * `mlp.c_proj`) ~ N(0, 0.02/√(2·nLayer)).
 */
export class GPT extends Module {
  readonly config: Required<GPTConfig>;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<Block>;
  readonly lnF: LayerNorm;
  /**
   * Recompute each block's activations in the backward pass instead of storing them ({@link checkpoint}):
   * activation memory drops from all blocks' to one block's plus the block inputs, for one more forward
   * pass of compute. Off by default; gradients are identical either way.
   */
  checkpointing = false;

  /** @throws ValueError for a non-positive size, `nEmbd % nHead !== 0`, or dropout outside [0, 1). */
  constructor(config: GPTConfig) {
    super();
    const cfg = (this.config = checkConfig(config));
    this.wte = this.registerModule('wte', new Embedding(cfg.vocabSize, cfg.nEmbd, { std: 0.02 }));
    this.wpe = this.registerModule('wpe', new Embedding(cfg.blockSize, cfg.nEmbd, { std: 0.02 }));
    this.drop = this.registerModule('drop', new Dropout(cfg.dropout));
    this.h = this.registerModule(
      'h',
      new ModuleList(Array.from({ length: cfg.nLayer }, () => new Block(cfg))),
    );
    this.lnF = this.registerModule('ln_f', new LayerNorm(cfg.nEmbd, { bias: cfg.bias }));
    const residStd = 0.02 / Math.sqrt(2 * cfg.nLayer);
    for (const [name, m] of this.namedModules()) {
      if (!(m instanceof Linear)) continue;
      const std = name.endsWith('c_proj') ? residStd : 0.02;
      reinit(m.weight, normalInit(m.weight.shape, std));
      if (m.bias)
        reinit(m.bias, tensor(new Float32Array(m.bias.numel), { shape: m.bias.shape, dtype: m.bias.dtype }));
    }
  }

  /**
   * `idx` `[B, T]` integer token ids (T ≤ blockSize) → `logits` `[B, T, vocabSize]`; with `targets`
   * `[B, T]`, also the mean cross-entropy `loss` (targets equal to -100 are ignored).
   *
   * @throws DTypeError for non-integer ids; ShapeError for a wrong rank, T > blockSize, or targets of
   *   another shape.
   */
  forward(idx: Tensor, targets?: Tensor): { logits: Tensor; loss?: Tensor } {
    if (isFloat(idx.dtype) || idx.dtype === 'bool')
      throw new DTypeError(`GPT.forward: idx must be integer token ids, got ${idx.dtype}[${idx.shape}]`);
    if (idx.ndim !== 2) throw new ShapeError(`GPT.forward: idx must have shape [B, T], got [${idx.shape}]`);
    const [B, T] = idx.shape as [number, number];
    if (T > this.config.blockSize)
      throw new ShapeError(`GPT.forward: sequence length ${T} exceeds blockSize ${this.config.blockSize}`);
    if (targets && targets.shape.join() !== idx.shape.join())
      throw new ShapeError(`GPT.forward: targets of shape [${targets.shape}] differ from idx [${idx.shape}]`);
    const pos = arange(T, undefined, 1, { device: idx.device });
    let x = this.wte.forward(idx).add(this.wpe.forward(pos)); // [B, T, C] + [T, C]
    x = this.drop.forward(x);
    for (const block of this.h) x = this.checkpointing ? checkpoint((h: Tensor) => block.forward(h))(x) : block.forward(x);
    x = this.lnF.forward(x);
    const logits = x.matmul(this.wte.weight.T); // weight tying: the head is wteᵀ
    if (!targets) return { logits };
    const V = this.config.vocabSize;
    const loss = F.crossEntropy(logits.reshape([B * T, V]), targets.reshape([B * T]));
    return { logits, loss };
  }

  /**
   * Extend each row of `idx` `[B, T]` by `maxNewTokens` sampled tokens: forward the last `blockSize`
   * tokens, sample the next one on the host from the last position's logits, append, repeat. Runs in
   * eval mode without gradients (the previous mode is restored). Returns a new i32 `[B, T + maxNewTokens]`.
   *
   * @throws ValueError for a negative `maxNewTokens`, negative temperature, or `topK < 1`.
   */
  // The sampling forward pass, compiled once per batch size and replayed for every token; it reads the
  // parameters' buffers, which training and checkpoint loading update in place.
  private genForward: Jitted<Tensor> | undefined;
  private generateForward(input: Tensor): Tensor {
    this.genForward ??= jit((x: Tensor) => this.forward(x).logits);
    return this.genForward(input);
  }

  /**
   * Sample `maxNewTokens` tokens after `idx` ([B, T] i32). Reads logits synchronously (host devices, and
   * WebGPU in Node); in browsers use `generateAsync`.
   */
  generate(idx: Tensor, maxNewTokens: number, opts: GenerateOptions = {}): Tensor {
    const g = this.startGenerate(idx, maxNewTokens, opts, Array.from(idx.dataSync()));
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const logits = g.forward();
        try {
          g.push(logits.dataSync());
        } finally {
          logits.dispose();
        }
      }
    } finally {
      g.finish();
    }
    return g.result();
  }

  /** `generate` with asynchronous reads: works on every device, and leaves the event loop free. */
  async generateAsync(idx: Tensor, maxNewTokens: number, opts: GenerateOptions = {}): Promise<Tensor> {
    const g = this.startGenerate(idx, maxNewTokens, opts, Array.from(await idx.data()));
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const logits = g.forward();
        try {
          g.push(await logits.data());
        } finally {
          logits.dispose();
        }
      }
    } finally {
      g.finish();
    }
    return g.result();
  }

  /** Shared state of one generation: validated options, token rows, and the per-step forward. */
  private startGenerate(idx: Tensor, maxNewTokens: number, opts: GenerateOptions, flat: number[]) {
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
      throw new ValueError(`GPT.generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    const sampling = checkSampling({ temperature: opts.temperature, topK: opts.topK, seed: opts.seed }, 'GPT.generate');
    if (idx.ndim !== 2) throw new ShapeError(`GPT.generate: idx must have shape [B, T], got [${idx.shape}]`);
    const [B, T0] = idx.shape as [number, number];
    if (T0 === 0) throw new ShapeError(`GPT.generate: idx needs at least one token per row`);
    const rows: number[][] = [];
    for (let b = 0; b < B; b++) rows.push(flat.slice(b * T0, (b + 1) * T0));
    const rnd = mulberry32(sampling.seed);
    const wasTraining = this.training;
    this.eval();
    // Every step runs on a full window of blockSize tokens, right-padded: causal attention keeps the
    // padding from affecting position T-1, and one input shape means the kernels compile once.
    const W = this.config.blockSize;
    const V = this.config.vocabSize;
    let T = 0;
    return {
      /** Logits [B, W, V] of the current window (a fresh tensor the caller reads). */
      forward: (): Tensor => {
        T = Math.min(rows[0]!.length, W);
        const ctx = rows.flatMap((r) => [...r.slice(r.length - T), ...new Array<number>(W - T).fill(0)]);
        return tidy(() =>
          noGrad(() => this.generateForward(tensor(ctx, { dtype: 'i32', shape: [B, W], device: idx.device }))),
        );
      },
      /** Sample the next token of every row from the window's logits. */
      push: (all: ArrayLike<number>): void => {
        const a = all as Float32Array;
        for (let b = 0; b < B; b++) {
          const last = Array.from(a.subarray((b * W + T - 1) * V, (b * W + T) * V));
          rows[b]!.push(sampleToken(last, sampling, rnd));
        }
      },
      finish: (): void => {
        this.train(wasTraining);
      },
      result: (): Tensor => tensor(rows.flat(), { dtype: 'i32', shape: [B, T0 + maxNewTokens], device: idx.device }),
    };
  }
}
