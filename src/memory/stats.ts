/**
 * Device-memory accounting. Every allocation and free goes through `recordAlloc`/`recordFree`, so totals
 * are always queryable and a leak test can assert that a training step returns to its baseline.
 */

/** Who a buffer belongs to, for per-owner totals. */
export type MemoryOwner = 'tensor' | 'arena' | 'workspace';

export interface DeviceMemoryStats {
  current: number;
  peak: number;
  allocations: number;
  frees: number;
  byOwner: Record<MemoryOwner, number>;
}

const perDevice = new Map<string, DeviceMemoryStats>();

function statsFor(device: string): DeviceMemoryStats {
  let s = perDevice.get(device);
  if (!s) {
    s = { current: 0, peak: 0, allocations: 0, frees: 0, byOwner: { tensor: 0, arena: 0, workspace: 0 } };
    perDevice.set(device, s);
  }
  return s;
}

export function recordAlloc(device: string, bytes: number, owner: MemoryOwner): void {
  const s = statsFor(device);
  s.current += bytes;
  s.byOwner[owner] += bytes;
  s.allocations++;
  if (s.current > s.peak) s.peak = s.current;
}

export function recordFree(device: string, bytes: number, owner: MemoryOwner): void {
  const s = statsFor(device);
  s.current -= bytes;
  s.byOwner[owner] -= bytes;
  s.frees++;
}

/** Current and peak bytes per device, by owner. Returns copies. */
export function stats(): Record<string, DeviceMemoryStats> {
  const out: Record<string, DeviceMemoryStats> = {};
  for (const [d, s] of perDevice) out[d] = { ...s, byOwner: { ...s.byOwner } };
  return out;
}

/** Reset peak counters to the current level (useful around one step of a benchmark or test). */
export function resetPeak(): void {
  for (const s of perDevice.values()) s.peak = s.current;
}
