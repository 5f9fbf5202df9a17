/**
 * Integer index algebra for kernel IR. Index expressions are built from loop variables with known
 * ranges, constants, sums with constant coefficients, and floor division / modulo by positive
 * constants. Every constructor simplifies eagerly, using the variables' ranges, so that a chain of
 * reshapes and permutes collapses to the affine index a person would write by hand.
 *
 * Division and modulo are floor semantics (Python's `//` and `%`); renderers must honour that when an
 * operand's range can be negative (see `canBeNegative`).
 */

export type IExpr = IConst | IVar | ISum | IDiv | IMod;

export interface IConst {
  readonly k: 'c';
  readonly v: number;
  readonly key: string;
}
export interface IVar {
  readonly k: 'v';
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly key: string;
}
/** `c + Σ coef·atom`, atoms are vars, divs or mods, sorted by key; never a single bare atom. */
export interface ISum {
  readonly k: 'sum';
  readonly terms: readonly (readonly [IExpr, number])[];
  readonly c: number;
  readonly key: string;
}
export interface IDiv {
  readonly k: 'div';
  readonly a: IExpr;
  readonly d: number;
  readonly key: string;
}
export interface IMod {
  readonly k: 'mod';
  readonly a: IExpr;
  readonly d: number;
  readonly key: string;
}

export function iconst(v: number): IConst {
  return { k: 'c', v, key: String(v) };
}
export function ivar(name: string, min: number, max: number): IVar {
  return { k: 'v', name, min, max, key: name };
}

/** Inclusive [min, max] of an expression, from the ranges of its variables. */
export function range(e: IExpr): [number, number] {
  switch (e.k) {
    case 'c':
      return [e.v, e.v];
    case 'v':
      return [e.min, e.max];
    case 'sum': {
      let lo = e.c;
      let hi = e.c;
      for (const [a, coef] of e.terms) {
        const [amin, amax] = range(a);
        if (coef >= 0) {
          lo += coef * amin;
          hi += coef * amax;
        } else {
          lo += coef * amax;
          hi += coef * amin;
        }
      }
      return [lo, hi];
    }
    case 'div': {
      const [lo, hi] = range(e.a);
      return [Math.floor(lo / e.d), Math.floor(hi / e.d)];
    }
    case 'mod': {
      const [lo, hi] = range(e.a);
      if (lo >= 0 && hi < e.d) return [lo, hi];
      if (lo >= 0) return [0, Math.min(e.d - 1, hi)];
      return [0, e.d - 1];
    }
  }
}

export function canBeNegative(e: IExpr): boolean {
  return range(e)[0] < 0;
}

/** Split any expression into its linear form: constant plus coefficient per atom. */
function linear(e: IExpr): { terms: Map<string, [IExpr, number]>; c: number } {
  const terms = new Map<string, [IExpr, number]>();
  if (e.k === 'c') return { terms, c: e.v };
  if (e.k === 'sum') {
    for (const [a, coef] of e.terms) terms.set(a.key, [a, coef]);
    return { terms, c: e.c };
  }
  terms.set(e.key, [e, 1]);
  return { terms, c: 0 };
}

function build(terms: Map<string, [IExpr, number]>, c: number): IExpr {
  // x//d*d + x%d == x: fold pairs that reshape round-trips leave behind.
  for (const [key, [atom, coef]] of terms) {
    if (atom.k !== 'mod' || coef === 0) continue;
    const divKey = `(${atom.a.key}//${atom.d})`;
    const div = terms.get(divKey);
    if (div && div[1] === coef * atom.d) {
      terms.delete(key);
      terms.delete(divKey);
      const inner = linear(mul(atom.a, coef));
      for (const [k2, [a2, c2]] of inner.terms) {
        const prev = terms.get(k2);
        terms.set(k2, [a2, (prev ? prev[1] : 0) + c2]);
      }
      return build(terms, c + inner.c);
    }
  }
  const list = [...terms.values()].filter(([, coef]) => coef !== 0);
  if (list.length === 0) return iconst(c);
  if (list.length === 1 && list[0]![1] === 1 && c === 0) return list[0]![0];
  list.sort((x, y) => (x[0].key < y[0].key ? -1 : x[0].key > y[0].key ? 1 : 0));
  const key = `(${list.map(([a, coef]) => (coef === 1 ? a.key : `${a.key}*${coef}`)).join('+')}${c ? `+${c}` : ''})`;
  return { k: 'sum', terms: list, c, key };
}

export function add(...xs: (IExpr | number)[]): IExpr {
  const terms = new Map<string, [IExpr, number]>();
  let c = 0;
  for (const x of xs) {
    const e = typeof x === 'number' ? iconst(x) : x;
    const l = linear(e);
    c += l.c;
    for (const [k, [a, coef]] of l.terms) {
      const prev = terms.get(k);
      terms.set(k, [a, (prev ? prev[1] : 0) + coef]);
    }
  }
  return build(terms, c);
}

