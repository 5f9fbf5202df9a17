import type { DType } from '../dtype.js';
import { itemsize } from '../dtype.js';
import { DisposedError } from '../errors.js';
import type { MemoryOwner } from '../memory/events.js';
import { checkBudget, recordAlloc, recordFree, recordOwner } from '../memory/stats.js';
import type { DeviceMemory, Runtime } from './device.js';

let nextId = 1;

/**
 * A realized tensor's storage on one device: a contiguous, row-major array of `numel` elements.
 * Reference-counted by the tensors that own it (`detach()` shares a buffer); freed deterministically
 * when the count reaches zero.
 */
export class DeviceBuffer {
  readonly id = nextId++;
  readonly mem: DeviceMemory;
  readonly nbytes: number;
  private refs = 1;
  private freed = false;
  /** Telemetry allocation id (memory/stats.ts). */
  private readonly allocId: number;

  constructor(
    readonly runtime: Runtime,
    readonly dtype: DType,
    readonly numel: number,
  ) {
    this.nbytes = Math.max(numel * itemsize[dtype], 4);
    checkBudget(runtime.name, this.nbytes, `a ${dtype}[${numel}] buffer`);
    this.mem = runtime.alloc(this.nbytes);
    this.allocId = recordAlloc(runtime.name, this.nbytes, 'tensor', dtype, [numel]);
  }

  /** Account this buffer to `owner` (parameter, optimizer state, KV cache, ...) in memory telemetry. */
  setOwner(owner: MemoryOwner, label?: string, shape?: readonly number[]): void {
    if (!this.freed) recordOwner(this.allocId, owner, label, shape);
  }

  get disposed(): boolean {
    return this.freed;
  }

  retain(): this {
    this.assertLive('share');
    this.refs++;
    return this;
  }

  release(): void {
    if (this.freed) return;
    if (--this.refs > 0) return;
    this.freed = true;
    this.runtime.free(this.mem);
    recordFree(this.allocId);
  }

  assertLive(what: string): void {
    if (this.freed) {
      throw new DisposedError(
        `cannot ${what} a tensor whose buffer was freed (buffer #${this.id}, ${this.dtype}[${this.numel}]): it was disposed, ` +
          `or replaced by assign() after a lazy computation that reads it was built; realize such computations before changing their inputs`,
      );
    }
  }
}
