// @ts-check
/// <reference types="@webgpu/types" />
/**
 * Executes Tessera's WebGPU command stream on one GPUDevice. It is plain JavaScript (type-checked
 * through JSDoc) because in Node it runs inside a worker thread, which loads files natively, and the
 * same file runs unbundled in browsers.
 *
 * A command batch is encoded into one command encoder with one compute pass and submitted once; a
 * host write in the middle of a batch submits what came before it, so queue order equals command
 * order. Device buffers come from a pool keyed by size, so training steps that free and allocate the
 * same sizes every step do not create GPU buffers. Validation and out-of-memory errors are captured with
 * error scopes around every batch and reported at the next read or sync, as one clear message.
 *
 * Commands (arrays, so that they cross `postMessage` cheaply):
 *   ['alloc', id, bytes] ['free', id] ['write', id, byteOffset, Uint8Array]
 *   ['pipeline', pid, code, label, storageCount, hasUniform]
 *   ['dispatch', pid, bindings: number[] (id, offset, size triples), scalars: Uint32Array | null, x, y, z]
 *   ['copy', srcId, srcOffset, dstId, dstOffset, bytes]
 */

/** @typedef {readonly unknown[]} Command */

const USAGE_STORAGE = 0x80; // GPUBufferUsage.STORAGE
const USAGE_COPY_SRC = 0x04;
const USAGE_COPY_DST = 0x08;
const USAGE_MAP_READ = 0x01;
const USAGE_UNIFORM = 0x40;
const MAP_MODE_READ = 0x01;

/** Idle pooled bytes above which freed buffers are destroyed instead of kept. */
const POOL_IDLE_LIMIT = 512 * 1024 * 1024;
const UNIFORM_SLOT = 256;

const roundUp = (/** @type {number} */ x, /** @type {number} */ a) => Math.ceil(x / a) * a;

export class Executor {
  /**
   * @param {GPUDevice} device
   * @param {readonly object[]} owners objects the device must not outlive (Dawn's GPU instance and the
   *   adapter): in Node, a collected instance tears the device down under running work.
   */
  constructor(device, owners = []) {
    this.device = device;
    this.owners = owners;
    /** @type {Map<number, GPUBuffer>} tensor and arena buffers by id */
    this.buffers = new Map();
    /** @type {WeakMap<GPUBuffer, number>} */
    this.serial = new WeakMap();
    this.nextSerial = 1;
    /** @type {Map<number, GPUBuffer[]>} idle buffers by size */
    this.pool = new Map();
    this.poolBytes = 0;
    /** @type {Map<number, { pipeline: GPUComputePipeline, layout: GPUBindGroupLayout, label: string }>} */
    this.pipelines = new Map();
    /** @type {Map<string, GPUBindGroupLayout>} */
    this.layouts = new Map();
    /** @type {Map<string, GPUBindGroup>} */
    this.bindGroups = new Map();
    /** @type {GPUCommandEncoder | null} */
    this.encoder = null;
    /** @type {GPUComputePassEncoder | null} */
    this.pass = null;
    /** @type {GPUBuffer | null} */
    this.uniform = null;
    /** @type {Promise<string | null>[]} error scopes not yet inspected */
    this.pendingErrors = [];
    /** @type {string | null} */
    this.lost = null;
    device.lost.then((info) => {
      this.lost = `the WebGPU device was lost (${info.reason}): ${info.message}`;
    });
  }

