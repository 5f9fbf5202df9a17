import type { AnyTypedArray, DType } from '../dtype.js';
import { f16BitsToF32, bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits, itemsize, roundTo } from '../dtype.js';
import type { Expr, KernelIR, Operand, Stmt } from '../codegen/ir.js';
import { erf } from '../codegen/mathfn.js';
import { uniform } from '../codegen/prng.js';
import type { ICond, IExpr } from '../codegen/symbolic.js';
import { DeviceError } from '../errors.js';
import type { Binding, CompiledKernel, DeviceLimits, DeviceMemory, Runtime } from './device.js';

/**
 * The reference runtime: plain TypeScript that executes kernel IR, slow and exact. Every other backend
 * is tested against it. Each IR statement is turned once into a JavaScript closure (closure
 * compilation), so a launch walks no data structure; every ALU result is rounded to its dtype, as f32
 * hardware would.
 */

interface HostMemory extends DeviceMemory {
  readonly data: ArrayBuffer;
}

type Slots = Float64Array;
type Vars = Float64Array;
type Views = AnyTypedArray[];
type Run = (s: Slots, v: Vars, b: Views, sc: Uint32Array) => void;
type Index = (v: Vars) => number;

interface InterpKernel extends CompiledKernel {
  readonly run: Run;
  readonly varCount: number;
}

function viewFor(dtype: DType, mem: HostMemory, byteOffset: number, numel: number): AnyTypedArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(mem.data, byteOffset, numel);
    case 'f16':
    case 'bf16':
      return new Uint16Array(mem.data, byteOffset, numel);
    case 'i32':
      return new Int32Array(mem.data, byteOffset, numel);
    case 'i8':
      return new Int8Array(mem.data, byteOffset, numel);
    case 'u8':
    case 'bool':
      return new Uint8Array(mem.data, byteOffset, numel);
  }
}

function compileIndex(e: IExpr, slot: (name: string) => number): Index {
  switch (e.k) {
    case 'c': {
      const c = e.v;
      return () => c;
    }
    case 'v': {
      const s = slot(e.name);
      return (v) => v[s]!;
    }
    case 'sum': {
      const c = e.c;
      const fns = e.terms.map(([a]) => compileIndex(a, slot));
      const coefs = e.terms.map(([, k]) => k);
      if (e.terms.every(([a]) => a.k === 'v')) {
        const slots = e.terms.map(([a]) => slot((a as { name: string }).name));
        if (slots.length === 1) {
          const [s0] = slots as [number];
          const [k0] = coefs as [number];
          return (v) => c + v[s0]! * k0;
        }
        if (slots.length === 2) {
          const [s0, s1] = slots as [number, number];
          const [k0, k1] = coefs as [number, number];
          return (v) => c + v[s0]! * k0 + v[s1]! * k1;
        }
        return (v) => {
          let acc = c;
          for (let i = 0; i < slots.length; i++) acc += v[slots[i]!]! * coefs[i]!;
          return acc;
        };
      }
      return (v) => {
        let acc = c;
        for (let i = 0; i < fns.length; i++) acc += fns[i]!(v) * coefs[i]!;
        return acc;
      };
    }
    case 'div': {
      const a = compileIndex(e.a, slot);
      const d = e.d;
      return (v) => Math.floor(a(v) / d);
    }
    case 'mod': {
      const a = compileIndex(e.a, slot);
      const d = e.d;
      return (v) => {
        const x = a(v) % d;
        return x < 0 ? x + d : x;
      };
    }
  }
}

function compileConds(conds: readonly ICond[], slot: (name: string) => number): (v: Vars) => boolean {
  const fns = conds.map((c) => [compileIndex(c.e, slot), c.lo, c.hi] as const);
  return (v) => {
    for (const [f, lo, hi] of fns) {
      const x = f(v);
      if (x < lo || x >= hi) return false;
    }
    return true;
  };
}

/** Rounds a freshly computed number to `d`, the way hardware of that type would store it. */
function rounder(d: DType): (x: number) => number {
  if (d === 'f32') return Math.fround;
  return (x) => roundTo(d, x);
}

function reader(d: DType): (arr: AnyTypedArray, i: number) => number {
  if (d === 'f16') return (a, i) => f16BitsToF32(a[i]!);
  if (d === 'bf16') return (a, i) => bf16BitsToF32(a[i]!);
  return (a, i) => a[i]!;
}

