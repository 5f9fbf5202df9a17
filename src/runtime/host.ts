import type { Binding, DeviceMemory } from './device.js';

/** Device memory that JavaScript can address directly (interp: an ArrayBuffer; cpu: a view of C memory). */
export interface HostMemory extends DeviceMemory {
  readonly host: ArrayBuffer;
}

/** Reads, writes and copies shared by the runtimes whose memory lives on the host. */
export const hostMemoryOps = {
  write(mem: DeviceMemory, byteOffset: number, data: Uint8Array): void {
    new Uint8Array((mem as HostMemory).host, byteOffset, data.byteLength).set(data);
  },
  copy(src: Binding, dst: Binding, bytes: number): void {
    const from = new Uint8Array((src.mem as HostMemory).host, src.byteOffset, bytes);
    new Uint8Array((dst.mem as HostMemory).host, dst.byteOffset, bytes).set(from);
  },
  readSync(mem: DeviceMemory, byteOffset: number, bytes: number): Uint8Array {
    return new Uint8Array((mem as HostMemory).host.slice(byteOffset, byteOffset + bytes));
  },
  scatterRows(src: DeviceMemory, dst: DeviceMemory, rows: readonly number[], rowBytes: number): void {
    // Word-sized views when rows allow (the common case, f32 rows): a plain loop, no view per row.
    const word = rowBytes % 4 === 0 ? 4 : 1;
    const Arr = word === 4 ? Uint32Array : Uint8Array;
    const hs = (src as HostMemory).host;
    const hd = (dst as HostMemory).host;
    const from = new Arr(hs, 0, Math.floor(hs.byteLength / word));
    const to = new Arr(hd, 0, Math.floor(hd.byteLength / word));
    const w = rowBytes / word;
    for (let n = 0; n < rows.length; n++) {
      const s = n * w;
      const d = rows[n]! * w;
      for (let j = 0; j < w; j++) to[d + j] = from[s + j]!;
    }
  },
  readSyncInto(mem: DeviceMemory, byteOffset: number, dst: Uint8Array): void {
    dst.set(new Uint8Array((mem as HostMemory).host, byteOffset, dst.byteLength));
  },
  async read(mem: DeviceMemory, byteOffset: number, bytes: number): Promise<Uint8Array> {
    return hostMemoryOps.readSync(mem, byteOffset, bytes);
  },
};
