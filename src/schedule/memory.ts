import { itemsize } from '../dtype.js';
import type { LazyNode } from '../graph/node.js';
import type { ScheduledKernel } from './schedule.js';

/** One intermediate buffer's place in the arena and its lifetime in kernel indices (inclusive). */
export interface PlannedBuffer {
  readonly node: LazyNode;
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
  readonly offset: number;
}

export interface MemoryPlan {
  /** Intermediates (materialised nodes that are not requested outputs), by node. */
  readonly buffers: ReadonlyMap<LazyNode, PlannedBuffer>;
  /** Size of the one arena all intermediates share. */
  readonly arenaBytes: number;
  /** What one buffer per intermediate would need. */
  readonly naiveBytes: number;
  /** Highest sum of live intermediate sizes at any kernel: the floor any packing could reach. */
  readonly liveBytesPeak: number;
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

/**
 * Pack intermediate buffers into one arena by lifetime. Greedy by size (largest first), each buffer goes
 * to the lowest aligned offset that does not overlap, in both time and space, a buffer already placed.
 * Requested outputs are excluded: live tensors own their buffers beyond this schedule.
 *
 * Two buffers whose lifetimes overlap never share bytes; `checkPlan` verifies it and tests run it.
 */
export function planMemory(
  kernels: readonly ScheduledKernel[],
  outputs: ReadonlySet<LazyNode>,
  alignment: number,
): MemoryPlan {
  const life = new Map<LazyNode, { first: number; last: number; bytes: number }>();
  for (const k of kernels) {
    if (!outputs.has(k.out)) {
      life.set(k.out, { first: k.index, last: k.index, bytes: alignUp(Math.max(1, k.out.numel * itemsize[k.out.dtype]), alignment) });
    }
  }
  for (const k of kernels) {
    for (const i of k.inputs) {
      const l = life.get(i);
      if (l) l.last = Math.max(l.last, k.index);
    }
  }
  const items = [...life.entries()].sort((a, b) => b[1].bytes - a[1].bytes || a[1].first - b[1].first);
  const placed: PlannedBuffer[] = [];
  let arenaBytes = 0;
  let naiveBytes = 0;
  for (const [node, { first, last, bytes }] of items) {
    naiveBytes += bytes;
    const clashes = placed
      .filter((p) => p.first <= last && first <= p.last)
      .sort((a, b) => a.offset - b.offset);
    let offset = 0;
    let bestOffset = -1;
    let bestGap = Infinity;
    for (const p of clashes) {
      const gap = p.offset - offset;
      if (gap >= bytes && gap < bestGap) {
        bestGap = gap;
        bestOffset = offset;
      }
      offset = Math.max(offset, p.offset + p.bytes);
    }
    if (bestOffset < 0) bestOffset = offset; // no gap fits: after the highest clashing buffer
    const pb: PlannedBuffer = { node, bytes, first, last, offset: bestOffset };
    placed.push(pb);
    arenaBytes = Math.max(arenaBytes, bestOffset + bytes);
  }
  let liveBytesPeak = 0;
  for (const k of kernels) {
    let live = 0;
    for (const p of placed) if (p.first <= k.index && k.index <= p.last) live += p.bytes;
    liveBytesPeak = Math.max(liveBytesPeak, live);
  }
  return { buffers: new Map(placed.map((p) => [p.node, p])), arenaBytes, naiveBytes, liveBytesPeak };
}

/** Throws if two buffers alive at the same kernel overlap in the arena. */
export function checkPlan(plan: MemoryPlan): void {
  const list = [...plan.buffers.values()];
  for (let i = 0; i < list.length; i++) {
    for (let j = i + 1; j < list.length; j++) {
      const a = list[i]!;
      const b = list[j]!;
      const timeOverlap = a.first <= b.last && b.first <= a.last;
      const spaceOverlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
      if (timeOverlap && spaceOverlap) {
        throw new Error(`memory plan aliases live buffers ${a.node} [${a.offset}, +${a.bytes}) and ${b.node} [${b.offset}, +${b.bytes})`);
      }
    }
  }
}
