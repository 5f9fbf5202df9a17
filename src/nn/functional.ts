/**
 * Stateless neural-network functions (PyTorch's `torch.nn.functional`), written in terms of the lazy
 * Tensor API so that their gradients come from the primitive derivative rules and fuse with the rest of
 * a training step. Every function validates its inputs eagerly and throws a typed error naming the
 * shapes or dtypes it found.
 */
import { isFloat } from '../dtype.js';
import { DTypeError, ShapeError, ValueError } from '../errors.js';
import { autocastDType } from '../tensor/autocast.js';
import { gatherRows, oneHot, rand, upcastUnderAutocast, where, type Tensor } from '../tensor/tensor.js';

/** How a loss combines its per-element values: `'mean'` (default), `'sum'`, or `'none'` (no reduction). */
export type Reduction = 'mean' | 'sum' | 'none';

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Targets equal to this value contribute nothing and are not counted by `'mean'`. Default -100. */
  ignoreIndex?: number;
  /** ε in [0, 1]: the target distribution is (1-ε)·onehot + ε/C. Default 0. */
  labelSmoothing?: number;
  /** Default `'mean'`: the average over non-ignored targets. */
  reduction?: Reduction;
}

function isIntDType(t: Tensor): boolean {
  return !isFloat(t.dtype) && t.dtype !== 'bool';
}

function requireFloat(what: string, name: string, t: Tensor): void {
  if (!isFloat(t.dtype))
    throw new DTypeError(`${what}: ${name} must be a floating-point tensor, got ${t.dtype}[${t.shape}]`);
}

function checkReduction(what: string, r: unknown): Reduction {
  if (r !== 'mean' && r !== 'sum' && r !== 'none') {
    throw new ValueError(`${what}: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(r)}`);
  }
  return r;
}

/**
 * Cross-entropy between unnormalised `logits` of shape `[..., C]` (classes on the LAST axis) and
 * integer class indices `target` of shape `[...]`, with PyTorch's semantics:
 *
 * - per element: `loss = (1-ε)·(-log p[target]) + ε·mean_c(-log p[c])` where `p = softmax(logits)`;
 * - elements whose target equals `ignoreIndex` have loss 0 and are excluded from the `'mean'`
 *   denominator (all ignored gives NaN for `'mean'`, as in PyTorch);
 * - `'none'` returns the per-element losses of shape `[...]` (0 at ignored positions).
 *
 * A target outside `[0, C)` that is not `ignoreIndex` is not detected (it would cost a device read);
 * its NLL term is 0.
 *
 * @throws DTypeError if logits are not floating point or target is not an integer tensor.
 * @throws ShapeError if `target.shape` is not `logits.shape` without its last axis.
 * @throws ValueError for a label smoothing outside [0, 1] or an unknown reduction.
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const eps = opts.labelSmoothing ?? 0;
  const reduction = checkReduction('crossEntropy', opts.reduction ?? 'mean');
  requireFloat('crossEntropy', 'logits', logits);
  if (!isIntDType(target))
    throw new DTypeError(
      `crossEntropy: target must be an integer tensor of class indices, got ${target.dtype}[${target.shape}]`,
    );
  if (logits.ndim < 1)
    throw new ShapeError(`crossEntropy: logits need a class axis, got shape [${logits.shape}]`);
  const C = logits.shape[logits.ndim - 1]!;
  const lead = logits.shape.slice(0, -1);
  if (target.shape.join() !== lead.join() || target.ndim !== lead.length) {
    throw new ShapeError(
      `crossEntropy: target of shape [${target.shape}] does not match logits of shape [${logits.shape}] (expected target shape [${lead}], classes on the last axis)`,
    );
  }
  if (!(eps >= 0 && eps <= 1))
    throw new ValueError(`crossEntropy: labelSmoothing must be in [0, 1], got ${eps}`);
  if (!Number.isInteger(ignoreIndex))
    throw new ValueError(`crossEntropy: ignoreIndex must be an integer, got ${ignoreIndex}`);

  const logp = logits.logSoftmax(-1);
  const tgt = target.cast('i32');
  const valid = tgt.ne(ignoreIndex); // bool [...]
  const picked = logp.mul(oneHot(tgt, C).cast(logp.dtype)).sum(-1); // log p[target] (0 out of range)
  let perElem = picked.neg();
  if (eps > 0) perElem = perElem.mul(1 - eps).add(logp.mean(-1).neg().mul(eps)); // + ε·mean_c(-log p[c])
  // ignoreIndex may be a valid class (e.g. 0), so mask explicitly.
  perElem = where(valid, perElem, 0);
  if (reduction === 'none') return perElem;
  const total = perElem.sum();
  if (reduction === 'sum') return total;
  return total.div(valid.sum().cast(logp.dtype));
}

/** Mean squared error `(input - target)²`, reduced like PyTorch's `F.mse_loss`. */
export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  const reduction = checkReduction('mseLoss', opts.reduction ?? 'mean');
  requireFloat('mseLoss', 'input', input);
  if (input.shape.join() !== target.shape.join() || input.ndim !== target.ndim) {
    throw new ShapeError(
      `mseLoss: input of shape [${input.shape}] and target of shape [${target.shape}] differ`,
    );
  }
  const d = input.sub(target);
  const sq = d.mul(d);
  return reduction === 'none' ? sq : reduction === 'sum' ? sq.sum() : sq.mean();
}