function writer(d: DType): (arr: AnyTypedArray, i: number, x: number) => void {
  if (d === 'f16') return (a, i, x) => (a[i] = f32ToF16Bits(x));
  if (d === 'bf16') return (a, i, x) => (a[i] = f32ToBf16Bits(x));
  if (d === 'f32') return (a, i, x) => (a[i] = x);
  if (d === 'bool') return (a, i, x) => (a[i] = x !== 0 ? 1 : 0);
  return (a, i, x) => (a[i] = roundTo(d, x));
}

function unaryFn(op: string, d: DType): (x: number) => number {
  const r = rounder(d);
  switch (op) {
    case 'NEG':
      return (x) => r(-x);
    case 'RECIP':
      return (x) => r(1 / x);
    case 'EXP':
      return (x) => r(Math.exp(x));
    case 'LOG':
      return (x) => r(Math.log(x));
    case 'SQRT':
      return (x) => r(Math.sqrt(x));
    case 'SIN':
      return (x) => r(Math.sin(x));
    case 'COS':
      return (x) => r(Math.cos(x));
    case 'TANH':
      return (x) => r(Math.tanh(x));
    case 'ERF':
      return (x) => r(erf(x));
  }
  throw new DeviceError(`interp: unknown unary op ${op}`);
}

function binaryFn(op: string, d: DType): (a: number, b: number) => number {
  const r = rounder(d);
  switch (op) {
    case 'ADD':
      return (a, b) => r(a + b);
    case 'MUL':
      return d === 'i32' ? (a, b) => Math.imul(a, b) : (a, b) => r(a * b);
    case 'MAX':
      return (a, b) => (a > b || Number.isNaN(a) ? a : b);
    case 'CMPLT':
      return (a, b) => (a < b ? 1 : 0);
    case 'CMPEQ':
      return (a, b) => (a === b ? 1 : 0);
  }
  throw new DeviceError(`interp: unknown binary op ${op}`);
}

function compileKernel(ir: KernelIR): InterpKernel {
  const varSlots = new Map<string, number>();
  const slot = (name: string) => {
    let s = varSlots.get(name);
    if (s === undefined) varSlots.set(name, (s = varSlots.size));
    return s;
  };
  const operand = (o: Operand): ((s: Slots) => number) => {
    if (o.k === 'const') {
      const c = o.v;
      return () => c;
    }
    const id = o.id;
    return (s) => s[id]!;
  };

  const compileExpr = (id: number, d: DType, e: Expr): Run => {
    switch (e.k) {
      case 'load': {
        const p = e.param;
        const read = reader(ir.params[p]!.dtype);
        const idx = compileIndex(e.idx, slot);
        if (e.valid.length === 0) return (s, v, b) => void (s[id] = read(b[p]!, idx(v)));
        const ok = compileConds(e.valid, slot);
        return (s, v, b) => void (s[id] = ok(v) ? read(b[p]!, idx(v)) : 0);
      }
      case 'cast': {
        const src = operand(e.src);
        const r = rounder(d);
        if (d === 'bool') return (s) => void (s[id] = src(s) !== 0 ? 1 : 0);
        return (s) => void (s[id] = r(src(s)));
      }
      case 'index': {
        const idx = compileIndex(e.idx, slot);
        const { start, step } = e;
        const r = rounder(d);
        return (s, v) => void (s[id] = r(start + idx(v) * step));
      }
      case 'rand': {
        const idx = compileIndex(e.idx, slot);
        const k = e.scalar;
        return (s, v, _b, sc) => void (s[id] = uniform(sc[k]!, sc[k + 1]!, idx(v)));
      }
      case 'valid': {
        const ok = compileConds(e.conds, slot);
        return (s, v) => void (s[id] = ok(v) ? 1 : 0);
      }
      case 'alu': {
        if (e.op === 'WHERE') {
          const [c, a, b] = e.src.map(operand) as [(s: Slots) => number, (s: Slots) => number, (s: Slots) => number];
          return (s) => void (s[id] = c(s) !== 0 ? a(s) : b(s));
        }
        if (e.src.length === 1) {
          const f = unaryFn(e.op, d);
          const a = operand(e.src[0]!);
          return (s) => void (s[id] = f(a(s)));
        }
        const f = binaryFn(e.op, d);
        const [a, b] = e.src.map(operand) as [(s: Slots) => number, (s: Slots) => number];
        return (s) => void (s[id] = f(a(s), b(s)));
      }
    }
  };

  const compileBlock = (stmts: readonly Stmt[]): Run => {
    const fns = stmts.map(compileStmt);
    if (fns.length === 1) return fns[0]!;
    return (s, v, b, sc) => {
      for (let i = 0; i < fns.length; i++) fns[i]!(s, v, b, sc);
    };
  };

  const compileStmt = (st: Stmt): Run => {
    switch (st.k) {
      case 'loop': {
        const vs = slot(st.v.name);
        const n = st.v.max + 1;
        const body = compileBlock(st.body);
        return (s, v, b, sc) => {
          for (let i = 0; i < n; i++) {
            v[vs] = i;
            body(s, v, b, sc);
          }
        };
      }
      case 'let':
        return compileExpr(st.id, st.dtype, st.expr);
      case 'acc': {
        const { id, init } = st;
        return (s) => void (s[id] = init);
      }
      case 'update': {
        const { id } = st;
        const val = operand(st.value);
        const r = rounder(ir.valueTypes[id]!);
        if (st.op === 'SUM') return (s) => void (s[id] = r(s[id]! + val(s)));
        return (s) => {
          const x = val(s);
          if (x > s[id]! || Number.isNaN(x)) s[id] = x;
        };
      }
      case 'store': {
        const p = st.param;
        const write = writer(ir.params[p]!.dtype);
        const idx = compileIndex(st.idx, slot);
        const val = operand(st.value);
        return (s, v, b) => write(b[p]!, idx(v), val(s));
      }
    }
  };

  const run = compileBlock(ir.body);
  return { ir, run, varCount: Math.max(1, varSlots.size) };
}

