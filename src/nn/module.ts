/**
 * `Module`: the base class of layers and models (PyTorch's `torch.nn.Module`).
 *
 * Registration is EXPLICIT and ordered: a subclass calls `registerParameter(name, t)`,
 * `registerBuffer(name, t)` and `registerModule(name, m)` in its constructor (each returns its argument,
 * so `this.weight = this.registerParameter('weight', w)` keeps a typed field). Nothing is discovered by
 * reflection, so the registered name (`c_attn`, the state-dict key) may differ from the TypeScript field
 * name (`cAttn`), and the order of `namedParameters()` is the registration order.
 */
import { DTypeError, ShapeError, ValueError } from '../errors.js';
import { isFloat } from '../dtype.js';
import { noGrad } from '../tensor/context.js';
import { realize, Tensor } from '../tensor/tensor.js';

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Require the keys to match exactly (default true); otherwise missing and unexpected keys are skipped. */
  strict?: boolean;
}

/** What {@link Module.loadStateDict} did not match (always empty in strict mode, which throws instead). */
export interface LoadStateDictResult {
  /** Keys of the module that the state dict lacks. */
  missingKeys: string[];
  /** Keys of the state dict that the module lacks. */
  unexpectedKeys: string[];
}

const NAME_RE = /^[A-Za-z0-9_]+$/;

function checkName(what: string, name: string, taken: (n: string) => boolean): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new ValueError(
      `${what}: name ${JSON.stringify(name)} must be non-empty and use only letters, digits and '_' (dots separate submodules)`,
    );
  }
  if (taken(name)) throw new ValueError(`${what}: name '${name}' is already registered on this module`);
}

/**
 * Make `t` a parameter: realized (its own buffer), `requiresGrad = true`. Returns `t`.
 *
 * @throws DTypeError if `t` is not floating point.
 */
export function asParameter(t: Tensor): Tensor {
  if (!isFloat(t.dtype))
    throw new DTypeError(
      `parameter: only floating-point tensors can be parameters, got ${t.dtype}[${t.shape}]`,
    );
  if (!t.isRealized) t.realize();
  t.requiresGrad = true;
  t.setMemoryOwner('parameter');
  return t;
}

/**
 * Base class of layers and models. Holds ordered parameters, buffers (non-trainable state that is
 * saved, e.g. running statistics) and submodules, plus the `training` flag. Subclasses implement
 * `forward` with whatever signature they need.
 */
export class Module {
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _modules = new Map<string, Module>();
  private _training = true;

  /** True in training mode (the default); dropout is active only then. */
  get training(): boolean {
    return this._training;
  }

  /** Set training mode on this module and every submodule. Returns this. */
  train(mode = true): this {
    this._training = mode;
    for (const m of this._modules.values()) m.train(mode);
    return this;
  }

  /** Evaluation mode: `train(false)`. Returns this. */
  eval(): this {
    return this.train(false);
  }

  private taken(name: string): boolean {
    return this._params.has(name) || this._buffers.has(name) || this._modules.has(name);
  }

  /**
   * Register a trainable parameter under `name` (letters, digits, `_`). The tensor is realized and gets
   * `requiresGrad = true`. Returns it.
   *
   * @throws ValueError for an invalid or duplicate name; DTypeError for a non-float tensor.
   */
  registerParameter(name: string, t: Tensor): Tensor {
    checkName('registerParameter', name, (n) => this.taken(n));
    if (!(t instanceof Tensor)) throw new ValueError(`registerParameter: '${name}' must be a Tensor`);
    this._params.set(name, asParameter(t).setMemoryOwner('parameter', name));
    return t;
  }

  /** Register non-trainable state saved in `stateDict()` (realized, no gradient). Returns it. */
  registerBuffer(name: string, t: Tensor): Tensor {
    checkName('registerBuffer', name, (n) => this.taken(n));
    if (!(t instanceof Tensor)) throw new ValueError(`registerBuffer: '${name}' must be a Tensor`);
    if (!t.isRealized) t.realize();
    this._buffers.set(name, t);
    return t;
  }

  /** Register a submodule; its parameters appear as `name.<its names>`. Returns it. */
  registerModule<M extends Module>(name: string, m: M): M {
    checkName('registerModule', name, (n) => this.taken(n));
    if (!(m instanceof Module)) throw new ValueError(`registerModule: '${name}' must be a Module`);
    this._modules.set(name, m);
    return m;
  }

  /** Direct submodules in registration order. */
  children(): Module[] {
    return [...this._modules.values()];
  }

