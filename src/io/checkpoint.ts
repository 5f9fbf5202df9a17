/**
 * Checkpoints: a module's (or any) state dict as a real safetensors file, written atomically. Tensor
 * names are the state-dict keys (`h.0.attn.c_attn.weight`), so the file opens with the `safetensors`
 * Python package or Hugging Face tooling as it is.
 */
import { allocStorage, f32ToBf16Bits, f32ToF16Bits, type AnyTypedArray } from '../dtype.js';
import { DTypeError, FormatError, ShapeError, ValueError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { realize, tensor, Tensor } from '../tensor/tensor.js';
import { f16BitsToF32, bf16BitsToF32 } from '../dtype.js';
import { loadSafetensors, saveSafetensors, type HostTensor } from './safetensors.js';

/** What {@link loadCheckpoint} returns. */
export interface LoadedCheckpoint {
  /** Every tensor of the file, by name, as realized tensors (when a module was given: the module's own tensors). */
  tensors: Record<string, Tensor>;
  /** The file's `__metadata__` map. */
  metadata: Record<string, string>;
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /** Require the file's names to match the module's state dict exactly (default true). */
  strict?: boolean;
  /** Device of the returned tensors when no module is given (default: the default device). */
  device?: string;
}

function isModule(x: unknown): x is Module {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as Module).stateDict === 'function' &&
    typeof (x as Module).namedParameters === 'function'
  );
}

/** Copy a tensor's value to the host in safetensors layout (half types as raw 16-bit words). */
export function toHostTensor(t: Tensor): HostTensor {
  const values = t.dataSync();
  const shape = t.shape;
  let data: AnyTypedArray;
  if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const conv = t.dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
    const out = allocStorage(t.dtype, values.length);
    for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
    data = out;
  } else {
    const out = allocStorage(t.dtype, values.length);
    out.set(values as ArrayLike<number>);
    data = out;
  }
  return { dtype: t.dtype, shape, data };
}

/** A realized tensor holding a host tensor's values. */
export function fromHostTensor(h: HostTensor, device?: string): Tensor {
  let values: ArrayLike<number> = h.data;
  if (h.dtype === 'f16' || h.dtype === 'bf16') {
    const conv = h.dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
    values = Float32Array.from(h.data, (b) => conv(b));
  }
  return tensor(values, { dtype: h.dtype, shape: h.shape, device });
}

/**
 * Save `source` (a module, whose `stateDict()` is saved, or a name → tensor record) to `path` as
 * safetensors, atomically (a crash leaves any previous file intact). Lazy tensors are realized together
 * first. `metadata` is stored in the file's `__metadata__` (string values only).
 *
 * @throws ValueError if a value is not a Tensor or the name `__metadata__` is used.
 * @throws as `saveSafetensors` (FormatError for non-string metadata, an Error naming `path` on I/O failure).
 */
export async function saveCheckpoint(
  path: string,
  source: Module | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const sd = isModule(source) ? source.stateDict() : source;
  const entries = Object.entries(sd);
  for (const [k, t] of entries) {
    if (!(t instanceof Tensor)) throw new ValueError(`saveCheckpoint: value for '${k}' is not a Tensor`);
    if (k === '__metadata__')
      throw new ValueError(
        `saveCheckpoint: '__metadata__' is reserved by safetensors and cannot name a tensor`,
      );
  }
  realize(...entries.map(([, t]) => t));
  const host: Record<string, HostTensor> = {};
  for (const [k, t] of entries) host[k] = toHostTensor(t);
  await saveSafetensors(path, host, metadata);
}

/**
 * Read a checkpoint written by {@link saveCheckpoint} (or any safetensors file).
 *
 * Without `module`: returns every tensor as a realized tensor. With `module`: checks the file against
 * `module.stateDict()` (names, shapes, dtypes) BEFORE changing anything, then loads the values in place
 * (`loadStateDict`, identities kept), and returns the module's tensors.
 *
 * @throws FormatError naming `path` (and the key) when the file is not valid safetensors, when names are
 *   missing or unexpected (strict mode; all are listed in one error), or when a tensor's shape or dtype
 *   differs from the module's.
 */
export async function loadCheckpoint(
  path: string,
  module?: Module,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const { tensors: host, metadata } = await loadSafetensors(path);
  if (!module) {
    const tensors: Record<string, Tensor> = {};
    for (const [k, h] of Object.entries(host)) tensors[k] = fromHostTensor(h, opts.device);
    return { tensors, metadata };
  }
  const strict = opts.strict ?? true;
  const own = module.stateDict();
  const missing = Object.keys(own).filter((k) => !(k in host));
  const unexpected = Object.keys(host).filter((k) => !(k in own));
  if (strict && (missing.length || unexpected.length)) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing tensors: ${missing.join(', ')}`);
    if (unexpected.length) parts.push(`unexpected tensors: ${unexpected.join(', ')}`);
    throw new FormatError(`${path}: checkpoint does not match the module (${parts.join('; ')})`);
  }
  const sd: Record<string, Tensor> = {};
  for (const [k, dst] of Object.entries(own)) {
    const h = host[k];
    if (!h) continue;
    if (h.shape.join() !== dst.shape.join() || h.shape.length !== dst.ndim) {
      throw new FormatError(
        `${path}: tensor '${k}' has shape [${h.shape}] in the file, the module expects [${dst.shape}]`,
      );
    }
    if (h.dtype !== dst.dtype)
      throw new FormatError(
        `${path}: tensor '${k}' has dtype ${h.dtype} in the file, the module expects ${dst.dtype}`,
      );
  }
  for (const [k, dst] of Object.entries(own)) {
    const h = host[k];
    if (h) sd[k] = fromHostTensor(h, dst.device);
  }
  try {
    module.loadStateDict(sd, { strict: false });
  } catch (e) {
    if (e instanceof ShapeError || e instanceof DTypeError || e instanceof ValueError)
      throw new FormatError(`${path}: ${e.message}`);
    throw e;
  } finally {
    for (const t of Object.values(sd)) t.dispose();
  }
  return { tensors: own, metadata };
}
