import type { MemoryOwner } from '../memory/events.js';
import { autocastDType, isAutocastable, withAutocast } from './autocast.js';
import { diffToposort, gradients, recordOrigin } from '../autograd/grad.js';
import type { AnyTypedArray, DType } from '../dtype.js';
import {
  allocStorage,
  bf16BitsToF32,
  checkDType,
  f16BitsToF32,
  isFloat,
  itemsize,
  promoteTypes,
  promoteWithScalar,
  writeElement,
} from '../dtype.js';
import { DimError, DisposedError, DTypeError, GradError, ShapeError, ValueError } from '../errors.js';
import type { LazyNode, Shape } from '../graph/node.js';
import {
  arangeNode,
  binaryNode,
  bufferNode,
  newAlias,
  constNode,
  contiguousNode,
  detachNode,
  expandNode,
  gatherNode,
  flipNode,
  numel,
  padNode,
  permuteNode,
  randNode,
  reduceNode,
  reshapeNode,
  shrinkNode,
  strideNode,
  unaryNode,
  whereNode,
} from '../graph/node.js';
import type { UnaryOp } from '../graph/ops.js';
import { isMovement } from '../graph/ops.js';
import type { DeviceBuffer } from '../runtime/buffer.js';
import { getRuntime, resolveDevice } from '../runtime/registry.js';
import { drawCounter, isGradEnabled, trackInScope } from './context.js';
import { realizeNodes, realizeNodesAsync, uploadBuffer } from './realize.js';

/** Where and how a new tensor is made. */
export interface TensorOptions {
  dtype?: DType;
  device?: string;
  requiresGrad?: boolean;
}

/** Anything a binary op accepts as its other operand. */
export type TensorLike = Tensor | number | boolean;

/** Nested arrays of numbers or booleans, as accepted by `tensor()`. */
export type NestedArray = number | boolean | NestedArray[];

/** A slice of one axis: an index (drops the axis), `null` (all), or `[start, end, step]` like Python. */
export type SliceSpec = number | null | readonly [number?, number?, number?] | readonly (number | undefined)[];

/** The JavaScript array `data()` returns: half types are widened to f32. */
export type HostArray = Float32Array | Int32Array | Int8Array | Uint8Array;

// Tensors whose gradient `backward()` fills in, by their current graph node.
const gradLeaves = new Map<LazyNode, WeakRef<Tensor>>();
// Frees a tensor's buffer reference if it is garbage-collected without dispose(): a safety net only.
// The registration targets the BUFFER node, not the tensor, so that a lazy graph still reading the
// buffer (and therefore holding the node) keeps it alive after the tensor itself is gone.
const finalizer = new FinalizationRegistry<DeviceBuffer>((buf) => buf.release());

function normDim(dim: number, ndim: number, what = 'dim'): number {
  const n = Math.max(ndim, 1);
  if (!Number.isInteger(dim) || dim < -n || dim >= n) {
    throw new DimError(`${what} ${dim} is out of range for a tensor with ${ndim} dimension${ndim === 1 ? '' : 's'} (expected ${-n}..${n - 1})`);
  }
  return dim < 0 ? dim + n : dim;
}

function broadcastShapes(a: Shape, b: Shape, what: string): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new ShapeError(`${what}: shapes [${a}] and [${b}] cannot be broadcast (axis ${i - n}: ${x} vs ${y})`);
    }
    out.push(x === 1 ? y : x);
  }
  return out;
}

function shapeArgs(args: readonly (number | readonly number[])[]): number[] {
  const flat = args.length === 1 && Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
  return [...flat];
}

function checkShape(shape: readonly number[], what: string): number[] {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new ShapeError(`${what}: shape [${shape}] must contain non-negative integers`);
  }
  return [...shape];
}

/**
 * A lazy, n-dimensional array on a device. Operations build a graph; `realize()`, `await data()`,
 * `await item()` compute it, fusing the graph into few kernels. Shaped like PyTorch's `torch.Tensor`.
 */
export class Tensor {
  private _node: LazyNode;
  private _target: DeviceBuffer | undefined;
  private _disposed = false;
  private _requiresGrad = false;
  private _owner: { owner: MemoryOwner; label?: string } | undefined;
  /** Gradient accumulated by `backward()` for leaf tensors that require grad. */
  grad: Tensor | null = null;

  /** @internal Use the creation functions (`tensor`, `zeros`, `randn`, ...). */
  constructor(
    node: LazyNode,
    readonly device: string,
    requiresGrad = false,
  ) {
    this._node = node;
    if (node.op === 'BUFFER') finalizer.register(node, node.buffer, this);
    trackInScope(this);
    if (requiresGrad) this.requiresGrad = true;
  }

  // ------------------------------------------------------------------------------------------
  // Identity and metadata
  // ------------------------------------------------------------------------------------------

  /** @internal The graph node this tensor currently stands for. */
  get node(): LazyNode {
    if (this._disposed) throw new DisposedError(`this tensor (${this.describe()}) was disposed; it cannot be used`);
    return this._node;
  }

  private setNode(n: LazyNode): void {
    if (n === this._node) return;
    const old = this._node;
    const leaf = gradLeaves.get(old)?.deref() === this;
    if (leaf) gradLeaves.delete(old);
    if (old.op === 'BUFFER') {
      finalizer.unregister(this);
      old.buffer.release();
    }
    this._node = n;
    if (n.op === 'BUFFER') finalizer.register(n, n.buffer, this);
    if (leaf) gradLeaves.set(n, new WeakRef(this));
  }

  get shape(): number[] {
    return [...this._node.shape];
  }
  get dtype(): DType {
    return this._node.dtype;
  }
  get ndim(): number {
    return this._node.shape.length;
  }
  get numel(): number {
    return this._node.numel;
  }
  /** Size of one dimension, or the whole shape. */
  size(dim?: number): number | number[] {
    if (dim === undefined) return this.shape;
    return this._node.shape[normDim(dim, this.ndim)]!;
  }
  get isDisposed(): boolean {
    return this._disposed;
  }
  /** True once the value sits in a device buffer (nothing left to compute). */
  get isRealized(): boolean {
    return this._node.op === 'BUFFER';
  }

  private describe(): string {
    return `${this._node.dtype}[${this._node.shape.join(', ')}] on ${this.device}`;
  }

  /** Whether `backward()` records gradients through this tensor. Setting it makes the tensor a leaf. */
  get requiresGrad(): boolean {
    return this._requiresGrad;
  }
  set requiresGrad(v: boolean) {
    if (v && !isFloat(this.dtype)) throw new DTypeError(`only floating-point tensors can require grad, got ${this.dtype}`);
    if (v === this._requiresGrad) return;
    this._requiresGrad = v;
    if (v) {
      // A leaf must have an identity of its own in the graph: realize it, and copy if another leaf shares it.
      if (this.node.op !== 'BUFFER') this.realize();
      const other = gradLeaves.get(this._node)?.deref();
      if (other && other !== this) {
        this.setNode(binaryNode('ADD', this._node, constNode(0, this.dtype, this._node.shape)));
        this.realize();
      }
      gradLeaves.set(this._node, new WeakRef(this));
    } else if (gradLeaves.get(this._node)?.deref() === this) {
      gradLeaves.delete(this._node);
    }
  }
  /** In-place `requiresGrad = v`, returning this (PyTorch's `requires_grad_()`). */
  requiresGrad_(v = true): this {
    this.requiresGrad = v;
    return this;
  }

  // ------------------------------------------------------------------------------------------
  // Realization, data, disposal
  // ------------------------------------------------------------------------------------------

  /** Compute the value now (synchronously on host backends). Returns this. */
  realize(): this {
    realize(this);
    return this;
  }

  private readStorage(): AnyTypedArray {
    this.realize();
    const rt = getRuntime(this.device);
    const buf = this.node.buffer;
    buf.assertLive('read');
    const bytes = rt.readSync(buf.mem, 0, this.numel * itemsize[this.dtype]);
    return storageFromBytes(this.dtype, bytes, this.numel);
  }

