/**
 * Tessera: lazy tensors compiled into a few fused, memory-planned kernels (environment-neutral API;
 * the Node entry point `index.ts` adds the native CPU and Dawn devices, `browser.ts` the browser WebGPU device).
 * @packageDocumentation
 */
export * from './tensor/tensor.js';
export { noGrad, enableGrad, manualSeed, tidy } from './tensor/context.js';
export { checkpoint } from './tensor/checkpoint.js';
export { autocast, autocastDType } from './tensor/autocast.js';
export type { AutocastDType, AutocastOptions } from './tensor/autocast.js';
export { engineOptions, lastRealizeStats, realizeTotals, planSchedule, describeSchedule } from './tensor/realize.js';
export * from './errors.js';
export type { DType } from './dtype.js';
export { DTYPES, promoteTypes } from './dtype.js';
export { getRuntime, setDefaultDevice, getDefaultDevice, listDevices, registerDevice, resolveDevice } from './runtime/registry.js';
export type { WebGPUDeviceInfo } from './runtime/webgpu/backend.js';
export { setDebug } from './debug.js';
export * as memory from './memory/index.js';
export { jit } from './jit/jit.js';
export type { Jitted, JitStats } from './jit/jit.js';
