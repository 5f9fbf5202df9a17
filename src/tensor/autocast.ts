/**
 * Mixed precision: inside `autocast({ dtype })`, matrix products read their operands rounded to the low
 * precision, accumulate in f32 and store their result in the low precision (half the bytes for every
 * activation a product makes), while normalisations, softmax and losses compute in f32. Parameters stay
 * f32 (the optimizer's master weights); their low-precision copies are never stored, since the rounding
 * is fused into the product's operand loads.
 */
import type { DType } from '../dtype.js';
import { ValueError } from '../errors.js';

/** The low-precision types autocast can use. */
export type AutocastDType = 'bf16' | 'f16';

/** Options of {@link autocast}. */
export interface AutocastOptions {
  /** 'bf16' (f32's range, 8 bits of mantissa: no loss scaling needed) or 'f16' (use a `GradScaler`). */
  dtype: AutocastDType;
  /** False runs `fn` in full precision (handy for a command-line switch). Default true. */
  enabled?: boolean;
}

let current: AutocastDType | undefined;

/** The active autocast type, or undefined outside `autocast` (or inside a disabled one). */
export function autocastDType(): AutocastDType | undefined {
  return current;
}

/**
 * Run `fn` with mixed precision (as `torch.autocast`). The backward pass of what `fn` builds follows the
 * same casts (gradients of low-precision activations are low precision; parameter gradients are f32).
 * Works with async functions if no other autocast region interleaves.
 *
 * ```ts
 * const loss = autocast({ dtype: 'bf16' }, () => model.forward(x, y).loss!);
 * loss.backward();
 * ```
 *
 * @throws ValueError for a dtype other than 'bf16' or 'f16'.
 */
export function autocast<T>(opts: AutocastOptions, fn: () => T): T {
  if (opts?.dtype !== 'bf16' && opts?.dtype !== 'f16') throw new ValueError(`autocast: dtype must be 'bf16' or 'f16', got ${String(opts?.dtype)}`);
  return withAutocast(opts.enabled === false ? undefined : opts.dtype, fn);
}

/** @internal Run `fn` with autocast set to `dtype` (undefined: off), restoring the previous state. */
export function withAutocast<T>(dtype: AutocastDType | undefined, fn: () => T): T {
  const prev = current;
  current = dtype;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    current = prev;
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => (current = prev)) as T;
  current = prev;
  return result;
}

/** True for the types autocast computes in full precision instead (f32 and the low types themselves). */
export function isAutocastable(d: DType): boolean {
  return d === 'f32' || d === 'bf16' || d === 'f16';
}