export function mul(e: IExpr, f: number): IExpr {
  if (f === 0) return iconst(0);
  if (f === 1) return e;
  const l = linear(e);
  for (const [k, [a, coef]] of l.terms) l.terms.set(k, [a, coef * f]);
  return build(l.terms, l.c * f);
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Floor division by a positive constant. */
export function div(e: IExpr, d: number): IExpr {
  if (!(d > 0 && Number.isInteger(d))) throw new Error(`symbolic div by non-positive constant ${d}`);
  if (d === 1) return e;
  if (e.k === 'c') return iconst(Math.floor(e.v / d));
  const [lo, hi] = range(e);
  if (Math.floor(lo / d) === Math.floor(hi / d)) return iconst(Math.floor(lo / d));
  if (e.k === 'div') return div(e.a, e.d * d);
  // floor((d*q + r)/d) == q + floor(r/d) for any integers q, r.
  const l = linear(e);
  const outer = new Map<string, [IExpr, number]>();
  const rest = new Map<string, [IExpr, number]>();
  for (const [k, [a, coef]] of l.terms) {
    if (coef % d === 0) outer.set(k, [a, coef / d]);
    else rest.set(k, [a, coef]);
  }
  const cOuter = Math.floor(l.c / d);
  const q = build(outer, cOuter);
  const r = build(rest, l.c - cOuter * d);
  if (outer.size === 0 && cOuter === 0) return divAtom(r, d);
  return add(q, divAtom(r, d));
}

/**
 * Find g > 1 dividing d such that e = g·q + r with 0 <= r < g (r: the terms whose coefficients g does
 * not divide, plus the constant's remainder). Then e//d == q//(d/g) and e%d == g·(q%(d/g)) + r.
 */
function splitByFactor(e: IExpr, d: number): { g: number; q: IExpr; r: IExpr } | undefined {
  const l = linear(e);
  const candidates = new Set<number>();
  for (const [, [, coef]] of l.terms) {
    const g = gcd(coef, d);
    if (g > 1) candidates.add(g);
  }
  for (const g of [...candidates].sort((a, b) => b - a)) {
    const q = new Map<string, [IExpr, number]>();
    const r = new Map<string, [IExpr, number]>();
    for (const [k, [a, coef]] of l.terms) {
      if (coef % g === 0) q.set(k, [a, coef / g]);
      else r.set(k, [a, coef]);
    }
    const cq = Math.floor(l.c / g);
    const rest = build(r, l.c - cq * g);
    const [lo, hi] = range(rest);
    if (lo >= 0 && hi < g && q.size > 0) return { g, q: build(q, cq), r: rest };
  }
  return undefined;
}

function divAtom(r: IExpr, d: number): IExpr {
  if (d === 1) return r;
  const [lo, hi] = range(r);
  if (Math.floor(lo / d) === Math.floor(hi / d)) return iconst(Math.floor(lo / d));
  const l = linear(r);
  let g = d;
  for (const [, [, coef]] of l.terms) g = gcd(g, coef);
  g = gcd(g, l.c);
  if (g > 1) return divAtom(mul(r, 1 / g), d / g);
  if (r.k === 'div') return divAtom(r.a, r.d * d);
  const split = splitByFactor(r, d);
  if (split) return div(split.q, d / split.g);
  return { k: 'div', a: r, d, key: `(${r.key}//${d})` };
}

/** Floor modulo by a positive constant. */
export function mod(e: IExpr, d: number): IExpr {
  if (!(d > 0 && Number.isInteger(d))) throw new Error(`symbolic mod by non-positive constant ${d}`);
  if (d === 1) return iconst(0);
  if (e.k === 'c') return iconst(((e.v % d) + d) % d);
  const l = linear(e);
  const rest = new Map<string, [IExpr, number]>();
  for (const [k, [a, coef]] of l.terms) {
    const m = ((coef % d) + d) % d;
    if (m !== 0) rest.set(k, [a, coef]);
  }
  const r = build(rest, ((l.c % d) + d) % d);
  const [lo, hi] = range(r);
  if (lo >= 0 && hi < d) return r;
  // One quotient q over the whole range: r % d == r - q·d.
  if (Math.floor(lo / d) === Math.floor(hi / d)) return add(r, -Math.floor(lo / d) * d);
  const lr = linear(r);
  let g = d;
  for (const [, [, coef]] of lr.terms) g = gcd(g, coef);
  g = gcd(g, lr.c);
  if (g > 1) return mul(mod(mul(r, 1 / g), d / g), g);
  if (r.k === 'mod' && r.d % d === 0) return mod(r.a, d);
  const split = splitByFactor(r, d);
  if (split) return add(mul(mod(split.q, d / split.g), split.g), split.r);
  return { k: 'mod', a: r, d, key: `(${r.key}%${d})` };
}

/** `lo <= e < hi`: one validity condition of a padded or masked access. */
export interface ICond {
  readonly e: IExpr;
  readonly lo: number;
  readonly hi: number;
}

/**
 * Simplify a conjunction of validity conditions: drop those that always hold, and return `false` when
 * one can never hold (the access is entirely in padding).
 */
export function simplifyConds(conds: readonly ICond[]): ICond[] | false {
  const out: ICond[] = [];
  for (const c of conds) {
    const [lo, hi] = range(c.e);
    if (lo >= c.lo && hi < c.hi) continue;
    if (hi < c.lo || lo >= c.hi) return false;
    out.push(c);
  }
  return out;
}

/**
 * Variables with narrower ranges where every condition holds: a condition `lo <= c·x + k < hi` on a
 * single variable bounds x. Substituted into an index that is only used under those conditions (a
 * padded region's source index), the narrower ranges let division and modulo collapse, e.g.
 * `(x + 128*g) // 256` with x < 128 there.
 */
export function narrowedVars(conds: readonly ICond[]): Map<string, IExpr> {
  const out = new Map<string, IVar>();
  for (const cond of conds) {
    const e = cond.e;
    let x: IVar | undefined;
    let c = 1;
    let k = 0;
    if (e.k === 'v') x = e;
    else if (e.k === 'sum' && e.terms.length === 1 && e.terms[0]![0].k === 'v') [x, c, k] = [e.terms[0]![0], e.terms[0]![1], e.c];
    if (!x || c === 0) continue;
    const prev = out.get(x.name) ?? x;
    // lo <= c·x + k <= hi - 1
    const a = (cond.lo - k) / c;
    const b = (cond.hi - 1 - k) / c;
    const min = Math.max(prev.min, Math.ceil(Math.min(a, b)));
    const max = Math.min(prev.max, Math.floor(Math.max(a, b)));
    if (min > max || (min === prev.min && max === prev.max)) continue;
    out.set(x.name, ivar(x.name, min, max));
  }
  return out;
}

/** Evaluate with concrete variable values (used by tests and by the interpreter's slow paths). */
export function evaluate(e: IExpr, env: Readonly<Record<string, number>>): number {
  switch (e.k) {
    case 'c':
      return e.v;
    case 'v': {
      const v = env[e.name];
      if (v === undefined) throw new Error(`unbound index variable ${e.name}`);
      return v;
    }
    case 'sum': {
      let s = e.c;
      for (const [a, coef] of e.terms) s += coef * evaluate(a, env);
      return s;
    }
    case 'div':
      return Math.floor(evaluate(e.a, env) / e.d);
    case 'mod': {
      const v = evaluate(e.a, env);
      return ((v % e.d) + e.d) % e.d;
    }
  }
}

/** Variables an expression depends on. */
export function vars(e: IExpr, out: Set<string> = new Set()): Set<string> {
  if (e.k === 'v') out.add(e.name);
  else if (e.k === 'sum') for (const [a] of e.terms) vars(a, out);
  else if (e.k === 'div' || e.k === 'mod') vars(e.a, out);
  return out;
}

/** Human-readable form, used when printing kernels: `g0*64+g1`, `(r0//4)`, `(g1%8)`. */
export function render(e: IExpr): string {
  switch (e.k) {
    case 'c':
      return String(e.v);
    case 'v':
      return e.name;
    case 'sum': {
      const ordered = [...e.terms].sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
      const parts = ordered.map(([a, coef]) => (coef === 1 ? render(a) : coef === -1 ? `-${render(a)}` : `${render(a)}*${coef}`));
      if (e.c) parts.push(String(e.c));
      return parts.join('+').replace(/\+-/g, '-');
    }
    case 'div':
      return `(${render(e.a)}//${e.d})`;
    case 'mod':
      return `(${render(e.a)}%${e.d})`;
  }
}

/** Replace variables by expressions and re-simplify (used to flatten several loop axes into one). */
export function substitute(e: IExpr, map: ReadonlyMap<string, IExpr>): IExpr {
  switch (e.k) {
    case 'c':
      return e;
    case 'v':
      return map.get(e.name) ?? e;
    case 'sum':
      return add(...e.terms.map(([a, coef]) => mul(substitute(a, map), coef)), e.c);
    case 'div':
      return div(substitute(e.a, map), e.d);
    case 'mod':
      return mod(substitute(e.a, map), e.d);
  }
}