/** The interpreter device: host memory, closure-compiled kernels. */
export class InterpRuntime implements Runtime {
  readonly name = 'interp';
  readonly synchronous = true;
  readonly limits: DeviceLimits;
  private readonly cache = new Map<string, InterpKernel>();

  constructor(limits: Partial<DeviceLimits> = {}) {
    this.limits = { maxBuffersPerKernel: limits.maxBuffersPerKernel ?? Infinity, bufferAlignment: limits.bufferAlignment ?? 64 };
  }

  alloc(bytes: number): HostMemory {
    return { bytes, data: new ArrayBuffer(bytes) };
  }
  free(_mem: DeviceMemory): void {
    // Host memory is returned to the JavaScript heap when the last reference goes.
  }
  write(mem: DeviceMemory, byteOffset: number, data: Uint8Array): void {
    new Uint8Array((mem as HostMemory).data, byteOffset, data.byteLength).set(data);
  }
  readSync(mem: DeviceMemory, byteOffset: number, bytes: number): Uint8Array {
    return new Uint8Array((mem as HostMemory).data.slice(byteOffset, byteOffset + bytes));
  }
  async read(mem: DeviceMemory, byteOffset: number, bytes: number): Promise<Uint8Array> {
    return this.readSync(mem, byteOffset, bytes);
  }
  compile(kernels: readonly KernelIR[]): CompiledKernel[] {
    return kernels.map((ir) => {
      let k = this.cache.get(ir.key);
      if (!k) this.cache.set(ir.key, (k = compileKernel(ir)));
      return k;
    });
  }
  launch(kernel: CompiledKernel, args: readonly Binding[], scalars: Uint32Array = new Uint32Array(0)): void {
    const k = kernel as InterpKernel;
    const ir = k.ir;
    if (args.length !== ir.params.length) {
      throw new DeviceError(`kernel ${ir.name} takes ${ir.params.length} buffers, got ${args.length}`);
    }
    const views = ir.params.map((p, i) => {
      const b = args[i]!;
      const need = p.numel * itemsize[p.dtype];
      if (b.byteOffset + need > b.mem.bytes) {
        throw new DeviceError(`kernel ${ir.name}: ${p.name} needs ${need} bytes at offset ${b.byteOffset}, buffer has ${b.mem.bytes}`);
      }
      return viewFor(p.dtype, b.mem as HostMemory, b.byteOffset, p.numel);
    });
    k.run(new Float64Array(Math.max(1, ir.valueCount)), new Float64Array(k.varCount), views, scalars);
  }
  async synchronize(): Promise<void> {}
  fingerprint(): string {
    return `interp/${typeof process !== 'undefined' ? `node-${process.versions.node}` : 'browser'}`;
  }
}
