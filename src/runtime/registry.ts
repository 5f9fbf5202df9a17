import { DeviceError } from '../errors.js';
import type { Runtime } from './device.js';
import { InterpRuntime } from './interp.js';

/**
 * Device registry. Backends register a factory and are constructed on first use, so that a browser
 * bundle never loads a backend it does not run: the native CPU backend (koffi, a C compiler) and Dawn
 * are registered by `node_devices.ts`, which only the Node entry point imports.
 *
 * The name 'auto' picks the best device that works here: WebGPU when an adapter is found, else the
 * native CPU backend, else the interpreter.
 */
const factories = new Map<string, () => Runtime>([['interp', () => new InterpRuntime()]]);
const instances = new Map<string, Runtime>();
/** Preference order of 'auto'. */
const AUTO_ORDER = ['webgpu', 'cpu', 'interp'];
let autoChoice: string | undefined;

let defaultDevice = readEnvDevice() ?? 'interp';

function readEnvDevice(): string | undefined {
  const env = typeof process !== 'undefined' ? process.env?.TESSERA_DEVICE : undefined;
  return env && env.length ? env : undefined;
}

/** Make a backend available under `name` (called by backend modules when they load). */
export function registerDevice(name: string, factory: () => Runtime): void {
  factories.set(name, factory);
  instances.delete(name);
  autoChoice = undefined;
}

/** The names of registered devices (plus 'auto'). */
export function listDevices(): string[] {
  return [...factories.keys(), 'auto'];
}

const unknown = (name: string) => new DeviceError(`unknown device '${name}': expected one of ${listDevices().join(', ')}`);

/** The concrete device 'auto' stands for here (the first of webgpu, cpu, interp that starts). */
function resolveAuto(): string {
  if (autoChoice) return autoChoice;
  for (const name of AUTO_ORDER) {
    if (!factories.has(name)) continue;
    try {
      getRuntime(name);
      return (autoChoice = name);
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
    }
  }
  return (autoChoice = 'interp');
}

/** A device name as tensors record it: `undefined` is the default device, 'auto' the best one found. */
export function resolveDevice(name: string | undefined): string {
  const n = name ?? defaultDevice;
  if (n === 'auto') return resolveAuto();
  return n;
}

/** The runtime for a device name, created on first use. */
export function getRuntime(name: string = defaultDevice): Runtime {
  if (name === 'auto') name = resolveAuto();
  let rt = instances.get(name);
  if (rt) return rt;
  const f = factories.get(name);
  if (!f) throw unknown(name);
  rt = f();
  instances.set(name, rt);
  return rt;
}

/** Device used when a tensor is created without one (`TESSERA_DEVICE` mirrors this). */
export function setDefaultDevice(name: string): void {
  if (name !== 'auto' && !factories.has(name)) throw unknown(name);
  defaultDevice = name;
}
export function getDefaultDevice(): string {
  return resolveDevice(undefined);
}
