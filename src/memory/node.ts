/**
 * `memory` in Node: the environment-neutral telemetry (index.ts) plus what needs a file system —
 * `snapshot(path)` and the Chrome trace export.
 * @packageDocumentation
 */
import { writeFileAtomicSync } from '../io/atomic.js';
import type { MemorySnapshot } from './index.js';
import { snapshotObject } from './index.js';

export * from './index.js';
export { startTrace } from './trace.js';
export type { TraceOptions, TraceRecorder, ChromeTrace, TraceEvent } from './trace.js';

/**
 * The current memory picture (totals per device and owner, every live allocation); with `path`, also
 * written there as JSON, atomically (temp file, fsync, rename).
 */
export function snapshot(path?: string): MemorySnapshot {
  const s = snapshotObject();
  if (path !== undefined) writeFileAtomicSync(path, JSON.stringify(s, null, 1) + '\n');
  return s;
}
