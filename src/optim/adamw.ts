/**
 * AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, exactly PyTorch's `torch.optim.AdamW`
 * update (bias-corrected, eps added outside the square root).
 */
import { ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNonNegative, Optimizer, zerosState, type UpdateContext, type UpdatePair } from './optimizer.js';

/** Options of {@link AdamW}. */
export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Decay rates (β1, β2) of the moment estimates (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay λ (default 1e-2, as PyTorch). */
  weightDecay?: number;
}

/**
 * AdamW, PyTorch semantics. Per parameter, at step t (counted from 1):
 *
 * ```
 * p = p · (1 - lr·λ)
 * m = m + (1-β1)·(g - m)          (lerp, as PyTorch)
 * v = β2·v + (1-β2)·g²
 * p = p - (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + eps)
 * ```
 *
 * `lr·λ`, `lr/(1-β1^t)` and `√(1-β2^t)` are computed on the host in float64 each step and enter the
 * graph as fresh 0-d tensors (never constants), so every step reuses the same kernels.
 */
export class AdamW extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  /** @throws ValueError for betas outside [0, 1) or negative lr, eps or weightDecay. */
  constructor(params: Iterable<Tensor>, opts: AdamWOptions = {}) {
    super(params, opts.lr ?? 1e-3, 'AdamW');
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    for (const [n, b] of [
      ['beta1', b1],
      ['beta2', b2],
    ] as const) {
      if (!(b >= 0 && b < 1)) throw new ValueError(`AdamW: ${n} must be in [0, 1), got ${b}`);
    }
    this.beta1 = b1;
    this.beta2 = b2;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    checkNonNegative('AdamW', 'eps', this.eps);
    checkNonNegative('AdamW', 'weightDecay', this.weightDecay);
  }

  protected override initState(p: Tensor): Record<string, Tensor> {
    return { exp_avg: zerosState(p), exp_avg_sq: zerosState(p) };
  }

  protected override update({ param, grad, state, step, lr }: UpdateContext): UpdatePair[] {
    let p = param;
    if (this.weightDecay !== 0) p = p.mul(lr.mul(-this.weightDecay).add(1));
    const m = state.exp_avg!.add(grad.sub(state.exp_avg!).mul(1 - this.beta1));
    const v = state.exp_avg_sq!.mul(this.beta2).add(grad.mul(grad).mul(1 - this.beta2));
    // Bias corrections from the step tensor: 1 - beta^t = 1 - exp(t ln beta), computed on the device.
    const bc1 = step.mul(Math.log(this.beta1)).exp().neg().add(1);
    const bc2 = step.mul(Math.log(this.beta2)).exp().neg().add(1);
    const denom = v.sqrt().div(bc2.sqrt()).add(this.eps);
    const newP = p.sub(m.div(denom).mul(lr.div(bc1)));
    return [
      { target: state.exp_avg!, value: m },
      { target: state.exp_avg_sq!, value: v },
      { target: param, value: newP },
    ];
  }
}
