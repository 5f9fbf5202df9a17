/**
 * Learning-rate schedules: functions of the step (0-based) returning a MULTIPLIER of the base learning
 * rate, and {@link LRScheduler}, which applies one to an optimizer with `setLr` (PyTorch's `LambdaLR`).
 * Conventions follow Hugging Face's `get_*_schedule_with_warmup`.
 */
import { ValueError } from '../errors.js';
import type { Optimizer } from './optimizer.js';

/** A learning-rate multiplier as a function of the 0-based step. */
export type LrSchedule = (step: number) => number;

function checkSteps(what: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0)
    throw new ValueError(`${what}: ${name} must be a non-negative integer, got ${v}`);
}

/** Options of {@link cosineWithWarmup}. */
export interface CosineWithWarmupOptions {
  /** Steps of linear warmup from 0 to 1. */
  warmupSteps: number;
  /** Step at which the cosine reaches its minimum (it stays there afterwards). */
  totalSteps: number;
  /** The multiplier at the end of the decay, as a fraction of the base lr (default 0). */
  minLrRatio?: number;
}

/**
 * Linear warmup then half-cosine decay:
 * `step < warmup`: `step / warmup`; then with `progress = clamp((step - warmup) / (total - warmup), 0, 1)`:
 * `min + (1 - min) · ½(1 + cos(π·progress))`.
 *
 * @throws ValueError for negative step counts, `totalSteps < warmupSteps`, or `minLrRatio` outside [0, 1].
 */
export function cosineWithWarmup(opts: CosineWithWarmupOptions): LrSchedule {
  const { warmupSteps, totalSteps } = opts;
  const minRatio = opts.minLrRatio ?? 0;
  checkSteps('cosineWithWarmup', 'warmupSteps', warmupSteps);
  checkSteps('cosineWithWarmup', 'totalSteps', totalSteps);
  if (totalSteps < warmupSteps)
    throw new ValueError(
      `cosineWithWarmup: totalSteps ${totalSteps} is less than warmupSteps ${warmupSteps}`,
    );
  if (!(minRatio >= 0 && minRatio <= 1))
    throw new ValueError(`cosineWithWarmup: minLrRatio must be in [0, 1], got ${minRatio}`);
  return (step) => {
    if (step < warmupSteps) return step / Math.max(1, warmupSteps);
    const progress = Math.min(1, Math.max(0, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps)));
    return minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** Options of {@link linearWarmup}. */
export interface LinearWarmupOptions {
  /** Steps of linear warmup from 0 to 1. */
  warmupSteps: number;
  /** If given, decay linearly from 1 after warmup to 0 at this step (and stay at 0). Otherwise stay at 1. */
  totalSteps?: number;
}

/**
 * Linear warmup: `step / warmup` for `step < warmup`, then 1 (constant), or, with `totalSteps`, a linear
 * decay `(total - step) / (total - warmup)` clamped at 0.
 *
 * @throws ValueError for negative step counts or `totalSteps < warmupSteps`.
 */
export function linearWarmup(opts: LinearWarmupOptions): LrSchedule {
  const { warmupSteps, totalSteps } = opts;
  checkSteps('linearWarmup', 'warmupSteps', warmupSteps);
  if (totalSteps !== undefined) {
    checkSteps('linearWarmup', 'totalSteps', totalSteps);
    if (totalSteps < warmupSteps)
      throw new ValueError(`linearWarmup: totalSteps ${totalSteps} is less than warmupSteps ${warmupSteps}`);
  }
  return (step) => {
    if (step < warmupSteps) return step / Math.max(1, warmupSteps);
    if (totalSteps === undefined) return 1;
    return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  };
}

/** The constant multiplier 1. */
export function constantSchedule(): LrSchedule {
  return () => 1;
}

/**
 * Drives an optimizer's learning rate from a schedule: `lr = baseLr · schedule(step)`. The constructor
 * sets the lr for step 0; call `step()` after each `optimizer.step()` (as PyTorch's `LambdaLR`).
 */
export class LRScheduler {
  /** The 0-based index of the step the current lr is for. */
  stepIndex = 0;
  readonly baseLr: number;

  constructor(
    readonly optimizer: Optimizer,
    readonly schedule: LrSchedule,
    baseLr?: number,
  ) {
    this.baseLr = baseLr ?? optimizer.lr;
    this.optimizer.setLr(this.baseLr * schedule(0));
  }

  /** Advance to the next step and set the optimizer's lr. Returns the new lr. */
  step(): number {
    this.stepIndex++;
    const lr = this.baseLr * this.schedule(this.stepIndex);
    this.optimizer.setLr(lr);
    return lr;
  }

  /** The lr currently set. */
  get lastLr(): number {
    return this.optimizer.lr;
  }
}
