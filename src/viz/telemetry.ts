/**
 * The dashboard's view of the telemetry stream: listens to every event and, once per sampling
 * interval, condenses it into one {@link MemorySample} (bytes per owner and peak per device), the
 * largest live tensors, new peak markers and finished-step records. Keeps bounded histories of
 * samples and steps for clients that connect later.
 *
 * A sample holds the **highest moment of its interval**, not the state at the tick: a realize's arena
 * lives for milliseconds, so sampling the state every 250 ms would almost never see activations, and
 * the chart would hide exactly the memory that decides whether a model fits.
 */
import type { MemoryOwner, TelemetryEvent } from '../memory/events.js';
import { MEMORY_OWNERS, setKernelProfiling, subscribe } from '../memory/events.js';
import { liveAllocations, stats } from '../memory/stats.js';
import type { TierSpec } from './history.js';
import { DownsampledHistory, TIME_TIERS } from './history.js';

/** One device in a sample. */
export interface DeviceSample {
  /** Bytes per owner, in {@link MEMORY_OWNERS} order, at the interval's highest moment. */
  owners: number[];
  /** Their sum. */
  total: number;
  /** All-time peak bytes of the device so far. */
  peak: number;
}

/** Memory at one sampling tick. */
export interface MemorySample {
  /** Milliseconds since the Unix epoch. */
  t: number;
  devices: Record<string, DeviceSample>;
}

/** A live allocation as the dashboard's table shows it. */
export interface TensorRow {
  label: string;
  owner: MemoryOwner;
  device: string;
  dtype: string;
  shape: number[];
  bytes: number;
}

/** A device reached a new all-time peak. */
export interface PeakMarker {
  t: number;
  device: string;
  bytes: number;
  /** Bytes per owner at the peak, in {@link MEMORY_OWNERS} order. */
  owners: number[];
}

/** Time of one kernel (by name) within a step. */
export interface KernelTime {
  name: string;
  ms: number;
  calls: number;
}

/** One training step, from `markStep` and the runs and kernels since the previous step. */
export interface StepRecord {
  step: number;
  /** When the step ended (ms since the Unix epoch). */
  t: number;
  /** Wall time of the step as reported by the loop. */
  ms: number;
  /** Time spent in program runs (realize, jit replay) during the step. */
  runMs: number;
  runs: number;
  /** Kernel launches of those runs. */
  launches: number;
  /** Summed individual kernel times (only while kernel profiling is on; else 0). */
  kernelMs: number;
  /** The slowest kernels by total time (only while profiling). */
  topKernels: KernelTime[];
  loss?: number;
}

/** What one tick produced. */
export interface Tick {
  sample: MemorySample;
  tensors: TensorRow[];
  peaks: PeakMarker[];
  steps: StepRecord[];
}

/** Everything a newly connected client needs. */
export interface Snapshot {
  owners: readonly MemoryOwner[];
  sampleMs: number;
  maxPoints: number;
  samples: MemorySample[];
  steps: StepRecord[];
  peaks: PeakMarker[];
  tensors: TensorRow[];
}

export interface TelemetryOptions {
  /** Sampling interval (ms) the samples are bucketed for (default 250). */
  sampleMs?: number;
  /** Drop memory history older than this (seconds; default: keep it all, downsampled). */
  historySeconds?: number;
  /** Most memory samples kept (default 3000). */
  maxPoints?: number;
  /** Most step records kept (default 2000; older steps are downsampled the same way). */
  maxSteps?: number;
  /** Rows of the largest-tensors table (default 10). */
  topTensors?: number;
  /** Turn kernel profiling on while listening, for per-kernel times (default false: it slows steps). */
  kernels?: boolean;
}

/** Peak markers kept for late clients. */
const MAX_PEAKS = 200;
/** A new peak gets a marker when it exceeds the last marked one by this factor. */
const PEAK_STEP = 1.01;
/** Step records sent with one tick at most. */
const MAX_PENDING_STEPS = 1000;
/** Kernels listed per step. */
const TOP_KERNELS = 5;