function normAxes(what: string, x: Tensor, normalizedShape: number | readonly number[]): number[] {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  if (ns.length === 0) throw new ShapeError(`${what}: normalizedShape must have at least one dimension`);
  const tail = x.shape.slice(x.ndim - ns.length);
  if (ns.length > x.ndim || tail.join() !== ns.join()) {
    throw new ShapeError(`${what}: input of shape [${x.shape}] does not end with normalizedShape [${ns}]`);
  }
  return ns.map((_, i) => x.ndim - ns.length + i);
}

function checkAffine(
  what: string,
  name: string,
  p: Tensor | undefined,
  ns: readonly number[],
  x: Tensor,
): void {
  if (!p) return;
  if (p.shape.join() !== ns.join() || p.ndim !== ns.length) {
    throw new ShapeError(`${what}: ${name} has shape [${p.shape}], expected normalizedShape [${ns}]`);
  }
  if (p.dtype !== x.dtype)
    throw new DTypeError(`${what}: ${name} has dtype ${p.dtype}, input has ${x.dtype}`);
}

/**
 * Layer normalisation over the trailing `normalizedShape` axes (PyTorch's `F.layer_norm`):
 * `(x - mean) / sqrt(var + eps) · weight + bias` with the biased variance (divide by N).
 *
 * @throws ShapeError if `x` does not end with `normalizedShape` or weight/bias have another shape.
 * @throws DTypeError if `x` is not floating point or weight/bias differ from its dtype.
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  requireFloat('layerNorm', 'input', x);
  if (upcastUnderAutocast(x.dtype)) x = x.cast('f32');
  const axes = normAxes('layerNorm', x, normalizedShape);
  const ns = axes.map((a) => x.shape[a]!);
  checkAffine('layerNorm', 'weight', weight, ns, x);
  checkAffine('layerNorm', 'bias', bias, ns, x);
  const mu = x.mean(axes, true);
  const d = x.sub(mu);
  const variance = d.mul(d).mean(axes, true);
  let y = d.mul(variance.add(eps).rsqrt());
  if (weight) y = y.mul(weight);
  if (bias) y = y.add(bias);
  return y;
}

/**
 * RMS normalisation over the trailing `normalizedShape` axes (PyTorch's `F.rms_norm`):
 * `x / sqrt(mean(x²) + eps) · weight`.
 *
 * @throws ShapeError / DTypeError as {@link layerNorm}.
 */
export function rmsNorm(
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight?: Tensor,
  eps = 1e-6,
): Tensor {
  requireFloat('rmsNorm', 'input', x);
  if (upcastUnderAutocast(x.dtype)) x = x.cast('f32');
  const axes = normAxes('rmsNorm', x, normalizedShape);
  const ns = axes.map((a) => x.shape[a]!);
  checkAffine('rmsNorm', 'weight', weight, ns, x);
  let y = x.mul(x.mul(x).mean(axes, true).add(eps).rsqrt());
  if (weight) y = y.mul(weight);
  return y;
}

/**
 * Inverted dropout: in training, each element is zeroed with probability `p` and the survivors are
 * scaled by `1/(1-p)`, so the expectation is unchanged. Identity when `!training` or `p === 0`. The
 * mask comes from `rand` (the seeded stream, see `manualSeed`).
 *
 * @throws ValueError if `p` is outside [0, 1).
 */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (!(p >= 0 && p < 1)) throw new ValueError(`dropout: probability p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  requireFloat('dropout', 'input', x);
  const keep = rand(x.shape, { device: x.device }).ge(p);
  return where(keep, x.mul(1 / (1 - p)), 0);
}

/**
 * Rows of `weight` (`[V, D]`) at integer `indices` (`[...]`), giving `[..., D]`: one row read per index
 * (`gatherRows`); the gradient with respect to `weight` is a one-hot contraction (no scatter).
 * Indices outside [0, V) give zero rows.
 *
 * @throws DTypeError if `indices` is not an integer tensor or `weight` not floating point.
 * @throws ShapeError if `weight` is not 2-d.
 */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  if (!isIntDType(indices))
    throw new DTypeError(
      `embedding: indices must be an integer tensor, got ${indices.dtype}[${indices.shape}]`,
    );
  requireFloat('embedding', 'weight', weight);
  if (weight.ndim !== 2)
    throw new ShapeError(`embedding: weight must be 2-d [numEmbeddings, dim], got shape [${weight.shape}]`);
  return gatherRows(weight, indices);
}

/**
 * `x @ weightᵀ + bias` with `weight` of shape `[out, in]` and `bias` of shape `[out]` (PyTorch's
 * `F.linear`).
 *
 * @throws ShapeError if the last axis of `x` is not `in`, or bias is not `[out]`.
 * @throws DTypeError if `x` and `weight` dtypes differ.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (weight.ndim !== 2)
    throw new ShapeError(`linear: weight must be 2-d [out, in], got shape [${weight.shape}]`);
  const [out, inF] = weight.shape as [number, number];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inF) {
    throw new ShapeError(
      `linear: input of shape [${x.shape}] does not end with in_features ${inF} of weight [${weight.shape}]`,
    );
  }
  const low = autocastDType();
  if (x.dtype !== weight.dtype && !(low && upcastUnderAutocast(x.dtype)))
    throw new DTypeError(`linear: input dtype ${x.dtype} differs from weight dtype ${weight.dtype}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== out))
    throw new ShapeError(`linear: bias has shape [${bias.shape}], expected [${out}]`);
  // Under autocast the product is low precision and so is the bias added to it (as torch.autocast).
  return x.linear(weight, low && bias ? bias.cast(low) : bias);
}

/** GELU activation: exact (erf) form by default, `'tanh'` for GPT-2's approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return x.gelu({ approximate });
}
