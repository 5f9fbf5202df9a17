import type { KernelIR } from '../../codegen/ir.js';
import type { WgslKernel } from '../../codegen/render/wgsl.js';
import { DEFAULT_GEMM_TILE, renderKernelWGSL, WGSL_RENDERER_VERSION } from '../../codegen/render/wgsl.js';
import type { GemmTile } from '../../codegen/render/wgsl.js';
import { debugLevel, debugLog } from '../../debug.js';
import { itemsize } from '../../dtype.js';
import { DeviceError } from '../../errors.js';
import type { Binding, CompiledKernel, DeviceLimits, DeviceMemory, Launch, Runtime } from '../device.js';

/** A WebGPU adapter and device as Tessera sees them (what `tessera info` prints). */
export interface WebGPUDeviceInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  readonly features: readonly string[];
  readonly limits: Readonly<Record<string, number>>;
}

/** Commands understood by the executor (see executor.js). */
export type Command = readonly unknown[];

/** How the runtime reaches the executor: a worker thread in Node, the same thread in browsers. */
export interface Transport {
  send(cmds: Command[]): void;
  /** Blocking read; only where the transport can block (Node). */
  readSync?(id: number, offset: number, bytes: number): Uint8Array;
  read(id: number, offset: number, bytes: number): Promise<Uint8Array>;
  sync(): Promise<void>;
  syncBlocking?(): void;
  trim(): void;
  close(): void;
}

interface GpuMemory extends DeviceMemory {
  readonly id: number;
  freed: boolean;
}

interface GpuKernel extends CompiledKernel {
  readonly plain: Variant;
  /** Variants reading some inputs through another parameter's binding, by alias map. */
  readonly aliased: Map<string, Variant>;
}

/** A copy ordered among launches (`copyLaunch`): jit replays interleave them with kernels. */
interface CopyKernel extends CompiledKernel {
  readonly copyBytes: number;
}

interface Variant {
  readonly pid: number;
  readonly wgsl: WgslKernel;
}

/** Stand-in IR of copy launches (never rendered). */
const COPY_IR = { name: 'copy', params: [], scalarCount: 0, body: [], kind: 'elementwise', valueCount: 0, valueTypes: [], key: 'copy' } as const satisfies KernelIR;

const roundUp = (x: number, a: number) => Math.ceil(x / a) * a;

