/**
 * Stochastic gradient descent with momentum, dampening, Nesterov momentum and (L2) weight decay, with
 * exactly PyTorch's `torch.optim.SGD` update.
 */
import { ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { where } from '../tensor/tensor.js';
import { checkNonNegative, Optimizer, zerosState, type UpdateContext, type UpdatePair } from './optimizer.js';

/** Options of {@link SGD}. */
export interface SGDOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Momentum factor μ (default 0: plain SGD, no state). */
  momentum?: number;
  /** Dampening τ of the momentum (default 0). */
  dampening?: number;
  /** Nesterov momentum (default false; needs momentum > 0 and dampening 0, as in PyTorch). */
  nesterov?: boolean;
  /** L2 penalty λ added to the gradient (default 0). */
  weightDecay?: number;
}

/**
 * SGD, PyTorch semantics. Per parameter, each step:
 *
 * ```
 * g = grad + λ·p                              (if λ ≠ 0)
 * b = g on the first step, else μ·b + (1-τ)·g (if μ ≠ 0)
 * g = g + μ·b if nesterov, else b             (if μ ≠ 0)
 * p = p - lr·g
 * ```
 *
 * The momentum buffer starts as zeros and the first-step rule is expressed as a per-step factor
 * (`b = μ'·b + τ'·g` with μ' = 0, τ' = 1 on the first step), so every step has the same graph.
 */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;

  /** @throws ValueError for negative hyperparameters, or nesterov without momentum / with dampening. */
  constructor(params: Iterable<Tensor>, opts: SGDOptions = {}) {
    const momentum = opts.momentum ?? 0;
    const dampening = opts.dampening ?? 0;
    const weightDecay = opts.weightDecay ?? 0;
    checkNonNegative('SGD', 'momentum', momentum);
    checkNonNegative('SGD', 'dampening', dampening);
    checkNonNegative('SGD', 'weightDecay', weightDecay);
    if (opts.nesterov && (momentum <= 0 || dampening !== 0)) {
      throw new ValueError(
        `SGD: nesterov momentum requires momentum > 0 and dampening = 0, got momentum ${momentum}, dampening ${dampening}`,
      );
    }
    super(params, opts.lr ?? 1e-3, 'SGD');
    this.momentum = momentum;
    this.dampening = dampening;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = weightDecay;
  }

  protected override initState(p: Tensor): Record<string, Tensor> {
    return this.momentum !== 0 ? { momentum_buffer: zerosState(p) } : {};
  }

  protected override update({ param, grad, state, step, lr }: UpdateContext): UpdatePair[] {
    let g = grad;
    if (this.weightDecay !== 0) g = g.add(param.mul(this.weightDecay));
    const out: UpdatePair[] = [];
    if (this.momentum !== 0) {
      const buf = state.momentum_buffer!;
      // First step: b = g; later: b = mu*b + (1-dampening)*g. Chosen on the device from the step count.
      const first = step.eq(1);
      const mu = where(first, 0, this.momentum);
      const tau = where(first, 1, 1 - this.dampening);
      const b = buf.mul(mu).add(g.mul(tau));
      out.push({ target: buf, value: b });
      g = this.nesterov ? g.add(b.mul(this.momentum)) : b;
    }
    out.push({ target: param, value: param.sub(g.mul(lr)) });
    return out;
  }
}
