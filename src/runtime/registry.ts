import { DeviceError } from '../errors.js';
import type { Runtime } from './device.js';
import { CpuRuntime } from './cpu/cpu.js';
import { InterpRuntime } from './interp.js';

/**
 * Device registry. Backends register a factory and are constructed on first use, so that a browser
 * bundle never loads a backend it does not run (native CPU needs `koffi` and a C compiler).
 */
const factories = new Map<string, () => Runtime>([
  ['interp', () => new InterpRuntime()],
  ['cpu', cpuOrFallback],
]);

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
const instances = new Map<string, Runtime>();

let defaultDevice = readEnvDevice() ?? 'interp';

function readEnvDevice(): string | undefined {
  const env = typeof process !== 'undefined' ? process.env?.TESSERA_DEVICE : undefined;
  return env && env.length ? env : undefined;
}

/** Make a backend available under `name` (called by backend modules when they load). */
export function registerDevice(name: string, factory: () => Runtime): void {
  factories.set(name, factory);
  instances.delete(name);
}

/** The names of registered devices. */
export function listDevices(): string[] {
  return [...factories.keys()];
}

/** The runtime for a device name, created on first use. */
export function getRuntime(name: string = defaultDevice): Runtime {
  let rt = instances.get(name);
  if (rt) return rt;
  const f = factories.get(name);
  if (!f) throw new DeviceError(`unknown device '${name}': expected one of ${listDevices().join(', ')}`);
  rt = f();
  instances.set(name, rt);
  return rt;
}

/** Device used when a tensor is created without one (`TESSERA_DEVICE` mirrors this). */
export function setDefaultDevice(name: string): void {
  if (!factories.has(name)) throw new DeviceError(`unknown device '${name}': expected one of ${listDevices().join(', ')}`);
  defaultDevice = name;
}
export function getDefaultDevice(): string {
  return defaultDevice;
}