function parseTile(spec: string | undefined): GemmTile {
  if (!spec) return DEFAULT_GEMM_TILE;
  const v = spec.split(',').map(Number);
  const [bm, bn, bk, tm, tn] = v as [number, number, number, number, number];
  const ok = v.length === 5 && v.every((x) => Number.isInteger(x) && x > 0) && bm % tm === 0 && bn % tn === 0 && (bm / tm) * (bn / tn) <= 256;
  if (!ok) throw new DeviceError(`TESSERA_WGSL_GEMM_TILE: expected bm,bn,bk,tm,tn with tm | bm, tn | bn and at most 256 invocations, got '${spec}'`);
  return { bm, bn, bk, tm, tn };
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${n} B`;
}

/**
 * The WebGPU runtime: renders each kernel to WGSL, keeps a pipeline per distinct shader, and turns
 * allocations, writes, launches and copies into one command stream per realize for the executor.
 * Limits of the adapter are checked here, before anything reaches the device, so that an over-limit
 * request fails with a message naming the limit rather than as a GPU validation error.
 */
export class WebGPURuntime implements Runtime {
  readonly name = 'webgpu';
  readonly limits: DeviceLimits;
  readonly synchronous: boolean;
  private queue: Command[] = [];
  private nextId = 1;
  private nextPid = 1;
  private pipelines = new Map<string, number>();
  private readonly maxBufferSize: number;
  private readonly maxBinding: number;
  private readonly maxGrid: number;
  private readonly f16: boolean;
  /**
   * GEMM tile of contractions compiled from now on (a tuning parameter; kernels already compiled keep
   * theirs). `TESSERA_WGSL_GEMM_TILE=bm,bn,bk,tm,tn` sets it at start-up.
   */
  gemmTile: GemmTile = parseTile(typeof process !== 'undefined' ? process.env?.TESSERA_WGSL_GEMM_TILE : undefined);

  constructor(
    readonly info: WebGPUDeviceInfo,
    private readonly transport: Transport,
  ) {
    const l = info.limits;
    // Reads wait for the device, so `await data()` takes the asynchronous path; `dataSync()` still
    // works where the transport can block (Node).
    this.synchronous = false;
    this.maxBufferSize = l.maxBufferSize ?? 256 * 2 ** 20;
    this.maxBinding = l.maxStorageBufferBindingSize ?? 128 * 2 ** 20;
    this.maxGrid = l.maxComputeWorkgroupsPerDimension ?? 65535;
    this.f16 = info.features.includes('shader-f16');
    this.limits = {
      maxBuffersPerKernel: Math.max(2, l.maxStorageBuffersPerShaderStage ?? 8),
      bufferAlignment: Math.max(4, l.minStorageBufferOffsetAlignment ?? 256),
    };
  }

  alloc(bytes: number): DeviceMemory {
    if (bytes > this.maxBufferSize) {
      throw new DeviceError(
        `webgpu: cannot allocate ${formatBytes(bytes)}: the adapter's maxBufferSize is ${formatBytes(this.maxBufferSize)} (${this.describe()})`,
      );
    }
    const mem: GpuMemory = { bytes, id: this.nextId++, freed: false };
    this.queue.push(['alloc', mem.id, bytes]);
    return mem;
  }

  free(mem: DeviceMemory): void {
    const m = mem as GpuMemory;
    if (m.freed) return;
    m.freed = true;
    this.queue.push(['free', m.id]);
  }

  write(mem: DeviceMemory, byteOffset: number, data: Uint8Array): void {
    this.queue.push(['write', (mem as GpuMemory).id, byteOffset, data.slice()]);
  }

  readSync(mem: DeviceMemory, byteOffset: number, bytes: number): Uint8Array {
    if (!this.transport.readSync) {
      throw new DeviceError('webgpu: synchronous reads are not available in the browser; use `await tensor.data()` or `await tensor.item()`');
    }
    this.flush();
    return this.transport.readSync((mem as GpuMemory).id, byteOffset, bytes);
  }

  async read(mem: DeviceMemory, byteOffset: number, bytes: number): Promise<Uint8Array> {
    this.flush();
    return this.transport.read((mem as GpuMemory).id, byteOffset, bytes);
  }

  copy(src: Binding, dst: Binding, bytes: number): void {
    this.queue.push(['copy', (src.mem as GpuMemory).id, src.byteOffset, (dst.mem as GpuMemory).id, dst.byteOffset, bytes]);
  }

  compile(kernels: readonly KernelIR[]): CompiledKernel[] {
    return kernels.map((ir) => {
      const k: GpuKernel = { ir, plain: this.variant(ir, new Map()), aliased: new Map() };
      return k;
    });
  }

  private variant(ir: KernelIR, aliasOf: ReadonlyMap<number, number>): Variant {
    const wgsl = renderKernelWGSL(ir, { f16: this.f16, maxWorkgroupsPerDimension: this.maxGrid, aliasOf, gemm: this.gemmTile });
    let pid = this.pipelines.get(wgsl.code);
    if (pid === undefined) {
      pid = this.nextPid++;
      this.pipelines.set(wgsl.code, pid);
      const storage = wgsl.bindings.length;
      this.queue.push(['pipeline', pid, wgsl.code, ir.name, storage, wgsl.scalarCount > 0]);
      if (debugLevel() >= 3) debugLog(`webgpu: ${ir.name} (${wgsl.shape}, grid ${wgsl.grid.join('x')}):\n${wgsl.code}`);
    }
    return { pid, wgsl };
  }

  copyLaunch(src: Binding, dst: Binding, bytes: number): Launch {
    const kernel: CopyKernel = { ir: COPY_IR, copyBytes: bytes };
    return { kernel, args: [dst, src] };
  }

  launch(kernel: CompiledKernel, args: readonly Binding[], scalars?: Uint32Array): void {
    if ('copyBytes' in kernel) {
      this.copy(args[1]!, args[0]!, (kernel as CopyKernel).copyBytes);
      return;
    }
    const k = kernel as GpuKernel;
    const ir = k.ir;
    const size = (i: number) => roundUp(Math.max(4, ir.params[i]!.numel * itemsize[ir.params[i]!.dtype]), 4);
    // An input bound to the same bytes as the output (an in-place update) or as another input is read
    // through that binding: WebGPU rejects a dispatch whose writable bindings overlap.
    const aliasOf = new Map<number, number>();
    for (let i = 1; i < args.length; i++) {
      const a = args[i]!;
      for (let j = 0; j < i; j++) {
        if (aliasOf.has(j)) continue;
        const b = args[j]!;
        if (a.mem !== b.mem || a.byteOffset >= b.byteOffset + size(j) || b.byteOffset >= a.byteOffset + size(i)) continue;
        if (a.byteOffset !== b.byteOffset) throw new DeviceError(`webgpu: kernel ${ir.name} binds partly overlapping regions of one buffer`);
        aliasOf.set(i, j);
        break;
      }
    }
    let v = k.plain;
    if (aliasOf.size) {
      const key = [...aliasOf].join(';');
      let hit = k.aliased.get(key);
      if (!hit) k.aliased.set(key, (hit = this.variant(ir, aliasOf)));
      v = hit;
    }
    if (v.wgsl.grid[0] === 0) return;
    const bindings: number[] = [];
    for (const p of v.wgsl.bindings) {
      const bytes = size(p);
      if (bytes > this.maxBinding) {
        throw new DeviceError(
          `webgpu: kernel ${ir.name} binds ${formatBytes(bytes)} for ${ir.params[p]!.name}, above the adapter's maxStorageBufferBindingSize of ${formatBytes(this.maxBinding)}`,
        );
      }
      const b = args[p]!;
      bindings.push((b.mem as GpuMemory).id, b.byteOffset, bytes);
    }
    const s = v.wgsl.scalarCount > 0 ? Uint32Array.from(scalars ?? new Uint32Array(v.wgsl.scalarCount)) : null;
    this.queue.push(['dispatch', v.pid, bindings, s, ...v.wgsl.grid]);
  }

  launchMany(launches: readonly Launch[]): void {
    for (const l of launches) this.launch(l.kernel, l.args, l.scalars);
    this.flush();
  }

  async synchronize(): Promise<void> {
    this.flush();
    await this.transport.sync();
  }

  /** Submit queued commands to the device now. */
  flush(): void {
    if (this.queue.length === 0) return;
    const cmds = this.queue;
    this.queue = [];
    this.transport.send(cmds);
  }

  /** Give idle pooled device buffers back to the device. */
  trim(): void {
    this.flush();
    this.transport.trim();
  }

  fingerprint(): string {
    const i = this.info;
    return `webgpu:${i.vendor}:${i.architecture}:${i.device}:${i.description}:f16=${this.f16}:wgsl=${WGSL_RENDERER_VERSION}`;
  }

  describe(): string {
    const i = this.info;
    return [i.vendor, i.architecture, i.description].filter((s) => s).join(' ') || 'unknown adapter';
  }
}
