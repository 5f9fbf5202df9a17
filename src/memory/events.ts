/**
 * The telemetry stream: every device allocation, free and owner change, every kernel run and every
 * training-step mark is one event here. `memory.stats()`, `memory.snapshot()`, the Chrome trace export
 * and the live dashboard all read this one stream, so they always agree.
 *
 * Emitting costs one object per event and nothing else when nobody listens (no history is kept here;
 * consumers that want history, such as the trace recorder, keep their own bounded buffers).
 */

/**
 * Who a device buffer belongs to. `activation`: the planned arena of a forward/backward program
 * (activations and the transient gradients of activations); `gradient`: gradients kept as tensors
 * (`p.grad`, accumulation buffers); `optimizer`: optimizer state; `kv-cache`: attention key/value caches;
 * `workspace`: runtime scratch (packing buffers); `tensor`: any other user tensor.
 */
export type MemoryOwner = 'parameter' | 'gradient' | 'optimizer' | 'activation' | 'kv-cache' | 'workspace' | 'tensor';

/** Every owner, in the order charts stack them. */
export const MEMORY_OWNERS: readonly MemoryOwner[] = ['parameter', 'gradient', 'optimizer', 'activation', 'kv-cache', 'workspace', 'tensor'];

/** A live allocation. */
export interface AllocationInfo {
  /** Unique per process. */
  readonly id: number;
  readonly device: string;
  readonly bytes: number;
  /** Element type ('u8' for untyped regions such as an arena). */
  readonly dtype: string;
  readonly shape: readonly number[];
  owner: MemoryOwner;
  /** A human name: a parameter's dotted name, 'arena', 'kv.k.3', ... */
  label?: string;
}

/** Milliseconds since the Unix epoch, with sub-millisecond precision. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export type TelemetryEvent =
  | ({ type: 'alloc'; ts: number } & AllocationInfo)
  | { type: 'free'; ts: number; id: number; device: string; bytes: number; owner: MemoryOwner; label?: string }
  | { type: 'owner'; ts: number; id: number; device: string; bytes: number; from: MemoryOwner; to: MemoryOwner; label?: string }
  /** One kernel, timed individually (only while profiling: see `setKernelProfiling`); `ts` is its start. */
  | { type: 'kernel'; ts: number; dur: number; device: string; name: string }
  /** One program run: a realize or a jit replay, `kernels` launches in `dur` ms; `ts` is its start. */
  | { type: 'run'; ts: number; dur: number; device: string; kernels: number; label: string }
  /** A training-loop mark: step `step` ended at `ts` after `dur` ms. */
  | { type: 'step'; ts: number; dur: number; step: number; loss?: number };

type Listener = (e: TelemetryEvent) => void;
const listeners = new Set<Listener>();
let nextId = 1;

/** A fresh allocation id. */
export function nextAllocationId(): number {
  return nextId++;
}

/** Receive every event from now on. Returns the function that unsubscribes. */
export function subscribe(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** True when someone listens (producers may skip building expensive events otherwise). */
export function hasListeners(): boolean {
  return listeners.size > 0;
}

/** @internal Publish one event. A throwing listener is removed so that it cannot break computation. */
export function emit(e: TelemetryEvent): void {
  for (const fn of listeners) {
    try {
      fn(e);
    } catch (err) {
      listeners.delete(fn);
      console.error(`tessera telemetry: a listener threw and was removed: ${(err as Error).message}`);
    }
  }
}

let profiling = 0;
/**
 * Time every kernel individually (one launch per kernel instead of one batched call), emitting a
 * 'kernel' event each: what the trace export and the dashboard's kernel view need. Nested calls count.
 */
export function setKernelProfiling(on: boolean): void {
  profiling = Math.max(0, profiling + (on ? 1 : -1));
}
export function isKernelProfiling(): boolean {
  return profiling > 0;
}

/** Record a training-step mark (the CLI trainer calls this; so can any loop). */
export function markStep(step: number, dur: number, loss?: number): void {
  emit({ type: 'step', ts: now(), dur, step, ...(loss === undefined ? {} : { loss }) });
}
