/**
 * Device-memory accounting. Every allocation, free and owner change goes through here and is published
 * on the telemetry stream (events.ts), so totals are always queryable and a leak test can assert that a
 * training step returns to its baseline.
 */
import type { AllocationInfo, MemoryOwner } from './events.js';
import { DeviceError, ValueError } from '../errors.js';
import { emit, hasListeners, MEMORY_OWNERS, nextAllocationId, now } from './events.js';

export type { AllocationInfo, MemoryOwner } from './events.js';

export interface DeviceMemoryStats {
  current: number;
  peak: number;
  allocations: number;
  frees: number;
  /** Current bytes per owner. */
  byOwner: Record<MemoryOwner, number>;
  /** Bytes per owner at the moment of the peak. */
  peakByOwner: Record<MemoryOwner, number>;
}

const zeroOwners = (): Record<MemoryOwner, number> => Object.fromEntries(MEMORY_OWNERS.map((o) => [o, 0])) as Record<MemoryOwner, number>;

const perDevice = new Map<string, DeviceMemoryStats>();
const live = new Map<number, AllocationInfo>();

function statsFor(device: string): DeviceMemoryStats {
  let s = perDevice.get(device);
  if (!s) {
    s = { current: 0, peak: 0, allocations: 0, frees: 0, byOwner: zeroOwners(), peakByOwner: zeroOwners() };
    perDevice.set(device, s);
  }
  return s;
}

const budgets = new Map<string, number>();

/** Bytes as "1.50 GiB" / "12.0 MiB" / "512 B", for messages. */
export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * Cap the bytes Tessera may hold on `device` (undefined removes the cap). An allocation that would go
 * over it throws a `DeviceError` naming the request, what is held (by owner) and the budget, before any
 * memory is taken.
 */
export function setMemoryBudget(device: string, bytes: number | undefined): void {
  if (bytes === undefined) budgets.delete(device);
  else if (!(Number.isFinite(bytes) && bytes > 0)) throw new ValueError(`setMemoryBudget: bytes must be a positive number, got ${bytes}`);
  else budgets.set(device, bytes);
}

/** The cap set by `setMemoryBudget`, if any. */
export function memoryBudget(device: string): number | undefined {
  return budgets.get(device);
}

/** @internal Throw if allocating `bytes` more on `device` would exceed its budget. */
export function checkBudget(device: string, bytes: number, what: string): void {
  const budget = budgets.get(device);
  if (budget === undefined) return;
  const s = statsFor(device);
  if (s.current + bytes <= budget) return;
  const held = MEMORY_OWNERS.filter((o) => s.byOwner[o] > 0).map((o) => `${o} ${formatBytes(s.byOwner[o])}`).join(', ');
  throw new DeviceError(`out of memory budget on '${device}': ${what} needs ${formatBytes(bytes)} while ${formatBytes(s.current)} is held (${held || 'nothing'}); the budget is ${formatBytes(budget)}`);
}

/** @internal Account a new allocation; returns its id. */
export function recordAlloc(device: string, bytes: number, owner: MemoryOwner, dtype = 'u8', shape: readonly number[] = [bytes], label?: string): number {
  const id = nextAllocationId();
  const info: AllocationInfo = { id, device, bytes, dtype, shape, owner, ...(label ? { label } : {}) };
  live.set(id, info);
  const s = statsFor(device);
  s.current += bytes;
  s.byOwner[owner] += bytes;
  s.allocations++;
  if (s.current > s.peak) {
    s.peak = s.current;
    s.peakByOwner = { ...s.byOwner };
  }
  if (hasListeners()) emit({ type: 'alloc', ts: now(), ...info, shape: [...shape] });
  return id;
}

/** @internal Account a free of allocation `id`. */
export function recordFree(id: number): void {
  const info = live.get(id);
  if (!info) return;
  live.delete(id);
  const s = statsFor(info.device);
  s.current -= info.bytes;
  s.byOwner[info.owner] -= info.bytes;
  s.frees++;
  if (hasListeners()) emit({ type: 'free', ts: now(), id, device: info.device, bytes: info.bytes, owner: info.owner, ...(info.label ? { label: info.label } : {}) });
}

/** @internal Move allocation `id` to another owner (a tensor became a parameter, a gradient, state, ...). */
export function recordOwner(id: number, owner: MemoryOwner, label?: string, shape?: readonly number[]): void {
  const info = live.get(id);
  if (!info) return;
  if (shape) (info as { shape: readonly number[] }).shape = [...shape];
  if (info.owner === owner && (label === undefined || label === info.label)) return;
  const s = statsFor(info.device);
  const from = info.owner;
  s.byOwner[from] -= info.bytes;
  s.byOwner[owner] += info.bytes;
  info.owner = owner;
  if (label !== undefined) info.label = label;
  if (hasListeners()) emit({ type: 'owner', ts: now(), id, device: info.device, bytes: info.bytes, from, to: owner, ...(info.label ? { label: info.label } : {}) });
}

/** Current and peak bytes per device, by owner. Returns copies. */
export function stats(): Record<string, DeviceMemoryStats> {
  const out: Record<string, DeviceMemoryStats> = {};
  for (const [d, s] of perDevice) out[d] = { ...s, byOwner: { ...s.byOwner }, peakByOwner: { ...s.peakByOwner } };
  return out;
}

/** Live allocations, largest first (at most `limit`). */
export function liveAllocations(limit = Infinity): AllocationInfo[] {
  return [...live.values()]
    .sort((a, b) => b.bytes - a.bytes || a.id - b.id)
    .slice(0, limit)
    .map((a) => ({ ...a, shape: [...a.shape] }));
}

/** Reset peak counters to the current level (useful around one step of a benchmark or test). */
export function resetPeak(): void {
  for (const s of perDevice.values()) {
    s.peak = s.current;
    s.peakByOwner = { ...s.byOwner };
  }
}
