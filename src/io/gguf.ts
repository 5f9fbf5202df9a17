/**
 * Reader and writer for GGUF, the model file format of llama.cpp and ggml
 * (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), so Tessera can run llama.cpp models and
 * write files llama.cpp loads.
 *
 * Layout, all little-endian:
 *
 *     magic "GGUF" | version u32 | tensor_count u64 | metadata_kv_count u64
 *     metadata_kv_count × { key: string, value_type: u32, value }
 *     tensor_count × { name: string, n_dims: u32, ne: u64[n_dims], ggml_type: u32, offset: u64 }
 *     zero padding up to a multiple of `general.alignment` (default 32)
 *     tensor data: each tensor at data_start + offset, every offset a multiple of the alignment
 *
 * A string is a u64 byte count and that many UTF-8 bytes (no terminator). An array value is an element
 * type u32, a u64 count and the elements (an element may itself be an array). `ne` lists dimensions
 * innermost first (ggml order); Tessera shapes are outermost first, so `shape` is `ne` reversed.
 *
 * Reading is lazy: {@link openGGUF} reads only the header (metadata and tensor table) through a file
 * descriptor, and tensor bytes are read when asked for, so a model larger than memory can be inspected
 * and loaded one tensor at a time. The reader accepts versions 2 and 3 (identical layouts; v3 only
 * added big-endian files, which are rejected); the writer produces version 3 in exactly the layout
 * llama.cpp's own writer uses (tensors in order, each padded to the alignment).
 */
import * as fs from 'node:fs';
import { DisposedError, DTypeError, FormatError } from '../errors.js';
import { writeFileAtomic, writeFileAtomicSync } from './atomic.js';
import {
  decodeBf16Into,
  decodeF16Into,
  dequantizeQ8_0Into,
  f32ToBf16Array,
  f32ToF16Array,
  quantizeQ8_0,
} from './quant.js';

// ---------------------------------------------------------------------------------------------------
// ggml tensor types

/**
 * ggml tensor types: id, name, elements per block, bytes per block (ggml's `type_traits`). Ids are
 * stored in files, so they never change; ggml appends new types and leaves removed ids unused.
 */
const GGML_TYPE_TABLE = [
  [0, 'F32', 1, 4],
  [1, 'F16', 1, 2],
  [2, 'Q4_0', 32, 18],
  [3, 'Q4_1', 32, 20],
  [6, 'Q5_0', 32, 22],
  [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34],
  [9, 'Q8_1', 32, 36],
  [10, 'Q2_K', 256, 84],
  [11, 'Q3_K', 256, 110],
  [12, 'Q4_K', 256, 144],
  [13, 'Q5_K', 256, 176],
  [14, 'Q6_K', 256, 210],
  [15, 'Q8_K', 256, 292],
  [16, 'IQ2_XXS', 256, 66],
  [17, 'IQ2_XS', 256, 74],
  [18, 'IQ3_XXS', 256, 98],
  [19, 'IQ1_S', 256, 50],
  [20, 'IQ4_NL', 32, 18],
  [21, 'IQ3_S', 256, 110],
  [22, 'IQ2_S', 256, 82],
  [23, 'IQ4_XS', 256, 136],
  [24, 'I8', 1, 1],
  [25, 'I16', 1, 2],
  [26, 'I32', 1, 4],
  [27, 'I64', 1, 8],
  [28, 'F64', 1, 8],
  [29, 'IQ1_M', 256, 56],
  [30, 'BF16', 1, 2],
  [34, 'TQ1_0', 256, 54],
  [35, 'TQ2_0', 256, 66],
  [39, 'MXFP4', 32, 17],
  [40, 'NVFP4', 64, 36],
  [41, 'Q1_0', 128, 18],
  [42, 'Q2_0', 64, 18],
] as const;

/** Ids ggml once used and dropped; files with them no longer load anywhere, so name them in errors. */
const REMOVED_GGML_TYPES: ReadonlyMap<number, string> = new Map([
  [4, 'Q4_2'],
  [5, 'Q4_3'],
  [31, 'Q4_0_4_4'],
  [32, 'Q4_0_4_8'],
  [33, 'Q4_0_8_8'],
  [36, 'IQ4_NL_4_4'],
  [37, 'IQ4_NL_4_8'],
  [38, 'IQ4_NL_8_8'],
]);

/** Name of a ggml tensor type this module knows ('F32', 'Q8_0', 'Q4_K', ...). */
export type GGMLTypeName = (typeof GGML_TYPE_TABLE)[number][1];

