/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors), so Tessera
 * checkpoints load in PyTorch/JAX/NumPy and Hugging Face weights load in Tessera.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (padded with spaces so the data
 * starts 8-byte aligned), then the raw little-endian data buffer. The header maps each tensor name to
 * `{dtype, shape, data_offsets: [begin, end]}` with offsets relative to the start of the data buffer,
 * plus an optional `"__metadata__"` string-to-string map. Tensors must tile the data buffer exactly:
 * the reference implementation rejects overlaps, holes and trailing bytes, and so does this one.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { allocStorage, checkDType, itemsize, type AnyTypedArray, type DType } from '../dtype.js';
import { DTypeError, FormatError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

/** A tensor in host memory. `data.length === product(shape)`; half types hold raw 16-bit words. */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: AnyTypedArray;
}

/** Tessera dtype -> safetensors dtype name. */
const TO_ST: Record<DType, string> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  i32: 'I32',
  i8: 'I8',
  u8: 'U8',
  bool: 'BOOL',
};
const FROM_ST: ReadonlyMap<string, DType> = new Map(
  (Object.entries(TO_ST) as [DType, string][]).map(([d, s]) => [s, d]),
);

const METADATA_KEY = '__metadata__';
/** Same limit as the reference implementation: a larger header is corruption, not a real model. */
const MAX_HEADER_BYTES = 100_000_000;
const DEFAULT_SOURCE = '<buffer>';

/** Typed arrays view memory in host byte order; the format is little-endian, so big-endian hosts swap. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Copy `src` (elements of `size` bytes) into `dst` at `dstOffset`, converting between host order and
 * little-endian. The conversion is its own inverse, so reading and writing share it.
 */
function copyLittleEndian(src: Uint8Array, dst: Uint8Array, dstOffset: number, size: number): void {
  if (HOST_IS_LITTLE_ENDIAN || size === 1) {
    dst.set(src, dstOffset);
    return;
  }
  for (let i = 0; i < src.length; i += size) {
    for (let j = 0; j < size; j++) dst[dstOffset + i + j] = src[i + size - 1 - j]!;
  }
}

function bytesOf(a: AnyTypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && (d as number) >= 0);
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * JSON object text with keys in exactly the given order. `JSON.stringify` of a plain object would move
 * integer-like keys ("0", "10") to the front, and the header should list tensors in layout order.
 */
function jsonObject(entries: readonly (readonly [string, string])[]): string {
  return `{${entries.map(([k, json]) => `${JSON.stringify(k)}:${json}`).join(',')}}`;
}

/**
 * Serialize tensors into safetensors bytes.
 *
 * Tensors are laid out contiguously in sorted name order; the header lists `__metadata__` first (when
 * non-empty) and then the tensors in that order, and is space-padded to a multiple of 8 bytes.
 *
 * @param tensors - name -> tensor; `__metadata__` is reserved and cannot be a tensor name.
 * @param metadata - optional free-form string -> string map stored under `__metadata__`.
 * @throws DTypeError for an unknown dtype or a data array of the wrong type for its dtype.
 * @throws FormatError naming the tensor for an invalid shape or a data length that disagrees with it,
 *   or for a non-string metadata value.
 */
