/**
 * `optim`: optimizers (SGD, AdamW) whose step runs forward, backward and update as one schedule,
 * gradient clipping, and learning-rate schedules.
 * @packageDocumentation
 */
export { Optimizer, makeScalar, zerosState } from './optimizer.js';
export type { StepOptions, PendingStep, UpdatePair, UpdateContext } from './optimizer.js';
export { SGD } from './sgd.js';
export type { SGDOptions } from './sgd.js';
export { AdamW } from './adamw.js';
export type { AdamWOptions } from './adamw.js';
export { clipGradNorm } from './clip.js';
export { cosineWithWarmup, linearWarmup, constantSchedule, LRScheduler } from './schedule.js';
export type { LrSchedule, CosineWithWarmupOptions, LinearWarmupOptions } from './schedule.js';
export { GradScaler } from './grad_scaler.js';
export type { GradScalerOptions, GradScalerState } from './grad_scaler.js';
export { GradientAccumulator } from './accumulate.js';
export type { PrepareStepOptions } from './optimizer.js';
