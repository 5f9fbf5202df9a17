/**
 * Chrome trace export: record the telemetry stream (events.ts) as a Trace Event Format file that
 * chrome://tracing, Perfetto (ui.perfetto.dev) and speedscope open directly.
 *
 * What goes where:
 * - program runs (realize, jit replay) and kernels: complete slices (`ph: 'X'`) on one track per device
 *   (kernels on a sibling track, because a profiled kernel's clock and its run's clock are read
 *   separately and need not nest exactly, and overlapping slices on one track render as garbage);
 * - training steps: slices on their own "steps" track, plus a `loss` counter;
 * - memory: a counter `memory <device>` whose args are the bytes per owner (the viewer stacks them),
 *   emitted at every alloc/free/owner change; changes within {@link COALESCE_US} of the previous sample
 *   on that device update it in place instead of adding a sample, so a burst of small frees costs one
 *   event;
 * - process and track names: metadata events (`ph: 'M'`), kept outside the ring so they are never lost.
 *
 * Memory stays bounded: events live in a ring of `maxEvents`; the oldest are dropped and counted
 * (`metadata.droppedEvents`).
 */
import { writeFileAtomic } from '../io/atomic.js';
import type { MemoryOwner, TelemetryEvent } from './events.js';
import { MEMORY_OWNERS, now, setKernelProfiling, subscribe } from './events.js';
import { stats } from './stats.js';

/** Options of {@link startTrace}. */
export interface TraceOptions {
  /** Ring capacity in trace events (default 1e6, about 200 MB of JSON at most); the oldest are dropped. */
  maxEvents?: number;
  /** Turn kernel profiling on while recording, so every kernel is its own slice (default false). */
  kernels?: boolean;
}

/** One event of the Trace Event Format (the subset this exporter writes). */
export interface TraceEvent {
  name: string;
  /** 'X': complete slice, 'C': counter, 'M': metadata. */
  ph: 'X' | 'C' | 'M';
  /** Microseconds since the recording started. */
  ts: number;
  /** Duration in microseconds ('X' only). */
  dur?: number;
  pid: number;
  tid: number;
  cat?: string;
  args?: Record<string, unknown>;
}

/** The JSON object form of a trace file. */
export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ms';
  metadata: {
    producer: 'tessera';
    /** Wall-clock time of `ts` 0, ISO 8601, and the same in ms since the Unix epoch. */
    startTime: string;
    startEpochMs: number;
    /** Events dropped from the ring (oldest first) because it held `maxEvents`. */
    droppedEvents: number;
    maxEvents: number;
    kernelProfiling: boolean;
  };
}

/** A running (or stopped) recording. */
export interface TraceRecorder {
  /** True until {@link TraceRecorder.stop}. */
  readonly recording: boolean;
  /** Events dropped so far because the ring was full. */
  readonly dropped: number;
  /** Stop listening (and turn kernel profiling back off if this recorder turned it on). Idempotent. */
  stop(): void;
  /** The trace so far (a snapshot; recording continues unless stopped). */
  toJSON(): ChromeTrace;
  /** Write the trace as JSON to `path` atomically (temp file, fsync, rename): a crash never leaves half a file. */
  save(path: string): Promise<void>;
  [Symbol.dispose](): void;
}

/** The one process every track belongs to. */
const PID = 1;
/** Track of training steps. */
const STEP_TID = 1;
/** Memory samples closer than this (µs) to the previous one on the same device are merged into it. */
export const COALESCE_US = 10;

/** A fixed-capacity FIFO that overwrites its oldest entry when full. */
class Ring<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private size = 0;
  /** Entries ever pushed; entry `n` (0-based) is in the ring while `n >= pushed - size`. */
  pushed = 0;
  dropped = 0;

  constructor(readonly capacity: number) {
    this.items = new Array<T | undefined>(capacity);
  }

  /** Append; returns the entry's sequence number. */
  push(item: T): number {
    const at = (this.head + this.size) % this.capacity;
    if (this.size === this.capacity) {
      this.head = (this.head + 1) % this.capacity;
      this.dropped++;
    } else this.size++;
    this.items[at] = item;
    return this.pushed++;
  }

  holds(seq: number): boolean {
    return seq >= this.pushed - this.size && seq < this.pushed;
  }

  toArray(): T[] {
    const out: T[] = new Array<T>(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.items[(this.head + i) % this.capacity]!;
    return out;
  }
}

/** Per-device bookkeeping: tracks and the running bytes per owner. */
interface DeviceTrack {
  runTid: number;
  kernelTid: number;
  byOwner: Record<MemoryOwner, number>;
  /** The last memory counter event and its ring sequence number (for coalescing). */
  last?: { event: TraceEvent; seq: number };
}

/**
 * Start recording the telemetry stream. Memory counters start from the current `stats()`, so the
 * trace's values are absolute device usage, not deltas since the start.
 *
 * ```ts
 * const trace = startTrace({ kernels: true });
 * for (...) trainStep();
 * trace.stop();
 * await trace.save('trace.json'); // open in ui.perfetto.dev or chrome://tracing
 * ```
 */
