/**
 * The optimizer base class and the one-schedule training step.
 *
 * A training step is ONE `realize`: the loss (forward), the gradients (backward) and the new parameter
 * and state values are computed together, so the scheduler fuses and memory-plans them as one program:
 *
 * ```ts
 * opt.zeroGrad();
 * const { loss } = model.forward(x, y);
 * loss!.backward();              // lazy: builds the gradient graph
 * opt.step({ realize: [loss!] }); // one schedule: loss + grads + update; then commits in place
 * console.log(loss!.itemSync()); // already computed
 * ```
 *
 * `step()` is `prepareStep()` + `realize(...extras, ...pending.tensors)` + `pending.commit()`. Use
 * `prepareStep()` directly to realize the update together with tensors of your own.
 *
 * Nothing that changes from step to step is a constant in the graph, and nothing lives only on the
 * host: the learning rate is a 0-d device tensor that `setLr` overwrites in place, and each parameter's
 * step count is a 0-d device tensor incremented inside the step's own schedule, from which bias
 * corrections and first-step factors are computed on the device. Parameters and state are updated in
 * place (`assign`), so every step reuses the same buffers and the same compiled kernels, and a step
 * captured by `jit` replays correctly.
 */
import type { DType } from '../dtype.js';
import { isFloat } from '../dtype.js';
import { DTypeError, ShapeError, ValueError } from '../errors.js';
import { noGrad } from '../tensor/context.js';
import { realize, tensor, Tensor, where } from '../tensor/tensor.js';

/** Options of {@link Optimizer.step}. */
export interface StepOptions {
  /**
   * Other tensors (the loss, metrics, a gradient norm) computed in the same schedule as the update. They
   * are realized before the parameters change, i.e. they see the parameters the gradients were taken at.
   */
  realize?: readonly Tensor[];
  /**
   * Keep `p.grad` after the step (realized in the same schedule). By default the step consumes the
   * gradients: afterwards every `p.grad` is null, as after `zeroGrad()`.
   */
  keepGrads?: boolean;
  /** Multiply every gradient by this 0-d tensor before the update (a loss scaler's 1/scale). */
  gradScale?: Tensor;
  /**
   * A 0-d bool tensor: when true (found on the device, inside the step), every parameter and state tensor
   * keeps its value and step counts do not advance: the step is skipped without a host round trip.
   */
  skipIf?: Tensor;
}

/** Options of {@link Optimizer.prepareStep}. */
export type PrepareStepOptions = Pick<StepOptions, 'gradScale' | 'skipIf'>;

/** An update built but not yet applied; see {@link Optimizer.prepareStep}. */
export interface PendingStep {
  /** The lazy new values (parameters and optimizer state). Realize them, with anything else, in one call. */
  readonly tensors: readonly Tensor[];
  /**
   * Write the new values into the parameters and state (`assign`, identities kept; realizes whatever is
   * still lazy), then free the temporaries. Call once, after realizing `tensors`.
   */
  commit(): void;
}

/** One value an update computes: `target` gets `value` at commit. */
export interface UpdatePair {
  /** The tensor updated in place (a parameter or a state tensor). */
  target: Tensor;
  /** Its new value (lazy until the step is realized). */
  value: Tensor;
}

/** Everything an update rule may use for one parameter. */
export interface UpdateContext {
  /** Index of the parameter in `optimizer.params`. */
  index: number;
  param: Tensor;
  grad: Tensor;
  /** This parameter's state tensors (created by `initState`). */
  state: Record<string, Tensor>;
  /** The learning rate, a 0-d tensor of the parameter's dtype (its value can change between steps). */
  lr: Tensor;
  /** This step's number for the parameter (1 on its first step), a 0-d tensor of the parameter's dtype. */
  step: Tensor;
}

function checkParams(what: string, params: Iterable<Tensor>): Tensor[] {
  const list = [...params];
  if (list.length === 0) throw new ValueError(`${what}: got an empty parameter list`);
  const seen = new Set<Tensor>();
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new ValueError(`${what}: parameter ${i} is not a Tensor`);
    if (!isFloat(p.dtype))
      throw new DTypeError(
        `${what}: parameter ${i} has dtype ${p.dtype}; only floating-point tensors can be optimized`,
      );
    if (!p.requiresGrad)
      throw new ValueError(`${what}: parameter ${i} (${p.dtype}[${p.shape}]) does not require grad`);
    if (seen.has(p)) throw new ValueError(`${what}: parameter ${i} appears more than once`);
    seen.add(p);
  });
  return list;
}

