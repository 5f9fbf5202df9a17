/**
 * `optim`: optimizers (SGD, AdamW) whose step runs forward, backward and update as one schedule,
 * gradient clipping, and learning-rate schedules.
 * @packageDocumentation
 */
import '../runtime/node_devices.js';
export * from './api.js';