  /** The values as a flat, row-major JavaScript array (f16/bf16 widened to f32; bool as 0/1). */
  async data(): Promise<HostArray> {
    const rt = getRuntime(this.device);
    if (rt.synchronous) return this.dataSync();
    this.realize();
    const buf = this.node.buffer;
    const bytes = await rt.read(buf.mem, 0, this.numel * itemsize[this.dtype]);
    return widen(this.dtype, storageFromBytes(this.dtype, bytes, this.numel));
  }

  /** `data()` without a promise, on backends that can read synchronously (interp, cpu). */
  dataSync(): HostArray {
    return widen(this.dtype, this.readStorage());
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.numel !== 1) throw new ShapeError(`item(): only one-element tensors can be converted to a number, got shape [${this.shape}]`);
    return (await this.data())[0]!;
  }
  itemSync(): number {
    if (this.numel !== 1) throw new ShapeError(`item(): only one-element tensors can be converted to a number, got shape [${this.shape}]`);
    return this.dataSync()[0]!;
  }

  /** The values as nested JavaScript arrays. */
  async tolist(): Promise<NestedArray> {
    return nest(Array.from(await this.data()), this.shape);
  }

  /** Free the buffer now. Using the tensor afterwards throws a `DisposedError`. */
  dispose(): void {
    if (this._disposed) return;
    if (gradLeaves.get(this._node)?.deref() === this) gradLeaves.delete(this._node);
    if (this._target) {
      finalizer.unregister(this);
      this._target.release();
      this._target = undefined;
    } else if (this._node.op === 'BUFFER') {
      finalizer.unregister(this);
      this._node.buffer.release();
    }
    this.grad?.dispose();
    this.grad = null;
    this._disposed = true;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** PyTorch-style printout; computes the value on synchronous backends. */
  toString(): string {
    if (this._disposed) return `tensor(<disposed>, ${this.describe()})`;
    if (!getRuntime(this.device).synchronous && !this.isRealized) return `tensor(<unrealized>, ${this.describe()})`;
    const vals = Array.from(this.dataSync());
    const fmt = isFloat(this.dtype)
      ? (v: number) => (Number.isInteger(v) && Math.abs(v) < 1e6 ? `${v}.` : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-4 && v !== 0) ? v.toExponential(4) : v.toFixed(4))
      : this.dtype === 'bool'
        ? (v: number) => (v ? 'true' : 'false')
        : (v: number) => String(v);
    const text = formatNested(vals.map(fmt), this.shape, 7);
    const suffix = this.dtype === 'f32' || this.dtype === 'i32' ? '' : `, dtype=${this.dtype}`;
    const grad = this.requiresGrad ? ', requiresGrad=true' : '';
    return `tensor(${text}${suffix}${grad})`;
  }

  /**
   * Replace this tensor's value with `value` (same shape and dtype), in place: when next realized, the
   * value is written into this tensor's existing buffer (how optimizers update parameters and state
   * without new allocations, and what lets `jit` replay a training step on fixed buffers). Like an
   * in-place op in PyTorch, lazy computations that read this tensor and are realized afterwards see
   * the new value. Gradients do not flow through an assignment.
   */
  assign(value: Tensor | number): this {
    const v = typeof value === 'number' ? full(this.shape, value, { dtype: this.dtype, device: this.device }) : value;
    if (v.device !== this.device) throw new ValueError(`assign: value is on ${v.device}, tensor on ${this.device}`);
    if (v.shape.join() !== this.shape.join()) throw new ShapeError(`assign: value of shape [${v.shape}] into tensor of shape [${this.shape}]`);
    if (v.dtype !== this.dtype) throw new DTypeError(`assign: value of dtype ${v.dtype} into tensor of dtype ${this.dtype}`);
    const target = this._target ?? (this.isRealized ? this._node.buffer : undefined);
    let n = v.node;
    if (target && n.op === 'BUFFER') {
      if (n.buffer === target) return this;
      // Already computed: copy into our buffer now.
      const rt = getRuntime(this.device);
      rt.copy({ mem: n.buffer.mem, byteOffset: 0 }, { mem: target.mem, byteOffset: 0 }, target.nbytes);
      return this;
    }
    if (n.op !== 'BUFFER') n = detachNode(n);
    if (target && !this._target) {
      // Keep our buffer (and our reference to it) as the destination of the pending value.
      finalizer.unregister(this);
      this._target = target;
      finalizer.register(this, target, this);
      const leaf = gradLeaves.get(this._node)?.deref() === this;
      if (leaf) gradLeaves.delete(this._node);
      this._node = n;
      if (leaf) gradLeaves.set(n, new WeakRef(this));
    } else {
      if (n.op === 'BUFFER') n.buffer.retain();
      this.setNode(n);
    }
    return this;
  }

  /** @internal The buffer a pending `assign` writes into. */
  get _pendingTarget(): DeviceBuffer | undefined {
    return this._target;
  }

  /**
   * Overwrite the values from the host, in place and immediately (the tensor keeps its buffer). For
   * values that change between steps of a compiled step: learning rates, masks, inputs.
   */
  write(data: ArrayLike<number> | number): this {
    const values = typeof data === 'number' ? [data] : data;
    if (values.length !== this.numel) throw new ShapeError(`write: ${values.length} values for a tensor of ${this.numel} elements (shape [${this.shape}])`);
    this.realize();
    const storage = allocStorage(this.dtype, this.numel);
    for (let i = 0; i < values.length; i++) writeElement(this.dtype, storage, i, values[i]!);
    const buf = this.node.buffer;
    buf.assertLive('write to');
    getRuntime(this.device).write(buf.mem, 0, new Uint8Array(storage.buffer, storage.byteOffset, storage.byteLength));
    return this;
  }

  /**
   * Account this tensor's device memory to `owner` in memory telemetry (`memory.stats()`, the trace and
   * the dashboard): 'parameter', 'optimizer', 'gradient', 'kv-cache', ... Applies to its buffer now and
   * to any buffer it gets later. Modules, optimizers and caches call it; user code may too.
   */
  setMemoryOwner(owner: MemoryOwner, label?: string): this {
    this._owner = { owner, ...(label === undefined ? {} : { label }) };
    if (this.isRealized) this._node.buffer.setOwner(owner, label, this.shape);
    return this;
  }

  /** @internal Point at a freshly computed buffer (ownership passes to this tensor). */
  _setRealized(buf: DeviceBuffer): void {
    if (this._owner) buf.setOwner(this._owner.owner, this._owner.label, this._node.shape);
    const graph = this._node;
    const node = bufferNode(buf, graph.shape);
    if (this._target) {
      // The pending assignment landed in our own buffer: we already hold the reference.
      finalizer.unregister(this);
      this._target = undefined;
      const leaf = gradLeaves.get(graph)?.deref() === this;
      if (leaf) gradLeaves.delete(graph);
      this._node = node;
      finalizer.register(node, buf, this);
      if (leaf) gradLeaves.set(node, new WeakRef(this));
      return;
    }
    // A non-leaf that requires grad keeps the graph it was computed from, so that a later backward()
    // through its buffer still reaches the leaves (reading the loss before backward() is common).
    if (this.requiresGrad && !gradLeaves.has(graph)) recordOrigin(node, graph);
    this.setNode(node);
  }

  // ------------------------------------------------------------------------------------------
  // Autodiff
  // ------------------------------------------------------------------------------------------

  /** A tensor with the same value that does not require grad and stops gradients. */
  detach(): Tensor {
    const n = this.node;
    if (n.op === 'BUFFER') {
      // Same storage, new graph identity: gradients must not reach this tensor's source through it.
      return new Tensor(bufferNode(n.buffer.retain(), n.shape, newAlias()), this.device, false);
    }
    return new Tensor(detachNode(n), this.device, false);
  }

  /**
   * Accumulate d(this)/d(leaf) into `leaf.grad` for every leaf tensor with `requiresGrad` that this
   * depends on. A non-scalar needs an explicit `gradient` of its shape.
   */
  backward(gradient?: Tensor): void {
    if (!this.requiresGrad) {
      throw new GradError(`backward(): this tensor does not require grad (no input had requiresGrad, or it was computed under noGrad)`);
    }
    let seed: LazyNode;
    if (gradient === undefined) {
      if (this.numel !== 1) {
        throw new GradError(`backward(): gradient can only be implied for a one-element output; this tensor has shape [${this.shape}], pass backward(gradient)`);
      }
      seed = constNode(1, this.dtype, this.shape);
    } else {
      if (gradient.shape.join() !== this.shape.join()) {
        throw new ShapeError(`backward(): gradient has shape [${gradient.shape}], expected [${this.shape}]`);
      }
      seed = gradient.cast(this.dtype).node;
    }
    const leaves = new Map<LazyNode, Tensor>();
    for (const n of diffToposort(this.node)) {
      const t = gradLeaves.get(n)?.deref();
      if (t && t.requiresGrad && !t.isDisposed) leaves.set(n, t);
    }
    if (leaves.size === 0) return;
    const grads = gradients(this.node, seed, new Set(leaves.keys()));
    for (const [n, g] of grads) {
      const leaf = leaves.get(n)!;
      const gt = new Tensor(g, leaf.device, false);
      if (leaf.grad && !leaf.grad.isDisposed) {
        const sum = leaf.grad.add(gt);
        leaf.grad.dispose();
        leaf.grad = sum;
      } else {
        leaf.grad = gt;
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Building blocks
  // ------------------------------------------------------------------------------------------

  /** @internal Wrap a node computed from `inputs`, tracking whether gradients flow. */
  _make(node: LazyNode, ...inputs: Tensor[]): Tensor {
    const anyGrad = inputs.some((t) => t.requiresGrad) || this.requiresGrad;
    if (anyGrad && !isGradEnabled()) node = detachNode(node);
    const out = new Tensor(node, this.device);
    // Not a leaf: gradients flow through it to the leaves, so no registration.
    out._requiresGrad = anyGrad && isGradEnabled() && isFloat(node.dtype);
    return out;
  }

  private toTensor(x: TensorLike, dtype: DType): Tensor {
    if (x instanceof Tensor) {
      if (x.device !== this.device) throw new ValueError(`tensors on different devices: ${this.device} and ${x.device}`);
      return x;
    }
    return full([], typeof x === 'boolean' ? Number(x) : x, { dtype, device: this.device });
  }

  /** Broadcast two operands to a common shape and dtype (NumPy broadcasting, PyTorch promotion). */
  private broadcastWith(other: TensorLike, what: string, dtype?: DType): [LazyNode, LazyNode, Tensor[]] {
    const dt = dtype ?? (other instanceof Tensor ? promoteTypes(this.dtype, other.dtype) : promoteWithScalar(this.dtype, other));
    const o = this.toTensor(other, dt);
    const shape = broadcastShapes(this.shape, o.shape, what);
    const fit = (t: Tensor) => {
      let n = unaryNode('CAST', t.node, dt);
      if (n.shape.length < shape.length) n = reshapeNode(n, [...new Array(shape.length - n.shape.length).fill(1), ...n.shape]);
      return expandNode(n, shape);
    };
    return [fit(this), fit(o), other instanceof Tensor ? [this, other] : [this]];
  }

  private binary(op: 'ADD' | 'MUL' | 'MAX', other: TensorLike, what: string): Tensor {
    const [a, b, ins] = this.broadcastWith(other, what);
    return this._make(binaryNode(op, a, b), ...ins);
  }

  private unary(op: UnaryOp, requireFloat = true): Tensor {
    const x = requireFloat && !isFloat(this.dtype) ? this.cast('f32') : this;
    return this._make(unaryNode(op, x.node), x);
  }

  // ------------------------------------------------------------------------------------------
  // Elementwise math
  // ------------------------------------------------------------------------------------------

  add(other: TensorLike): Tensor {
    return this.binary('ADD', other, 'add');
  }
  sub(other: TensorLike): Tensor {
    if (typeof other === 'number' && this.dtype !== 'u8') return this.add(-other);
    // Promote first: negating a u8 operand before promotion would wrap.
    const dt = other instanceof Tensor ? promoteTypes(this.dtype, other.dtype) : promoteWithScalar(this.dtype, other);
    if (dt === 'bool') throw new DTypeError(`sub: subtraction of bool tensors is not supported; use logicalXor-style ops or cast first`);
    return this.cast(dt).add(this.toTensor(other, dt).cast(dt).neg());
  }
  mul(other: TensorLike): Tensor {
    return this.binary('MUL', other, 'mul');
  }
  /** True division: integer operands give a float result, as in PyTorch. */
  div(other: TensorLike): Tensor {
    if (typeof other !== 'object') {
      const x = isFloat(this.dtype) ? this : this.cast('f32');
      return x.mul(1 / Number(other));
    }
    const dt = promoteTypes(this.dtype, other.dtype);
    const fdt = isFloat(dt) ? dt : 'f32';
    return this.cast(fdt).mul(other.cast(fdt).reciprocal());
  }
  neg(): Tensor {
    if (this.dtype === 'bool') throw new DTypeError(`neg: not defined for bool tensors`);
    return this._make(unaryNode('NEG', this.node), this);
  }
  reciprocal(): Tensor {
    return this.unary('RECIP');
  }
  exp(): Tensor {
    return this.unary('EXP');
  }
  log(): Tensor {
    return this.unary('LOG');
  }
  sqrt(): Tensor {
    return this.unary('SQRT');
  }
  rsqrt(): Tensor {
    return this.sqrt().reciprocal();
  }
  sin(): Tensor {
    return this.unary('SIN');
  }
  cos(): Tensor {
    return this.unary('COS');
  }
  tanh(): Tensor {
    return this.unary('TANH');
  }
  erf(): Tensor {
    return this.unary('ERF');
  }
  square(): Tensor {
    return this.mul(this);
  }
  /**
   * A composite of several primitive ops on a 16-bit float tensor is computed in f32 and rounded once
   * (as PyTorch's bf16/f16 kernels do): rounding every intermediate would lose accuracy, and the casts
   * between the steps would split the backward pass into more kernels.
   */
  private roundedOnce(f: (x: Tensor) => Tensor): Tensor {
    return this.dtype === 'bf16' || this.dtype === 'f16' ? f(this.cast('f32')).cast(this.dtype) : f(this);
  }
  sigmoid(): Tensor {
    return this.roundedOnce((x) => x.neg().exp().add(1).reciprocal());
  }
  /** max(x, 0); NaN stays NaN and the gradient at 0 is 0, as in PyTorch. */
  relu(): Tensor {
    return where(this.lt(0).logicalOr(this.eq(0)), 0, this);
  }
  /** GELU: exact (erf) form by default, `{ approximate: 'tanh' }` for GPT-2's tanh form. */
  gelu(opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
    return this.roundedOnce((x) => {
      if (opts.approximate === 'tanh') {
        const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
        return x.mul(0.5).mul(inner.tanh().add(1));
      }
      return x.mul(0.5).mul(x.mul(Math.SQRT1_2).erf().add(1));
    });
  }
  silu(): Tensor {
    return this.roundedOnce((x) => x.mul(x.sigmoid()));
  }
  abs(): Tensor {
    return where(this.lt(0), this.neg(), this);
  }
  sign(): Tensor {
    return this.gt(0).cast(this.dtype).sub(this.lt(0).cast(this.dtype));
  }
  /**
   * Power. Scalar integer exponents are exact repeated products (negative bases allowed); other
   * exponents use exp(y·log x), which is NaN for negative bases as in PyTorch.
   */
  pow(exponent: TensorLike): Tensor {
    if (typeof exponent === 'number') {
      if (exponent === 0) return onesLike(this).cast(isFloat(this.dtype) ? this.dtype : 'f32');
      if (exponent === 0.5) return this.sqrt();
      if (exponent === -0.5) return this.rsqrt();
      if (Number.isInteger(exponent) && Math.abs(exponent) >= 2 ** 16) {
        // |x|^n by exp/log, with the sign of x when n is odd.
        const x = isFloat(this.dtype) ? this : this.cast('f32');
        const mag = x.abs().log().mul(exponent).exp();
        return exponent % 2 === 0 ? mag : where(x.lt(0), mag.neg(), mag);
      }
      if (Number.isInteger(exponent)) {
        let base: Tensor = isFloat(this.dtype) || exponent < 0 ? (isFloat(this.dtype) ? this : this.cast('f32')) : this;
        let result: Tensor | undefined;
        let e = Math.abs(exponent);
        while (e > 0) {
          if (e & 1) result = result ? result.mul(base) : base;
          e >>= 1;
          if (e) base = base.mul(base);
        }
        return exponent < 0 ? result!.reciprocal() : result!;
      }
    }
    const x = isFloat(this.dtype) ? this : this.cast('f32');
    return x.log().mul(exponent).exp();
  }
  maximum(other: TensorLike): Tensor {
    return this.binary('MAX', other, 'maximum');
  }
  minimum(other: TensorLike): Tensor {
    const dt = other instanceof Tensor ? promoteTypes(this.dtype, other.dtype) : promoteWithScalar(this.dtype, other);
    if (dt === 'u8' || dt === 'bool') return this.cast('i32').minimum(other instanceof Tensor ? other.cast('i32') : other).cast(dt);
    const o = other instanceof Tensor ? other.neg() : typeof other === 'number' ? -other : -Number(other);
    return this.neg().maximum(o).neg();
  }
  /** Limit values to [min, max]; either bound may be omitted. */
  clamp(min?: number | Tensor, max?: number | Tensor): Tensor {
    if (min === undefined && max === undefined) throw new ValueError(`clamp: give at least one of min and max`);
    // where() rather than maximum/minimum: a value exactly on a bound keeps its full gradient.
    const lower = min === undefined ? this : where(this.lt(min), min, this);
    return max === undefined ? lower : where(lower.gt(max), max, lower);
  }

  // ---- comparisons (bool results) ----

  private compare(op: 'CMPLT' | 'CMPEQ', other: TensorLike, swap: boolean, what: string): Tensor {
    const [a, b, ins] = this.broadcastWith(other, what);
    return this._make(swap ? binaryNode(op, b, a) : binaryNode(op, a, b), ...ins);
  }
  lt(other: TensorLike): Tensor {
    return this.compare('CMPLT', other, false, 'lt');
  }
  gt(other: TensorLike): Tensor {
    return this.compare('CMPLT', other, true, 'gt');
  }
  le(other: TensorLike): Tensor {
    return this.gt(other).logicalNot();
  }
  ge(other: TensorLike): Tensor {
    return this.lt(other).logicalNot();
  }
  eq(other: TensorLike): Tensor {
    return this.compare('CMPEQ', other, false, 'eq');
  }
  ne(other: TensorLike): Tensor {
    return this.eq(other).logicalNot();
  }
  logicalNot(): Tensor {
    return this.cast('bool').eq(false);
  }
  logicalAnd(other: Tensor): Tensor {
    return this.cast('bool').mul(other.cast('bool'));
  }
  logicalOr(other: Tensor): Tensor {
    return this.cast('bool').maximum(other.cast('bool'));
  }

  // ---- dtype ----

  /** Convert to another dtype (C semantics: float to int truncates toward zero). */
  cast(dtype: DType): Tensor {
    checkDType(dtype);
    if (dtype === this.dtype) return this;
    const n = unaryNode('CAST', this.node, dtype);
    const t = this._make(n, this);
    return t;
  }
  float(): Tensor {
    return this.cast('f32');
  }
  half(): Tensor {
    return this.cast('f16');
  }
  bfloat16(): Tensor {
    return this.cast('bf16');
  }
  int(): Tensor {
    return this.cast('i32');
  }
  bool(): Tensor {
    return this.cast('bool');
  }

  // ------------------------------------------------------------------------------------------
  // Reductions
  // ------------------------------------------------------------------------------------------

  private reduceAxes(dim: number | readonly number[] | undefined): number[] {
    if (dim === undefined) return this.shape.map((_, i) => i);
    const dims = typeof dim === 'number' ? [dim] : [...dim];
    return [...new Set(dims.map((d) => normDim(d, this.ndim)))];
  }

  private finishReduce(n: LazyNode, axes: number[], keepdim: boolean, ...ins: Tensor[]): Tensor {
    const shape = keepdim ? n.shape : this.shape.filter((_, i) => !axes.includes(i));
    return this._make(reshapeNode(n, shape), ...ins);
  }

  /** Sum over `dim` (all dims when omitted). Bool and small ints accumulate as i32, like PyTorch's int64. */
  sum(dim?: number | readonly number[], keepdim = false): Tensor {
    const axes = this.reduceAxes(dim);
    const x = isFloat(this.dtype) || this.dtype === 'i32' ? this : this.cast('i32');
    return x.finishReduce(reduceNode('SUM', x.node, axes), axes, keepdim, x);
  }
  mean(dim?: number | readonly number[], keepdim = false): Tensor {
    const axes = this.reduceAxes(dim);
    const count = axes.reduce((p, a) => p * this.shape[a]!, 1);
    const x = isFloat(this.dtype) ? this : this.cast('f32');
    return x.sum(axes, keepdim).mul(count === 0 ? NaN : 1 / count);
  }
  max(dim?: number | readonly number[], keepdim = false): Tensor {
    const axes = this.reduceAxes(dim);
    if (axes.some((a) => this.shape[a] === 0)) throw new ShapeError(`max: cannot reduce an empty dimension of [${this.shape}]`);
    return this.finishReduce(reduceNode('RMAX', this.node, axes), axes, keepdim, this);
  }
  min(dim?: number | readonly number[], keepdim = false): Tensor {
    // Negation wraps on unsigned types: go through i32.
    if (this.dtype === 'u8' || this.dtype === 'bool') return this.cast('i32').min(dim, keepdim).cast(this.dtype);
    return this.neg().max(dim, keepdim).neg();
  }
  /** Index of the first maximal element along `dim` (over the flattened tensor when omitted), as i32. */
  argmax(dim?: number, keepdim = false): Tensor {
    if (dim === undefined) return this.flatten().argmax(0, false);
    const d = normDim(dim, this.ndim);
    const n = this.shape[d]!;
    const m = this.max(d, true);
    // Count down from n so that the first maximum has the largest weight.
    const shape = this.shape.map((_, i) => (i === d ? n : 1));
    const rev = arange(n, 0, -1, { device: this.device, dtype: 'i32' }).reshape(shape);
    const isMax = isFloat(this.dtype) ? this.eq(m).logicalOr(this.ne(this)) : this.eq(m); // NaN counts as maximal, as in PyTorch
    const hits = isMax.cast('i32').mul(rev); // n - i where x is maximal, else 0
    return hits.max(d, keepdim).neg().add(n);
  }
  argmin(dim?: number, keepdim = false): Tensor {
    if (this.dtype === 'u8' || this.dtype === 'bool') return this.cast('i32').argmin(dim, keepdim);
    return this.neg().argmax(dim, keepdim);
  }
  /** Variance with Bessel's correction by default (`correction: 1`), like `torch.var`. */
  var(dim?: number | readonly number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    const axes = this.reduceAxes(dim);
    const count = axes.reduce((p, a) => p * this.shape[a]!, 1);
    const x = isFloat(this.dtype) ? this : this.cast('f32');
    const dev = x.sub(x.mean(axes, true));
    const denom = Math.max(0, count - (opts.correction ?? 1));
    return dev.mul(dev).sum(axes, opts.keepdim ?? false).div(denom);
  }
  std(dim?: number | readonly number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return this.var(dim, opts).sqrt();
  }
  /** log(Σ exp(x)) along `dim`, stable for large inputs. */
  logsumexp(dim: number, keepdim = false): Tensor {
    const d = normDim(dim, this.ndim);
    const mx = this.max(d, true).detach();
    // An infinite maximum would make x - max NaN; shift by 0 there (the result is then ±inf anyway).
    const m = where(mx.abs().eq(Infinity), 0, mx);
    const s = this.sub(m).exp().sum(d, true).log().add(m);
    return keepdim ? s : s.squeeze(d);
  }
  softmax(dim = -1): Tensor {
    const d = normDim(dim, this.ndim);
    const x = isFloat(this.dtype) && !upcastUnderAutocast(this.dtype) ? this : this.cast('f32');
    const e = x.sub(x.max(d, true).detach()).exp();
    return e.div(e.sum(d, true));
  }
  logSoftmax(dim = -1): Tensor {
    const d = normDim(dim, this.ndim);
    const x = isFloat(this.dtype) && !upcastUnderAutocast(this.dtype) ? this : this.cast('f32');
    const shifted = x.sub(x.max(d, true).detach());
    return shifted.sub(shifted.exp().sum(d, true).log());
  }

  // ------------------------------------------------------------------------------------------
  // Movement (views: no copies)
  // ------------------------------------------------------------------------------------------

  /** New shape with the same elements; one dimension may be -1 (inferred). */
  reshape(...shape: (number | readonly number[])[]): Tensor {
    const s = shapeArgs(shape);
    const unknown = s.filter((d) => d === -1).length;
    if (unknown > 1) throw new ShapeError(`reshape: only one dimension can be -1, got [${s}]`);
    if (unknown === 1) {
      const known = s.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
      if (known === 0 || this.numel % known !== 0) throw new ShapeError(`reshape: cannot view [${this.shape}] (${this.numel} elements) as [${s}]`);
      s[s.indexOf(-1)] = this.numel / known;
    }
    checkShape(s, 'reshape');
    return this._make(reshapeNode(this.node, s), this);
  }
  view(...shape: (number | readonly number[])[]): Tensor {
    return this.reshape(...shape);
  }
  permute(...order: (number | readonly number[])[]): Tensor {
    const o = shapeArgs(order);
    if (o.length !== this.ndim) throw new ShapeError(`permute: got ${o.length} axes [${o}] for a tensor with ${this.ndim} dimensions`);
    return this._make(permuteNode(this.node, o.map((d) => normDim(d, this.ndim))), this);
  }
  transpose(dim0 = -2, dim1 = -1): Tensor {
    const a = normDim(dim0, this.ndim);
    const b = normDim(dim1, this.ndim);
    const order = this.shape.map((_, i) => i);
    order[a] = b;
    order[b] = a;
    return this.permute(order);
  }
  /** Transpose of a 2-d tensor (1-d and 0-d tensors are returned as they are). */
  get T(): Tensor {
    return this.ndim < 2 ? this : this.permute([...this.shape.keys()].reverse());
  }
  /** Broadcast size-1 dimensions (and new leading ones) to `shape`; -1 keeps a size. */
  expand(...shape: (number | readonly number[])[]): Tensor {
    const s = shapeArgs(shape);
    if (s.length < this.ndim) throw new ShapeError(`expand: target [${s}] has fewer dimensions than [${this.shape}]`);
    const lead = s.length - this.ndim;
    const target = s.map((d, i) => (d === -1 ? (i >= lead ? this.shape[i - lead]! : -1) : d));
    if (target.includes(-1)) throw new ShapeError(`expand: -1 is not allowed for new leading dimensions in [${s}]`);
    const padded = reshapeNode(this.node, [...new Array(lead).fill(1), ...this.shape]);
    for (let i = 0; i < target.length; i++) {
      if (padded.shape[i] !== 1 && padded.shape[i] !== target[i]) throw new ShapeError(`expand: cannot broadcast [${this.shape}] to [${s}]`);
    }
    return this._make(expandNode(padded, target), this);
  }
  unsqueeze(dim: number): Tensor {
    const d = normDim(dim, this.ndim + 1);
    const s = this.shape;
    s.splice(d, 0, 1);
    return this.reshape(s);
  }
  /** Remove size-1 dimensions (all, or just `dim`). */
  squeeze(dim?: number | readonly number[]): Tensor {
    if (dim === undefined) return this.reshape(this.shape.filter((s) => s !== 1));
    const dims = (typeof dim === 'number' ? [dim] : [...dim]).map((d) => normDim(d, this.ndim));
    return this.reshape(this.shape.filter((s, i) => !(dims.includes(i) && s === 1)));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    if (this.ndim === 0) return this.reshape([1]);
    const a = normDim(startDim, this.ndim);
    const b = normDim(endDim, this.ndim);
    if (a > b) throw new DimError(`flatten: startDim ${startDim} comes after endDim ${endDim}`);
    const s = this.shape;
    const mid = s.slice(a, b + 1).reduce((p, d) => p * d, 1);
    return this.reshape([...s.slice(0, a), mid, ...s.slice(b + 1)]);
  }
  /**
   * Pad with a constant, PyTorch's `F.pad` order: `[left, right]` for the last dim, then
   * `[top, bottom]` for the one before, and so on.
   */
  pad(pads: readonly number[], value = 0): Tensor {
    if (pads.length % 2 !== 0 || pads.length / 2 > this.ndim) {
      throw new ShapeError(`pad: expected an even number of values, at most 2 per dimension of [${this.shape}], got [${pads}]`);
    }
    const pairs: [number, number][] = this.shape.map(() => [0, 0]);
    for (let i = 0; i < pads.length / 2; i++) pairs[this.ndim - 1 - i] = [pads[2 * i]!, pads[2 * i + 1]!];
    if (pairs.some(([a, b]) => a < 0 || b < 0)) {
      // Negative padding crops, as in PyTorch.
      const crop = pairs.map(([a, b], i) => [Math.max(0, -a), this.shape[i]! - Math.max(0, -b)] as [number, number]);
      return this.shrink(crop).pad(pads.map((p) => Math.max(0, p)), value);
    }
    const padded = this._make(padNode(this.node, pairs), this);
    if (value === 0) return padded;
    const mask = this._make(padNode(constNode(1, 'bool', this.shape), pairs));
    return where(mask, padded, value);
  }
  /** @internal Keep `[start, end)` of each axis. */
  shrink(ranges: readonly (readonly [number, number])[]): Tensor {
    return this._make(shrinkNode(this.node, ranges), this);
  }
  flip(dims: number | readonly number[]): Tensor {
    const ds = (typeof dims === 'number' ? [dims] : [...dims]).map((d) => normDim(d, this.ndim));
    return this._make(flipNode(this.node, ds), this);
  }
  /**
   * Python-style slicing, one spec per leading axis: an index drops the axis (negative counts from the
   * end), `null` keeps it whole, `[start, end, step]` slices with any of the three omitted; negative steps
   * reverse. `x.slice(null, [1, undefined, 2])` is `x[:, 1::2]`.
   */
  slice(...specs: SliceSpec[]): Tensor {
    if (specs.length > this.ndim) throw new DimError(`slice: ${specs.length} indices for a tensor with ${this.ndim} dimensions`);
    const ranges: [number, number][] = [];
    const steps: number[] = [];
    const flips: number[] = [];
    const drop: number[] = [];
    this.shape.forEach((size, i) => {
      const spec = specs[i];
      if (spec === undefined || spec === null) {
        ranges.push([0, size]);
        steps.push(1);
        return;
      }
      if (typeof spec === 'number') {
        const idx = spec < 0 ? spec + size : spec;
        if (!Number.isInteger(spec) || idx < 0 || idx >= size) throw new DimError(`slice: index ${spec} is out of range for axis ${i} of size ${size}`);
        ranges.push([idx, idx + 1]);
        steps.push(1);
        drop.push(i);
        return;
      }
      const step = spec[2] ?? 1;
      if (!Number.isInteger(step) || step === 0) throw new ValueError(`slice: step must be a non-zero integer, got ${step} on axis ${i}`);
      const clampIdx = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + size : v, lo), hi);
      if (step > 0) {
        const start = clampIdx(spec[0] ?? 0, 0, size);
        const end = Math.max(start, clampIdx(spec[1] ?? size, 0, size));
        ranges.push([start, end]);
        steps.push(step);
      } else {
        // x[a:b:-k] == flip(x[b+1:a+1])[::k]
        const start = spec[0] === undefined ? size - 1 : clampIdx(spec[0], -1, size - 1);
        const end = spec[1] === undefined ? -1 : clampIdx(spec[1], -1, size - 1);
        ranges.push([end + 1, Math.max(end + 1, start + 1)]);
        steps.push(-step);
        flips.push(i);
      }
    });
    let t = this.shrink(ranges);
    if (flips.length) t = t.flip(flips);
    if (steps.some((s) => s !== 1)) t = t._make(strideNode(t.node, steps), t);
    return drop.length ? t.reshape(t.shape.filter((_, i) => !drop.includes(i))) : t;
  }
  /** `length` elements of `dim` from `start`. */
  narrow(dim: number, start: number, length: number): Tensor {
    const d = normDim(dim, this.ndim);
    const size = this.shape[d]!;
    const s = start < 0 ? start + size : start;
    if (s < 0 || length < 0 || s + length > size) throw new DimError(`narrow: [${start}, ${start}+${length}) is outside axis ${dim} of size ${size}`);
    return this.shrink(this.shape.map((n, i) => (i === d ? [s, s + length] : [0, n])));
  }
  /** Split into pieces of `size` (or the given sizes) along `dim`. */
  split(sizes: number | readonly number[], dim = 0): Tensor[] {
    const d = normDim(dim, this.ndim);
    const total = this.shape[d]!;
    let list: number[];
    if (typeof sizes === 'number') {
      if (!(sizes > 0)) throw new ValueError(`split: size must be positive, got ${sizes}`);
      list = [];
      for (let s = 0; s < total; s += sizes) list.push(Math.min(sizes, total - s));
    } else {
      list = [...sizes];
      const sum = list.reduce((p, s) => p + s, 0);
      if (sum !== total) throw new ShapeError(`split: sizes [${list}] add up to ${sum}, but axis ${dim} has size ${total}`);
    }
    let start = 0;
    return list.map((len) => {
      const t = this.narrow(d, start, len);
      start += len;
      return t;
    });
  }
  /** Split into `chunks` nearly equal pieces along `dim` (the last may be smaller). */
  chunk(chunks: number, dim = 0): Tensor[] {
    const d = normDim(dim, this.ndim);
    return this.split(Math.ceil(this.shape[d]! / chunks), d);
  }
  /** Values of `dim` at `index` positions: `out[..., i, ...] = x[..., index[i], ...]`. */
  indexSelect(dim: number, index: Tensor): Tensor {
    if (index.ndim !== 1) throw new ShapeError(`indexSelect: index must be 1-d, got shape [${index.shape}]`);
    const d = normDim(dim, this.ndim);
    const moved = this.transpose(d, -1); // [..., n]
    const oh = oneHot(index, this.shape[d]!); // [k, n]
    // Select with where, not a multiply: unselected Inf or NaN must not leak in as Inf*0.
    const picked = where(oh, moved.unsqueeze(-2), 0).sum(-1); // [..., k]
    return picked.transpose(-1, d);
  }
  /**
   * `out[i][j][k] = x[i][index[i][j][k]][k]` for `dim = 1` (PyTorch's `gather`); `index` has this
   * tensor's rank and integer dtype.
   */
  gather(dim: number, index: Tensor): Tensor {
    if (index.ndim !== this.ndim) throw new ShapeError(`gather: index rank ${index.ndim} differs from input rank ${this.ndim}`);
    const d = normDim(dim, this.ndim);
    for (let i = 0; i < this.ndim; i++) {
      if (i !== d && index.shape[i]! > this.shape[i]!) throw new ShapeError(`gather: index shape [${index.shape}] exceeds input shape [${this.shape}] on axis ${i}`);
    }
    const n = this.shape[d]!;
    const x = this.shrink(this.shape.map((s, i) => (i === d ? [0, s] : [0, index.shape[i]!]))); // crop to index extents
    // x'[p, j] = x[p with p_d = j], broadcast over index positions along d, then pick j = index[p].
    const moved = x.movedim(d, -1).unsqueeze(d); // [..., 1 at d, ..., n]
    return where(oneHot(index, n), moved, 0).sum(-1);
  }
  /** Move dimension `source` to position `destination`, keeping the order of the others. */
  movedim(source: number, destination: number): Tensor {
    const s = normDim(source, this.ndim);
    const d = normDim(destination, this.ndim);
    const order = this.shape.map((_, i) => i).filter((i) => i !== s);
    order.splice(d, 0, s);
    return this.permute(order);
  }
  /** Upper triangle (j - i >= diagonal) of the last two dims; the rest zero. */
  triu(diagonal = 0): Tensor {
    return where(triMask(this.shape, diagonal, true, this.device), this, 0);
  }
  /** Lower triangle (j - i <= diagonal) of the last two dims; the rest zero. */
  tril(diagonal = 0): Tensor {
    return where(triMask(this.shape, diagonal, false, this.device), this, 0);
  }
  /** Materialise this value in its own buffer when next realized (a fusion barrier). */
  contiguous(): Tensor {
    return this._make(contiguousNode(this.node), this);
  }

  // ------------------------------------------------------------------------------------------
  // Linear algebra and NN building blocks
  // ------------------------------------------------------------------------------------------

  /** Matrix product with NumPy semantics: 1-d operands are promoted, batch dims broadcast. */
  matmul(other: Tensor): Tensor {
    const low = autocastDType();
    if (low && isAutocastable(this.dtype) && isAutocastable(other.dtype)) {
      // Operands rounded to the low type, products accumulated in f32 (both casts fuse into the GEMM's
      // loads), the result stored in the low type (fused into its stores).
      const a = lowPrecisionOperand(this, low);
      const b = lowPrecisionOperand(other, low);
      // contiguous(): the low-precision result is what gets stored (the cast fused into the GEMM's
      // stores), not the f32 accumulator with the cast repeated in every consumer.
      return withAutocast(undefined, () => a.matmul(b)).cast(low).contiguous();
    }
    if (this.ndim === 0 || other.ndim === 0) throw new ShapeError(`matmul: both operands need at least 1 dimension, got [${this.shape}] and [${other.shape}]`);
    const a = this.ndim === 1 ? this.unsqueeze(0) : this;
    const b = other.ndim === 1 ? other.unsqueeze(-1) : other;
    const k = a.shape[a.ndim - 1]!;
    if (b.shape[b.ndim - 2] !== k) {
      throw new ShapeError(`matmul: inner dimensions differ: [${this.shape}] @ [${other.shape}] (${k} vs ${b.shape[b.ndim - 2]})`);
    }
    broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), `matmul batch dims of [${this.shape}] @ [${other.shape}]`);
    // [..., M, 1, K] * [..., 1, N, K] summed over K
    const prod = a.unsqueeze(-2).mul(b.transpose(-1, -2).unsqueeze(-3));
    let out = prod.sum(-1);
    if (this.ndim === 1) out = out.squeeze(-2);
    if (other.ndim === 1) out = out.squeeze(-1);
    return out;
  }
  /** `x @ weightᵀ + bias`, weight of shape [out, in] (PyTorch's `F.linear`). */
  linear(weight: Tensor, bias?: Tensor): Tensor {
    const y = this.matmul(weight.T);
    return bias ? y.add(bias) : y;
  }
}