/** Storage layout of a ggml tensor type. */
export interface GGMLTypeTraits {
  /** The id stored in GGUF tensor infos. */
  readonly id: number;
  readonly name: GGMLTypeName;
  /** Elements per block (1 for plain types such as F32). A row's length must be a multiple of it. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const GGML_BY_ID: ReadonlyMap<number, GGMLTypeTraits> = new Map(
  GGML_TYPE_TABLE.map(([id, name, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);
const GGML_BY_NAME: ReadonlyMap<string, GGMLTypeTraits> = new Map(
  [...GGML_BY_ID.values()].map((t) => [t.name, t]),
);

/**
 * Layout of a ggml tensor type, by GGUF id or by name.
 *
 * @returns the type's id, name, block size and block byte size, or `undefined` for an id or name this
 *   module does not know (including ids ggml removed).
 */
export function ggmlTypeTraits(type: number | string): GGMLTypeTraits | undefined {
  return typeof type === 'number' ? GGML_BY_ID.get(type) : GGML_BY_NAME.get(type);
}

/** Types {@link GGUFFile.readTensorF32} converts and {@link encodeGGUF} encodes from f32 values. */
export type GGUFFloatType = 'F32' | 'F16' | 'BF16' | 'Q8_0';
const FLOAT_TYPES: ReadonlySet<string> = new Set<GGUFFloatType>(['F32', 'F16', 'BF16', 'Q8_0']);

// ---------------------------------------------------------------------------------------------------
// Metadata value types

/** GGUF metadata value type names (u8 = GGUF_TYPE_UINT8, ..., f64 = GGUF_TYPE_FLOAT64). */
export type GGUFScalarType =
  'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
/** What an array's elements may be: any scalar type, or arrays (nested). */
export type GGUFElementType = GGUFScalarType | 'array';

/** The JavaScript value of each scalar type. 64-bit integers are `bigint` so they never lose digits. */
export interface GGUFScalarValues {
  u8: number;
  i8: number;
  u16: number;
  i16: number;
  u32: number;
  i32: number;
  f32: number;
  f64: number;
  u64: bigint;
  i64: bigint;
  bool: boolean;
  string: string;
}

/** The JavaScript value of an array of each element type: numbers in typed arrays, which are compact. */
export interface GGUFArrayValues {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  u32: Uint32Array;
  i32: Int32Array;
  f32: Float32Array;
  f64: Float64Array;
  u64: BigUint64Array;
  i64: BigInt64Array;
  bool: boolean[];
  string: string[];
  array: GGUFArray[];
}

/** A scalar metadata value with its GGUF type. */
export type GGUFScalar = { [T in GGUFScalarType]: { type: T; value: GGUFScalarValues[T] } }[GGUFScalarType];
/** An array metadata value with its element type. */
export type GGUFArray = {
  [E in GGUFElementType]: { type: 'array'; elementType: E; value: GGUFArrayValues[E] };
}[GGUFElementType];
/**
 * A metadata value as read from a file: the value together with its exact GGUF type, so a file read
 * and written back keeps every key's type (llama.cpp rejects a key whose type differs from the one it
 * expects, e.g. `llama.context_length` must be u32).
 */
export type GGUFValue = GGUFScalar | GGUFArray;

/** A scalar value to write. 64-bit integer types also accept a safe-integer `number`. */
export type GGUFScalarInput =
  | { [T in Exclude<GGUFScalarType, 'u64' | 'i64'>]: { type: T; value: GGUFScalarValues[T] } }[Exclude<
      GGUFScalarType,
      'u64' | 'i64'
    >]
  | { type: 'u64' | 'i64'; value: bigint | number };

/** An array value to write: elements in a typed array or a plain array (checked against the type). */
export type GGUFArrayInput =
  | {
      [E in GGUFScalarType]: {
        type: 'array';
        elementType: E;
        value: GGUFArrayValues[E] | readonly GGUFScalarInput['value'][];
      };
    }[GGUFScalarType]
  | { type: 'array'; elementType: 'array'; value: readonly GGUFMetadataInput[] };

/**
 * A metadata value to write. Give the type explicitly (`{ type: 'u32', value: 4096 }`,
 * `{ type: 'array', elementType: 'i32', value: [1, 2] }`) wherever a number is involved: a JavaScript
 * number does not say whether it is a u32, an i32 or an f32, and llama.cpp checks. Unambiguous values
 * may be given bare: a string (string), a boolean (bool), an array of strings or of booleans, or a typed
 * array (element type from its class: Float32Array is f32, Int32Array is i32, BigUint64Array is u64, ...).
 */
export type GGUFMetadataInput =
  | GGUFScalarInput
  | GGUFArrayInput
  | string
  | boolean
  | readonly string[]
  | readonly boolean[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

const VALUE_TYPE_BY_ID: readonly GGUFElementType[] = [
  'u8',
  'i8',
  'u16',
  'i16',
  'u32',
  'i32',
  'f32',
  'bool',
  'string',
  'array',
  'u64',
  'i64',
  'f64',
];
const VALUE_TYPE_ID: Readonly<Record<GGUFElementType, number>> = Object.fromEntries(
  VALUE_TYPE_BY_ID.map((t, i) => [t, i]),
) as Record<GGUFElementType, number>;

type NumericType = Exclude<GGUFScalarType, 'bool' | 'string'>;
type TypedArrayCtor =
  | Uint8ArrayConstructor
  | Int8ArrayConstructor
  | Uint16ArrayConstructor
  | Int16ArrayConstructor
  | Uint32ArrayConstructor
  | Int32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigUint64ArrayConstructor
  | BigInt64ArrayConstructor;
const TYPED_ARRAY: Readonly<Record<NumericType, TypedArrayCtor>> = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  f64: Float64Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
};
function isNumericType(t: GGUFElementType): t is NumericType {
  return t !== 'bool' && t !== 'string' && t !== 'array';
}

// ---------------------------------------------------------------------------------------------------
// Limits and shared helpers

const MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
const WRITE_VERSION = 3;
const DEFAULT_ALIGNMENT = 32;
const ALIGNMENT_KEY = 'general.alignment';
/** ggml tensors have at most 4 dimensions (GGML_MAX_DIMS). */
const MAX_DIMS = 4;
/** llama.cpp rejects tensor names of GGML_MAX_NAME (64) bytes or more; its buffer holds a NUL too. */
const MAX_NAME_BYTES = 63;
/** The spec's limit on key length. */
const MAX_KEY_BYTES = 65535;
/**
 * Sanity caps for a corrupt length field in a large file, where the "bytes left" bound alone would still
 * allow gigabytes. Real files are far below them (a vocabulary is ~10^5 strings, a chat template ~10^4
 * bytes).
 */
const MAX_STRING_BYTES = 1 << 28;
const MAX_ARRAY_LENGTH = 1 << 28;
const MAX_TENSORS = 1 << 24;
const MAX_METADATA_KVS = 1 << 24;
/** Nested arrays deeper than this are corruption (and would otherwise recurse without bound). */
const MAX_ARRAY_DEPTH = 32;
/** Header bytes fetched per read, and tensor bytes converted per step by readTensorF32. */
const HEADER_CHUNK = 1 << 20;
const DATA_CHUNK = 1 << 24;
/** Node's readSync rejects lengths above 2^31 - 1; larger reads are split. */
const MAX_READ = 1 << 30;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** `ignoreBOM` keeps a leading U+FEFF (a real token in some vocabularies) instead of dropping it. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const ENCODER = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Reverse the bytes of each `size`-byte element in place (little-endian file <-> big-endian host). */
function swapInPlace(bytes: Uint8Array, size: number): void {
  for (let i = 0; i + size <= bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Little-endian bytes of a typed array: a view on little-endian hosts, a swapped copy elsewhere. */
function leBytes(a: ArrayBufferView & { BYTES_PER_ELEMENT: number }): Uint8Array {
  const view = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (HOST_IS_LITTLE_ENDIAN || a.BYTES_PER_ELEMENT === 1) return view;
  const copy = copyBytes(view);
  swapInPlace(copy, a.BYTES_PER_ELEMENT);
  return copy;
}

/**
 * A fresh copy of `bytes`. Not `bytes.slice()`: on a Node.js Buffer (what `readFile` returns) `slice`
 * is a view that shares memory, not a copy.
 */
function copyBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

/** A typed array holding little-endian `bytes` (copied, so it is aligned and owns its memory). */
function typedFromLE<T>(
  ctor: { new (buffer: ArrayBuffer): T; BYTES_PER_ELEMENT: number },
  bytes: Uint8Array,
): T {
  const copy = copyBytes(bytes);
  if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(copy, ctor.BYTES_PER_ELEMENT);
  return new ctor(copy.buffer);
}

/** 16-bit words of little-endian `bytes` without copying when the bytes are aligned and in host order. */
function u16FromLE(bytes: Uint8Array): Uint16Array {
  if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  }
  return typedFromLE(Uint16Array, bytes);
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 0x80000000;
}

function utf8Length(s: string): number {
  return ENCODER.encode(s).length;
}

/** A value's GGUF type as error messages spell it: `u32`, `array of string`. */
function typeOf(v: GGUFValue): string {
  return v.type === 'array' ? `array of ${v.elementType}` : v.type;
}

/**
 * A name quoted for an error message: 'like.this' when plain ASCII, JSON-escaped otherwise (a corrupt
 * file can hold control characters), and shortened when long.
 */
function quoteForError(s: string): string {
  const short = s.length > 80 ? `${s.slice(0, 77)}...` : s;
  return /^[\x20-\x7e]*$/.test(short) && !short.includes("'") ? `'${short}'` : JSON.stringify(short);
}

// ---------------------------------------------------------------------------------------------------
// Byte sources and the header cursor

/** Random-access bytes: a whole file in memory, or a file descriptor. */
interface ByteSource {
  readonly size: number;
  /** Bytes `[pos, pos + len)`; the caller has checked they lie within `size`. May be a view. */
  read(pos: number, len: number): Uint8Array;
  close(): void;
}

class MemorySource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(pos: number, len: number): Uint8Array {
    return this.bytes.subarray(pos, pos + len);
  }
  close(): void {}
}

class FileSource implements ByteSource {
  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly label: string,
  ) {}
  read(pos: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, out, done, Math.min(len - done, MAX_READ), pos + done);
      if (n === 0) {
        // The header was checked against the size at open time, so the file shrank underneath us.
        throw new FormatError(
          `${this.label}: file ended at byte ${pos + done} while reading ${len} bytes at offset ${pos}; it was ${this.size} bytes when opened (truncated since?)`,
        );
      }
      done += n;
    }
    return out;
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Describes what is being read, for error messages; a function defers building the text until needed. */
type What = string | (() => string);
function whatText(what: What): string {
  return typeof what === 'string' ? what : what();
}

