/**
 * Gradient accumulation: k micro-batches give the update of one batch k times larger, in the memory of
 * one micro-batch. Each micro-step's gradients are added into fixed f32 buffers (one per parameter,
 * allocated once), so memory does not grow with k and every micro-step is the same program (`jit`
 * compiles it once).
 *
 * ```ts
 * const acc = new GradientAccumulator(model.parameters(), k);
 * const micro = jit((x, y) => { const { loss } = model.forward(x, y); acc.accumulate(loss!, { realize: [loss!] }); return loss!; });
 * const last = jit((x, y) => { const { loss } = model.forward(x, y); opt.step({ realize: [loss!, ...acc.finish(loss!)] }); return loss!; });
 * for (let i = 0; i < k - 1; i++) micro(xs[i], ys[i]);
 * last(xs[k - 1], ys[k - 1]);
 * acc.reset();
 * ```
 *
 * Losses are divided by k, so a mean loss over each micro-batch gives the gradient of the mean over all
 * k micro-batches (equal-sized micro-batches), exactly as one big batch.
 */
import { ValueError } from '../errors.js';
import { noGrad } from '../tensor/context.js';
import { realize, tensor, where, type Tensor } from '../tensor/tensor.js';

export class GradientAccumulator {
  readonly params: readonly Tensor[];
  private buffers: Tensor[] | undefined;

  /** @throws ValueError for `steps` that is not a positive integer or an empty parameter list. */
  constructor(
    params: Iterable<Tensor>,
    readonly steps: number,
  ) {
    this.params = [...params];
    if (!(Number.isInteger(steps) && steps > 0)) throw new ValueError(`GradientAccumulator: steps must be a positive integer, got ${steps}`);
    if (this.params.length === 0) throw new ValueError('GradientAccumulator: got an empty parameter list');
  }

  private get accum(): Tensor[] {
    return (this.buffers ??= this.params.map((p) => {
      const t = tensor(new Float32Array(p.numel), { shape: p.shape, dtype: 'f32', device: p.device });
      t.setMemoryOwner('gradient', 'grad-accumulator');
      return t;
    }));
  }

  private backward(loss: Tensor): void {
    for (const p of this.params) {
      if (p.grad) throw new ValueError('GradientAccumulator: a parameter already has a gradient; call optimizer.zeroGrad() before accumulating');
    }
    (this.steps === 1 ? loss : loss.div(this.steps)).backward();
  }

  /**
   * A micro-step that is not the last: backward of `loss / steps`, gradients added into the accumulation
   * buffers, realized in one schedule with `opts.realize` (e.g. the loss). Afterwards `p.grad` is null.
   */
  accumulate(loss: Tensor, opts: { realize?: readonly Tensor[] } = {}): void {
    this.backward(loss);
    const acc = this.accum;
    noGrad(() => {
      this.params.forEach((p, i) => {
        if (p.grad) acc[i]!.assign(acc[i]!.add(p.grad.cast('f32')));
      });
    });
    realize(...(opts.realize ?? []), ...acc);
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /**
   * The last micro-step: backward of `loss / steps`; the total is written into the accumulation buffers
   * themselves and `p.grad` reads it from there. Returns those buffers (pending writes): realize them in
   * the optimizer's step — `opt.step({ realize: [loss, ...acc.finish(loss)] })` — so the summed gradients
   * never take a second full-size copy in the step's memory plan. Then call {@link reset}.
   */
  finish(loss: Tensor): Tensor[] {
    this.backward(loss);
    const acc = this.accum;
    noGrad(() => {
      this.params.forEach((p, i) => {
        const a = acc[i]!;
        if (p.grad) a.assign(a.add(p.grad.cast('f32')));
        p.grad?.dispose();
        // A new expression over the buffer (not the buffer's own tensor, which zeroGrad would dispose).
        p.grad = p.dtype === 'f32' ? a.mul(1) : a.cast(p.dtype);
      });
    });
    return [...acc];
  }

  /** Zero the accumulation buffers (after the optimizer step), ready for the next k micro-batches. */
  reset(): void {
    if (!this.buffers) return;
    if (this.buffers.some((b) => !b.isRealized))
      throw new ValueError('GradientAccumulator.reset: the buffers finish() returned were not realized with the step; pass them to optimizer.step({ realize: [...] })');
    // A zero that depends on the buffer: a plain zeros() constant is one hash-consed node for every
    // buffer of a shape, and one value cannot be assigned into two tensors. (b·0 would keep inf/NaN.)
    noGrad(() => this.buffers!.forEach((b) => b.assign(where(b.lt(0), 0, 1).mul(0).cast(b.dtype))));
    realize(...this.buffers);
  }

  /** Free the accumulation buffers. */
  dispose(): void {
    for (const b of this.buffers ?? []) b.dispose();
    this.buffers = undefined;
  }
}
