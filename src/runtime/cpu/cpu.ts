import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { KernelIR } from '../../codegen/ir.js';
import { C_PRELUDE, C_RENDERER_VERSION, renderKernelC } from '../../codegen/render/c.js';
import { debugLevel, debugLog } from '../../debug.js';
import { DeviceError } from '../../errors.js';
import type { Binding, CompiledKernel, DeviceLimits, DeviceMemory, Launch, Runtime } from '../device.js';
import type { HostMemory } from '../host.js';
import { hostMemoryOps } from '../host.js';
import type { CompilerConfig } from './compiler.js';
import { compileShared, compilerVersion, csrcDir, defaultCompilerConfig } from './compiler.js';

/** Host memory owned by the C runtime (64-byte aligned), viewed from JavaScript without copies. */
interface NativeMemory extends HostMemory {
  readonly ptr: unknown;
  readonly addr: bigint;
  freed: boolean;
}

interface NativeKernel extends CompiledKernel {
  readonly addr: bigint;
  readonly symbol: string;
}

// koffi's types are loose; the few entry points we call are typed here.
interface Koffi {
  load(path: string): { func(sig: string): (...args: unknown[]) => unknown };
  view(ptr: unknown, len: number): ArrayBuffer;
  address(ptr: unknown): bigint;
}

interface SupportLib {
  alloc(bytes: number): unknown;
  free(ptr: unknown): void;
  setThreads(n: number): number;
  getThreads(): number;
  load(path: string): unknown;
  lastError(): string;
  sym(handle: unknown, name: string): bigint;
  run(prog: BigUint64Array, len: number): number;
  copyKernel(): bigint;
  gemmFeatures(): string;
  runAsync(prog: BigUint64Array, len: number, cb: (err: unknown, res: number) => void): void;
}

export interface CpuOptions {
  /** Threads kernels use (default `TESSERA_THREADS`, else every core). */
  threads?: number;
  compiler?: Partial<CompilerConfig>;
}

/**
 * The native CPU device: kernels rendered to C, compiled by the system compiler in one invocation per
 * batch of new kernels, cached on disk, loaded into the process, and run on a persistent thread pool.
 * Memory is host memory allocated by the runtime, so reads and writes are plain copies.
 */
export class CpuRuntime implements Runtime {
  readonly name = 'cpu';
  readonly synchronous = true;
  readonly limits: DeviceLimits = { maxBuffersPerKernel: 48, bufferAlignment: 64 };
  readonly config: CompilerConfig;
  private readonly koffi: Koffi;
  private readonly lib: SupportLib;
  private readonly kernels = new Map<string, NativeKernel>();
  private libraries = 0;

  constructor(opts: CpuOptions = {}) {
    this.config = { ...defaultCompilerConfig(), ...opts.compiler };
    if (!compilerVersion(this.config.cc)) {
      throw new DeviceError(`cpu backend: no C compiler found ('${this.config.cc}' did not run); install gcc or clang, or set TESSERA_CC`);
    }
    const require = createRequire(import.meta.url);
    this.koffi = require('koffi') as Koffi;
    const dir = csrcDir();
    const support = readFileSync(join(dir, 'support.c'), 'utf8');
    const path = compileShared(support, { ...this.config, flags: [...this.config.flags, '-pthread'] }, { extraKey: 'support', libs: ['-ldl', '-pthread'] });
    const l = this.koffi.load(path);
    const run = l.func('int64_t tessera_run(const uint64_t *prog, int64_t len)') as ((...a: unknown[]) => number) & {
      async: (...a: unknown[]) => void;
    };
    this.lib = {
      alloc: l.func('void *tessera_alloc(uint64_t bytes)') as SupportLib['alloc'],
      free: l.func('void tessera_free(void *p)') as SupportLib['free'],
      setThreads: l.func('int tessera_set_threads(int n)') as SupportLib['setThreads'],
      getThreads: l.func('int tessera_get_threads(void)') as SupportLib['getThreads'],
      load: l.func('void *tessera_load(const char *path)') as SupportLib['load'],
      lastError: l.func('const char *tessera_last_error(void)') as SupportLib['lastError'],
      sym: l.func('uint64_t tessera_sym(void *h, const char *name)') as SupportLib['sym'],
      run: (prog, len) => run(prog, len),
      copyKernel: l.func('uint64_t tessera_copy_kernel(void)') as SupportLib['copyKernel'],
      gemmFeatures: l.func('const char *tessera_gemm_features(void)') as SupportLib['gemmFeatures'],
      runAsync: (prog, len, cb) => run.async(prog, len, cb),
    };
    const envThreads = Number.parseInt(process.env.TESSERA_THREADS ?? '', 10);
    this.setThreads(opts.threads ?? (Number.isFinite(envThreads) && envThreads > 0 ? envThreads : availableParallelism()));
  }

