import { Worker } from 'node:worker_threads';
import { DeviceError } from '../../errors.js';
import type { Command, Transport, WebGPUDeviceInfo } from './backend.js';
import { WebGPURuntime } from './backend.js';

/** How long the main thread waits for a blocking answer before declaring the device hung. */
const ANSWER_TIMEOUT_MS = Number(process.env.TESSERA_WEBGPU_TIMEOUT_MS ?? 600_000);

/** Block until the worker fills a shared answer buffer; returns its payload. */
function awaitAnswer(sab: SharedArrayBuffer, what: string): Uint8Array {
  const head = new Int32Array(sab, 0, 2);
  const r = Atomics.wait(head, 0, 0, ANSWER_TIMEOUT_MS);
  if (r === 'timed-out') throw new DeviceError(`webgpu: the device thread did not answer within ${ANSWER_TIMEOUT_MS / 1000} s (${what})`);
  const payload = new Uint8Array(sab, 8, head[1]!).slice();
  if (Atomics.load(head, 0) === 2) throw new DeviceError(`webgpu: ${new TextDecoder().decode(payload)}`);
  return payload;
}

/**
 * The Node transport: Dawn runs on a worker thread (it needs a free event loop to complete buffer
 * mappings), so that the main thread may block on it. That gives GPU tensors the same synchronous
 * `dataSync()`/`itemSync()` as host tensors; asynchronous reads never block.
 */
class WorkerTransport implements Transport {
  private readonly worker: Worker;
  private nextReq = 1;
  private readonly waiting = new Map<number, { resolve: (v: Uint8Array) => void; reject: (e: Error) => void }>();
  readonly info: WebGPUDeviceInfo;

  constructor() {
    const initSab = new SharedArrayBuffer(8 + 64 * 1024);
    // Tessera's shaders write workgroup memory before reading it, so Dawn's zero-initialisation of it
    // is pure cost (it multiplies shader compile time on software adapters). TESSERA_DAWN_FLAGS adds
    // Dawn instance flags (e.g. 'enable-dawn-features=dump_shaders').
    const flags = ['enable-dawn-features=disable_workgroup_init', ...(process.env.TESSERA_DAWN_FLAGS ?? '').split(/\s+/).filter((s) => s)];
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { initSab, flags } });
    this.worker.on('message', (m: { t: string; req: number; data?: Uint8Array; error?: string }) => {
      const w = this.waiting.get(m.req);
      if (!w) return;
      this.waiting.delete(m.req);
      if (m.error !== undefined) w.reject(new DeviceError(`webgpu: ${m.error}`));
      else w.resolve(m.data ?? new Uint8Array(0));
    });
    this.worker.on('error', (e) => {
      for (const w of this.waiting.values()) w.reject(new DeviceError(`webgpu: the device thread failed: ${e.message}`));
      this.waiting.clear();
    });
    // After the listeners: adding a 'message' listener refs the worker's port again.
    this.worker.unref();
    let payload: Uint8Array;
    try {
      payload = awaitAnswer(initSab, 'starting the device');
    } catch (e) {
      void this.worker.terminate();
      throw e;
    }
    this.info = JSON.parse(new TextDecoder().decode(payload)) as WebGPUDeviceInfo;
  }

  send(cmds: Command[]): void {
    const transfer: ArrayBuffer[] = [];
    for (const c of cmds) if (c[0] === 'write') transfer.push((c[3] as Uint8Array).buffer as ArrayBuffer);
    this.worker.postMessage({ t: 'run', cmds }, transfer);
  }

  readSync(id: number, offset: number, bytes: number): Uint8Array {
    const sab = new SharedArrayBuffer(8 + Math.max(bytes, 4096));
    this.worker.postMessage({ t: 'readSync', id, offset, bytes, sab });
    return awaitAnswer(sab, `reading ${bytes} bytes`);
  }

  syncBlocking(): void {
    const sab = new SharedArrayBuffer(8 + 4096);
    this.worker.postMessage({ t: 'syncSync', sab });
    awaitAnswer(sab, 'waiting for the device');
  }

  private request(msg: Record<string, unknown>): Promise<Uint8Array> {
    const req = this.nextReq++;
    // Keep the process alive while an answer is awaited (the worker itself is unref'd).
    this.worker.ref();
    return new Promise<Uint8Array>((resolve, reject) => {
      this.waiting.set(req, { resolve, reject });
      this.worker.postMessage({ ...msg, req });
    }).finally(() => {
      if (this.waiting.size === 0) this.worker.unref();
    });
  }

  read(id: number, offset: number, bytes: number): Promise<Uint8Array> {
    return this.request({ t: 'read', id, offset, bytes });
  }

  async sync(): Promise<void> {
    await this.request({ t: 'sync' });
  }

  trim(): void {
    this.worker.postMessage({ t: 'trim' });
  }

  close(): void {
    this.worker.postMessage({ t: 'close' });
  }
}

/** Create the WebGPU runtime on Dawn (Node). Throws DeviceError when no adapter is found. */
export function createNodeWebGPU(): WebGPURuntime {
  const t = new WorkerTransport();
  return new WebGPURuntime(t.info, t);
}