// ----------------------------------------------------------------------------------------------
// Free functions
// ----------------------------------------------------------------------------------------------

/**
 * A product's operand under autocast, read as f32 from its low-precision rounding. An operand that is an
 * expression (a norm's or an activation's output, a softmax) is stored in the low type, so that the copy
 * kept for the backward pass is half size; one already in memory (a parameter, a stored activation, or
 * a view of one) is rounded on load instead of copied.
 */
function lowPrecisionOperand(t: Tensor, low: DType): Tensor {
  let base = t.node;
  while (isMovement(base.op)) base = base.src[0]!;
  const stored = base.op === 'BUFFER' || base.op === 'CONTIGUOUS';
  const rounded = t.cast(low);
  return (stored ? rounded : rounded.contiguous()).cast('f32');
}

/** Under autocast, reductions that need range and precision (softmax, norms, losses) run in f32. */
export function upcastUnderAutocast(d: DType): boolean {
  return autocastDType() !== undefined && (d === 'bf16' || d === 'f16');
}

function storageFromBytes(dtype: DType, bytes: Uint8Array, n: number): AnyTypedArray {
  const s = allocStorage(dtype, n);
  new Uint8Array(s.buffer, s.byteOffset, s.byteLength).set(bytes.subarray(0, s.byteLength));
  return s;
}

