/**
 * Dynamic loss scaling for f16 training (PyTorch's `torch.cuda.amp.GradScaler`, run entirely on the
 * device): the loss is multiplied by a scale so that small gradients do not flush to zero in f16; the
 * update divides it out; a step whose gradients overflowed (inf or NaN) is skipped and the scale backs
 * off; after `growthInterval` clean steps the scale grows.
 *
 * Everything — the overflow check, the skip, the scale update and the count of skipped steps — happens
 * inside the training step's one schedule, so the scaler needs no host round trip per step and works
 * inside a `jit`-compiled step.
 */
import { ValueError } from '../errors.js';
import { noGrad } from '../tensor/context.js';
import { realize, tensor, where, type Tensor } from '../tensor/tensor.js';
import type { Optimizer, StepOptions } from './optimizer.js';
import { getDefaultDevice } from '../runtime/registry.js';

/** Options of {@link GradScaler} (PyTorch's defaults, plus a floor). */
export interface GradScalerOptions {
  /** Starting scale (default 2^16). */
  initScale?: number;
  /** Multiply the scale by this after `growthInterval` steps without overflow (default 2). */
  growthFactor?: number;
  /** Multiply the scale by this on overflow (default 0.5). */
  backoffFactor?: number;
  /** Clean steps between growths (default 2000). */
  growthInterval?: number;
  /** The scale never backs off below this (default 1). */
  minScale?: number;
  /** False makes every method a pass-through (for a command-line switch). Default true. */
  enabled?: boolean;
}

/** What the scaler has done so far (read from the device). */
export interface GradScalerState {
  scale: number;
  /** Steps skipped because gradients overflowed. */
  skippedSteps: number;
  /** Clean steps since the last growth or backoff. */
  growthTracker: number;
}

export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly minScale: number;
  readonly enabled: boolean;
  private readonly initScale: number;
  private readonly tensors = new Map<string, { scale: Tensor; tracker: Tensor; skipped: Tensor }>();
  private readonly unscaled = new WeakSet<Optimizer>();

  /** @throws ValueError for a non-positive scale or interval, a growth factor ≤ 1 or a backoff outside (0, 1). */
  constructor(opts: GradScalerOptions = {}) {
    this.initScale = opts.initScale ?? 65536;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    this.minScale = opts.minScale ?? 1;
    this.enabled = opts.enabled ?? true;
    if (!(this.initScale > 0 && Number.isFinite(this.initScale))) throw new ValueError(`GradScaler: initScale must be a finite number > 0, got ${this.initScale}`);
    if (!(this.growthFactor > 1)) throw new ValueError(`GradScaler: growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new ValueError(`GradScaler: backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval > 0)) throw new ValueError(`GradScaler: growthInterval must be a positive integer, got ${this.growthInterval}`);
    if (!(this.minScale > 0 && this.minScale <= this.initScale)) throw new ValueError(`GradScaler: minScale must be in (0, initScale], got ${this.minScale}`);
  }

  private on(device: string) {
    let t = this.tensors.get(device);
    if (!t) {
      t = {
        scale: tensor(this.initScale, { dtype: 'f32', device }),
        tracker: tensor(0, { dtype: 'f32', device }),
        skipped: tensor(0, { dtype: 'f32', device }),
      };
      for (const x of Object.values(t)) x.realize();
      this.tensors.set(device, t);
    }
    return t;
  }

  /** `loss × scale` (lazy). Call `backward()` on the result. */
  scale(loss: Tensor): Tensor {
    if (!this.enabled) return loss;
    return loss.mul(this.on(loss.device).scale.cast(loss.dtype));
  }

  /**
   * Divide the gradients of `opt`'s parameters by the scale now (lazily), e.g. before `clipGradNorm`, as
   * PyTorch's `unscale_`. `step` then does not divide again.
   */
  unscale(opt: Optimizer): void {
    if (!this.enabled) return;
    if (this.unscaled.has(opt)) throw new ValueError('GradScaler.unscale: already called for this optimizer since the last step');
    const inv = this.inverse(opt);
    noGrad(() => {
      for (const p of opt.params) if (p.grad && !p.grad.isDisposed) p.grad = p.grad.mul(inv.cast(p.grad.dtype));
    });
    this.unscaled.add(opt);
  }

  private inverse(opt: Optimizer): Tensor {
    return this.on(opt.params[0]!.device).scale.reciprocal();
  }

  /**
   * Update the parameters unless a gradient overflowed, and adjust the scale — all in the step's one
   * schedule (with `opts.realize`, e.g. the loss). A skipped step leaves every parameter and state tensor
   * (and step count) unchanged.
   */
  step(opt: Optimizer, opts: Omit<StepOptions, 'gradScale' | 'skipIf'> = {}): void {
    if (!this.enabled) return opt.step(opts);
    const device = opt.params[0]!.device;
    const st = this.on(device);
    const grads = opt.params.flatMap((p) => (p.grad && !p.grad.isDisposed ? [p.grad] : []));
    const gradScale = this.unscaled.has(opt) ? undefined : this.inverse(opt);
    this.unscaled.delete(opt);
    noGrad(() => {
      // Count the elements that are not finite: |g| < FLT_MAX is false for ±inf and NaN (a strict '<':
      // '≤' is built as not-'>', which NaN passes). A comparison, not NaN propagation: GPU compilers may
      // fold g·0 to 0, which would hide an overflow.
      const FLT_MAX = 3.4028234663852886e38;
      const probe = grads.map((g) => where(g.cast('f32').abs().lt(FLT_MAX), 0, 1).sum()).reduce((a, b) => a.add(b), tensor(0, { dtype: 'f32', device }));
      const found = probe.gt(0);
      const foundF = found.cast('f32');
      const tracker = st.tracker.add(1).mul(foundF.neg().add(1));
      const grow = tracker.ge(this.growthInterval);
      const backedOff = st.scale.mul(this.backoffFactor).maximum(this.minScale);
      const newScale = where(found, backedOff, where(grow, st.scale.mul(this.growthFactor), st.scale));
      st.tracker.assign(where(grow, 0, tracker));
      st.skipped.assign(st.skipped.add(foundF));
      st.scale.assign(newScale);
      opt.step({ ...opts, realize: [...(opts.realize ?? []), st.tracker, st.skipped, st.scale], ...(gradScale ? { gradScale } : {}), skipIf: found });
    });
  }

  /** Current scale, skipped steps and growth tracker (one small device read). */
  state(device?: string): GradScalerState {
    if (!this.enabled) return { scale: 1, skippedSteps: 0, growthTracker: 0 };
    const st = this.on(device ?? [...this.tensors.keys()][0] ?? getDefaultDevice());
    realize(st.scale, st.skipped, st.tracker);
    return { scale: st.scale.itemSync(), skippedSteps: st.skipped.itemSync(), growthTracker: st.tracker.itemSync() };
  }

  /** Free the scaler's device tensors. */
  dispose(): void {
    for (const t of this.tensors.values()) for (const x of Object.values(t)) x.dispose();
    this.tensors.clear();
  }
}