/** Sequential reader over the header that buffers a window of the source, so small fields stay cheap. */
class Cursor {
  pos = 0;
  private buf: Uint8Array;
  private bufStart = 0;
  private view: DataView;

  constructor(
    private readonly src: ByteSource,
    private readonly label: string,
    whole?: Uint8Array,
  ) {
    this.buf = whole ?? new Uint8Array(0);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  get size(): number {
    return this.src.size;
  }
  get remaining(): number {
    return this.src.size - this.pos;
  }

  /** The error for a field of `n` bytes at the current position that runs past the end of the file. */
  truncated(what: What, n: number | bigint): FormatError {
    return new FormatError(
      `${this.label}: truncated header: ${whatText(what)} needs ${n} byte${Number(n) === 1 ? '' : 's'} at offset ${this.pos} but the file is ${this.src.size} bytes`,
    );
  }

  /** Consume `n` bytes; returns their offset within `this.buf`. */
  take(n: number, what: What): number {
    if (n > this.src.size - this.pos) throw this.truncated(what, n);
    let at = this.pos - this.bufStart;
    if (at < 0 || at + n > this.buf.length) {
      const len = Math.min(Math.max(n, HEADER_CHUNK), this.src.size - this.pos);
      this.buf = this.src.read(this.pos, len);
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      this.bufStart = this.pos;
      at = 0;
    }
    this.pos += n;
    return at;
  }

  bytes(n: number, what: What): Uint8Array {
    const at = this.take(n, what);
    return this.buf.subarray(at, at + n);
  }
  // Each reader calls take() before touching buf/view: take() may replace them with the next chunk.
  u8(what: What): number {
    const at = this.take(1, what);
    return this.buf[at]!;
  }
  i8(what: What): number {
    const at = this.take(1, what);
    return this.view.getInt8(at);
  }
  u16(what: What): number {
    const at = this.take(2, what);
    return this.view.getUint16(at, true);
  }
  i16(what: What): number {
    const at = this.take(2, what);
    return this.view.getInt16(at, true);
  }
  u32(what: What): number {
    const at = this.take(4, what);
    return this.view.getUint32(at, true);
  }
  i32(what: What): number {
    const at = this.take(4, what);
    return this.view.getInt32(at, true);
  }
  f32(what: What): number {
    const at = this.take(4, what);
    return this.view.getFloat32(at, true);
  }
  f64(what: What): number {
    const at = this.take(8, what);
    return this.view.getFloat64(at, true);
  }
  u64(what: What): bigint {
    const at = this.take(8, what);
    return this.view.getBigUint64(at, true);
  }
  i64(what: What): bigint {
    const at = this.take(8, what);
    return this.view.getBigInt64(at, true);
  }

  string(what: What): string {
    const len = this.u64(() => `length of ${whatText(what)}`);
    if (len > BigInt(this.remaining)) throw this.truncated(what, len);
    if (len > BigInt(MAX_STRING_BYTES)) {
      throw new FormatError(
        `${this.label}: ${whatText(what)} claims ${len} bytes, over the ${MAX_STRING_BYTES}-byte limit (corrupt length?)`,
      );
    }
    const start = this.pos;
    const bytes = this.bytes(Number(len), what);
    try {
      return UTF8.decode(bytes);
    } catch {
      throw new FormatError(`${this.label}: ${whatText(what)} at offset ${start} is not valid UTF-8`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading

/** One tensor of a GGUF file, as its tensor info describes it. */
export interface GGUFTensorInfo {
  readonly name: string;
  /** Tessera order, outermost dimension first: the file's `ne` reversed. `[]` for a 0-d tensor. */
  readonly shape: readonly number[];
  /** Number of elements (product of `shape`). */
  readonly numel: number;
  /** ggml type id as stored in the file. */
  readonly ggmlType: number;
  /** ggml type name ('F32', 'Q8_0', 'Q4_K', ...). */
  readonly typeName: GGMLTypeName;
  /** Byte offset of the data relative to the start of the data section ({@link GGUFFile.dataOffset}). */
  readonly offset: number;
  /** Bytes of data: `numel / blockSize * typeSize`. */
  readonly byteLength: number;
}

function readValue(c: Cursor, label: string, typeId: number, path: () => string, depth: number): GGUFValue {
  switch (VALUE_TYPE_BY_ID[typeId]) {
    case 'u8':
      return { type: 'u8', value: c.u8(path) };
    case 'i8':
      return { type: 'i8', value: c.i8(path) };
    case 'u16':
      return { type: 'u16', value: c.u16(path) };
    case 'i16':
      return { type: 'i16', value: c.i16(path) };
    case 'u32':
      return { type: 'u32', value: c.u32(path) };
    case 'i32':
      return { type: 'i32', value: c.i32(path) };
    case 'f32':
      return { type: 'f32', value: c.f32(path) };
    case 'f64':
      return { type: 'f64', value: c.f64(path) };
    case 'u64':
      return { type: 'u64', value: c.u64(path) };
    case 'i64':
      return { type: 'i64', value: c.i64(path) };
    case 'bool':
      return { type: 'bool', value: readBool(c, label, path) };
    case 'string':
      return { type: 'string', value: c.string(path) };
    case 'array':
      return readArray(c, label, path, depth);
    default:
      throw new FormatError(
        `${label}: ${path()} has unknown value type ${typeId} (GGUF defines 0 to ${VALUE_TYPE_BY_ID.length - 1})`,
      );
  }
}

function readBool(c: Cursor, label: string, path: () => string): boolean {
  const at = c.pos;
  const b = c.u8(path);
  // The spec: "0 is false and 1 is true. Anything else is invalid".
  if (b > 1)
    throw new FormatError(`${label}: ${path()} at offset ${at} is a bool byte ${b}; only 0 and 1 are valid`);
  return b === 1;
}

function readArray(c: Cursor, label: string, path: () => string, depth: number): GGUFArray {
  if (depth >= MAX_ARRAY_DEPTH) {
    throw new FormatError(`${label}: ${path()} nests arrays more than ${MAX_ARRAY_DEPTH} deep (corrupt?)`);
  }
  const elemId = c.u32(() => `${path()} (array element type)`);
  const elementType = VALUE_TYPE_BY_ID[elemId];
  if (elementType === undefined) {
    throw new FormatError(
      `${label}: ${path()} is an array of unknown value type ${elemId} (GGUF defines 0 to ${VALUE_TYPE_BY_ID.length - 1})`,
    );
  }
  const count64 = c.u64(() => `${path()} (array length)`);
  // Fixed-size elements are read in one piece, so bound the count by the bytes left before allocating.
  // Strings and arrays are read one by one and fail at the element where the bytes run out.
  const elementBytes = isNumericType(elementType) ? TYPED_ARRAY[elementType].BYTES_PER_ELEMENT : 1;
  if (
    elementType !== 'string' &&
    elementType !== 'array' &&
    count64 * BigInt(elementBytes) > BigInt(c.remaining)
  ) {
    throw c.truncated(() => `${path()} (${count64} ${elementType} values)`, count64 * BigInt(elementBytes));
  }
  if (count64 > BigInt(MAX_ARRAY_LENGTH)) {
    throw new FormatError(
      `${label}: ${path()} claims ${count64} elements, over the ${MAX_ARRAY_LENGTH}-element limit (corrupt length?)`,
    );
  }
  const count = Number(count64);
  if (isNumericType(elementType)) {
    const ctor = TYPED_ARRAY[elementType];
    const bytes = c.bytes(count * ctor.BYTES_PER_ELEMENT, path);
    return {
      type: 'array',
      elementType,
      value: typedFromLE(ctor as Uint8ArrayConstructor, bytes),
    } as GGUFArray;
  }
  if (elementType === 'bool') {
    const value: boolean[] = [];
    for (let i = 0; i < count; i++) value.push(readBool(c, label, () => `${path()}[${i}]`));
    return { type: 'array', elementType, value };
  }
  if (elementType === 'string') {
    const value: string[] = [];
    for (let i = 0; i < count; i++) value.push(c.string(() => `${path()}[${i}]`));
    return { type: 'array', elementType, value };
  }
  const value: GGUFArray[] = [];
  for (let i = 0; i < count; i++) value.push(readArray(c, label, () => `${path()}[${i}]`, depth + 1));
  return { type: 'array', elementType, value };
}

function ggmlTypeForInfo(label: string, where: string, id: number): GGMLTypeTraits {
  const traits = GGML_BY_ID.get(id);
  if (traits !== undefined) return traits;
  const removed = REMOVED_GGML_TYPES.get(id);
  if (removed !== undefined) {
    throw new FormatError(
      `${label}: ${where} has ggml type ${removed} (${id}), which ggml has removed; re-quantize the model`,
    );
  }
  throw new FormatError(`${label}: ${where} has unknown ggml type id ${id}`);
}

/** Parsed header: everything except the tensor data. */
interface Header {
  version: number;
  metadata: Map<string, GGUFValue>;
  tensors: GGUFTensorInfo[];
  alignment: number;
  dataOffset: number;
}

function parseHeader(c: Cursor, label: string): Header {
  const magic = c.bytes(4, 'magic');
  if (!MAGIC.every((b, i) => magic[i] === b)) {
    const text = String.fromCharCode(...magic).replace(/[^\x20-\x7e]/g, '?');
    const hex = [...magic].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const hint = text === 'FUGG' ? ' (a big-endian GGUF file, which is not supported)' : '';
    throw new FormatError(`${label}: not a GGUF file: magic is '${text}' (${hex}), expected 'GGUF'${hint}`);
  }
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    // Big-endian files from older writers keep the "GGUF" magic but store the version byte-swapped.
    const hint =
      version !== 0 && (version & 0xffff) === 0
        ? ' (looks like a big-endian GGUF file, which is not supported)'
        : version === 1
          ? ' (GGUF v1 used 32-bit counts and is obsolete; llama.cpp no longer reads it either)'
          : '';
    throw new FormatError(
      `${label}: unsupported GGUF version ${version}; versions 2 and 3 are supported${hint}`,
    );
  }
  const tensorCount64 = c.u64('tensor_count');
  const kvCount64 = c.u64('metadata_kv_count');
  // Entries are parsed one at a time, each backed by real bytes, so a large count cannot make the parser
  // allocate much; a truncated header is reported at the field where the bytes run out. Only a count no
  // real model comes near is rejected up front, as the corruption it is.
  for (const [field, count, limit] of [
    ['tensor_count', tensorCount64, MAX_TENSORS],
    ['metadata_kv_count', kvCount64, MAX_METADATA_KVS],
  ] as const) {
    if (count > BigInt(limit)) {
      throw new FormatError(`${label}: ${field} ${count} is over the limit of ${limit} (corrupt header?)`);
    }
  }
  const tensorCount = Number(tensorCount64);
  const kvCount = Number(kvCount64);

  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata #${i} (key)`);
    if (metadata.has(key))
      throw new FormatError(`${label}: metadata #${i}: duplicate key ${quoteForError(key)}`);
    const path = (): string => `metadata ${quoteForError(key)}`;
    const typeId = c.u32(() => `${path()} (value type)`);
    metadata.set(key, readValue(c, label, typeId, path, 0));
  }

  let alignment = DEFAULT_ALIGNMENT;
  const align = metadata.get(ALIGNMENT_KEY);
  if (align !== undefined) {
    if (align.type !== 'u32') {
      throw new FormatError(`${label}: metadata '${ALIGNMENT_KEY}' must be a u32, got ${typeOf(align)}`);
    }
    if (!isPowerOfTwo(align.value)) {
      throw new FormatError(`${label}: metadata '${ALIGNMENT_KEY}' is ${align.value}, not a power of two`);
    }
    alignment = align.value;
  }

  const tensors: GGUFTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor info #${i} (name)`);
    const where = `tensor info #${i} ${quoteForError(name)}`;
    if (names.has(name)) throw new FormatError(`${label}: ${where}: duplicate tensor name`);
    names.add(name);
    const nDims = c.u32(`${where} (n_dims)`);
    if (nDims > MAX_DIMS) {
      throw new FormatError(`${label}: ${where} has n_dims ${nDims}; ggml tensors have at most ${MAX_DIMS}`);
    }
    const ne: number[] = [];
    let numel = 1;
    for (let d = 0; d < nDims; d++) {
      const v = c.u64(`${where} (ne[${d}])`);
      if (v >= 1n << 63n) {
        throw new FormatError(
          `${label}: ${where} has ne[${d}] = ${BigInt.asIntN(64, v)}, a negative dimension`,
        );
      }
      if (v === 0n) {
        // llama.cpp's loader divides by the dimensions when checking the element count, and no model has
        // an empty weight, so a zero is corruption rather than a tensor to represent.
        throw new FormatError(`${label}: ${where} has ne[${d}] = 0; dimensions must be positive`);
      }
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || numel * Number(v) > Number.MAX_SAFE_INTEGER) {
        throw new FormatError(
          `${label}: ${where} has dimensions ${[...ne, v].join(' x ')}${d + 1 < nDims ? ' x ...' : ''}: more elements than can be addressed (2^53)`,
        );
      }
      ne.push(Number(v));
      numel *= Number(v);
    }
    const ggmlType = c.u32(`${where} (type)`);
    const offset64 = c.u64(`${where} (offset)`);
    const traits = ggmlTypeForInfo(label, where, ggmlType);
    const rowLength = ne[0] ?? 1;
    if (rowLength % traits.blockSize !== 0) {
      throw new FormatError(
        `${label}: ${where} of type ${traits.name} has rows of ${rowLength} elements (ne[0]), not a multiple of its block size ${traits.blockSize}`,
      );
    }
    if (offset64 > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(`${label}: ${where} has offset ${offset64}, beyond any real file`);
    }
    const offset = Number(offset64);
    if (offset % alignment !== 0) {
      throw new FormatError(
        `${label}: ${where} has offset ${offset}, not a multiple of the alignment ${alignment}`,
      );
    }
    tensors.push({
      name,
      shape: ne.slice().reverse(),
      numel,
      ggmlType,
      typeName: traits.name,
      offset,
      byteLength: (numel / traits.blockSize) * traits.typeSize,
    });
  }

  const dataOffset = alignUp(c.pos, alignment);
  for (const t of tensors) {
    const end = dataOffset + t.offset + t.byteLength;
    if (end > c.size) {
      throw new FormatError(
        `${label}: truncated data: tensor ${quoteForError(t.name)} (${t.typeName} [${t.shape.join(', ')}]) at data offset ${t.offset} (file offset ${dataOffset + t.offset}) needs ${t.byteLength} bytes, up to byte ${end}, but the file is ${c.size} bytes`,
      );
    }
  }
  const ordered = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < ordered.length; i++) {
    const prev = ordered[i - 1]!;
    const cur = ordered[i]!;
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new FormatError(
        `${label}: tensor ${quoteForError(cur.name)} at data offset ${cur.offset} overlaps tensor ${quoteForError(prev.name)} at [${prev.offset}, ${prev.offset + prev.byteLength})`,
      );
    }
  }
  return { version, metadata, tensors, alignment, dataOffset };
}