function widen(dtype: DType, s: AnyTypedArray): HostArray {
  if (dtype === 'f16' || dtype === 'bf16') {
    const out = new Float32Array(s.length);
    const f = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
    for (let i = 0; i < s.length; i++) out[i] = f(s[i]!);
    return out;
  }
  return s as HostArray;
}

function nest(flat: number[], shape: readonly number[]): NestedArray {
  if (shape.length === 0) return flat[0]!;
  const [n, ...rest] = shape;
  const step = numel(rest);
  return Array.from({ length: n! }, (_, i) => nest(flat.slice(i * step, (i + 1) * step), rest));
}

function formatNested(vals: string[], shape: readonly number[], indent: number): string {
  if (shape.length === 0) return vals[0]!;
  const width = Math.max(...vals.map((v) => v.length), 0);
  const pad = (v: string) => v.padStart(width);
  const rec = (offset: number, dim: number, ind: string): string => {
    const n = shape[dim]!;
    const step = numel(shape.slice(dim + 1));
    const idxs = n > 6 ? [0, 1, 2, -1, n - 3, n - 2, n - 1] : [...Array(n).keys()];
    if (dim === shape.length - 1) {
      return `[${idxs.map((i) => (i < 0 ? '...' : pad(vals[offset + i]!))).join(', ')}]`;
    }
    const sep = ',' + '\n'.repeat(shape.length - dim - 1) + ind + ' ';
    return `[${idxs.map((i) => (i < 0 ? '...' : rec(offset + i * step, dim + 1, ind + ' '))).join(sep)}]`;
  };
  return rec(0, 0, ' '.repeat(indent));
}

