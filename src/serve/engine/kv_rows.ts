import type { DeviceMemory, Runtime } from '../../runtime/device.js';

/**
 * Copy rows of a freshly computed `[N, width]` f32 buffer into rows ("slots") of a KV pool buffer, on the
 * device, with byte offsets: the cost is O(rows copied), never O(pool). Runs of consecutive source rows
 * going to consecutive slots (a prefill chunk within one block) become one copy.
 *
 * @param slots - `slots[n]` is the pool row for source row n; only rows `0 .. slots.length - 1` are copied.
 */
export function copyRowsToSlots(rt: Runtime, src: DeviceMemory, pool: DeviceMemory, slots: readonly number[], width: number): void {
  const rowBytes = width * 4;
  if (rt.scatterRows) return rt.scatterRows(src, pool, slots, rowBytes);
  let n = 0;
  while (n < slots.length) {
    let run = 1;
    while (n + run < slots.length && slots[n + run] === slots[n]! + run) run++;
    rt.copy({ mem: src, byteOffset: n * rowBytes }, { mem: pool, byteOffset: slots[n]! * rowBytes }, run * rowBytes);
    n += run;
  }
}
