/**
 * The engine loop on the calling thread: one scheduler step per macrotask (`setImmediate`), so requests
 * submitted and cancelled between steps join and leave the batch at the next step. A step blocks the
 * event loop while it computes; servers use the worker engine (`createEngine`), this one serves tests,
 * benchmarks and the worker itself.
 */
import type { Llama } from '../../nn/llama.js';
import { EngineOverloadedError, type Engine, type EngineCallbacks, type EngineHandle, type EngineRequest, type EngineStats, type ServedModelInfo, type StepTiming } from '../types.js';
import { buildServingStack, resolveEngineOptions, warmUp, type EngineOptions } from './options.js';
import type { PagedLlama } from './paged_model.js';
import type { Scheduler, StepReport } from './scheduler.js';
import { openStepTrace, type StepTrace } from './step_trace.js';

/** Options of {@link createInProcessEngine}: those of `createEngine`, with a model object allowed. */
export type InProcessEngineOptions = Omit<EngineOptions, 'model'> & {
  /** A GGUF path, or a Llama already on the engine's device. */
  model: string | Llama;
  /** Called after every step (the worker uses it to stream results). */
  onStep?: (report: StepReport) => void;
};

/** Idle time after which the engine compiles promoted shape buckets (see `scheduleIdleCompile`). */
export const IDLE_COMPILE_DELAY_MS = 200;

export class InProcessEngine implements Engine {
  private looping = false;
  private closed = false;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private isReady = false;
  private idle: (() => void)[] = [];
  private readonly stepListeners = new Set<(s: StepTiming) => void>();

  constructor(
    readonly model: ServedModelInfo,
    readonly scheduler: Scheduler,
    readonly paged: PagedLlama,
    private readonly stepHook?: (report: StepReport) => void,
    private readonly trace?: StepTrace,
  ) {}

  /** Mark ready (the first step is compiled). */
  markReady(): void {
    this.isReady = true;
  }

  submit(req: EngineRequest, cb: EngineCallbacks): EngineHandle {
    if (this.closed) throw new EngineOverloadedError('the engine is shutting down', 5);
    const h = this.scheduler.submit(req, cb);
    this.kick();
    return {
      cancel: () => {
        h.cancel();
        this.kick();
      },
      finish: () => {
        h.finish();
        this.kick();
      },
    };
  }

  onStep(listener: (s: StepTiming) => void): () => void {
    this.stepListeners.add(listener);
    return () => this.stepListeners.delete(listener);
  }

  stats(): EngineStats {
    return this.scheduler.stats();
  }

  ready(): boolean {
    return this.isReady && !this.closed;
  }

  /** Resolves when no request is waiting or running. */
  whenIdle(): Promise<void> {
    if (!this.looping && !this.scheduler.hasWork()) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Start the step loop if it is not running. */
  private kick(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.looping || this.closed) return;
    this.looping = true;
    setImmediate(this.loop);
  }

  /**
   * After `IDLE_COMPILE_DELAY_MS` without work, compile the shape buckets that traffic has been promoting
   * (one per macrotask, so a request arriving meanwhile waits for at most one compilation).
   */
  private scheduleIdleCompile(): void {
    if (this.closed || this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.closed || this.looping || this.scheduler.hasWork()) return;
      let compiled: string | undefined;
      try {
        compiled = this.paged.compilePending();
      } catch {
        // A bucket that fails to compile here fails again, visibly, when a step needs it.
      }
      if (compiled) this.scheduleIdleCompile();
    }, IDLE_COMPILE_DELAY_MS);
    this.idleTimer.unref?.();
  }

  private readonly loop = (): void => {
    if (this.closed) return;
    let report: StepReport | undefined;
    try {
      report = this.scheduler.step();
    } catch (e) {
      // A scheduler bug must not leave requests hanging: end them all with the reason.
      this.scheduler.endAll('error', `engine step failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (report) {
      this.trace?.write(report);
      this.stepHook?.(report);
      const { ms, prefillTokens, decodeTokens, batchSize, compiled, compiledShape } = report;
      for (const l of this.stepListeners) l({ ms, prefillTokens, decodeTokens, batchSize, compiled, ...(compiledShape ? { compiledShape } : {}) });
    }
    if (this.scheduler.hasWork() && report) {
      setImmediate(this.loop);
      return;
    }
    this.looping = false;
    // Work left but no step possible would be a scheduler bug: fail those requests instead of hanging.
    if (this.scheduler.hasWork()) this.scheduler.endAll('error', 'the scheduler could not make progress');
    for (const f of this.idle.splice(0)) f();
    this.scheduleIdleCompile();
  };

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.scheduler.endAll('cancelled');
    for (const f of this.idle.splice(0)) f();
    this.paged.dispose();
    this.trace?.close();
  }
}

/**
 * An engine that computes on the calling thread (tests, benchmarks; `maxBatch: 1` gives the
 * one-request-at-a-time baseline). Loads the model, sizes the KV pool and compiles the first step.
 */
export function createInProcessEngine(opts: InProcessEngineOptions): InProcessEngine {
  const resolved = resolveEngineOptions(opts);
  const stack = buildServingStack(opts.model, resolved);
  const engine = new InProcessEngine(stack.info, stack.scheduler, stack.model, opts.onStep, resolved.stepTrace !== undefined ? openStepTrace(resolved.stepTrace) : undefined);
  warmUp(stack.model, resolved);
  engine.markReady();
  return engine;
}
