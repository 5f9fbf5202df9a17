/**
 * Tessera: lazy tensors compiled into a few fused, memory-planned kernels. Node entry point: devices
 * 'interp', 'cpu' (native C kernels), 'webgpu' (Dawn) and 'auto'.
 * @packageDocumentation
 */
import './runtime/node_devices.js';
export * from './api.js';