  /** Resize the thread pool (threads are created here, never per launch). Returns the new size. */
  setThreads(n: number): number {
    if (!Number.isInteger(n) || n < 1) throw new DeviceError(`cpu backend: thread count must be a positive integer, got ${n}`);
    return this.lib.setThreads(n);
  }
  get threads(): number {
    return this.lib.getThreads();
  }

  /**
   * The GEMM kernels this build uses: `isa` is the micro-kernel's instruction set ('avx512', 'avx2',
   * 'neon' or 'scalar', chosen by the compiler flags); `bf16Dot` is true where products of two bf16
   * values (mixed precision) run on the CPU's bf16 dot product (AVX-512 BF16 `vdpbf16ps`: twice the f32
   * FMA's flops, f32 accumulation, bf16 subnormal inputs read as zero) instead of being widened to f32.
   */
  get gemmInfo(): { isa: string; bf16Dot: boolean } {
    const [isa = 'unknown', ...rest] = this.lib.gemmFeatures().split(' ');
    return { isa, bf16Dot: rest.includes('bf16-dot') };
  }

  // Recently freed blocks by exact size: arenas and step-sized tensors recur every training step, and
  // reusing them skips malloc, page faults and koffi's view creation.
  private readonly pool = new Map<number, NativeMemory[]>();
  private pooledBytes = 0;
  private static readonly POOL_LIMIT = 512 * 1024 * 1024;

  alloc(bytes: number): NativeMemory {
    const hit = this.pool.get(bytes)?.pop();
    if (hit) {
      this.pooledBytes -= bytes;
      hit.freed = false;
      return hit;
    }
    const ptr = this.lib.alloc(bytes);
    if (!ptr) throw new DeviceError(`cpu backend: out of memory allocating ${bytes} bytes`);
    return { bytes, ptr, addr: this.koffi.address(ptr), host: this.koffi.view(ptr, Math.max(bytes, 1)), freed: false };
  }
  free(mem: DeviceMemory): void {
    const m = mem as NativeMemory;
    if (m.freed) return;
    m.freed = true;
    if (this.pooledBytes + m.bytes <= CpuRuntime.POOL_LIMIT) {
      const list = this.pool.get(m.bytes) ?? [];
      list.push(m);
      this.pool.set(m.bytes, list);
      this.pooledBytes += m.bytes;
      return;
    }
    this.lib.free(m.ptr);
  }

  /** Return pooled blocks to the system allocator. */
  trim(): void {
    for (const list of this.pool.values()) for (const m of list) this.lib.free(m.ptr);
    this.pool.clear();
    this.pooledBytes = 0;
  }
  readonly write = hostMemoryOps.write;
  readonly copy = hostMemoryOps.copy;
  readonly readSync = hostMemoryOps.readSync;
  readonly readSyncInto = hostMemoryOps.readSyncInto;
  readonly scatterRows = hostMemoryOps.scatterRows;
  readonly read = hostMemoryOps.read;