/** `v` must be a finite number >= 0. */
export function checkNonNegative(what: string, name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new ValueError(`${what}: ${name} must be a finite number >= 0, got ${v}`);
}

/**
 * Base class of optimizers. Subclasses declare their per-parameter state (`initState`) and their
 * update rule (`update`, building lazy tensors); the base class owns the learning rate, the per-parameter
 * step counts, gradient bookkeeping, and running everything as one schedule.
 */
export abstract class Optimizer {
  /** The optimized tensors, in the order given. */
  readonly params: readonly Tensor[];
  /** Per-parameter state (e.g. `momentum_buffer`, `exp_avg`), realized tensors; created on first use. */
  private _state: Record<string, Tensor>[] | undefined;
  /** Per-parameter number of steps taken (a parameter without a gradient is skipped and not counted). */
  protected readonly steps: number[];
  private _lr: number;
  /** The learning rate on each device the parameters live on (f32, overwritten in place by setLr). */
  private readonly lrTensors = new Map<string, Tensor>();

  constructor(
    params: Iterable<Tensor>,
    lr: number,
    protected readonly name: string,
  ) {
    this.params = checkParams(name, params);
    checkNonNegative(name, 'lr', lr);
    this._lr = lr;
    this.steps = this.params.map(() => 0);
  }

  /**
   * Per-parameter state, created with `initState` on first use (after the subclass constructor ran),
   * plus `step`: the parameter's step count as a 0-d tensor of its dtype.
   */
  protected get state(): Record<string, Tensor>[] {
    return (this._state ??= this.params.map((p, i) => {
      const s: Record<string, Tensor> = { ...this.initState(p), step: tensor(this.steps[i]!, { dtype: p.dtype, device: p.device }) };
      for (const [k, t] of Object.entries(s)) t.setMemoryOwner('optimizer', `${this.name}.${i}.${k}`);
      return s;
    }));
  }

  private lrOn(device: string): Tensor {
    let t = this.lrTensors.get(device);
    if (!t) this.lrTensors.set(device, (t = tensor(this._lr, { dtype: 'f32', device }).setMemoryOwner('optimizer', `${this.name}.lr`)));
    return t;
  }

  /** Initial state tensors of one parameter (realized). */
  protected abstract initState(p: Tensor): Record<string, Tensor>;

  /** The update of one parameter: its new value and the new values of its state tensors (all lazy). */
  protected abstract update(ctx: UpdateContext): UpdatePair[];

  /** The current learning rate. */
  get lr(): number {
    return this._lr;
  }

  /** Set the learning rate used by the next steps (e.g. from a schedule). It is never baked into kernels. */
  setLr(lr: number): void {
    checkNonNegative(this.name, 'lr', lr);
    this._lr = lr;
    for (const t of this.lrTensors.values()) t.write(lr);
  }

  /**
   * Number of steps taken (by the parameter that took most). Read from the device step counters once
   * state exists, so it is right after `jit` replays and steps skipped on the device (`skipIf`).
   */
  get stepCount(): number {
    if (this._state) return Math.max(0, ...this._state.map((s) => s.step!.itemSync()));
    return Math.max(0, ...this.steps);
  }

  /** Dispose the optimizer state (the parameters are not touched). */
  dispose(): void {
    for (const s of this._state ?? []) for (const t of Object.values(s)) t.dispose();
    this._state = undefined;
    for (const t of this.lrTensors.values()) t.dispose();
    this.lrTensors.clear();
  }

