/**
 * Messages between the engine worker and its client on the main thread. Results of a step travel as
 * one message (tokens and ends in order, then the stats after them), so a busy engine posts one message
 * per step, not one per token.
 */
import type { EngineRequest, EngineStats, EngineUsage, FinishReason, ServedModelInfo, StepTiming } from '../types.js';
import type { AdmissionLimits } from './admission.js';
import type { EngineOptions } from './options.js';

/** What the worker is started with (`workerData`). */
export interface WorkerInit {
  options: EngineOptions;
}

export type ToWorker = { t: 'submit'; req: EngineRequest } | { t: 'cancel'; id: string } | { t: 'finish'; id: string } | { t: 'close' };

/** One request's event, in the order the engine produced them. */
export type EngineEvent =
  | { k: 'token'; id: string; token: number }
  | { k: 'done'; id: string; reason: FinishReason; usage: EngineUsage; error?: string }
  /** Admitted into the running batch for the first time (it left the waiting queue). */
  | { k: 'admitted'; id: string };

export type FromWorker =
  | { t: 'ready'; info: ServedModelInfo; limits: AdmissionLimits; stats: EngineStats }
  | { t: 'failed'; message: string }
  | { t: 'events'; events: EngineEvent[]; stats: EngineStats; retryAfterSeconds: number; step?: StepTiming }
  | { t: 'closed' };
