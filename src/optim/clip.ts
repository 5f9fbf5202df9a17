/** Gradient clipping by global norm (PyTorch's `torch.nn.utils.clip_grad_norm_`). */
import { ValueError } from '../errors.js';
import { noGrad } from '../tensor/context.js';
import { tensor, type Tensor } from '../tensor/tensor.js';

// A clipped gradient is a lazy expression of the previous `grad` tensor; when that tensor was realized,
// its buffer must outlive the expression, so the new gradient keeps the old tensor reachable.
const keepAlive = new WeakMap<Tensor, Tensor>();

/**
 * Scale the gradients of `params` in place (`p.grad` is replaced by the scaled tensor) so that their
 * total norm is at most `maxNorm`, and return the total norm before clipping as a lazy 0-d f32 tensor.
 * PyTorch semantics: `norm = (Σ‖g‖_p^p)^(1/p)` over all gradients (max |g| for `normType = Infinity`),
 * `scale = min(1, maxNorm / (norm + 1e-6))`, `g ← g·scale`. Parameters without a gradient are ignored.
 *
 * Everything stays lazy: pass the returned norm to `optimizer.step({ realize: [loss, norm] })` to compute
 * it in the training step's schedule.
 *
 * @throws ValueError for a negative or non-finite `maxNorm`, or `normType <= 0`.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, normType = 2): Tensor {
  if (!(maxNorm >= 0) || !Number.isFinite(maxNorm))
    throw new ValueError(`clipGradNorm: maxNorm must be a finite number >= 0, got ${maxNorm}`);
  if (!(normType > 0))
    throw new ValueError(`clipGradNorm: normType must be > 0 (or Infinity), got ${normType}`);
  const withGrad = [...params].filter((p) => p.grad && !p.grad.isDisposed);
  if (withGrad.length === 0) return tensor(0, { dtype: 'f32' });
  return noGrad(() => {
    const grads = withGrad.map((p) => p.grad!);
    let total: Tensor;
    if (normType === Infinity) {
      total = grads.map((g) => g.abs().max().cast('f32')).reduce((a, b) => a.maximum(b));
    } else {
      const parts = grads.map((g) => {
        const a = g.cast('f32').abs();
        return (normType === 2 ? a.mul(a) : normType === 1 ? a : a.pow(normType)).sum();
      });
      const sum = parts.reduce((a, b) => a.add(b));
      total = normType === 2 ? sum.sqrt() : normType === 1 ? sum : sum.pow(1 / normType);
    }
    const scale = total.add(1e-6).reciprocal().mul(maxNorm).minimum(1);
    for (const p of withGrad) {
      const old = p.grad!;
      const clipped = old.mul(scale.cast(old.dtype));
      keepAlive.set(clipped, old);
      p.grad = clipped;
    }
    return total;
  });
}