/**
 * A parsed GGUF file: header in memory, tensor data read on demand. Obtain one with {@link openGGUF}
 * (a file on disk; call {@link GGUFFile.close} or use `using`) or {@link parseGGUF} (bytes in memory).
 */
export class GGUFFile {
  /** GGUF version of the file (2 or 3). */
  readonly version: number;
  /**
   * Metadata in file order, each value with its GGUF type. Pass it back to {@link encodeGGUF} to write
   * the same keys with the same types.
   */
  readonly metadata: Map<string, GGUFValue>;
  /** Tensor infos in file order. */
  readonly tensors: readonly GGUFTensorInfo[];
  /** Data alignment in bytes: `general.alignment`, or 32 when the file does not set it. */
  readonly alignment: number;
  /** File offset where the data section (tensor offset 0) starts. */
  readonly dataOffset: number;
  /** Size of the file (or buffer) in bytes. */
  readonly size: number;
  /** Name used in error messages: the path, or the label given to {@link parseGGUF}. */
  readonly label: string;

  private readonly byName: ReadonlyMap<string, GGUFTensorInfo>;
  private src: ByteSource | undefined;

  /** @internal Use {@link openGGUF} or {@link parseGGUF}. */
  constructor(src: ByteSource, header: Header, label: string) {
    this.src = src;
    this.version = header.version;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.alignment = header.alignment;
    this.dataOffset = header.dataOffset;
    this.size = src.size;
    this.label = label;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /**
   * A scalar metadata value of the given type.
   *
   * @throws FormatError naming the file and key when the key is missing or holds another type.
   */
  get<T extends GGUFScalarType>(key: string, type: T): GGUFScalarValues[T] {
    const v = this.getOptional(key, type);
    if (v === undefined)
      throw new FormatError(`${this.label}: metadata key '${key}' is missing (expected ${type})`);
    return v;
  }

  /**
   * Like {@link GGUFFile.get}, but `undefined` when the key is absent.
   *
   * @throws FormatError naming the file and key when the key holds another type.
   */
  getOptional<T extends GGUFScalarType>(key: string, type: T): GGUFScalarValues[T] | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return undefined;
    if (v.type !== type) {
      throw new FormatError(`${this.label}: metadata '${key}' has type ${typeOf(v)}, expected ${type}`);
    }
    return v.value as GGUFScalarValues[T];
  }

