/**
 * Tessera for browsers: the environment-neutral API, `nn`, `optim` and `jit`, with WebGPU through
 * `navigator.gpu` (`await initWebGPU()`) and the interpreter. Never loads the native CPU backend, Dawn
 * or any `node:` module. Reads are asynchronous here: `await t.data()`, `await t.item()`.
 * @packageDocumentation
 */
export * from './api.js';
export * as nn from './nn/api.js';
export * as optim from './optim/api.js';
export { initWebGPU } from './runtime/webgpu/browser.js';
export type { InitWebGPUOptions } from './runtime/webgpu/browser.js';