export function startTrace(opts: TraceOptions = {}): TraceRecorder {
  const maxEvents = opts.maxEvents ?? 1e6;
  if (!Number.isInteger(maxEvents) || maxEvents < 1)
    throw new RangeError(`startTrace: maxEvents must be a positive integer, got ${maxEvents}`);
  const kernels = opts.kernels ?? false;
  const t0 = now();
  const ring = new Ring<TraceEvent>(maxEvents);
  const meta: TraceEvent[] = [
    { name: 'process_name', ph: 'M', ts: 0, pid: PID, tid: 0, args: { name: 'tessera' } },
    { name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid: STEP_TID, args: { name: 'training steps' } },
    { name: 'thread_sort_index', ph: 'M', ts: 0, pid: PID, tid: STEP_TID, args: { sort_index: 0 } },
  ];
  const devices = new Map<string, DeviceTrack>();
  // Microseconds since t0, rounded to nanoseconds so the JSON stays short; never negative, because an
  // event may carry a start time read just before the recording began.
  const us = (ms: number): number => Math.max(0, Math.round((ms - t0) * 1e6) / 1e3);
  const usDur = (ms: number): number => Math.max(0, Math.round(ms * 1e6) / 1e3);

  const track = (device: string, initial?: Record<MemoryOwner, number>): DeviceTrack => {
    let d = devices.get(device);
    if (d) return d;
    const runTid = 2 + devices.size * 2;
    d = {
      runTid,
      kernelTid: runTid + 1,
      byOwner: initial
        ? { ...initial }
        : (Object.fromEntries(MEMORY_OWNERS.map((o) => [o, 0])) as Record<MemoryOwner, number>),
    };
    devices.set(device, d);
    meta.push(
      { name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid: runTid, args: { name: `${device} runs` } },
      { name: 'thread_sort_index', ph: 'M', ts: 0, pid: PID, tid: runTid, args: { sort_index: runTid } },
      { name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid: runTid + 1, args: { name: `${device} kernels` } },
      {
        name: 'thread_sort_index',
        ph: 'M',
        ts: 0,
        pid: PID,
        tid: runTid + 1,
        args: { sort_index: runTid + 1 },
      },
    );
    return d;
  };

  const counter = (device: string, d: DeviceTrack, ts: number): void => {
    const t = us(ts);
    const last = d.last;
    // Coalesce: a change right after the previous sample updates that sample (its values become the
    // state after the burst), as long as the sample is still in the ring.
    if (last && t - last.event.ts <= COALESCE_US && ring.holds(last.seq)) {
      last.event.args = { ...d.byOwner };
      return;
    }
    const event: TraceEvent = {
      name: `memory ${device}`,
      ph: 'C',
      ts: t,
      pid: PID,
      tid: 0,
      cat: 'memory',
      args: { ...d.byOwner },
    };
    d.last = { event, seq: ring.push(event) };
  };

  const onEvent = (e: TelemetryEvent): void => {
    switch (e.type) {
      case 'alloc': {
        const d = track(e.device);
        d.byOwner[e.owner] += e.bytes;
        counter(e.device, d, e.ts);
        break;
      }
      case 'free': {
        const d = track(e.device);
        d.byOwner[e.owner] -= e.bytes;
        counter(e.device, d, e.ts);
        break;
      }
      case 'owner': {
        const d = track(e.device);
        d.byOwner[e.from] -= e.bytes;
        d.byOwner[e.to] += e.bytes;
        counter(e.device, d, e.ts);
        break;
      }
      case 'run': {
        const d = track(e.device);
        const start = e.ts; // 'run' and 'kernel' carry their start time (events.ts)
        ring.push({
          name: e.label || 'run',
          ph: 'X',
          ts: us(start),
          dur: usDur(e.dur),
          pid: PID,
          tid: d.runTid,
          cat: 'run',
          args: { kernels: e.kernels, device: e.device },
        });
        break;
      }
      case 'kernel': {
        const d = track(e.device);
        const start = e.ts; // 'run' and 'kernel' carry their start time (events.ts)
        ring.push({
          name: e.name,
          ph: 'X',
          ts: us(start),
          dur: usDur(e.dur),
          pid: PID,
          tid: d.kernelTid,
          cat: 'kernel',
          args: { device: e.device },
        });
        break;
      }
      case 'step': {
        // markStep is called when a step has ended: `ts` is the end.
        const args: Record<string, unknown> = { step: e.step, ms: e.dur };
        if (e.loss !== undefined) args.loss = e.loss;
        ring.push({
          name: `step ${e.step}`,
          ph: 'X',
          ts: us(e.ts - e.dur),
          dur: usDur(e.dur),
          pid: PID,
          tid: STEP_TID,
          cat: 'step',
          args,
        });
        if (e.loss !== undefined && Number.isFinite(e.loss))
          ring.push({
            name: 'loss',
            ph: 'C',
            ts: us(e.ts),
            pid: PID,
            tid: 0,
            cat: 'step',
            args: { loss: e.loss },
          });
        break;
      }
    }
  };

  // Baseline: what each device already holds, so counters are absolute.
  for (const [device, s] of Object.entries(stats())) counter(device, track(device, s.byOwner), t0);

  let unsubscribe: (() => void) | undefined = subscribe(onEvent);
  if (kernels) setKernelProfiling(true);

  const recorder: TraceRecorder = {
    get recording() {
      return unsubscribe !== undefined;
    },
    get dropped() {
      return ring.dropped;
    },
    stop() {
      if (!unsubscribe) return;
      unsubscribe();
      unsubscribe = undefined;
      if (kernels) setKernelProfiling(false);
    },
    toJSON(): ChromeTrace {
      return {
        traceEvents: [...meta.map((m) => ({ ...m })), ...ring.toArray().map((e) => ({ ...e }))],
        displayTimeUnit: 'ms',
        metadata: {
          producer: 'tessera',
          startTime: new Date(t0).toISOString(),
          startEpochMs: t0,
          droppedEvents: ring.dropped,
          maxEvents,
          kernelProfiling: kernels,
        },
      };
    },
    async save(path: string): Promise<void> {
      await writeFileAtomic(path, JSON.stringify(recorder.toJSON()));
    },
    [Symbol.dispose]() {
      recorder.stop();
    },
  };
  return recorder;
}
