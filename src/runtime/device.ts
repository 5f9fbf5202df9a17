import type { KernelIR } from '../codegen/ir.js';

/** Opaque device memory handle; each runtime decides what it holds. */
export interface DeviceMemory {
  readonly bytes: number;
}

/** A place in device memory that a kernel argument points at (an arena offset or a whole buffer). */
export interface Binding {
  readonly mem: DeviceMemory;
  readonly byteOffset: number;
}

/** What the scheduler and memory planner must respect on a device. */
export interface DeviceLimits {
  /** Most buffers (inputs plus the output) one kernel may bind: 8 on baseline WebGPU. */
  readonly maxBuffersPerKernel: number;
  /** Alignment of arena offsets in bytes (256 for WebGPU storage binding offsets). */
  readonly bufferAlignment: number;
}

/** One kernel launch: the compiled kernel, its buffer bindings and its u32 launch scalars. */
export interface Launch {
  readonly kernel: CompiledKernel;
  readonly args: readonly Binding[];
  readonly scalars?: Uint32Array;
}

/** A kernel after the runtime compiled it, ready to launch many times. */
export interface CompiledKernel {
  readonly ir: KernelIR;
}

/**
 * The one small interface every backend implements. Kernels are compiled in batches so that a backend
 * with an expensive compiler (a C compiler process, a shader module) pays its start-up once per schedule.
 */
export interface Runtime {
  readonly name: string;
  readonly limits: DeviceLimits;
  /** True when reads can complete synchronously (host-memory backends). */
  readonly synchronous: boolean;
  alloc(bytes: number): DeviceMemory;
  free(mem: DeviceMemory): void;
  write(mem: DeviceMemory, byteOffset: number, data: Uint8Array): void;
  /** Synchronous read; only on `synchronous` runtimes. */
  readSync(mem: DeviceMemory, byteOffset: number, bytes: number): Uint8Array;
  /**
   * Optional: a synchronous read into `dst` (its length is the byte count), for callers that read the
   * same-sized result every step (a server's logits) without allocating and collecting a buffer each time.
   */
  readSyncInto?(mem: DeviceMemory, byteOffset: number, dst: Uint8Array): void;
  read(mem: DeviceMemory, byteOffset: number, bytes: number): Promise<Uint8Array>;
  /** Copy `bytes` bytes between two places in device memory (regions do not overlap). */
  copy(src: Binding, dst: Binding, bytes: number): void;
  /**
   * Optional: copy rows 0..rows.length-1 of `src` (each `rowBytes` long) to rows `rows[i]` of `dst` in
   * one call (a server writing each step's new keys and values into their cache slots).
   */
  scatterRows?(src: DeviceMemory, dst: DeviceMemory, rows: readonly number[], rowBytes: number): void;
  compile(kernels: readonly KernelIR[]): CompiledKernel[];
  /** `args[i]` binds `kernel.ir.params[i]`; `scalars` holds the kernel's u32 launch scalars. */
  launch(kernel: CompiledKernel, args: readonly Binding[], scalars?: Uint32Array): void;
  /**
   * Optional batched launch: the whole sequence in one call into the device (the CPU backend runs it
   * natively with no JavaScript between kernels).
   */
  launchMany?(launches: readonly Launch[]): void;
  /** Optional: a copy expressed as a launch, so it can be ordered inside a `launchMany` sequence. */
  copyLaunch?(src: Binding, dst: Binding, bytes: number): Launch;
  /** Optional: `launchMany` off the JavaScript thread, so the event loop stays free. */
  launchManyAsync?(launches: readonly Launch[]): Promise<void>;
  synchronize(): Promise<void>;
  /** Identifies the device and software stack, for caches of tuned or compiled kernels. */
  fingerprint(): string;
}