export function encodeSafetensors(
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const layout: { name: string; t: HostTensor; begin: number; end: number }[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY)
      throw new FormatError(`cannot encode: '${METADATA_KEY}' is reserved, not a tensor name`);
    const t = tensors[name]!;
    const dtype = checkDType(t.dtype, `tensor '${name}' dtype`);
    const expected = allocStorage(dtype, 0).constructor;
    if (!(t.data instanceof expected)) {
      throw new DTypeError(
        `cannot encode tensor '${name}': dtype ${dtype} needs a ${expected.name}, got ${t.data?.constructor?.name ?? typeof t.data}`,
      );
    }
    if (!isShape(t.shape)) {
      throw new FormatError(
        `cannot encode tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`,
      );
    }
    const n = product(t.shape);
    if (t.data.length !== n) {
      throw new FormatError(
        `cannot encode tensor '${name}': data has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${n}`,
      );
    }
    const begin = offset;
    offset += n * itemsize[dtype];
    layout.push({ name, t, begin, end: offset });
  }

  const headerEntries: [string, string][] = [];
  const metaEntries = Object.entries(metadata ?? {});
  for (const [k, v] of metaEntries) {
    if (typeof v !== 'string') {
      throw new FormatError(
        `cannot encode: ${METADATA_KEY} value for '${k}' must be a string, got ${typeof v}`,
      );
    }
  }
  // The reference writer omits the key when there is no metadata; an empty map carries no information.
  if (metaEntries.length > 0) {
    headerEntries.push([METADATA_KEY, jsonObject(metaEntries.map(([k, v]) => [k, JSON.stringify(v)]))]);
  }
  for (const { name, t, begin, end } of layout) {
    const info = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [begin, end] };
    headerEntries.push([name, JSON.stringify(info)]);
  }
  const json = new TextEncoder().encode(jsonObject(headerEntries));
  const headerLen = Math.ceil(json.length / 8) * 8;

  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen); // the reference pads with spaces, which JSON ignores
  const dataStart = 8 + headerLen;
  for (const { t, begin } of layout) {
    if (t.dtype === 'bool') {
      // Readers such as NumPy/PyTorch treat bytes other than 0/1 as undefined behaviour.
      const src = t.data as Uint8Array;
      for (let i = 0; i < src.length; i++) out[dataStart + begin + i] = src[i] !== 0 ? 1 : 0;
    } else {
      copyLittleEndian(bytesOf(t.data), out, dataStart + begin, itemsize[t.dtype]);
    }
  }
  return out;
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Validate one header entry; everything that can be checked without looking at its neighbours. */
function parseEntry(source: string, name: string, raw: unknown, dataLen: number): Entry {
  const where = `${source}: tensor '${name}'`;
  if (!isPlainObject(raw))
    throw new FormatError(`${where}: header entry must be an object, got ${JSON.stringify(raw)}`);
  const stName = raw['dtype'];
  const dtype = typeof stName === 'string' ? FROM_ST.get(stName) : undefined;
  if (dtype === undefined) {
    throw new FormatError(
      `${where}: unsupported dtype ${JSON.stringify(stName)} (supported: ${[...FROM_ST.keys()].join(', ')})`,
    );
  }
  const shape = raw['shape'];
  if (!isShape(shape)) {
    throw new FormatError(
      `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  const offsets = raw['data_offsets'];
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
    (offsets[0] as number) > (offsets[1] as number)
  ) {
    throw new FormatError(
      `${where}: data_offsets must be two ascending non-negative integers, got ${JSON.stringify(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = product(shape) * itemsize[dtype];
  if (end - begin !== expectedBytes) {
    throw new FormatError(
      `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${stName} shape [${shape.join(', ')}] needs ${expectedBytes}`,
    );
  }
  if (end > dataLen) {
    throw new FormatError(
      `${where}: data_offsets [${begin}, ${end}] extend past the end of the data buffer (${dataLen} bytes)`,
    );
  }
  return { name, dtype, shape: [...shape], begin, end };
}

function parseMetadata(source: string, raw: unknown): Record<string, string> {
  if (!isPlainObject(raw)) {
    throw new FormatError(
      `${source}: ${METADATA_KEY} must be an object of strings, got ${JSON.stringify(raw)}`,
    );
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') {
      throw new FormatError(
        `${source}: ${METADATA_KEY} value for '${k}' must be a string, got ${JSON.stringify(v)}`,
      );
    }
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays data instead of a prototype.
  return Object.fromEntries(Object.entries(raw as Record<string, string>));
}

/**
 * Parse safetensors bytes.
 *
 * Every tensor's data is copied into its own freshly allocated typed array (see `allocStorage`), so
 * the result never aliases `bytes` and multi-byte arrays are correctly aligned whatever the offsets.
 *
 * @param bytes - the whole file.
 * @param source - name used in error messages (a file path); defaults to `'<buffer>'`.
 * @returns the tensors by name and the `__metadata__` map (empty when the file has none).
 * @throws FormatError naming `source` and the offending field or tensor when the bytes are truncated,
 *   the header is malformed, a dtype is unknown, a shape or data_offsets entry is invalid or disagrees
 *   with its dtype and shape, or the tensors do not tile the data buffer exactly.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source: string = DEFAULT_SOURCE,
): { tensors: Record<string, HostTensor>; metadata: Record<string, string> } {
  const layout = parseLayout(bytes, bytes.length, source);
  const data = bytes.subarray(layout.dataStart);
  const tensors = Object.fromEntries(layout.entries.map((e): [string, HostTensor] => [e.name, decodeEntry(e, data.subarray(e.begin, e.end))]));
  return { tensors, metadata: layout.metadata };
}

interface Layout {
  entries: Entry[];
  metadata: Record<string, string>;
  /** File offset of the data buffer. */
  dataStart: number;
}

/** Header bytes needed to parse the layout: the 8-byte length and the JSON header. */
function headerLength(head: Uint8Array, fileLength: number, source: string): number {
  if (fileLength < 8) {
    throw new FormatError(`${source}: file is ${fileLength} bytes, shorter than the 8-byte header length field`);
  }
  const headerLen64 = new DataView(head.buffer, head.byteOffset, head.byteLength).getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(`${source}: header length ${headerLen64} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const headerLen = Number(headerLen64);
  if (8 + headerLen > fileLength) {
    throw new FormatError(`${source}: header length ${headerLen} runs past the end of the file (${fileLength - 8} bytes after the length field)`);
  }
  return headerLen;
}

/**
 * Validate the header (`head` holds at least its first 8 + header-length bytes) against a file of
 * `fileLength` bytes: entries, metadata, and that the tensors tile the data buffer exactly.
 */
function parseLayout(head: Uint8Array, fileLength: number, source: string): Layout {
  const headerLen = headerLength(head, fileLength, source);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(8, 8 + headerLen));
  } catch {
    throw new FormatError(`${source}: header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${source}: header is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(header)) {
    throw new FormatError(`${source}: header JSON must be an object, got ${Array.isArray(header) ? 'an array' : typeof header}`);
  }
  const dataLength = fileLength - 8 - headerLen;
  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) metadata = parseMetadata(source, raw);
    else entries.push(parseEntry(source, name, raw, dataLength));
  }
  // Sorting by (begin, end) puts zero-size tensors before a real one at the same offset, so the
  // contiguity walk below accepts them while still catching every overlap and hole.
  const ordered = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: Entry | undefined;
  for (const e of ordered) {
    if (e.begin < cursor) {
      throw new FormatError(
        `${source}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev!.name}' [${prev!.begin}, ${prev!.end}]`,
      );
    }
    if (e.begin > cursor) {
      throw new FormatError(
        `${source}: tensor '${e.name}' data_offsets start at ${e.begin}, leaving a gap of unused bytes [${cursor}, ${e.begin}) in the data buffer`,
      );
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataLength) {
    throw new FormatError(
      `${source}: data buffer has ${dataLength} bytes but the tensors' data_offsets cover only ${cursor} (trailing gap)`,
    );
  }

  return { entries, metadata, dataStart: 8 + headerLen };
}

/** One tensor's values from its bytes in the data buffer. */
function decodeEntry(e: Entry, src: Uint8Array): HostTensor {
  const out = allocStorage(e.dtype, product(e.shape));
  if (e.dtype === 'bool') {
    // Tessera's bool kernels assume 0/1; normalise any other truthy byte a foreign writer produced.
    for (let i = 0; i < src.length; i++) out[i] = src[i] !== 0 ? 1 : 0;
  } else {
    copyLittleEndian(src, bytesOf(out), 0, itemsize[e.dtype]);
  }
  return { dtype: e.dtype, shape: e.shape, data: out };
}

/** A safetensors file opened for reading tensors one at a time (see {@link openSafetensors}). */
export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Tensor names, dtypes and shapes, without their data. */
  readonly tensors: ReadonlyMap<string, { dtype: DType; shape: number[] }>;
  /** Read one tensor's values (only its bytes are read from the file). */
  read(name: string): HostTensor;
  close(): void;
}

/**
 * Open a safetensors file lazily: the header is read and validated (as by {@link decodeSafetensors}),
 * tensors are read on demand, so loading a model never holds the whole file in memory at once.
 *
 * @throws FormatError as {@link decodeSafetensors}; Error naming the path when it cannot be read.
 */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new FormatError(`${path}: cannot read: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, Math.min(8, size), 0);
    const headerLen = headerLength(len, size, path);
    const head = Buffer.alloc(8 + headerLen);
    readSync(fd, head, 0, 8 + headerLen, 0);
    const layout = parseLayout(head, size, path);
    const byName = new Map(layout.entries.map((e) => [e.name, e]));
    let open = true;
    return {
      path,
      metadata: layout.metadata,
      tensors: new Map(layout.entries.map((e) => [e.name, { dtype: e.dtype, shape: e.shape }])),
      read(name: string): HostTensor {
        const e = byName.get(name);
        if (!e) throw new FormatError(`${path}: no tensor '${name}'`);
        if (!open) throw new Error(`${path}: file is closed`);
        const buf = Buffer.alloc(e.end - e.begin);
        if (buf.length) readSync(fd, buf, 0, buf.length, layout.dataStart + e.begin);
        return decodeEntry(e, buf);
      },
      close(): void {
        if (open) closeSync(fd);
        open = false;
      },
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * Write tensors to a safetensors file atomically (see `writeFileAtomic`): a crash mid-save leaves the
 * previous file intact.
 *
 * @param path - destination; parent directories are created.
 * @param tensors - name -> tensor.
 * @param metadata - optional string -> string map stored under `__metadata__`.
 * @throws as {@link encodeSafetensors}, or an Error naming `path` when the write fails.
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/**
 * Read a safetensors file.
 *
 * @param path - the file to read; it is named in every FormatError.
 * @returns the tensors by name (each owning its data) and the `__metadata__` map.
 * @throws FormatError as {@link decodeSafetensors}; the fs error when the file cannot be read.
 */
export async function loadSafetensors(
  path: string,
): Promise<{ tensors: Record<string, HostTensor>; metadata: Record<string, string> }> {
  const bytes = await readFile(path);
  return decodeSafetensors(bytes, path);
}
