/// <reference types="@webgpu/types" />
import { DeviceError } from '../../errors.js';
import { registerDevice, setDefaultDevice } from '../registry.js';
import type { Command, Transport, WebGPUDeviceInfo } from './backend.js';
import { WebGPURuntime } from './backend.js';
import { Executor, describeDevice, requestComputeDevice } from './executor.js';

/** The browser transport: the executor runs on the page's thread; reads are asynchronous. */
class DirectTransport implements Transport {
  constructor(private readonly exec: Executor) {}
  send(cmds: Command[]): void {
    try {
      this.exec.run(cmds);
    } catch (e) {
      this.exec.pendingErrors.push(Promise.resolve(e instanceof Error ? e.message : String(e)));
    }
  }
  async read(id: number, offset: number, bytes: number): Promise<Uint8Array> {
    try {
      return await this.exec.read(id, offset, bytes);
    } catch (e) {
      throw new DeviceError(`webgpu: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  async sync(): Promise<void> {
    try {
      await this.exec.sync();
    } catch (e) {
      throw new DeviceError(`webgpu: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  trim(): void {
    this.exec.trim();
  }
  close(): void {
    this.exec.destroy();
  }
}

export interface InitWebGPUOptions {
  /** Make 'webgpu' the default device of new tensors (default true). */
  makeDefault?: boolean;
  powerPreference?: GPUPowerPreference;
}

/**
 * Open the browser's WebGPU device (`navigator.gpu`) and register it as Tessera's device 'webgpu'.
 * In browsers reads are asynchronous: use `await t.data()` / `await t.item()`.
 *
 * @example
 * ```js
 * import { initWebGPU, randn } from 'tessera/browser';
 * const info = await initWebGPU();
 * console.log(info.description, await randn([4]).sum().item());
 * ```
 */
export async function initWebGPU(opts: InitWebGPUOptions = {}): Promise<WebGPUDeviceInfo> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new DeviceError('webgpu: this browser has no navigator.gpu (WebGPU needs a secure context: https or http://localhost)');
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new DeviceError('webgpu: no WebGPU adapter found');
  const device = await requestComputeDevice(adapter);
  const info = describeDevice(adapter, device) as WebGPUDeviceInfo;
  const rt = new WebGPURuntime(info, new DirectTransport(new Executor(device, [gpu, adapter])));
  registerDevice('webgpu', () => rt);
  if (opts.makeDefault ?? true) setDefaultDevice('webgpu');
  return info;
}
