import type { DType } from '../dtype.js';
import type { BinaryOp, UnaryOp } from '../graph/ops.js';
import type { ContractionInfo, KernelKind } from '../schedule/schedule.js';
import type { ICond, IExpr, IVar } from './symbolic.js';
import { render } from './symbolic.js';

/**
 * Kernel IR: a loop nest of SSA statements. Values are numbered; each `let` defines one from an
 * operation over earlier values or constants. Loops are either parallel over the output (`global`) or
 * sequential over a reduction (`reduce`). Every renderer (C, WGSL) and the interpreter consume this.
 */

/** An operand: a previously defined value or an immediate constant. */
export type Operand = { readonly k: 'ref'; readonly id: number } | { readonly k: 'const'; readonly v: number };

export type ALUOp = Exclude<UnaryOp, 'CAST'> | BinaryOp | 'WHERE';

export type Expr =
  /** Element `idx` of parameter `param`, or 0 where any validity condition fails (padding). */
  | { readonly k: 'load'; readonly param: number; readonly idx: IExpr; readonly valid: readonly ICond[] }
  | { readonly k: 'alu'; readonly op: ALUOp; readonly src: readonly Operand[] }
  /** Element `row*cols + col` of parameter `param`, or 0 when `row` (a value) is outside [0, rows) or a condition fails. */
  | { readonly k: 'gather'; readonly param: number; readonly row: Operand; readonly col: IExpr; readonly rows: number; readonly cols: number; readonly valid: readonly ICond[] }
  | { readonly k: 'cast'; readonly src: Operand; readonly from: DType }
  /** `start + idx*step` (ARANGE). */
  | { readonly k: 'index'; readonly idx: IExpr; readonly start: number; readonly step: number }
  /** Uniform [0,1) from the counter-based hash of scalars[seed], scalars[seed+1] + idx. */
  | { readonly k: 'rand'; readonly idx: IExpr; readonly scalar: number }
  /** 1 where every condition holds, else 0 (bool). */
  | { readonly k: 'valid'; readonly conds: readonly ICond[] };

export type Stmt =
  | { readonly k: 'loop'; readonly v: IVar; readonly kind: 'global' | 'reduce'; readonly body: Stmt[] }
  | { readonly k: 'let'; readonly id: number; readonly dtype: DType; readonly expr: Expr }
  | { readonly k: 'acc'; readonly id: number; readonly dtype: DType; readonly init: number }
  | { readonly k: 'update'; readonly id: number; readonly op: 'SUM' | 'RMAX'; readonly value: Operand }
  | { readonly k: 'store'; readonly param: number; readonly idx: IExpr; readonly value: Operand };

export interface KernelParam {
  readonly name: string;
  readonly dtype: DType;
  /** Elements the kernel may touch. */
  readonly numel: number;
  readonly output: boolean;
}

export interface KernelIR {
  readonly name: string;
  /** Parameter 0 is the output; the rest are inputs in schedule order. */
  readonly params: readonly KernelParam[];
  /** Number of u32 scalars passed at launch (RAND seed/counter pairs). */
  readonly scalarCount: number;
  readonly body: readonly Stmt[];
  readonly kind: KernelKind;
  readonly contraction?: ContractionInfo;
  /** Values defined (lets and accumulators); ids are 0..valueCount-1. */
  readonly valueCount: number;
  /** Dtype of every value id. */
  readonly valueTypes: readonly DType[];
  /** Stable identity used for caches: equal keys compute the same thing. */
  readonly key: string;
}

const opnd = (o: Operand) => (o.k === 'ref' ? `v${o.id}` : String(o.v));
const conds = (cs: readonly ICond[]) => cs.map((c) => `${c.lo}<=${render(c.e)}<${c.hi}`).join(' && ');

function exprText(e: Expr, params: readonly KernelParam[]): string {
  switch (e.k) {
    case 'load':
      return `${params[e.param]!.name}[${render(e.idx)}]${e.valid.length ? ` if ${conds(e.valid)}` : ''}`;
    case 'alu':
      return `${e.op}(${e.src.map(opnd).join(', ')})`;
    case 'gather':
      return `${params[e.param]!.name}[${opnd(e.row)}, ${render(e.col)}] of ${e.rows}x${e.cols}${e.valid.length ? ` if ${conds(e.valid)}` : ''}`;
    case 'cast':
      return `cast<${e.from}>(${opnd(e.src)})`;
    case 'index':
      return `${e.start} + ${render(e.idx)}*${e.step}`;
    case 'rand':
      return `rand(s${e.scalar}, ${render(e.idx)})`;
    case 'valid':
      return conds(e.conds);
  }
}

/** Readable listing of a kernel: what `TESSERA_DEBUG=3` prints. */
export function printKernel(k: KernelIR): string {
  const lines: string[] = [];
  const sig = k.params.map((p) => `${p.output ? 'out ' : ''}${p.name}: ${p.dtype}[${p.numel}]`).join(', ');
  lines.push(`kernel ${k.name}(${sig})${k.scalarCount ? ` scalars[${k.scalarCount}]` : ''} {`);
  const walk = (stmts: readonly Stmt[], ind: string) => {
    for (const s of stmts) {
      switch (s.k) {
        case 'loop':
          lines.push(`${ind}for ${s.v.name} in 0..${s.v.max + 1}${s.kind === 'reduce' ? ' (reduce)' : ''} {`);
          walk(s.body, ind + '  ');
          lines.push(`${ind}}`);
          break;
        case 'let':
          lines.push(`${ind}v${s.id}: ${s.dtype} = ${exprText(s.expr, k.params)}`);
          break;
        case 'acc':
          lines.push(`${ind}acc v${s.id}: ${s.dtype} = ${s.init}`);
          break;
        case 'update':
          lines.push(`${ind}v${s.id} ${s.op === 'SUM' ? '+=' : 'max='} ${opnd(s.value)}`);
          break;
        case 'store':
          lines.push(`${ind}${k.params[s.param]!.name}[${render(s.idx)}] = ${opnd(s.value)}`);
          break;
      }
    }
  };
  walk(k.body, '  ');
  lines.push('}');
  return lines.join('\n');
}