interface DeviceState {
  byOwner: number[];
  current: number;
  peak: number;
  /** The interval's highest moment so far. */
  high: number[];
  highTotal: number;
}

const ownerIndex = new Map<MemoryOwner, number>(MEMORY_OWNERS.map((o, i) => [o, i]));

/** Listens to the stream and aggregates; {@link Telemetry.tick} closes one sampling interval. */
export class Telemetry {
  readonly sampleMs: number;
  private readonly devices = new Map<string, DeviceState>();
  private readonly history: DownsampledHistory<MemorySample>;
  private readonly stepHistory: DownsampledHistory<StepRecord>;
  private peaks: PeakMarker[] = [];
  /** The peak each device's last marker showed. */
  private readonly markedPeak = new Map<string, number>();
  private pendingSteps: StepRecord[] = [];
  private lastTensors: TensorRow[] = [];
  private readonly topTensors: number;
  private readonly kernels: boolean;
  private unsubscribe: (() => void) | undefined;
  // Runs and kernels since the last step mark.
  private runMs = 0;
  private runs = 0;
  private launches = 0;
  private kernelTimes = new Map<string, KernelTime>();

  constructor(opts: TelemetryOptions = {}) {
    this.sampleMs = opts.sampleMs ?? 250;
    if (!(this.sampleMs > 0))
      throw new RangeError(`dashboard: sampleMs must be positive, got ${this.sampleMs}`);
    this.topTensors = opts.topTensors ?? 10;
    this.kernels = opts.kernels ?? false;
    // The finest tier matches the sampling interval, so live points are kept one for one.
    const tiers: TierSpec[] = TIME_TIERS.map((t, i) => (i === 0 ? { ...t, width: this.sampleMs } : t));
    this.history = new DownsampledHistory<MemorySample>({
      tiers,
      weight: (s) => Object.values(s.devices).reduce((a, d) => a + d.total, 0),
      maxPoints: opts.maxPoints ?? 3000,
      ...(opts.historySeconds === undefined ? {} : { maxAge: opts.historySeconds * 1000 }),
    });
    // Steps: every step for the last 1000, then the slowest of each 10, then coarser.
    this.stepHistory = new DownsampledHistory<StepRecord>({
      key: (s) => s.step,
      weight: (s) => s.ms,
      tiers: [
        { width: 1, span: 1000 },
        { width: 10, span: 5000 },
        { width: 100, span: Infinity },
      ],
      maxPoints: opts.maxSteps ?? 2000,
    });
    for (const [device, s] of Object.entries(stats())) {
      const st = this.device(device);
      st.byOwner = MEMORY_OWNERS.map((o) => s.byOwner[o]);
      st.current = s.current;
      st.peak = s.peak;
      st.high = [...st.byOwner];
      st.highTotal = st.current;
    }
    this.unsubscribe = subscribe((e) => this.onEvent(e));
    if (this.kernels) setKernelProfiling(true);
  }

  /** Stop listening (and turn kernel profiling back off if this turned it on). Idempotent. */
  close(): void {
    if (!this.unsubscribe) return;
    this.unsubscribe();
    this.unsubscribe = undefined;
    if (this.kernels) setKernelProfiling(false);
  }

