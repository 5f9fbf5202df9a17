/**
 * Process-wide tensor state: whether gradients are recorded, the random stream, and the stack of
 * `tidy()` scopes.
 */

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    gradEnabled = prev;
    throw e;
  }
  if (result instanceof Promise) {
    // Restored when the promise settles; do not interleave other gradient work meanwhile.
    return result.finally(() => (gradEnabled = prev)) as T;
  }
  gradEnabled = prev;
  return result;
}

/**
 * Run `fn` without recording gradients: results do not require grad, and values computed from
 * parameters are treated as constants by a later `backward()` (as in `torch.no_grad()`).
 */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Re-enable gradient recording inside a `noGrad` region. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

// ---- random stream: (seed, counter) is all the state; every draw advances the counter ----

const rng = { seed: 0x5eed, counter: 0 };

/** Reset the random stream: the same seed gives the same tensors on every backend. */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed)) throw new TypeError(`manualSeed: seed must be an integer, got ${seed}`);
  rng.seed = seed >>> 0;
  rng.counter = 0;
}

/** Reserve `n` consecutive counter values of the stream. */
export function drawCounter(n: number): { seed: number; counter: number } {
  const out = { seed: rng.seed, counter: rng.counter };
  rng.counter = (rng.counter + n) >>> 0;
  return out;
}

// ---- tidy scopes ----

export interface Disposable_ {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable_>[] = [];

export function trackInScope(t: Disposable_): void {
  scopes[scopes.length - 1]?.add(t);
}

function collectKept(value: unknown, keep: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if (keep.has(value)) return;
  keep.add(value);
  if (Array.isArray(value)) for (const v of value) collectKept(v, keep, depth + 1);
  else if (value.constructor === Object || value instanceof Map) {
    for (const v of value instanceof Map ? value.values() : Object.values(value)) collectKept(v, keep, depth + 1);
  }
}

/**
 * Dispose every tensor created inside `fn` except those it returns (directly, or inside arrays, plain
 * objects and maps). Works with async functions too, as long as two tidy scopes do not interleave.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable_>();
  scopes.push(scope);
  const finish = (result: unknown) => {
    const i = scopes.lastIndexOf(scope);
    if (i >= 0) scopes.splice(i, 1);
    const keep = new Set<unknown>();
    collectKept(result, keep);
    for (const t of scope) {
      if (keep.has(t)) {
        trackInScope(t); // the survivor belongs to the enclosing scope
        continue;
      }
      if (!t.isDisposed) t.dispose();
    }
  };
  let result: T;
  try {
    result = fn();
  } catch (e) {
    finish(undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (v) => {
        finish(v);
        return v;
      },
      (e) => {
        finish(undefined);
        throw e;
      },
    ) as T;
  }
  finish(result);
  return result;
}
