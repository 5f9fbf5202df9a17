import { DeviceError } from '../errors.js';
import { CpuRuntime } from './cpu/cpu.js';
import type { Runtime } from './device.js';
import { InterpRuntime } from './interp.js';
import { registerDevice } from './registry.js';
import { createNodeWebGPU } from './webgpu/node.js';

/**
 * Devices that exist only in Node: the native CPU backend (a C compiler and koffi) and WebGPU through
 * Dawn (the `webgpu` package) on a worker thread. Imported for its effect by the Node entry point.
 */

let warned = false;
/** The native CPU runtime, or the interpreter (with a one-time warning) when no C compiler works. */
function cpuOrFallback(): Runtime {
  try {
    return new CpuRuntime();
  } catch (e) {
    if (!(e instanceof DeviceError)) throw e;
    if (!warned) console.warn(`tessera: ${e.message}; falling back to the interpreter for device 'cpu'`);
    warned = true;
    return new InterpRuntime();
  }
}

registerDevice('cpu', cpuOrFallback);
registerDevice('webgpu', createNodeWebGPU);
