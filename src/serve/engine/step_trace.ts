/**
 * Step trace: one JSON line per engine step, for lining the engine's timeline up with what clients saw
 * (bench/serve_load.mjs --trace). Each line: `end` (wall-clock milliseconds since the epoch, sub-ms
 * resolution: `performance.timeOrigin + performance.now()`), `ms` (the step's duration), `batch`,
 * `prefill`, `decode` (tokens), `buckets` (the shape buckets it ran in) and `compiled` (the bucket compiled by
 * this step, if any).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { ValueError } from '../../errors.js';
import type { StepReport } from './scheduler.js';

/** An open trace file; `write` appends one step (synchronously: a line costs microseconds). */
export interface StepTrace {
  write(r: StepReport): void;
  close(): void;
}

/** Open (truncate) `path` for a step trace. @throws ValueError naming the file when it cannot be opened. */
export function openStepTrace(path: string): StepTrace {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (e) {
    throw new ValueError(`engine: cannot open the step trace file '${path}': ${e instanceof Error ? e.message : String(e)}`);
  }
  let open = true;
  return {
    write(r) {
      if (!open) return;
      const line = { end: performance.timeOrigin + performance.now(), ms: r.ms, batch: r.batchSize, prefill: r.prefillTokens, decode: r.decodeTokens, ...(r.buckets ? { buckets: r.buckets } : {}), ...(r.compiledShape ? { compiled: r.compiledShape } : {}) };
      writeSync(fd, JSON.stringify(line) + '\n');
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