/**
 * `await realizeAsync(a, b, ...)`: like `realize`, but kernels run off the JavaScript thread where the
 * device allows (the CPU backend), so a server's event loop stays responsive. Resolves to the tensors.
 * Do not change the tensors' inputs (assign, dispose) until it resolves.
 */
export async function realizeAsync(...tensors: Tensor[]): Promise<Tensor[]> {
  const pending = tensors.filter((t) => !t.isRealized);
  const byDevice = new Map<string, Tensor[]>();
  for (const t of pending) byDevice.set(t.device, [...(byDevice.get(t.device) ?? []), t]);
  for (const [device, ts] of byDevice) {
    const bufs = await realizeNodesAsync(
      ts.map((t) => t.node),
      getRuntime(device),
      inPlaceTargets(ts),
    );
    claimBuffers(ts, bufs);
  }
  return tensors;
}

function claimBuffers(ts: readonly Tensor[], bufs: Map<LazyNode, DeviceBuffer>): void {
  const claimed = new Set<DeviceBuffer>();
  // Tensors assigning in place already own their buffer; others share fresh buffers by reference.
  for (const t of ts) if (t._pendingTarget && bufs.get(t.node) === t._pendingTarget) claimed.add(t._pendingTarget);
  for (const t of ts) {
    const buf = bufs.get(t.node);
    if (!buf) continue;
    if (t._pendingTarget === buf) {
      t._setRealized(buf);
      continue;
    }
    if (claimed.has(buf)) buf.retain();
    claimed.add(buf);
    t._setRealized(buf);
  }
}