  /**
   * An array metadata value with the given element type (`getArray('tokenizer.ggml.tokens', 'string')`).
   *
   * @throws FormatError naming the file and key when the key is missing, not an array, or an array of
   *   another element type.
   */
  getArray<E extends GGUFElementType>(key: string, elementType: E): GGUFArrayValues[E] {
    const v = this.metadata.get(key);
    if (v === undefined) {
      throw new FormatError(
        `${this.label}: metadata key '${key}' is missing (expected array of ${elementType})`,
      );
    }
    if (v.type !== 'array' || v.elementType !== elementType) {
      throw new FormatError(
        `${this.label}: metadata '${key}' has type ${typeOf(v)}, expected array of ${elementType}`,
      );
    }
    return v.value as GGUFArrayValues[E];
  }

  /** Whether the file has a tensor of this name. */
  hasTensor(name: string): boolean {
    return this.byName.has(name);
  }

  /**
   * The info of one tensor.
   *
   * @throws FormatError naming the file when there is no tensor of that name.
   */
  tensor(name: string): GGUFTensorInfo {
    const t = this.byName.get(name);
    if (t === undefined) {
      throw new FormatError(
        `${this.label}: no tensor named ${quoteForError(name)} (the file has ${this.tensors.length})`,
      );
    }
    return t;
  }

  private source(): ByteSource {
    if (this.src === undefined) throw new DisposedError(`${this.label}: GGUF file is closed`);
    return this.src;
  }

  /**
   * A tensor's stored bytes, exactly as in the file (little-endian; quantized types as ggml blocks).
   * Reads only that tensor's bytes. The result is a fresh array the caller owns.
   *
   * @throws FormatError for an unknown name or a file that shrank since it was opened;
   *   DisposedError after {@link GGUFFile.close}.
   */
  readTensorBytes(name: string): Uint8Array {
    const t = this.tensor(name);
    const src = this.source();
    const bytes = src.read(this.dataOffset + t.offset, t.byteLength);
    return src instanceof MemorySource ? copyBytes(bytes) : bytes;
  }

  /**
   * A tensor's values as f32: F32 as stored, F16 and BF16 converted exactly, Q8_0 dequantized as ggml
   * does (`q * d`). A file-backed tensor is converted in chunks, so the only large allocation is the
   * result.
   *
   * @throws DTypeError naming the tensor for any other type (use {@link GGUFFile.readTensorBytes});
   *   FormatError for an unknown name; DisposedError after {@link GGUFFile.close}.
   */
  readTensorF32(name: string): Float32Array {
    const t = this.tensor(name);
    if (!FLOAT_TYPES.has(t.typeName)) {
      throw new DTypeError(
        `${this.label}: tensor ${quoteForError(name)} is ${t.typeName} (${t.ggmlType}); readTensorF32 converts F32, F16, BF16 and Q8_0 — read other types with readTensorBytes`,
      );
    }
    const src = this.source();
    const traits = GGML_BY_NAME.get(t.typeName)!;
    const out = new Float32Array(t.numel);
    const nBlocks = t.numel / traits.blockSize;
    const blocksPerStep =
      src instanceof MemorySource ? nBlocks : Math.max(1, Math.floor(DATA_CHUNK / traits.typeSize));
    for (let block = 0; block < nBlocks; block += blocksPerStep) {
      const nb = Math.min(blocksPerStep, nBlocks - block);
      const bytes = src.read(this.dataOffset + t.offset + block * traits.typeSize, nb * traits.typeSize);
      decodeToF32(t.typeName as GGUFFloatType, bytes, out, block * traits.blockSize);
    }
    return out;
  }