  /** Compile every kernel not seen before in ONE compiler invocation; reuse the rest. */
  compile(kernels: readonly KernelIR[]): CompiledKernel[] {
    const missing = new Map<string, KernelIR>();
    for (const ir of kernels) if (!this.kernels.has(ir.key) && !missing.has(ir.key)) missing.set(ir.key, ir);
    if (missing.size) {
      const symbols = new Map<string, string>();
      const parts = [C_PRELUDE];
      for (const [key, ir] of missing) {
        const symbol = `k_${createHash('sha1').update(key).digest('hex').slice(0, 16)}`;
        symbols.set(key, symbol);
        parts.push(renderKernelC(ir, symbol));
      }
      const path = compileShared(parts.join('\n'), this.config, { extraKey: `c-renderer-${C_RENDERER_VERSION}` });
      if (debugLevel() >= 3) debugLog(`cpu: ${missing.size} kernels in ${path.replace(/\.so$/, '.c')} (${[...symbols.values()].join(', ')})`);
      const handle = this.lib.load(path);
      if (!handle) throw new DeviceError(`cpu backend: loading ${path} failed: ${this.lib.lastError()}`);
      this.libraries++;
      for (const [key, ir] of missing) {
        const symbol = symbols.get(key)!;
        const addr = BigInt(this.lib.sym(handle, symbol));
        if (addr === 0n) throw new DeviceError(`cpu backend: ${path} has no kernel ${symbol}`);
        this.kernels.set(key, { ir, addr, symbol });
      }
    }
    return kernels.map((ir) => this.kernels.get(ir.key)!);
  }

  /** Encode launches as a program for the C runner: [fn, nargs, args..., nscalars, scalars...]. */
  encode(launches: readonly Launch[]): BigUint64Array {
    let len = 0;
    for (const l of launches) len += 3 + l.args.length + (l.scalars?.length ?? 0);
    const prog = new BigUint64Array(len);
    let i = 0;
    for (const { kernel, args, scalars } of launches) {
      const k = kernel as NativeKernel;
      if (args.length !== k.ir.params.length) throw new DeviceError(`kernel ${k.ir.name} takes ${k.ir.params.length} buffers, got ${args.length}`);
      prog[i++] = k.addr;
      prog[i++] = BigInt(args.length);
      for (const [j, b] of args.entries()) {
        const m = b.mem as NativeMemory;
        if (m.freed) throw new DeviceError(`kernel ${k.ir.name}: argument ${j} reads freed memory`);
        prog[i++] = m.addr + BigInt(b.byteOffset);
      }
      prog[i++] = BigInt(scalars?.length ?? 0);
      if (scalars) for (const s of scalars) prog[i++] = BigInt(s);
    }
    return prog;
  }

  /** Run an encoded program synchronously (one native call for the whole sequence). */
  run(prog: BigUint64Array): void {
    const n = this.lib.run(prog, prog.length);
    if (n < 0) throw new DeviceError('cpu backend: malformed kernel program');
  }

  /** Run an encoded program on a libuv worker thread, leaving the event loop free. */
  runAsync(prog: BigUint64Array): Promise<void> {
    return new Promise((resolve, reject) =>
      this.lib.runAsync(prog, prog.length, (err, n) => (err ? reject(err) : n < 0 ? reject(new DeviceError('cpu backend: malformed kernel program')) : resolve())),
    );
  }

  launch(kernel: CompiledKernel, args: readonly Binding[], scalars?: Uint32Array): void {
    this.run(this.encode([{ kernel, args, scalars }]));
  }
  private copyKernelCache: NativeKernel | undefined;

  /** A launch that copies `bytes` bytes, so copies can be ordered inside one native program. */
  copyLaunch(src: Binding, dst: Binding, bytes: number): Launch {
    const ir = { name: 'copy', params: [{}, {}] } as unknown as KernelIR;
    this.copyKernelCache ??= { ir, addr: BigInt(this.lib.copyKernel()), symbol: 'copy_kernel' };
    return { kernel: this.copyKernelCache, args: [dst, src], scalars: new Uint32Array([bytes % 2 ** 32, Math.floor(bytes / 2 ** 32)]) };
  }

  launchMany(launches: readonly Launch[]): void {
    if (launches.length) this.run(this.encode(launches));
  }
  launchManyAsync(launches: readonly Launch[]): Promise<void> {
    return launches.length ? this.runAsync(this.encode(launches)) : Promise.resolve();
  }
  async synchronize(): Promise<void> {}
  fingerprint(): string {
    return `cpu/${compilerVersion(this.config.cc)}/${this.config.flags.join(' ')}/threads=${this.threads}/c-renderer-${C_RENDERER_VERSION}`;
  }
  /** Compiled libraries loaded so far (one per batch of new kernels). */
  get librariesLoaded(): number {
    return this.libraries;
  }
}