/** `realize(a, b, ...)`: compute several tensors in one schedule, so shared work happens once. */
export function realize(...tensors: Tensor[]): void {
  const pending = tensors.filter((t) => !t.isRealized);
  if (pending.length === 0) return;
  const byDevice = new Map<string, Tensor[]>();
  for (const t of pending) {
    const list = byDevice.get(t.device) ?? [];
    list.push(t);
    byDevice.set(t.device, list);
  }
  for (const [device, ts] of byDevice) {
    const rt = getRuntime(device);
    const bufs = realizeNodes(
      ts.map((t) => t.node),
      rt,
      inPlaceTargets(ts),
    );
    claimBuffers(ts, bufs);
  }
}

function inPlaceTargets(ts: readonly Tensor[]): Map<LazyNode, DeviceBuffer> | undefined {
  let m: Map<LazyNode, DeviceBuffer> | undefined;
  for (const t of ts) {
    const target = t._pendingTarget;
    if (!target) continue;
    m ??= new Map();
    if (m.has(t.node) && m.get(t.node) !== target) {
      throw new ValueError(`realize: one value is assigned into two different tensors; assign a copy (value.add(0)) to the second`);
    }
    m.set(t.node, target);
  }
  return m;
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as NestedArray;
  }
  return shape;
}

