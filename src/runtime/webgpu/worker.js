// @ts-check
/**
 * The worker thread that owns Tessera's WebGPU device in Node (Dawn, through the `webgpu` package).
 *
 * The main thread queues commands and posts them here; it blocks (Atomics.wait on a shared buffer) only
 * when it needs an answer synchronously: the device description at start-up and `readSync`. Dawn needs
 * its own event loop turning to complete buffer mappings, which is why it cannot live on a thread that
 * blocks.
 *
 * Shared answer buffers: Int32 [0] state (0 pending, 1 ok, 2 error), [1] payload byte length, then the
 * payload from byte 8 (read bytes, or a UTF-8 JSON / error message).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Executor, describeDevice, requestComputeDevice } from './executor.js';

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

/**
 * @param {SharedArrayBuffer} sab
 * @param {1 | 2} state
 * @param {Uint8Array} payload
 */
function answer(sab, state, payload) {
  const head = new Int32Array(sab, 0, 2);
  const room = sab.byteLength - 8;
  const bytes = payload.byteLength > room ? payload.subarray(0, room) : payload;
  new Uint8Array(sab, 8, bytes.byteLength).set(bytes);
  head[1] = bytes.byteLength;
  Atomics.store(head, 0, state);
  Atomics.notify(head, 0);
}

const text = (/** @type {string} */ s) => new TextEncoder().encode(s);

/** @type {Executor | null} */
let exec = null;

async function start() {
  const { initSab, flags } = /** @type {{ initSab: SharedArrayBuffer, flags: string[] }} */ (workerData);
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    const gpu = create(flags);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new Error('no WebGPU adapter found (Dawn saw no Vulkan, Metal or D3D12 device)');
    const device = await requestComputeDevice(adapter);
    exec = new Executor(device, [gpu, adapter]);
    answer(initSab, 1, text(JSON.stringify(describeDevice(adapter, device))));
  } catch (e) {
    answer(initSab, 2, text(e instanceof Error ? e.message : String(e)));
  }
}

/** @param {unknown} e */
const message = (e) => (e instanceof Error ? e.message : String(e));

port.on('message', async (/** @type {any} */ m) => {
  if (!exec) return;
  switch (m.t) {
    case 'run':
      try {
        exec.run(m.cmds);
      } catch (e) {
        exec.pendingErrors.push(Promise.resolve(message(e)));
      }
      break;
    case 'readSync':
      try {
        answer(m.sab, 1, await exec.read(m.id, m.offset, m.bytes));
      } catch (e) {
        answer(m.sab, 2, text(message(e)));
      }
      break;
    case 'syncSync':
      try {
        await exec.sync();
        answer(m.sab, 1, new Uint8Array(0));
      } catch (e) {
        answer(m.sab, 2, text(message(e)));
      }
      break;
    case 'read':
      try {
        const data = await exec.read(m.id, m.offset, m.bytes);
        port.postMessage({ t: 'reply', req: m.req, data }, [/** @type {ArrayBuffer} */ (data.buffer)]);
      } catch (e) {
        port.postMessage({ t: 'reply', req: m.req, error: message(e) });
      }
      break;
    case 'sync':
      try {
        await exec.sync();
        port.postMessage({ t: 'reply', req: m.req });
      } catch (e) {
        port.postMessage({ t: 'reply', req: m.req, error: message(e) });
      }
      break;
    case 'trim':
      exec.trim();
      break;
    case 'close':
      exec.destroy();
      exec = null;
      port.close();
      break;
  }
});

void start();
