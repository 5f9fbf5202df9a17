/**
 * The engine worker thread: loads the model itself (from the GGUF path in `workerData`), runs the
 * scheduler loop, and streams each step's tokens and ends to the client. Requests are checked on the
 * main thread before they get here; anything the scheduler still rejects ends as an 'error'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import '../../runtime/node_devices.js';
import type { EngineHandle, StepTiming } from '../types.js';
import { createInProcessEngine, type InProcessEngine } from './in_process.js';
import type { EngineEvent, FromWorker, ToWorker, WorkerInit } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine worker: not started as a worker thread');
const init = workerData as WorkerInit;
const post = (m: FromWorker) => port.postMessage(m);

let outbox: EngineEvent[] = [];
const handles = new Map<string, EngineHandle>();
let engine: InProcessEngine | undefined;

function flush(step?: StepTiming): void {
  if (!engine) return;
  post({ t: 'events', events: outbox, stats: engine.stats(), retryAfterSeconds: engine.scheduler.retryAfterSeconds(), ...(step ? { step } : {}) });
  outbox = [];
}

try {
  engine = createInProcessEngine({
    ...init.options,
    // The client enforces the queue limit; here every forwarded request must be accepted.
    maxWaiting: Number.MAX_SAFE_INTEGER,
    onStep: (r) => {
      // Admissions first: the client's queue count must drop before it sees those requests' tokens.
      outbox.unshift(...r.admitted.map((id): EngineEvent => ({ k: 'admitted', id })));
      flush({ ms: r.ms, prefillTokens: r.prefillTokens, decodeTokens: r.decodeTokens, batchSize: r.batchSize, compiled: r.compiled, ...(r.compiledShape ? { compiledShape: r.compiledShape } : {}) });
    },
  });
  post({ t: 'ready', info: engine.model, limits: engine.scheduler.limits, stats: engine.stats() });
} catch (e) {
  post({ t: 'failed', message: e instanceof Error ? e.message : String(e) });
  process.exit(1);
}

port.on('message', (m: ToWorker) => {
  const eng = engine!;
  switch (m.t) {
    case 'submit': {
      const id = m.req.id;
      try {
        handles.set(
          id,
          eng.submit(m.req, {
            onToken: (token) => outbox.push({ k: 'token', id, token }),
            onDone: (reason, usage, error) => {
              handles.delete(id);
              outbox.push({ k: 'done', id, reason, usage, ...(error !== undefined ? { error } : {}) });
            },
          }),
        );
      } catch (e) {
        const usage = { promptTokens: m.req.promptTokens.length, completionTokens: 0, cachedTokens: 0, queueMs: 0, preemptions: 0 };
        outbox.push({ k: 'done', id, reason: 'error', usage, error: e instanceof Error ? e.message : String(e) });
        flush();
      }
      return;
    }
    case 'cancel':
    case 'finish':
      handles.get(m.id)?.[m.t]();
      // Ends of requests between steps happen at once: tell the client now.
      if (outbox.length) flush();
      return;
    case 'close':
      void eng.close().then(() => {
        flush();
        post({ t: 'closed' });
        port.close();
      });
      return;
  }
});