function flattenData(data: NestedArray, shape: readonly number[], out: number[], depth = 0): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new ShapeError(`tensor(): ragged nested array (expected a scalar at depth ${depth})`);
    if (typeof data !== 'number' && typeof data !== 'boolean') throw new ValueError(`tensor(): expected numbers or booleans, got ${typeof data}`);
    out.push(typeof data === 'boolean' ? Number(data) : data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new ShapeError(`tensor(): ragged nested array: expected ${shape[depth]} elements at depth ${depth}`);
  }
  for (const d of data) flattenData(d, shape, out, depth + 1);
}

function dtypeOfArray(data: ArrayLike<number>): DType {
  if (data instanceof Float32Array || data instanceof Float64Array) return 'f32';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Int8Array) return 'i8';
  if (data instanceof Uint8Array) return 'u8';
  return 'f32';
}

/**
 * A tensor from JavaScript data: nested arrays (shape inferred), a typed array or a flat array with
 * `shape`. Integers default to i32, fractions to f32, booleans to bool.
 */
export function tensor(data: NestedArray | ArrayLike<number>, opts: TensorOptions & { shape?: readonly number[] } = {}): Tensor {
  let flat: ArrayLike<number>;
  let shape: number[];
  let inferred: DType;
  if (ArrayBuffer.isView(data) || (typeof data === 'object' && data !== null && !Array.isArray(data))) {
    flat = data as ArrayLike<number>;
    shape = opts.shape ? [...opts.shape] : [flat.length];
    inferred = dtypeOfArray(flat);
  } else {
    shape = inferShape(data as NestedArray);
    const out: number[] = [];
    flattenData(data as NestedArray, shape, out);
    flat = out;
    const isBool = (function firstLeaf(d: NestedArray): boolean {
      return Array.isArray(d) ? (d.length ? firstLeaf(d[0]!) : false) : typeof d === 'boolean';
    })(data as NestedArray);
    inferred = isBool ? 'bool' : out.every((v) => Number.isInteger(v)) ? 'i32' : 'f32';
    if (opts.shape) shape = [...opts.shape];
  }
  checkShape(shape, 'tensor()');
  if (numel(shape) !== flat.length) throw new ShapeError(`tensor(): ${flat.length} values do not fill shape [${shape}]`);
  const dtype = opts.dtype ? checkDType(opts.dtype) : inferred;
  const storage = allocStorage(dtype, flat.length);
  // A typed array of the storage's own element type holds representable values already: one block copy
  // (a server builds several such inputs per step; the per-element path cost ~0.5 ms of each).
  const sameType = (dtype === 'f32' && flat instanceof Float32Array) || (dtype === 'i32' && flat instanceof Int32Array) || (dtype === 'i8' && flat instanceof Int8Array) || (dtype === 'u8' && flat instanceof Uint8Array);
  if (sameType) (storage as Float32Array).set(flat as Float32Array);
  else for (let i = 0; i < flat.length; i++) writeElement(dtype, storage, i, flat[i]!);
  const device = resolveDevice(opts.device);
  const rt = getRuntime(device);
  const buf = uploadBuffer(rt, dtype, new Uint8Array(storage.buffer, storage.byteOffset, storage.byteLength), flat.length);
  return new Tensor(bufferNode(buf, shape), device, opts.requiresGrad ?? false);
}