  /** Dispose every parameter's gradient and set it to null. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /**
   * Build the update of every parameter that has a gradient, lazily, without changing anything yet.
   * Parameters whose `grad` is null are skipped (their step count does not advance).
   */
  prepareStep(opts: PrepareStepOptions = {}): PendingStep {
    const pairs: UpdatePair[] = [];
    const advanced: number[] = [];
    noGrad(() => {
      this.params.forEach((param, index) => {
        const grad = param.grad;
        if (!grad || grad.isDisposed) return;
        if (grad.shape.join() !== param.shape.join())
          throw new ShapeError(
            `${this.name}: gradient of parameter ${index} has shape [${grad.shape}], parameter [${param.shape}]`,
          );
        const state = this.state[index]!;
        const step = state.step!.add(1);
        const lr = this.lrOn(param.device).cast(param.dtype);
        let g = grad.dtype === param.dtype ? grad : grad.cast(param.dtype);
        if (opts.gradScale) g = g.mul(opts.gradScale.cast(param.dtype));
        const { step: _s, ...own } = state;
        void _s;
        pairs.push(...this.update({ index, param, grad: g, state: own, lr, step }));
        pairs.push({ target: state.step!, value: step });
        advanced.push(index);
      });
      const skip = opts.skipIf;
      for (const { target, value } of pairs) target.assign(skip ? where(skip, target, value) : value);
    });
    let committed = false;
    return {
      tensors: pairs.map((p) => p.target),
      commit: () => {
        if (committed) throw new ValueError(`${this.name}: this step was already committed`);
        committed = true;
        realize(...pairs.map((p) => p.target)); // no-op when the caller realized them
        for (const i of advanced) this.steps[i]!++;
      },
    };
  }

  /**
   * Apply one update step. With `{ realize: [loss] }` the forward pass, backward pass and update run as
   * ONE schedule; the loss is then realized (its value is that of the parameters before the update).
   * Gradients are consumed (set to null) unless `keepGrads`.
   */
  step(opts: StepOptions = {}): void {
    const pending = this.prepareStep(opts);
    const extras = [...(opts.realize ?? [])];
    const grads = opts.keepGrads
      ? this.params.flatMap((p) => (p.grad && !p.grad.isDisposed ? [p.grad] : []))
      : [];
    realize(...extras, ...grads, ...pending.tensors);
    pending.commit();
    if (!opts.keepGrads) this.zeroGrad();
  }

  /**
   * Optimizer state as tensors: `<index>.<name>` for each state tensor of parameter `index` and
   * `<index>.step` (i32 scalar). Save it with a checkpoint (prefix the keys) and restore with
   * {@link loadStateDict}.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    this.state.forEach((s, i) => {
      for (const [k, t] of Object.entries(s)) out[`${i}.${k}`] = t;
    });
    return out;
  }

  /**
   * Restore state saved by {@link stateDict} (for the same parameter list).
   *
   * @throws ValueError listing missing and unexpected keys; ShapeError / DTypeError naming a key whose
   *   tensor does not match.
   */
  loadStateDict(sd: Record<string, Tensor>): void {
    const own = Object.keys(this.stateDict());
    const missing = own.filter((k) => !(k in sd));
    const unexpected = Object.keys(sd).filter((k) => !own.includes(k));
    if (missing.length || unexpected.length) {
      throw new ValueError(
        `${this.name}.loadStateDict: keys do not match (missing: ${missing.join(', ') || '-'}; unexpected: ${unexpected.join(', ') || '-'})`,
      );
    }
    const pairs: [Tensor, Tensor][] = [];
    this.state.forEach((s, i) => {
      for (const [k, dst] of Object.entries(s)) {
        const src = sd[`${i}.${k}`]!;
        if (src.shape.join() !== dst.shape.join() || src.ndim !== dst.ndim)
          throw new ShapeError(
            `${this.name}.loadStateDict: '${i}.${k}' has shape [${src.shape}], expected [${dst.shape}]`,
          );
        if (k !== 'step' && src.dtype !== dst.dtype)
          throw new DTypeError(
            `${this.name}.loadStateDict: '${i}.${k}' has dtype ${src.dtype}, expected ${dst.dtype}`,
          );
        pairs.push([dst, src]);
      }
    });
    noGrad(() => pairs.forEach(([dst, src]) => dst.assign(src.cast(dst.dtype))));
    realize(...pairs.map(([dst]) => dst));
    this.state.forEach((s, i) => (this.steps[i] = s.step!.itemSync()));
  }
}

/** A realized 0-d tensor holding `value`. */
export function makeScalar(value: number, dtype: DType, device: string): Tensor {
  return tensor(value, { dtype, device });
}

/** A realized tensor of zeros with `p`'s shape, dtype and device (optimizer state). */
export function zerosState(p: Tensor): Tensor {
  return tensor(new Float32Array(p.numel), { shape: p.shape, dtype: p.dtype, device: p.device });
}
