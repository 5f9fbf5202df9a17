/**
 * Basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, GELU. Parameter names and default
 * initialisations follow PyTorch.
 */
import type { DType } from '../dtype.js';
import { ValueError } from '../errors.js';
import { ones, rand, randn, zeros, type Tensor } from '../tensor/tensor.js';
import * as F from './functional.js';
import { Module } from './module.js';

function checkPositiveInt(what: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0)
    throw new ValueError(`${what}: ${name} must be a positive integer, got ${v}`);
}

/** Uniform samples in [-bound, bound), realized. */
export function uniformInit(shape: readonly number[], bound: number, dtype: DType = 'f32'): Tensor {
  return rand(shape)
    .mul(2 * bound)
    .sub(bound)
    .cast(dtype)
    .realize();
}

/** Normal samples with mean 0 and standard deviation `std`, realized. */
export function normalInit(shape: readonly number[], std: number, dtype: DType = 'f32'): Tensor {
  return randn(shape).mul(std).cast(dtype).realize();
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Learn an additive bias (default true). */
  bias?: boolean;
  /** Parameter dtype (default f32). */
  dtype?: DType;
}

/**
 * `y = x @ weightᵀ + bias` with `weight` `[out, in]` and `bias` `[out]`. PyTorch's default init:
 * both uniform in `[-1/√in, 1/√in)`.
 */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | undefined;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    checkPositiveInt('Linear', 'inFeatures', inFeatures);
    checkPositiveInt('Linear', 'outFeatures', outFeatures);
    const bound = 1 / Math.sqrt(inFeatures);
    const dtype = opts.dtype ?? 'f32';
    this.weight = this.registerParameter('weight', uniformInit([outFeatures, inFeatures], bound, dtype));
    this.bias =
      (opts.bias ?? true)
        ? this.registerParameter('bias', uniformInit([outFeatures], bound, dtype))
        : undefined;
  }

  /** `x` `[..., in]` → `[..., out]`. */
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** Options of {@link Embedding}. */
export interface EmbeddingOptions {
  /** Standard deviation of the normal init (default 1, PyTorch's N(0, 1)). */
  std?: number;
  /** Parameter dtype (default f32). */
  dtype?: DType;
}

/** A lookup table `weight` `[numEmbeddings, dim]`; `forward(indices [...]) -> [..., dim]`. */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: EmbeddingOptions = {},
  ) {
    super();
    checkPositiveInt('Embedding', 'numEmbeddings', numEmbeddings);
    checkPositiveInt('Embedding', 'embeddingDim', embeddingDim);
    this.weight = this.registerParameter(
      'weight',
      normalInit([numEmbeddings, embeddingDim], opts.std ?? 1, opts.dtype ?? 'f32'),
    );
  }

  /** Integer `indices` `[...]` → `[..., embeddingDim]`. */
  forward(indices: Tensor): Tensor {
    return F.embedding(indices, this.weight);
  }
}

/** Options of {@link LayerNorm} and {@link RMSNorm}. */
export interface NormOptions {
  /** Added to the variance (LayerNorm default 1e-5, RMSNorm default 1e-6). */
  eps?: number;
  /** Learn a per-element scale (and, for LayerNorm, a shift). Default true. */
  elementwiseAffine?: boolean;
  /** LayerNorm only: learn the shift `bias` (default true; GPT configs with `bias: false` turn it off). */
  bias?: boolean;
  /** Parameter dtype (default f32). */
  dtype?: DType;
}

function normShape(what: string, s: number | readonly number[]): number[] {
  const ns = typeof s === 'number' ? [s] : [...s];
  if (ns.length === 0) throw new ValueError(`${what}: normalizedShape must not be empty`);
  for (const d of ns) checkPositiveInt(what, 'normalizedShape entries', d);
  return ns;
}

/** Layer normalisation over the trailing `normalizedShape` axes; `weight` = 1, `bias` = 0 initially. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;
  readonly weight: Tensor | undefined;
  readonly bias: Tensor | undefined;

  /** @throws ValueError for an empty shape or non-positive sizes. */
  constructor(normalizedShape: number | readonly number[], opts: NormOptions = {}) {
    super();
    this.normalizedShape = normShape('LayerNorm', normalizedShape);
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    const dtype = opts.dtype ?? 'f32';
    this.weight = affine
      ? this.registerParameter('weight', ones(this.normalizedShape, { dtype }))
      : undefined;
    this.bias =
      affine && (opts.bias ?? true)
        ? this.registerParameter('bias', zeros(this.normalizedShape, { dtype }))
        : undefined;
  }

  /** Normalize `x` `[..., ...normalizedShape]`; same shape out. */
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

/** RMS normalisation over the trailing `normalizedShape` axes; `weight` = 1 initially. */
export class RMSNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;
  readonly weight: Tensor | undefined;

  /** @throws ValueError for an empty shape or non-positive sizes. */
  constructor(normalizedShape: number | readonly number[], opts: NormOptions = {}) {
    super();
    this.normalizedShape = normShape('RMSNorm', normalizedShape);
    this.eps = opts.eps ?? 1e-6;
    this.weight =
      (opts.elementwiseAffine ?? true)
        ? this.registerParameter('weight', ones(this.normalizedShape, { dtype: opts.dtype ?? 'f32' }))
        : undefined;
  }

  /** Normalize `x` `[..., ...normalizedShape]`; same shape out. */
  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.normalizedShape, this.weight, this.eps);
  }
}

/** Inverted dropout with probability `p`, active only in training mode. */
export class Dropout extends Module {
  /** @throws ValueError if `p` is outside [0, 1). */
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new ValueError(`Dropout: probability p must be in [0, 1), got ${p}`);
  }

  /** Dropout in training mode, identity in eval mode. */
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
}

/** GELU activation; `approximate: 'tanh'` is GPT-2's form. */
export class GELU extends Module {
  /** @param approximate - `'tanh'` for GPT-2's approximation, `'none'` (default) for the exact erf form. */
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }

  /** Elementwise GELU. */
  forward(x: Tensor): Tensor {
    return F.gelu(x, this.approximate);
  }
}