  /** Close the current interval at time `t`: record and return its sample and what else is new. */
  tick(t: number = Date.now()): Tick {
    const sample: MemorySample = { t, devices: {} };
    const peaks: PeakMarker[] = [];
    for (const [device, d] of this.devices) {
      sample.devices[device] = { owners: d.high, total: d.highTotal, peak: d.peak };
      d.high = [...d.byOwner];
      d.highTotal = d.current;
    }
    for (const [device, s] of Object.entries(sample.devices)) {
      // One marker per tick at most, and only for a rise of more than 1% (during warm-up the peak creeps
      // up on many events in a row), and only when this interval's highest moment is the peak, so the
      // marker sits on the plotted point.
      if (s.peak > (this.markedPeak.get(device) ?? 0) * PEAK_STEP && s.total === s.peak) {
        peaks.push({ t, device, bytes: s.peak, owners: s.owners });
        this.markedPeak.set(device, s.peak);
      }
    }
    this.history.push(sample);
    this.peaks.push(...peaks);
    if (this.peaks.length > MAX_PEAKS) this.peaks.splice(0, this.peaks.length - MAX_PEAKS);
    const steps = this.pendingSteps;
    this.pendingSteps = [];
    this.lastTensors = liveAllocations(this.topTensors).map((a) => ({
      label: a.label ?? `#${a.id}`,
      owner: a.owner,
      device: a.device,
      dtype: a.dtype,
      shape: [...a.shape],
      bytes: a.bytes,
    }));
    return { sample, tensors: this.lastTensors, peaks, steps };
  }

  /** The (downsampled) history so far. */
  snapshot(): Snapshot {
    return {
      owners: MEMORY_OWNERS,
      sampleMs: this.sampleMs,
      maxPoints: this.history.maxPoints,
      samples: this.history.points(),
      steps: this.stepHistory.points(),
      peaks: [...this.peaks],
      tensors: this.lastTensors,
    };
  }

  private device(name: string): DeviceState {
    let d = this.devices.get(name);
    if (!d) {
      const zeros = MEMORY_OWNERS.map(() => 0);
      d = { byOwner: zeros, current: 0, peak: 0, high: [...zeros], highTotal: 0 };
      this.devices.set(name, d);
    }
    return d;
  }

  private change(device: string, owner: MemoryOwner, delta: number): void {
    const d = this.device(device);
    d.byOwner[ownerIndex.get(owner)!]! += delta;
    d.current += delta;
    if (d.current > d.peak) d.peak = d.current;
    if (d.current > d.highTotal) {
      d.highTotal = d.current;
      d.high = [...d.byOwner];
    }
  }

  private onEvent(e: TelemetryEvent): void {
    switch (e.type) {
      case 'alloc':
        return this.change(e.device, e.owner, e.bytes);
      case 'free':
        return this.change(e.device, e.owner, -e.bytes);
      case 'owner': {
        const d = this.device(e.device);
        d.byOwner[ownerIndex.get(e.from)!]! -= e.bytes;
        d.byOwner[ownerIndex.get(e.to)!]! += e.bytes;
        // At the interval's high, the same bytes now belong to another owner: show the newer split.
        if (d.current >= d.highTotal) d.high = [...d.byOwner];
        return;
      }
      case 'run':
        this.runMs += e.dur;
        this.runs++;
        this.launches += e.kernels;
        return;
      case 'kernel': {
        const k = this.kernelTimes.get(e.name) ?? { name: e.name, ms: 0, calls: 0 };
        k.ms += e.dur;
        k.calls++;
        this.kernelTimes.set(e.name, k);
        return;
      }
      case 'step': {
        const kernels = [...this.kernelTimes.values()].sort((a, b) => b.ms - a.ms);
        const record: StepRecord = {
          step: e.step,
          t: e.ts,
          ms: e.dur,
          runMs: this.runMs,
          runs: this.runs,
          launches: this.launches,
          kernelMs: kernels.reduce((a, k) => a + k.ms, 0),
          topKernels: kernels.slice(0, TOP_KERNELS),
          ...(e.loss === undefined ? {} : { loss: e.loss }),
        };
        this.stepHistory.push(record);
        this.pendingSteps.push(record);
        // A loop far faster than the ticks must not grow this without bound; the history has the rest.
        if (this.pendingSteps.length > MAX_PENDING_STEPS) this.pendingSteps.shift();
        this.runMs = 0;
        this.runs = 0;
        this.launches = 0;
        this.kernelTimes = new Map();
        return;
      }
    }
  }
}