  /** This module (name `''`) and every descendant, with dotted names, depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this._modules) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /**
   * Every parameter with its dotted name (`h.0.attn.c_attn.weight`), in registration order, depth first.
   * A tensor registered in several places (tied weights) is listed once, under its first name.
   */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, p] of m._params) {
        if (seen.has(p)) continue;
        seen.add(p);
        out.push([prefix ? `${prefix}.${n}` : n, p]);
      }
    }
    return out;
  }

  /** The parameters of {@link namedParameters}, without names. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Registered buffers with dotted names. */
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, b] of m._buffers) out.push([prefix ? `${prefix}.${n}` : n, b]);
    }
    return out;
  }

  /** Total number of parameter elements (tied weights counted once). */
  numParameters(): number {
    return this.parameters().reduce((s, p) => s + p.numel, 0);
  }

  /**
   * Parameters and buffers by dotted name: the live tensors themselves (not copies). Like PyTorch, a
   * tied tensor appears under every name it was registered with.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [prefix, m] of this.namedModules()) {
      const key = (n: string) => (prefix ? `${prefix}.${n}` : n);
      for (const [n, p] of m._params) out[key(n)] = p;
      for (const [n, b] of m._buffers) out[key(n)] = b;
    }
    return out;
  }

  /**
   * Copy values from `sd` into this module's parameters and buffers with `assign` (identities are kept,
   * so optimizers holding the parameters keep working). Values are copied into fresh buffers and realized
   * together in one schedule.
   *
   * @throws ShapeError / DTypeError naming the key when a shape or dtype differs (nothing is changed).
   * @throws ValueError in strict mode (default) listing all missing and all unexpected keys at once.
   * @returns the keys that did not match (non-strict mode).
   */
  loadStateDict(sd: Record<string, Tensor>, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !(k in sd));
    const unexpectedKeys = Object.keys(sd).filter((k) => !(k in own));
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      const parts: string[] = [];
      if (missingKeys.length) parts.push(`missing keys: ${missingKeys.join(', ')}`);
      if (unexpectedKeys.length) parts.push(`unexpected keys: ${unexpectedKeys.join(', ')}`);
      throw new ValueError(`loadStateDict: state dict does not match the module (${parts.join('; ')})`);
    }
    const pairs: [Tensor, Tensor][] = [];
    const done = new Set<Tensor>();
    for (const [k, dst] of Object.entries(own)) {
      const src = sd[k];
      if (src === undefined) continue;
      if (!(src instanceof Tensor)) throw new ValueError(`loadStateDict: value for '${k}' is not a Tensor`);
      if (src.shape.join() !== dst.shape.join() || src.ndim !== dst.ndim) {
        throw new ShapeError(
          `loadStateDict: '${k}' has shape [${src.shape}] in the state dict, the module expects [${dst.shape}]`,
        );
      }
      if (src.dtype !== dst.dtype)
        throw new DTypeError(
          `loadStateDict: '${k}' has dtype ${src.dtype} in the state dict, the module expects ${dst.dtype}`,
        );
      if (done.has(dst)) continue; // a tied tensor: load it once, from its first key
      done.add(dst);
      pairs.push([dst, src]);
    }
    // Copy (x + 0) so a parameter never shares a buffer, and so a graph identity, with another tensor.
    const copies = noGrad(() => pairs.map(([, src]) => src.add(0)));
    realize(...copies);
    noGrad(() => pairs.forEach(([dst], i) => dst.assign(copies[i]!)));
    for (const c of copies) c.dispose();
    return { missingKeys, unexpectedKeys };
  }

  /** Dispose every parameter and buffer (and their gradients). The module is unusable afterwards. */
  dispose(): void {
    for (const t of Object.values(this.stateDict())) t.dispose();
  }
}

/** An ordered list of submodules registered as `0`, `1`, ... (PyTorch's `nn.ModuleList`). */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  private readonly items: M[] = [];

  /** @param modules - initial modules, registered as `0`, `1`, ... */
  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.append(m);
  }

  /** Add a module at the end (registered under its index). Returns this. */
  append(m: M): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }

  /** The module at `i` (negative counts from the end). */
  at(i: number): M {
    const j = i < 0 ? i + this.items.length : i;
    const m = this.items[j];
    if (m === undefined)
      throw new ValueError(`ModuleList: index ${i} is out of range for ${this.items.length} modules`);
    return m;
  }

  /** Number of modules. */
  get length(): number {
    return this.items.length;
  }

  /** The modules in order. */
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}
