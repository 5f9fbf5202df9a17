import type { AnyTypedArray, DType } from '../dtype.js';
import { f16BitsToF32, bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits, itemsize, roundTo } from '../dtype.js';
import type { Expr, KernelIR, Operand, Stmt } from '../codegen/ir.js';
import { erf } from '../codegen/mathfn.js';
import { uniform } from '../codegen/prng.js';
import type { ICond, IExpr } from '../codegen/symbolic.js';
import { canBeNegative } from '../codegen/symbolic.js';
import { DeviceError } from '../errors.js';
import type { Binding, CompiledKernel, DeviceLimits, DeviceMemory, Runtime } from './device.js';
import type { HostMemory } from './host.js';
import { hostMemoryOps } from './host.js';

/**
 * The reference runtime: executes kernel IR in plain JavaScript, exactly, on host memory. Every other
 * backend is tested against it. Kernels are translated statement by statement into JavaScript source
 * and compiled by the JavaScript engine, so a launch interprets no data structure and V8 optimises each
 * kernel on its own (closures shared across kernels went megamorphic and ran 5x slower).
 */


type Views = AnyTypedArray[];
type Run = (b: Views, sc: Uint32Array) => void;

interface InterpKernel extends CompiledKernel {
  readonly run: Run;
  /** The JavaScript the kernel was translated to (printed by `TESSERA_DEBUG=3` users on request). */
  readonly source: string;
}

function viewFor(dtype: DType, mem: HostMemory, byteOffset: number, numel: number): AnyTypedArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(mem.host, byteOffset, numel);
    case 'f16':
    case 'bf16':
      return new Uint16Array(mem.host, byteOffset, numel);
    case 'i32':
      return new Int32Array(mem.host, byteOffset, numel);
    case 'i8':
      return new Int8Array(mem.host, byteOffset, numel);
    case 'u8':
    case 'bool':
      return new Uint8Array(mem.host, byteOffset, numel);
  }
}

/** Index expressions with floor semantics for `//` and `%`. */
function idx(e: IExpr): string {
  switch (e.k) {
    case 'c':
      return String(e.v);
    case 'v':
      return e.name;
    case 'sum': {
      const parts = e.terms.map(([a, k]) => (k === 1 ? idx(a) : `${idx(a)}*${k}`));
      if (e.c) parts.push(String(e.c));
      return `(${parts.join('+')})`;
    }
    case 'div':
      return `Math.floor(${idx(e.a)}/${e.d})`;
    case 'mod':
      return canBeNegative(e.a) ? `((${idx(e.a)}%${e.d}+${e.d})%${e.d})` : `(${idx(e.a)}%${e.d})`;
  }
}

function conds(cs: readonly ICond[]): string {
  return cs.map((c) => `(${c.lo}<=${idx(c.e)}&&${idx(c.e)}<${c.hi})`).join('&&');
}

/** Wrap a freshly computed number so it is rounded to `d`, as hardware of that type stores it. */
function round(d: DType, x: string): string {
  switch (d) {
    case 'f32':
      return `fr(${x})`;
    case 'f16':
    case 'bf16':
    case 'i8':
    case 'u8':
      return `R.${d}(${x})`;
    case 'i32':
      return `((${x})|0)`;
    case 'bool':
      return `((${x})!==0?1:0)`;
  }
}

const UNARY_JS: Record<string, (a: string) => string> = {
  NEG: (a) => `-${a}`,
  RECIP: (a) => `1/${a}`,
  EXP: (a) => `Math.exp(${a})`,
  LOG: (a) => `Math.log(${a})`,
  SQRT: (a) => `Math.sqrt(${a})`,
  SIN: (a) => `Math.sin(${a})`,
  COS: (a) => `Math.cos(${a})`,
  TANH: (a) => `Math.tanh(${a})`,
  ERF: (a) => `erf(${a})`,
};

/**
 * Translate kernel IR to JavaScript, one line per IR statement, and let the JavaScript engine compile
 * it. Each SSA value becomes a `const`, each accumulator a `let`, each loop a `for`; every ALU result is
 * rounded to its dtype (`Math.fround` for f32), so results match f32 hardware bit for bit wherever the
 * operation is correctly rounded.
 */