  /**
   * Encode and submit one batch of commands.
   * @param {readonly Command[]} cmds
   */
  run(cmds) {
    if (this.lost) return;
    const dev = this.device;
    dev.pushErrorScope('out-of-memory');
    dev.pushErrorScope('validation');
    let context = 'a command batch';
    try {
      const uniformOffsets = this.prepareUniforms(cmds);
      let u = 0;
      for (const c of cmds) {
        switch (c[0]) {
          case 'alloc': {
            const [, id, bytes] = /** @type {[string, number, number]} */ (c);
            context = `allocating ${bytes} bytes`;
            this.buffers.set(id, this.take(bytes));
            break;
          }
          case 'free': {
            const id = /** @type {number} */ (c[1]);
            const b = this.buffers.get(id);
            if (b) {
              this.buffers.delete(id);
              this.give(b);
            }
            break;
          }
          case 'write': {
            const [, id, offset, data] = /** @type {[string, number, number, Uint8Array]} */ (c);
            context = `writing ${data.byteLength} bytes`;
            this.submit();
            const b = this.buf(id);
            const padded = data.byteLength % 4 === 0 ? data : padTo4(data);
            dev.queue.writeBuffer(b, offset, padded.buffer, padded.byteOffset, padded.byteLength);
            break;
          }
          case 'pipeline': {
            const [, pid, code, label, storageCount, hasUniform] = /** @type {[string, number, string, string, number, boolean]} */ (c);
            context = `compiling kernel ${label}`;
            const layout = this.layout(storageCount, hasUniform);
            const module = dev.createShaderModule({ code, label });
            const pipeline = dev.createComputePipeline({
              label,
              layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
              compute: { module, entryPoint: 'main' },
            });
            this.pipelines.set(pid, { pipeline, layout, label });
            break;
          }
          case 'dispatch': {
            const [, pid, bindings, scalars, x, y, z] = /** @type {[string, number, number[], Uint32Array | null, number, number, number]} */ (c);
            const p = this.pipelines.get(pid);
            if (!p) throw new Error(`internal: dispatch of unknown pipeline ${pid}`);
            context = `running kernel ${p.label}`;
            const group = this.bindGroup(p, bindings, scalars ? /** @type {number} */ (uniformOffsets[u++]) : -1);
            const pass = this.computePass();
            pass.setPipeline(p.pipeline);
            pass.setBindGroup(0, group);
            pass.dispatchWorkgroups(x, y, z);
            break;
          }
          case 'copy': {
            const [, src, srcOff, dst, dstOff, bytes] = /** @type {[string, number, number, number, number, number]} */ (c);
            context = `copying ${bytes} bytes`;
            this.endPass();
            this.enc().copyBufferToBuffer(this.buf(src), srcOff, this.buf(dst), dstOff, roundUp(bytes, 4));
            break;
          }
          default:
            throw new Error(`internal: unknown WebGPU command ${String(c[0])}`);
        }
      }
      this.submit();
    } finally {
      const what = context;
      const validation = dev.popErrorScope().then((e) => (e ? `${e.message} (while ${what})` : null));
      const oom = dev.popErrorScope().then((e) => (e ? `out of device memory: ${e.message} (while ${what})` : null));
      this.pendingErrors.push(validation, oom);
    }
  }

  /**
   * Write the launch scalars of a batch into one uniform buffer (a 256-byte slot per dispatch).
   * @param {readonly Command[]} cmds
   * @returns {number[]} slot offsets in dispatch order
   */
  prepareUniforms(cmds) {
    /** @type {Uint32Array[]} */
    const all = [];
    for (const c of cmds) if (c[0] === 'dispatch' && c[3]) all.push(/** @type {Uint32Array} */ (c[3]));
    if (all.length === 0) return [];
    const bytes = all.length * UNIFORM_SLOT;
    if (!this.uniform || this.uniform.size < bytes) {
      this.submit();
      this.uniform?.destroy();
      this.uniform = this.device.createBuffer({ size: roundUp(bytes * 2, 4096), usage: USAGE_UNIFORM | USAGE_COPY_DST });
      this.bindGroups.clear();
    }
    const data = new Uint32Array(bytes / 4);
    all.forEach((s, i) => data.set(s.subarray(0, UNIFORM_SLOT / 4), (i * UNIFORM_SLOT) / 4));
    this.device.queue.writeBuffer(this.uniform, 0, data.buffer, 0, bytes);
    return all.map((_, i) => i * UNIFORM_SLOT);
  }

  /** @param {number} storageCount @param {boolean} hasUniform */
  layout(storageCount, hasUniform) {
    const key = `${storageCount}:${hasUniform}`;
    let l = this.layouts.get(key);
    if (!l) {
      /** @type {GPUBindGroupLayoutEntry[]} */
      const entries = [];
      for (let i = 0; i < storageCount; i++) entries.push({ binding: i, visibility: 4 /* COMPUTE */, buffer: { type: 'storage' } });
      if (hasUniform) entries.push({ binding: storageCount, visibility: 4, buffer: { type: 'uniform' } });
      l = this.device.createBindGroupLayout({ entries });
      this.layouts.set(key, l);
    }
    return l;
  }

  /**
   * @param {{ layout: GPUBindGroupLayout }} p
   * @param {readonly number[]} bindings
   * @param {number} uniformOffset
   */
  bindGroup(p, bindings, uniformOffset) {
    const parts = [];
    for (let i = 0; i < bindings.length; i += 3) parts.push(this.serialOf(this.buf(/** @type {number} */ (bindings[i]))), bindings[i + 1], bindings[i + 2]);
    const key = `${parts.join(',')}|${uniformOffset}|${this.serialOf(p.layout)}`;
    let g = this.bindGroups.get(key);
    if (g) return g;
    /** @type {GPUBindGroupEntry[]} */
    const entries = [];
    for (let i = 0; i < bindings.length; i += 3) {
      entries.push({
        binding: i / 3,
        resource: { buffer: this.buf(/** @type {number} */ (bindings[i])), offset: /** @type {number} */ (bindings[i + 1]), size: /** @type {number} */ (bindings[i + 2]) },
      });
    }
    if (uniformOffset >= 0 && this.uniform) entries.push({ binding: bindings.length / 3, resource: { buffer: this.uniform, offset: uniformOffset, size: UNIFORM_SLOT } });
    g = this.device.createBindGroup({ layout: p.layout, entries });
    if (this.bindGroups.size > 8192) this.bindGroups.clear();
    this.bindGroups.set(key, g);
    return g;
  }

