/**
 * `memory`: device-memory telemetry for any program (environment-neutral part). Totals per device and
 * owner (`stats`), the live allocations (`liveAllocations`), a JSON-ready `snapshot`, and the event
 * stream itself (`subscribe`) that the trace export and the live dashboard read.
 * @packageDocumentation
 */
import { now } from './events.js';
import { liveAllocations, stats } from './stats.js';
import type { AllocationInfo, DeviceMemoryStats } from './stats.js';

export { stats, liveAllocations, resetPeak, setMemoryBudget, memoryBudget, formatBytes } from './stats.js';
export type { DeviceMemoryStats, AllocationInfo, MemoryOwner } from './stats.js';
export { subscribe, markStep, setKernelProfiling, isKernelProfiling, MEMORY_OWNERS } from './events.js';
export type { TelemetryEvent } from './events.js';

/** A point-in-time picture of device memory: what `memory.snapshot()` returns and writes. */
export interface MemorySnapshot {
  format: 'tessera-memory-snapshot';
  version: 1;
  /** Epoch milliseconds. */
  timestamp: number;
  devices: Record<string, DeviceMemoryStats>;
  /** Every live allocation, largest first. */
  allocations: AllocationInfo[];
}

/** Current totals and every live allocation with its owner, dtype, shape and label. */
export function snapshotObject(): MemorySnapshot {
  return { format: 'tessera-memory-snapshot', version: 1, timestamp: now(), devices: stats(), allocations: liveAllocations() };
}
