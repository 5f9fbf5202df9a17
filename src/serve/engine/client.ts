/**
 * The engine as the HTTP layer uses it, on the main thread: a proxy to the engine worker. `submit`
 * decides synchronously, from the model's limits and the client's own count of queued requests (a
 * request leaves the queue when the worker reports it admitted), so a rejection never waits for the
 * worker. Tokens and ends arrive one message per engine step.
 */
import { Worker } from 'node:worker_threads';
import { DeviceError } from '../../errors.js';
import {
  EngineOverloadedError,
  EngineRequestError,
  type Engine,
  type EngineCallbacks,
  type EngineHandle,
  type EngineRequest,
  type EngineStats,
  type ServedModelInfo,
  type StepTiming,
} from '../types.js';
import { checkQueue, validateRequest, type AdmissionLimits } from './admission.js';
import { resolveEngineOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';
import type { EngineEvent, FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { engineWorkerURL } from './worker_entry.js';

export class WorkerEngine implements Engine {
  private readonly callbacks = new Map<string, EngineCallbacks>();
  /** Submitted, not yet admitted by the worker. */
  private readonly queued = new Set<string>();
  private lastStats: EngineStats;
  private readonly stepListeners = new Set<(s: StepTiming) => void>();
  private retryAfter = 1;
  private closed = false;
  private exited = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly worker: Worker,
    readonly model: ServedModelInfo,
    private readonly limits: AdmissionLimits,
    private readonly opts: ResolvedEngineOptions,
    stats: EngineStats,
  ) {
    this.lastStats = stats;
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.failAll(`engine worker failed: ${e.message}`));
    worker.on('exit', (code) => {
      this.exited = true;
      this.failAll(`engine worker exited (code ${code})`);
    });
    this.updateRef();
  }

  submit(req: EngineRequest, cb: EngineCallbacks): EngineHandle {
    if (this.closed || this.exited) throw new EngineOverloadedError('the engine is shutting down', 5);
    validateRequest(req, this.limits);
    if (this.callbacks.has(req.id)) throw new EngineRequestError(`a request with id '${req.id}' is already queued or running`, 'id');
    checkQueue(this.queued.size, this.opts.maxWaiting, this.retryAfter);
    this.callbacks.set(req.id, cb);
    this.queued.add(req.id);
    this.send({ t: 'submit', req: { ...req, promptTokens: [...req.promptTokens], stopTokenIds: [...req.stopTokenIds], sampling: { ...req.sampling } } });
    this.updateRef();
    const end = (t: 'cancel' | 'finish') => () => {
      if (this.callbacks.has(req.id)) this.send({ t, id: req.id });
    };
    return { cancel: end('cancel'), finish: end('finish') };
  }

  onStep(listener: (s: StepTiming) => void): () => void {
    this.stepListeners.add(listener);
    return () => this.stepListeners.delete(listener);
  }

  stats(): EngineStats {
    // The queue as this thread sees it includes requests the worker has not picked up yet.
    return { ...this.lastStats, waiting: this.queued.size };
  }

  ready(): boolean {
    return !this.closed && !this.exited;
  }

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      this.worker.ref();
      this.worker.once('exit', () => resolve());
      this.send({ t: 'close' });
    });
    return this.closing;
  }

  private send(m: ToWorker): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  /** Keep the process alive only while requests are in flight (an idle engine must not hold it). */
  private updateRef(): void {
    if (this.closed) return;
    if (this.callbacks.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'events') {
      this.lastStats = m.stats;
      this.retryAfter = m.retryAfterSeconds;
      for (const e of m.events) this.deliver(e);
      if (m.step) for (const l of this.stepListeners) l(m.step);
      this.updateRef();
    } else if (m.t === 'closed') {
      this.failAll('the engine closed', 'cancelled');
      // Native thread pools may keep the thread's loop alive: its work is done, end it.
      void this.worker.terminate();
    }
  }

  private deliver(e: EngineEvent): void {
    const cb = this.callbacks.get(e.id);
    if (!cb) return;
    if (e.k === 'admitted') {
      this.queued.delete(e.id);
    } else if (e.k === 'token') {
      cb.onToken(e.token);
    } else {
      this.queued.delete(e.id);
      this.callbacks.delete(e.id);
      cb.onDone(e.reason, e.usage, e.error);
    }
  }

  /** End every request still in flight (the worker is gone). */
  private failAll(message: string, reason: 'error' | 'cancelled' = 'error'): void {
    for (const [id, cb] of [...this.callbacks]) {
      this.callbacks.delete(id);
      this.queued.delete(id);
      cb.onDone(reason, { promptTokens: 0, completionTokens: 0, cachedTokens: 0, queueMs: 0, preemptions: 0 }, reason === 'error' ? message : undefined);
    }
  }
}

/**
 * Start the continuous-batching engine on a worker thread: it loads the GGUF model, sizes the paged KV
 * pool from `kvCacheBytes` and compiles the first step; resolves once it is ready.
 *
 * @throws ValueError for bad options (before starting anything); DeviceError when the worker fails to
 *   load the model (its message says why).
 */
export async function createEngine(options: EngineOptions): Promise<Engine> {
  const opts = resolveEngineOptions(options);
  const init: WorkerInit = { options: { ...options } };
  const worker = new Worker(await engineWorkerURL(), { workerData: init });
  const first = await new Promise<FromWorker>((resolve, reject) => {
    const onExit = (code: number) => reject(new DeviceError(`engine worker exited while starting (code ${code})`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (m: FromWorker) => {
      // Only our own listeners: the Worker's internal ones keep its message port working.
      worker.off('error', reject);
      worker.off('exit', onExit);
      resolve(m);
    });
  });
  if (first.t !== 'ready') {
    await worker.terminate();
    throw new DeviceError(`engine: ${first.t === 'failed' ? first.message : `unexpected first message '${first.t}'`}`);
  }
  return new WorkerEngine(worker, first.info, first.limits, opts, first.stats);
}
