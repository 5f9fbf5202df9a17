/**
 * Tessera: lazy tensors compiled into a few fused, memory-planned kernels. Node entry point: devices
 * 'interp', 'cpu' (native C kernels), 'webgpu' (Dawn) and 'auto'.
 * @packageDocumentation
 */
import './runtime/node_devices.js';
export * from './api.js';
// Node adds file-backed telemetry (snapshot files, Chrome traces) and the live dashboard.
export * as memory from './memory/node.js';
export { startDashboard } from './viz/index.js';