  /** @param {object} o */
  serialOf(o) {
    let s = this.serial.get(/** @type {GPUBuffer} */ (o));
    if (s === undefined) this.serial.set(/** @type {GPUBuffer} */ (o), (s = this.nextSerial++));
    return s;
  }

  /** @param {number} id */
  buf(id) {
    const b = this.buffers.get(id);
    if (!b) throw new Error(`internal: unknown WebGPU buffer ${id}`);
    return b;
  }

  /** A pooled or new storage buffer of at least `bytes` bytes. @param {number} bytes */
  take(bytes) {
    const size = roundUp(Math.max(bytes, 4), 256);
    const list = this.pool.get(size);
    const hit = list?.pop();
    if (hit) {
      this.poolBytes -= size;
      return hit;
    }
    return this.device.createBuffer({ size, usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST });
  }

  /** @param {GPUBuffer} b */
  give(b) {
    if (this.poolBytes + b.size > POOL_IDLE_LIMIT) {
      // Destroying is safe after submission: the device keeps the memory until queued work is done.
      this.submit();
      b.destroy();
      this.bindGroups.clear();
      return;
    }
    let list = this.pool.get(b.size);
    if (!list) this.pool.set(b.size, (list = []));
    list.push(b);
    this.poolBytes += b.size;
  }

  /** Release every idle pooled buffer back to the device. */
  trim() {
    this.submit();
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.poolBytes = 0;
    this.bindGroups.clear();
  }

  enc() {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  computePass() {
    if (!this.pass) this.pass = this.enc().beginComputePass();
    return this.pass;
  }

  endPass() {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  submit() {
    this.endPass();
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
    }
  }

  /** The first error captured since the last check (null if none); clears them. */
  async takeError() {
    if (this.lost) return this.lost;
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    const errors = await Promise.all(pending);
    return errors.find((e) => e !== null) ?? this.lost;
  }

  /**
   * Read bytes back after everything submitted so far. Rejects with the first captured error.
   * @param {number} id @param {number} offset @param {number} bytes
   * @returns {Promise<Uint8Array>}
   */
  async read(id, offset, bytes) {
    if (this.lost) throw new Error(this.lost);
    this.submit();
    const size = roundUp(Math.max(bytes, 4), 4);
    const dev = this.device;
    dev.pushErrorScope('validation');
    const staging = dev.createBuffer({ size, usage: USAGE_MAP_READ | USAGE_COPY_DST });
    const enc = dev.createCommandEncoder();
    enc.copyBufferToBuffer(this.buf(id), offset, staging, 0, size);
    dev.queue.submit([enc.finish()]);
    const scope = dev.popErrorScope().then((e) => (e ? `${e.message} (while reading ${bytes} bytes)` : null));
    this.pendingErrors.push(scope);
    const error = await this.takeError();
    if (error) {
      staging.destroy();
      throw new Error(error);
    }
    await staging.mapAsync(MAP_MODE_READ);
    const out = new Uint8Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Wait for all submitted work; rejects with the first captured error. */
  async sync() {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    const error = await this.takeError();
    if (error) throw new Error(error);
  }

  destroy() {
    this.trim();
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
    this.uniform?.destroy();
    this.device.destroy();
  }
}

/** @param {Uint8Array} data */
function padTo4(data) {
  const out = new Uint8Array(roundUp(data.byteLength, 4));
  out.set(data);
  return out;
}

/**
 * What a runtime needs to know about a device, in a form that crosses threads.
 * @param {GPUAdapter} adapter @param {GPUDevice} device
 */
export function describeDevice(adapter, device) {
  /** @type {Record<string, number>} */
  const limits = {};
  for (const k in device.limits) {
    const v = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (device.limits))[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const info = adapter.info ?? {};
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    features: [...device.features].sort(),
    limits,
  };
}

/**
 * Request a device with the adapter's best limits for compute (more storage buffers per kernel,
 * bigger buffers) and `shader-f16` when offered.
 * @param {GPUAdapter} adapter
 */
export async function requestComputeDevice(adapter) {
  const want = ['maxStorageBuffersPerShaderStage', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX'];
  /** @type {Record<string, number>} */
  const requiredLimits = {};
  for (const k of want) {
    const v = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (adapter.limits))[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  /** @type {GPUFeatureName[]} */
  const requiredFeatures = adapter.features.has('shader-f16') ? ['shader-f16'] : [];
  return adapter.requestDevice({ requiredLimits, requiredFeatures });
}