/** A tensor of `shape` filled with `value` (lazy: costs nothing until used). */
export function full(shape: readonly number[], value: number | boolean, opts: TensorOptions = {}): Tensor {
  checkShape(shape, 'full');
  const v = typeof value === 'boolean' ? Number(value) : value;
  const dtype = opts.dtype ? checkDType(opts.dtype) : typeof value === 'boolean' ? 'bool' : 'f32';
  const t = new Tensor(constNode(v, dtype, shape), resolveDevice(opts.device), false);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}
export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}
export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}
export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, device: t.device, ...opts });
}
export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, device: t.device, ...opts });
}
export function fullLike(t: Tensor, value: number, opts: TensorOptions = {}): Tensor {
  return full(t.shape, value, { dtype: t.dtype, device: t.device, ...opts });
}

/**
 * `[start, start+step, ...)` up to `end` (exclusive). With one argument, `arange(n)` is `0..n-1`.
 * Integer arguments give i32, fractional ones f32.
 */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new ValueError(`arange: step must be non-zero`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? ([start, end, step].every(Number.isInteger) ? 'i32' : 'f32');
  const t = new Tensor(arangeNode(n, start, step, checkDType(dtype)), resolveDevice(opts.device));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** `steps` evenly spaced values from `start` to `end` inclusive (f32). */
export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0) throw new ValueError(`linspace: steps must be a non-negative integer, got ${steps}`);
  const step = steps > 1 ? (end - start) / (steps - 1) : 0;
  const t = new Tensor(arangeNode(steps, start, step, checkDType(opts.dtype ?? 'f32')), resolveDevice(opts.device));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Identity matrix of `n` rows and `m` (default `n`) columns. */
export function eye(n: number, m = n, opts: TensorOptions = {}): Tensor {
  const device = resolveDevice(opts.device);
  const r = arange(n, undefined, 1, { device }).reshape([n, 1]);
  const c = arange(m, undefined, 1, { device }).reshape([1, m]);
  return r.eq(c).cast(opts.dtype ?? 'f32');
}

/** Uniform samples in [0, 1) from the seeded counter-based stream (see `manualSeed`). */
export function rand(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  checkShape(shape, 'rand');
  const { seed, counter } = drawCounter(numel(shape));
  const t = new Tensor(randNode(shape, seed, counter), resolveDevice(opts.device));
  const out = opts.dtype && opts.dtype !== 'f32' ? t.cast(opts.dtype) : t;
  if (opts.requiresGrad) out.requiresGrad = true;
  return out;
}

/** Standard normal samples (Box–Muller over two uniform draws). */
export function randn(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  const device = resolveDevice(opts.device);
  const u1 = rand(shape, { device });
  const u2 = rand(shape, { device });
  const z = u1.neg().add(1).log().mul(-2).sqrt().mul(u2.mul(2 * Math.PI).cos());
  const out = opts.dtype && opts.dtype !== 'f32' ? z.cast(opts.dtype) : z;
  if (opts.requiresGrad) out.requiresGrad = true;
  return out;
}

/** Integers uniform in [low, high) as i32. */
export function randint(low: number, high: number, shape: readonly number[], opts: TensorOptions = {}): Tensor {
  if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low) throw new ValueError(`randint: need integers low < high, got ${low}, ${high}`);
  return rand(shape, { device: opts.device }).mul(high - low).cast('i32').add(low).cast(opts.dtype ?? 'i32');
}

/** `where(cond, a, b)`: elements of `a` where `cond` is true, else of `b`, all broadcast together. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const device = cond.device;
  const ta = a instanceof Tensor ? a : undefined;
  const tb = b instanceof Tensor ? b : undefined;
  let dtype: DType;
  if (ta && tb) dtype = promoteTypes(ta.dtype, tb.dtype);
  else if (ta) dtype = promoteWithScalar(ta.dtype, b as number);
  else if (tb) dtype = promoteWithScalar(tb.dtype, a as number);
  else dtype = [a, b].every((v) => typeof v === 'boolean') ? 'bool' : [a, b].every((v) => Number.isInteger(v)) ? 'i32' : 'f32';
  const asT = (v: TensorLike) => (v instanceof Tensor ? v.cast(dtype) : full([], v, { dtype, device }));
  const A = asT(a);
  const B = asT(b);
  const shape = broadcastShapes(broadcastShapes(cond.shape, A.shape, 'where'), B.shape, 'where');
  const fit = (t: Tensor) => t.expand(shape).node;
  return cond._make(whereNode(fit(cond.cast('bool')), fit(A), fit(B)), A, B);
}

/** Concatenate along `dim` (shapes must agree elsewhere). */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new ValueError(`cat: need at least one tensor`);
  const first = tensors[0]!;
  const d = normDim(dim, first.ndim);
  let dtype = first.dtype;
  for (const t of tensors) {
    if (t.ndim !== first.ndim || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new ShapeError(`cat: shapes [${first.shape}] and [${t.shape}] differ outside dim ${dim}`);
    }
    dtype = promoteTypes(dtype, t.dtype);
  }
  const total = tensors.reduce((p, t) => p + t.shape[d]!, 0);
  let offset = 0;
  let out: Tensor | undefined;
  for (const t of tensors) {
    const pads: [number, number][] = t.shape.map(() => [0, 0]);
    pads[d] = [offset, total - offset - t.shape[d]!];
    offset += t.shape[d]!;
    const tc = t.cast(dtype);
    const p = tc._make(padNode(tc.node, pads), tc);
    out = out ? out.add(p) : p;
  }
  return out!;
}

/** Stack along a new dimension `dim`. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new ValueError(`stack: need at least one tensor`);
  const d = normDim(dim, tensors[0]!.ndim + 1);
  for (const t of tensors) {
    if (t.shape.join() !== tensors[0]!.shape.join()) throw new ShapeError(`stack: shapes [${tensors[0]!.shape}] and [${t.shape}] differ`);
  }
  return cat(
    tensors.map((t) => t.unsqueeze(d)),
    d,
  );
}

/** One-hot encoding of integer `index` over `n` classes, as bool with a trailing axis of size n. */
/**
 * Rows of a 2-D `table` `[V, C]` at integer `indices` (any shape S): `[...S, C]`, like `table[indices]`
 * in PyTorch. One row is read per index (a data-dependent load), not the whole table; indices outside
 * [0, V) give rows of zeros. Differentiable in `table`.
 *
 * @throws ShapeError for a table that is not 2-d; DTypeError for non-integer indices; ValueError for
 *   tensors on different devices.
 */
export function gatherRows(table: Tensor, indices: Tensor): Tensor {
  if (table.ndim !== 2) throw new ShapeError(`gatherRows: table must be 2-d [V, C], got shape [${table.shape}]`);
  if (isFloat(indices.dtype) || indices.dtype === 'bool') throw new DTypeError(`gatherRows: indices must be an integer tensor, got ${indices.dtype}[${indices.shape}]`);
  if (table.device !== indices.device) throw new ValueError(`gatherRows: table is on ${table.device}, indices on ${indices.device}`);
  const idx = indices.dtype === 'i32' || indices.dtype === 'i8' || indices.dtype === 'u8' ? indices : indices.cast('i32');
  return table._make(gatherNode(table.node, idx.node), idx);
}

export function oneHot(index: Tensor, n: number): Tensor {
  if (isFloat(index.dtype) || index.dtype === 'bool') throw new DTypeError(`oneHot: index must be an integer tensor, got ${index.dtype}`);
  const classes = arange(n, undefined, 1, { device: index.device }).reshape([...index.shape.map(() => 1), n]);
  return index.cast('i32').unsqueeze(-1).eq(classes);
}

function triMask(shape: readonly number[], diagonal: number, upper: boolean, device: string): Tensor {
  if (shape.length < 2) throw new ShapeError(`triu/tril: need at least 2 dimensions, got [${shape}]`);
  const r = shape[shape.length - 2]!;
  const c = shape[shape.length - 1]!;
  const rows = arange(r, undefined, 1, { device }).reshape([r, 1]);
  const cols = arange(c, undefined, 1, { device }).reshape([1, c]);
  const diff = cols.sub(rows); // j - i
  return upper ? diff.ge(diagonal) : diff.le(diagonal);
}