export function translateKernel(ir: KernelIR): string {
  const lines: string[] = [];
  ir.params.forEach((p, i) => lines.push(`const b${i} = B[${i}];`));
  const opnd = (o: Operand) => (o.k === 'ref' ? `v${o.id}` : Number.isNaN(o.v) ? 'NaN' : o.v === Infinity ? 'Infinity' : o.v === -Infinity ? '-Infinity' : Object.is(o.v, -0) ? '-0' : String(o.v));
  const load = (param: number, at: string) => {
    const d = ir.params[param]!.dtype;
    return d === 'f16' ? `h2f(b${param}[${at}])` : d === 'bf16' ? `bh2f(b${param}[${at}])` : `b${param}[${at}]`;
  };
  const expr = (d: DType, e: Expr): string => {
    switch (e.k) {
      case 'load': {
        const l = load(e.param, idx(e.idx));
        return e.valid.length ? `(${conds(e.valid)} ? ${l} : 0)` : l;
      }
      case 'gather': {
        const r = opnd(e.row);
        const l = load(e.param, `${r} * ${e.cols} + ${idx(e.col)}`);
        return `(${e.valid.length ? `${conds(e.valid)} && ` : ''}${r} >= 0 && ${r} < ${e.rows} ? ${l} : 0)`;
      }
      case 'cast':
        return round(d, opnd(e.src));
      case 'index':
        return round(d, `${e.start} + ${idx(e.idx)}*${e.step}`);
      case 'rand':
        return `uniform(S[${e.scalar}], S[${e.scalar + 1}], ${idx(e.idx)})`;
      case 'valid':
        return `(${conds(e.conds)} ? 1 : 0)`;
      case 'alu': {
        const [a, b, c] = e.src.map(opnd) as [string, string, string];
        switch (e.op) {
          case 'WHERE':
            return `(${a} !== 0 ? ${b} : ${c})`;
          case 'ADD':
            return round(d, `${a} + ${b}`);
          case 'MUL':
            return d === 'i32' ? `Math.imul(${a}, ${b})` : round(d, `${a} * ${b}`);
          case 'MAX':
            return `(${a} > ${b} || ${a} !== ${a} ? ${a} : ${b})`;
          case 'CMPLT':
            return `(${a} < ${b} ? 1 : 0)`;
          case 'CMPEQ':
            return `(${a} === ${b} ? 1 : 0)`;
          default: {
            const f = UNARY_JS[e.op];
            if (!f) throw new DeviceError(`interp: no translation for ${e.op}`);
            return round(d, f(`(${a})`));
          }
        }
      }
    }
  };
  const store = (param: number, at: string, v: string) => {
    const d = ir.params[param]!.dtype;
    if (d === 'f16') return `b${param}[${at}] = f2h(${v});`;
    if (d === 'bf16') return `b${param}[${at}] = f2bh(${v});`;
    if (d === 'bool') return `b${param}[${at}] = ${v} !== 0 ? 1 : 0;`;
    return `b${param}[${at}] = ${v};`;
  };
  const walk = (stmts: readonly Stmt[], ind: string) => {
    for (const st of stmts) {
      switch (st.k) {
        case 'loop':
          lines.push(`${ind}for (let ${st.v.name} = 0; ${st.v.name} < ${st.v.max + 1}; ${st.v.name}++) {`);
          walk(st.body, ind + '  ');
          lines.push(`${ind}}`);
          break;
        case 'let':
          lines.push(`${ind}const v${st.id} = ${expr(st.dtype, st.expr)};`);
          break;
        case 'acc':
          lines.push(`${ind}let v${st.id} = ${opnd({ k: 'const', v: st.init })};`);
          break;
        case 'update': {
          const a = `v${st.id}`;
          const v = opnd(st.value);
          const d = ir.valueTypes[st.id]!;
          if (st.op === 'SUM') lines.push(`${ind}${a} = ${d === 'i32' ? `(${a} + ${v})|0` : round(d, `${a} + ${v}`)};`);
          else lines.push(`${ind}if (${v} > ${a} || ${v} !== ${v}) ${a} = ${v};`);
          break;
        }
        case 'store':
          lines.push(ind + store(st.param, idx(st.idx), opnd(st.value)));
          break;
      }
    }
  };
  walk(ir.body, '');
  return lines.join('\n');
}

const helpers = {
  fr: Math.fround,
  R: { f16: (x: number) => roundTo('f16', x), bf16: (x: number) => roundTo('bf16', x), i8: (x: number) => roundTo('i8', x), u8: (x: number) => roundTo('u8', x) },
  h2f: f16BitsToF32,
  bh2f: bf16BitsToF32,
  f2h: f32ToF16Bits,
  f2bh: f32ToBf16Bits,
  erf,
  uniform,
};

function compileKernel(ir: KernelIR): InterpKernel {
  const source = translateKernel(ir);
  const names = Object.keys(helpers);
  const factory = new Function(...names, `return function ${ir.name}(B, S) {\n${source}\n};`) as (...h: unknown[]) => Run;
  const run = factory(...names.map((n) => helpers[n as keyof typeof helpers]));
  return { ir, run, source };
}

/** The interpreter device: host memory, kernels translated to JavaScript. */
export class InterpRuntime implements Runtime {
  readonly name = 'interp';
  readonly synchronous = true;
  readonly limits: DeviceLimits;
  private readonly cache = new Map<string, InterpKernel>();

  constructor(limits: Partial<DeviceLimits> = {}) {
    this.limits = { maxBuffersPerKernel: limits.maxBuffersPerKernel ?? Infinity, bufferAlignment: limits.bufferAlignment ?? 64 };
  }

  alloc(bytes: number): HostMemory {
    return { bytes, host: new ArrayBuffer(bytes) };
  }
  free(_mem: DeviceMemory): void {
    // Host memory is returned to the JavaScript heap when the last reference goes.
  }
  readonly write = hostMemoryOps.write;
  readonly copy = hostMemoryOps.copy;
  readonly readSync = hostMemoryOps.readSync;
  readonly readSyncInto = hostMemoryOps.readSyncInto;
  readonly scatterRows = hostMemoryOps.scatterRows;
  readonly read = hostMemoryOps.read;
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
    k.run(views, scalars);
  }
  async synchronize(): Promise<void> {}
  fingerprint(): string {
    return `interp/${typeof process !== 'undefined' ? `node-${process.versions.node}` : 'browser'}`;
  }
}
