/**
 * The continuous-batching engine with a paged KV cache: `createEngine` runs it on a worker thread (for
 * servers), `createInProcessEngine` on the calling thread (tests, benchmarks, the batch-size-1 baseline).
 */
export { createEngine, WorkerEngine } from './client.js';
export { createInProcessEngine, InProcessEngine, type InProcessEngineOptions } from './in_process.js';
export { ENGINE_DEFAULTS, type EngineOptions } from './options.js';
export { PagedLlama, type PagedLlamaOptions } from './paged_model.js';
export { Scheduler, type SchedulerOptions, type StepReport } from './scheduler.js';
export type { StepModel, StepSequence } from './step_model.js';