  /** Close the file descriptor. Idempotent; the header stays readable, tensor reads throw. */
  close(): void {
    const src = this.src;
    this.src = undefined;
    src?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Decode stored bytes of a float type into `out` starting at element `at`. */
function decodeToF32(type: GGUFFloatType, bytes: Uint8Array, out: Float32Array, at: number): void {
  switch (type) {
    case 'F32': {
      const dst = new Uint8Array(out.buffer, out.byteOffset + at * 4, bytes.length);
      dst.set(bytes);
      if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(dst, 4);
      return;
    }
    case 'F16':
      decodeF16Into(u16FromLE(bytes), new Uint32Array(out.buffer, out.byteOffset), at);
      return;
    case 'BF16':
      decodeBf16Into(u16FromLE(bytes), new Uint32Array(out.buffer, out.byteOffset), at);
      return;
    case 'Q8_0':
      dequantizeQ8_0Into(bytes, out, at);
      return;
  }
}

/**
 * Parse GGUF bytes held in memory. The header is parsed and validated now; tensor data is decoded only
 * when asked for. The bytes must stay unmodified while the result is used.
 *
 * @param bytes - the whole file.
 * @param label - name used in error messages; defaults to `'<buffer>'`.
 * @throws FormatError naming `label` and the offending field (see {@link openGGUF}).
 */
export function parseGGUF(bytes: Uint8Array, label = '<buffer>'): GGUFFile {
  // A plain view, so a Buffer's different subarray/slice semantics never leak in.
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const src = new MemorySource(view);
  return new GGUFFile(src, parseHeader(new Cursor(src, label, view), label), label);
}

/**
 * Open a GGUF file and read its header (metadata and tensor infos) without reading tensor data. Tensor
 * bytes are read on demand with {@link GGUFFile.readTensorBytes} / {@link GGUFFile.readTensorF32}, so
 * opening a multi-gigabyte model costs about the size of its header. Close it when done (or `using`).
 *
 * Validation is complete at open: a file that opens has every tensor inside the file, aligned, and
 * not overlapping another.
 *
 * @param path - the file; named in every error.
 * @throws FormatError naming the file and the field: bad magic, unsupported version (v1, big-endian,
 *   unknown), truncated header (naming what was being read, e.g. `tensor info #3 (name)`), invalid
 *   UTF-8, duplicate metadata keys or tensor names, unknown value or ggml type ids, counts or lengths
 *   the file cannot hold, a `general.alignment` that is not a u32 power of two, more than 4 or
 *   non-positive dimensions, rows not a multiple of the type's block size, misaligned or overlapping
 *   tensors, and tensors extending past the end of the file. The fs error when the file cannot be opened.
 */
export function openGGUF(path: string): GGUFFile {
  const fd = fs.openSync(path, 'r');
  try {
    const src = new FileSource(fd, fs.fstatSync(fd).size, path);
    return new GGUFFile(src, parseHeader(new Cursor(src, path), path), path);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Writing

/** A tensor to write. */
export interface GGUFTensorInput {
  /** Unique, at most 63 UTF-8 bytes (llama.cpp's limit). */
  name: string;
  /** Tessera order, outermost first; 0 to 4 positive dimensions. Written reversed as `ne`. */
  shape: readonly number[];
  /** ggml type to store. */
  type: GGMLTypeName;
  /**
   * The values. A `Float32Array` (one value per element) is converted to `type`, which must then be
   * F32, F16, BF16 or Q8_0 (Q8_0 quantized exactly as ggml does). A `Uint16Array` holds raw F16/BF16
   * bits. A `Uint8Array` holds already-encoded bytes of any type, exactly `byteLength` of them.
   */
  data: Float32Array | Uint16Array | Uint8Array;
}

/** What {@link encodeGGUF} writes. */
export interface GGUFWriteInput {
  /** Metadata in the order to write it. A record's integer-like keys come first (JavaScript's order). */
  metadata?: Record<string, GGUFMetadataInput> | ReadonlyMap<string, GGUFMetadataInput | GGUFValue>;
  /** Tensors in the order to store them. */
  tensors?: readonly GGUFTensorInput[];
  /**
   * Data alignment, a power of two (default: `general.alignment` from `metadata`, else 32). A value
   * other than 32 is recorded as `general.alignment` (u32) when the metadata does not already hold it.
   */
  alignment?: number;
}

/** Growable little-endian byte buffer for the header. */
class ByteWriter {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // Each writer calls reserve() before touching buf/view: reserve() may replace them with a larger buffer.
  u8(v: number): void {
    const at = this.reserve(1);
    this.buf[at] = v;
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, v, true);
  }
  u64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, v, true);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, v, true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = ENCODER.encode(s);
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function metaError(path: string, message: string): FormatError {
  return new FormatError(`cannot encode GGUF metadata ${path}: ${message}`);
}

const INT_RANGES: Readonly<Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', readonly [number, number]>> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGES: Readonly<Record<'u64' | 'i64', readonly [bigint, bigint]>> = {
  u64: [0n, (1n << 64n) - 1n],
  i64: [-(1n << 63n), (1n << 63n) - 1n],
};
const SCALAR_TYPES: ReadonlySet<string> = new Set(VALUE_TYPE_BY_ID.filter((t) => t !== 'array'));

function checkString(s: string, what: string): void {
  if (LONE_SURROGATE.test(s)) {
    throw new FormatError(
      `cannot encode GGUF ${what}: the string has an unpaired surrogate, so it has no UTF-8 form`,
    );
  }
}

function writeScalar(w: ByteWriter, type: GGUFScalarType, v: unknown, path: string): void {
  switch (type) {
    case 'u8':
    case 'i8':
    case 'u16':
    case 'i16':
    case 'u32':
    case 'i32': {
      const [lo, hi] = INT_RANGES[type];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
        throw metaError(path, `${type} value must be an integer in [${lo}, ${hi}], got ${String(v)}`);
      }
      w[type](v);
      return;
    }
    case 'f32':
    case 'f64':
      if (typeof v !== 'number') throw metaError(path, `${type} value must be a number, got ${typeof v}`);
      w[type](v);
      return;
    case 'u64':
    case 'i64': {
      const [lo, hi] = BIG_RANGES[type];
      const b =
        typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
      if (b === undefined || b < lo || b > hi) {
        throw metaError(
          path,
          `${type} value must be a bigint (or safe integer) in [${lo}, ${hi}], got ${String(v)}`,
        );
      }
      w[type](b);
      return;
    }
    case 'bool':
      if (typeof v !== 'boolean') throw metaError(path, `bool value must be a boolean, got ${typeof v}`);
      w.u8(v ? 1 : 0);
      return;
    case 'string':
      if (typeof v !== 'string') throw metaError(path, `string value must be a string, got ${typeof v}`);
      checkString(v, `metadata ${path}`);
      w.string(v);
      return;
  }
}

type ResolvedValue =
  | { kind: 'scalar'; type: GGUFScalarType; value: unknown }
  | { kind: 'array'; elementType: GGUFElementType; items: ArrayLike<unknown> };

/** Element type implied by a typed array's class. */
function typedArrayElementType(v: unknown): NumericType | undefined {
  for (const [t, ctor] of Object.entries(TYPED_ARRAY) as [NumericType, TypedArrayCtor][]) {
    if (v instanceof ctor && v.constructor === ctor) return t;
  }
  // A Buffer is a Uint8Array subclass; treat it as bytes.
  return v instanceof Uint8Array ? 'u8' : undefined;
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

/** Work out the GGUF type of an input value, inferring it only where that is unambiguous. */
function resolveValue(v: unknown, path: string): ResolvedValue {
  if (typeof v === 'string') return { kind: 'scalar', type: 'string', value: v };
  if (typeof v === 'boolean') return { kind: 'scalar', type: 'bool', value: v };
  if (typeof v === 'number' || typeof v === 'bigint') {
    throw metaError(
      path,
      `a bare ${typeof v} ${String(v)} has no GGUF type; write { type: 'u32' | 'i32' | 'f32' | 'u64' | ..., value }`,
    );
  }
  const typed = typedArrayElementType(v);
  if (typed !== undefined) return { kind: 'array', elementType: typed, items: v as ArrayLike<unknown> };
  if (Array.isArray(v)) {
    if (v.length > 0 && v.every((x) => typeof x === 'string'))
      return { kind: 'array', elementType: 'string', items: v };
    if (v.length > 0 && v.every((x) => typeof x === 'boolean'))
      return { kind: 'array', elementType: 'bool', items: v };
    throw metaError(
      path,
      v.length === 0
        ? `an empty array has no element type; write { type: 'array', elementType, value: [] }`
        : `only arrays of strings or of booleans can be given bare; write { type: 'array', elementType: 'i32' | 'f32' | ..., value }`,
    );
  }
  if (typeof v === 'object' && v !== null && 'type' in v) {
    const tagged = v as { type: unknown; value?: unknown; elementType?: unknown };
    if (tagged.type === 'array') {
      const e = tagged.elementType;
      if (typeof e !== 'string' || !(SCALAR_TYPES.has(e) || e === 'array')) {
        throw metaError(
          path,
          `unknown array element type ${JSON.stringify(e)} (one of ${VALUE_TYPE_BY_ID.join(', ')})`,
        );
      }
      if (!isArrayLike(tagged.value)) throw metaError(path, `array value must be an array or typed array`);
      return { kind: 'array', elementType: e as GGUFElementType, items: tagged.value };
    }
    if (typeof tagged.type === 'string' && SCALAR_TYPES.has(tagged.type)) {
      return { kind: 'scalar', type: tagged.type as GGUFScalarType, value: tagged.value };
    }
    throw metaError(
      path,
      `unknown value type ${JSON.stringify(tagged.type)} (one of ${VALUE_TYPE_BY_ID.join(', ')})`,
    );
  }
  throw metaError(path, `unsupported value ${v === null ? 'null' : typeof v}`);
}

/** Element type, count and elements of an array value (the part after a value type tag). */
function writeArrayBody(
  w: ByteWriter,
  elementType: GGUFElementType,
  items: ArrayLike<unknown>,
  path: string,
  depth: number,
): void {
  if (depth >= MAX_ARRAY_DEPTH) throw metaError(path, `arrays nest more than ${MAX_ARRAY_DEPTH} deep`);
  w.u32(VALUE_TYPE_ID[elementType]);
  w.u64(BigInt(items.length));
  if (isNumericType(elementType) && typedArrayElementType(items) === elementType) {
    // Already the right machine type: its bytes are the encoding (once little-endian).
    w.bytes(leBytes(items as unknown as ArrayBufferView & { BYTES_PER_ELEMENT: number }));
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (elementType === 'array') {
      const r = resolveValue(item, `${path}[${i}]`);
      if (r.kind !== 'array')
        throw metaError(`${path}[${i}]`, `element of an array of arrays must be an array`);
      writeArrayBody(w, r.elementType, r.items, `${path}[${i}]`, depth + 1);
    } else {
      writeScalar(w, elementType, item, `${path}[${i}]`);
    }
  }
}

function writeMetadataValue(w: ByteWriter, v: unknown, path: string): void {
  const r = resolveValue(v, path);
  if (r.kind === 'scalar') {
    w.u32(VALUE_TYPE_ID[r.type]);
    writeScalar(w, r.type, r.value, path);
  } else {
    w.u32(VALUE_TYPE_ID.array);
    writeArrayBody(w, r.elementType, r.items, path, 0);
  }
}

function tensorError(name: string, message: string): FormatError {
  return new FormatError(`cannot encode GGUF tensor ${quoteForError(name)}: ${message}`);
}

interface PlannedTensor {
  input: GGUFTensorInput;
  traits: GGMLTypeTraits;
  numel: number;
  byteLength: number;
  offset: number;
}

function planTensor(t: GGUFTensorInput, index: number, names: Set<string>): Omit<PlannedTensor, 'offset'> {
  const name = t.name;
  if (typeof name !== 'string' || name.length === 0) {
    throw new FormatError(`cannot encode GGUF tensor #${index}: name must be a non-empty string`);
  }
  checkString(name, `tensor name ${quoteForError(name)}`);
  if (utf8Length(name) > MAX_NAME_BYTES) {
    throw tensorError(
      name,
      `name is ${utf8Length(name)} UTF-8 bytes; llama.cpp accepts at most ${MAX_NAME_BYTES}`,
    );
  }
  if (names.has(name)) throw tensorError(name, 'duplicate tensor name');
  names.add(name);
  const traits = GGML_BY_NAME.get(t.type);
  if (traits === undefined) {
    throw tensorError(
      name,
      `unknown ggml type ${JSON.stringify(t.type)} (one of ${[...GGML_BY_NAME.keys()].join(', ')})`,
    );
  }
  const shape = t.shape;
  if (
    !Array.isArray(shape) ||
    shape.length > MAX_DIMS ||
    !shape.every((d) => Number.isSafeInteger(d) && d > 0)
  ) {
    throw tensorError(name, `shape must be 0 to ${MAX_DIMS} positive integers, got ${JSON.stringify(shape)}`);
  }
  let numel = 1;
  for (const d of shape) numel *= d;
  if (!Number.isSafeInteger(numel))
    throw tensorError(name, `shape [${shape.join(', ')}] has too many elements`);
  const row = shape.length > 0 ? shape[shape.length - 1]! : 1;
  if (row % traits.blockSize !== 0) {
    throw tensorError(
      name,
      `${t.type} stores rows in blocks of ${traits.blockSize}, but the last dimension of shape [${shape.join(', ')}] is ${row}, not a multiple of ${traits.blockSize}`,
    );
  }
  const byteLength = (numel / traits.blockSize) * traits.typeSize;
  const data = t.data;
  if (data instanceof Float32Array) {
    if (!FLOAT_TYPES.has(t.type)) {
      throw tensorError(
        name,
        `f32 values can be encoded as F32, F16, BF16 or Q8_0, not ${t.type}; pass encoded bytes as a Uint8Array`,
      );
    }
    if (data.length !== numel) {
      throw tensorError(
        name,
        `data has ${data.length} values but shape [${shape.join(', ')}] needs ${numel}`,
      );
    }
  } else if (data instanceof Uint16Array) {
    if (t.type !== 'F16' && t.type !== 'BF16') {
      throw tensorError(name, `a Uint16Array holds raw F16 or BF16 bits, but the type is ${t.type}`);
    }
    if (data.length !== numel) {
      throw tensorError(
        name,
        `data has ${data.length} values but shape [${shape.join(', ')}] needs ${numel}`,
      );
    }
  } else if (data instanceof Uint8Array) {
    if (data.length !== byteLength) {
      throw tensorError(
        name,
        `raw data has ${data.length} bytes but ${t.type} shape [${shape.join(', ')}] takes ${byteLength}`,
      );
    }
  } else {
    throw tensorError(
      name,
      `data must be a Float32Array, Uint16Array or Uint8Array, got ${(data as object)?.constructor?.name ?? typeof data}`,
    );
  }
  return { input: t, traits, numel, byteLength };
}

/** Stored bytes of a planned tensor. */
function encodeTensorData(p: PlannedTensor): Uint8Array {
  const { data, type } = p.input;
  if (data instanceof Uint8Array) return data;
  if (data instanceof Uint16Array) return leBytes(data);
  switch (type) {
    case 'F32':
      return leBytes(data);
    case 'F16':
      return leBytes(f32ToF16Array(data));
    case 'BF16':
      return leBytes(f32ToBf16Array(data));
    default:
      return quantizeQ8_0(data); // planTensor admitted only the four float types for f32 input
  }
}

/**
 * Serialize metadata and tensors into GGUF v3 bytes, laid out as llama.cpp writes them: header, tensor
 * infos, zero padding to the alignment, then each tensor's data padded to the alignment, in the given
 * order.
 *
 * Files meant for llama.cpp must give each standard key the type llama.cpp expects (e.g.
 * `general.architecture` string, `llama.context_length` u32, `tokenizer.ggml.tokens` array of string,
 * `tokenizer.ggml.scores` array of f32, `tokenizer.ggml.token_type` array of i32); llama.cpp also
 * cannot read nested arrays, which GGUF and this module allow.
 *
 * @throws FormatError naming the key or tensor for: a number without an explicit type, a value out of
 *   its type's range or of the wrong JavaScript type, an unknown type name, a string with unpaired
 *   surrogates, an alignment that is not a power of two or disagrees with `general.alignment`, a
 *   duplicate or over-long tensor name, a shape that is not 0-4 positive integers, a last dimension not
 *   a multiple of the type's block size (32 for Q8_0), or data whose length disagrees with the shape.
 */
export function encodeGGUF(input: GGUFWriteInput): Uint8Array {
  const entries: [string, unknown][] =
    input.metadata instanceof Map
      ? [...(input.metadata as ReadonlyMap<string, unknown>).entries()]
      : Object.entries((input.metadata ?? {}) as Record<string, unknown>);

  // Alignment: the option and the metadata key must agree; a non-default value must be recorded.
  const alignEntry = entries.find(([k]) => k === ALIGNMENT_KEY);
  let metaAlign: number | undefined;
  if (alignEntry !== undefined) {
    const r = resolveValue(alignEntry[1], `'${ALIGNMENT_KEY}'`);
    if (r.kind !== 'scalar' || r.type !== 'u32') {
      throw metaError(`'${ALIGNMENT_KEY}'`, `must be a u32 (llama.cpp rejects any other type)`);
    }
    metaAlign = r.value as number;
  }
  const alignment = input.alignment ?? metaAlign ?? DEFAULT_ALIGNMENT;
  if (!isPowerOfTwo(alignment)) {
    throw new FormatError(`cannot encode GGUF: alignment must be a power of two, got ${String(alignment)}`);
  }
  if (metaAlign !== undefined && metaAlign !== alignment) {
    throw new FormatError(
      `cannot encode GGUF: alignment option ${alignment} disagrees with metadata '${ALIGNMENT_KEY}' = ${metaAlign}`,
    );
  }
  if (metaAlign === undefined && alignment !== DEFAULT_ALIGNMENT) {
    entries.push([ALIGNMENT_KEY, { type: 'u32', value: alignment }]);
  }

  const names = new Set<string>();
  const planned: PlannedTensor[] = [];
  let dataSize = 0;
  (input.tensors ?? []).forEach((t, i) => {
    const p = planTensor(t, i, names);
    planned.push({ ...p, offset: dataSize });
    dataSize += alignUp(p.byteLength, alignment);
  });

  const w = new ByteWriter();
  MAGIC.forEach((b) => w.u8(b));
  w.u32(WRITE_VERSION);
  w.u64(BigInt(planned.length));
  w.u64(BigInt(entries.length));
  for (const [key, value] of entries) {
    const path = quoteForError(key);
    checkString(key, `metadata key ${path}`);
    const keyBytes = utf8Length(key);
    if (keyBytes === 0 || keyBytes > MAX_KEY_BYTES) {
      throw metaError(path, `key must be 1 to ${MAX_KEY_BYTES} UTF-8 bytes, got ${keyBytes}`);
    }
    w.string(key);
    writeMetadataValue(w, value, path);
  }
  for (const p of planned) {
    w.string(p.input.name);
    w.u32(p.input.shape.length);
    for (let d = p.input.shape.length - 1; d >= 0; d--) w.u64(BigInt(p.input.shape[d]!));
    w.u32(p.traits.id);
    w.u64(BigInt(p.offset));
  }
  const header = w.result();
  const dataOffset = alignUp(header.length, alignment);

  const out = new Uint8Array(dataOffset + dataSize); // zero-filled: the padding is already in place
  out.set(header, 0);
  for (const p of planned) out.set(encodeTensorData(p), dataOffset + p.offset);
  return out;
}

/**
 * Write a GGUF v3 file atomically (see `writeFileAtomic`): a crash mid-write leaves any previous file
 * intact. The whole file is assembled in memory first (by {@link encodeGGUF}), so it must fit in one
 * typed array: 4 GiB on Node.js 20.
 *
 * @param path - destination; parent directories are created.
 * @throws as {@link encodeGGUF}, or an Error naming `path` when the write fails.
 */
export async function writeGGUF(path: string, input: GGUFWriteInput): Promise<void> {
  await writeFileAtomic(path, encodeGGUF(input));
}

/** Synchronous twin of {@link writeGGUF}. */
export function writeGGUFSync(path: string, input: GGUFWriteInput): void {
  writeFileAtomicSync(path, encodeGGUF(input));
}
