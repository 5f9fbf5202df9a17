import fs from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { f16BitsToF32, roundTo } from '../../src/dtype.js';
import { DisposedError, DTypeError, FormatError } from '../../src/errors.js';
import {
  encodeGGUF,
  ggmlTypeTraits,
  openGGUF,
  parseGGUF,
  writeGGUF,
  writeGGUFSync,
  type GGUFMetadataInput,
  type GGUFScalarInput,
  type GGUFTensorInput,
  type GGUFValue,
} from '../../src/io/gguf.js';
import { f32ToBf16Array, f32ToF16Array, quantizeQ8_0 } from '../../src/io/quant.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-gguf-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// A byte-level GGUF assembler written straight from the spec, independent of the module's writer.

const enc = new TextEncoder();

class Bytes {
  private out: number[] = [];
  get length(): number {
    return this.out.length;
  }
  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  private le(value: bigint, n: number): this {
    let v = BigInt.asUintN(n * 8, value);
    for (let i = 0; i < n; i++) {
      this.out.push(Number(v & 0xffn));
      v >>= 8n;
    }
    return this;
  }
  u8(v: number): this {
    return this.le(BigInt(v), 1);
  }
  u16(v: number): this {
    return this.le(BigInt(v), 2);
  }
  u32(v: number): this {
    return this.le(BigInt(v), 4);
  }
  u64(v: number | bigint): this {
    return this.le(BigInt(v), 8);
  }
  f32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.raw(...b);
  }
  /** u64 byte length, then the bytes (a string is UTF-8 encoded). */
  str(s: string | Uint8Array): this {
    const b = typeof s === 'string' ? enc.encode(s) : s;
    return this.u64(b.length).raw(...b);
  }
  pad(alignment: number): this {
    while (this.out.length % alignment !== 0) this.out.push(0);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

const T = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};

interface RawTensorInfo {
  name: string | Uint8Array;
  ne: (number | bigint)[];
  type: number;
  offset: number | bigint;
}
interface RawFile {
  magic?: number[];
  version?: number;
  tensorCount?: number | bigint;
  kvCount?: number | bigint;
  kv?: ((b: Bytes) => void)[];
  tensors?: RawTensorInfo[];
  alignment?: number;
  /** Bytes of tensor data after the padded header. */
  data?: number | Uint8Array;
}
/** Assemble a GGUF file field by field, allowing any field to be wrong. */
function rawFile(f: RawFile): Uint8Array {
  const b = new Bytes();
  b.raw(...(f.magic ?? [0x47, 0x47, 0x55, 0x46]));
  b.u32(f.version ?? 3);
  b.u64(f.tensorCount ?? f.tensors?.length ?? 0);
  b.u64(f.kvCount ?? f.kv?.length ?? 0);
  for (const write of f.kv ?? []) write(b);
  for (const t of f.tensors ?? []) {
    b.str(t.name).u32(t.ne.length);
    for (const n of t.ne) b.u64(n);
    b.u32(t.type).u64(t.offset);
  }
  b.pad(f.alignment ?? 32);
  const data = typeof f.data === 'number' ? new Uint8Array(f.data) : (f.data ?? new Uint8Array(0));
  b.raw(...data);
  return b.bytes();
}
const kvString = (key: string, value: string) => (b: Bytes) => b.str(key).u32(T.string).str(value);
const kvU32 = (key: string, value: number) => (b: Bytes) => b.str(key).u32(T.u32).u32(value);

/** A one-tensor F32 file: 'x' of shape [2, 4] at offset 0, 32 bytes of data. */
function oneTensor(over: Partial<RawTensorInfo> = {}, file: RawFile = {}): Uint8Array {
  return rawFile({ tensors: [{ name: 'x', ne: [4, 2], type: 0, offset: 0, ...over }], data: 32, ...file });
}

function expectFormatError(fn: () => unknown, ...patterns: (string | RegExp)[]): FormatError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a FormatError').toBeInstanceOf(FormatError);
  const message = (caught as Error).message;
  for (const p of patterns) {
    if (typeof p === 'string') expect(message).toContain(p);
    else expect(message).toMatch(p);
  }
  return caught as FormatError;
}

function leF32(values: number[]): number[] {
  return [...new Uint8Array(Float32Array.from(values).buffer)];
}
function leU16(values: number[]): number[] {
  return [...new Uint8Array(Uint16Array.from(values).buffer)];
}

// ---------------------------------------------------------------------------------------------------

describe('golden file assembled from the spec', () => {
  const W = [1.5, -2, 0.25, 0.125, 7, -0]; // shape [2, 3]
  const H = [0x3c00, 0xc000, 0x7bff, 0x0001]; // f16 bits: 1, -2, 65504, 2^-24; shape [4]
  function golden(): Uint8Array {
    const b = new Bytes();
    b.raw(0x47, 0x47, 0x55, 0x46); // "GGUF"
    b.u32(3); // version
    b.u64(2); // tensor_count
    b.u64(3); // metadata_kv_count
    b.str('general.architecture').u32(T.string).str('tessera');
    b.str('tessera.n').u32(T.u32).u32(7);
    b.str('tessera.list').u32(T.array).u32(T.i16).u64(2).u16(0xffff).u16(2);
    b.str('w').u32(2).u64(3).u64(2).u32(0).u64(0); // F32, ne = [3, 2] (innermost first)
    b.str('h').u32(1).u64(4).u32(1).u64(32); // F16 at 32: 24 bytes of w padded to 32
    b.pad(32);
    b.raw(...leF32(W)).pad(32);
    b.raw(...leU16(H)).pad(32); // llama.cpp pads after the last tensor too
    return b.bytes();
  }

  it('parses every field', () => {
    const bytes = golden();
    const g = parseGGUF(bytes, 'golden.gguf');
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.size).toBe(bytes.length);
    expect([...g.metadata.entries()]).toEqual([
      ['general.architecture', { type: 'string', value: 'tessera' }],
      ['tessera.n', { type: 'u32', value: 7 }],
      ['tessera.list', { type: 'array', elementType: 'i16', value: Int16Array.of(-1, 2) }],
    ]);
    expect(g.dataOffset % 32).toBe(0);
    expect(g.dataOffset + 64).toBe(bytes.length); // w: 24 bytes + 8 padding; h: 8 + 24 padding
    expect(g.tensors).toEqual([
      { name: 'w', shape: [2, 3], numel: 6, ggmlType: 0, typeName: 'F32', offset: 0, byteLength: 24 },
      { name: 'h', shape: [4], numel: 4, ggmlType: 1, typeName: 'F16', offset: 32, byteLength: 8 },
    ]);
    expect(Array.from(g.readTensorF32('w'))).toEqual(W);
    expect(Array.from(g.readTensorF32('h'))).toEqual([1, -2, 65504, 2 ** -24]);
    expect(Array.from(g.readTensorBytes('h'))).toEqual(leU16(H));
    expect(g.get('tessera.n', 'u32')).toBe(7);
    expect(g.get('general.architecture', 'string')).toBe('tessera');
    expect(Array.from(g.getArray('tessera.list', 'i16'))).toEqual([-1, 2]);
  });

  it('is exactly what the writer produces for the same content', () => {
    const written = encodeGGUF({
      metadata: {
        'general.architecture': 'tessera',
        'tessera.n': { type: 'u32', value: 7 },
        'tessera.list': { type: 'array', elementType: 'i16', value: [-1, 2] },
      },
      tensors: [
        { name: 'w', shape: [2, 3], type: 'F32', data: Float32Array.from(W) },
        { name: 'h', shape: [4], type: 'F16', data: Uint16Array.from(H) },
      ],
    });
    expect(Buffer.from(written).equals(Buffer.from(golden()))).toBe(true);
  });

  it('reads the same from disk through a file descriptor', async () => {
    const path = join(dir, 'golden.gguf');
    await writeFile(path, golden());
    const g = openGGUF(path);
    try {
      expect(g.label).toBe(path);
      expect(g.tensors.map((t) => t.name)).toEqual(['w', 'h']);
      expect(Array.from(g.readTensorF32('w'))).toEqual(W);
      expect(g.get('tessera.n', 'u32')).toBe(7);
    } finally {
      g.close();
    }
  });

  it('reads version 2 files (same layout)', () => {
    const bytes = golden();
    bytes[4] = 2;
    expect(parseGGUF(bytes).version).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('metadata round trip', () => {
  const input: Record<string, GGUFMetadataInput> = {
    'general.architecture': 'llama',
    'llama.context_length': { type: 'u32', value: 4294967295 },
    u8: { type: 'u8', value: 255 },
    i8: { type: 'i8', value: -128 },
    u16: { type: 'u16', value: 65535 },
    i16: { type: 'i16', value: -32768 },
    i32: { type: 'i32', value: -2147483648 },
    f32: { type: 'f32', value: -1.5e-7 },
    f64: { type: 'f64', value: Math.PI },
    u64: { type: 'u64', value: 2n ** 64n - 1n },
    u64small: { type: 'u64', value: 5 },
    i64: { type: 'i64', value: -(2n ** 63n) },
    i64big: { type: 'i64', value: 2n ** 53n + 1n },
    yes: true,
    no: { type: 'bool', value: false },
    empty: '',
    unicode: '\uFEFF ▁héllo 🦙 \u0000 tab\t',
    'tokenizer.ggml.tokens': ['<s>', '</s>', '\uFEFF', '▁the', ''],
    'tokenizer.ggml.scores': Float32Array.of(0, -1.25, 3e38),
    'tokenizer.ggml.token_type': { type: 'array', elementType: 'i32', value: [1, 3, -2] },
    u8s: Uint8Array.of(0, 255),
    i8s: Int8Array.of(-128, 127),
    u16s: { type: 'array', elementType: 'u16', value: [0, 65535] },
    i16s: Int16Array.of(-32768, 32767),
    u32s: Uint32Array.of(0, 4294967295),
    f64s: Float64Array.of(Number.MIN_VALUE, -Infinity),
    u64s: BigUint64Array.of(0n, 2n ** 64n - 1n),
    i64s: { type: 'array', elementType: 'i64', value: [-(2n ** 63n), 2n ** 63n - 1n, 7] },
    bools: [true, false, true],
    strings0: { type: 'array', elementType: 'string', value: [] },
    nested: {
      type: 'array',
      elementType: 'array',
      value: [
        ['a', 'b'],
        { type: 'array', elementType: 'f32', value: [0.5] },
        { type: 'array', elementType: 'array', value: [Int32Array.of(1, 2), [true]] },
      ],
    },
  };
  const expected: [string, GGUFValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['llama.context_length', { type: 'u32', value: 4294967295 }],
    ['u8', { type: 'u8', value: 255 }],
    ['i8', { type: 'i8', value: -128 }],
    ['u16', { type: 'u16', value: 65535 }],
    ['i16', { type: 'i16', value: -32768 }],
    ['i32', { type: 'i32', value: -2147483648 }],
    ['f32', { type: 'f32', value: Math.fround(-1.5e-7) }],
    ['f64', { type: 'f64', value: Math.PI }],
    ['u64', { type: 'u64', value: 2n ** 64n - 1n }],
    ['u64small', { type: 'u64', value: 5n }],
    ['i64', { type: 'i64', value: -(2n ** 63n) }],
    ['i64big', { type: 'i64', value: 2n ** 53n + 1n }],
    ['yes', { type: 'bool', value: true }],
    ['no', { type: 'bool', value: false }],
    ['empty', { type: 'string', value: '' }],
    ['unicode', { type: 'string', value: '\uFEFF ▁héllo 🦙 \u0000 tab\t' }],
    [
      'tokenizer.ggml.tokens',
      { type: 'array', elementType: 'string', value: ['<s>', '</s>', '\uFEFF', '▁the', ''] },
    ],
    ['tokenizer.ggml.scores', { type: 'array', elementType: 'f32', value: Float32Array.of(0, -1.25, 3e38) }],
    ['tokenizer.ggml.token_type', { type: 'array', elementType: 'i32', value: Int32Array.of(1, 3, -2) }],
    ['u8s', { type: 'array', elementType: 'u8', value: Uint8Array.of(0, 255) }],
    ['i8s', { type: 'array', elementType: 'i8', value: Int8Array.of(-128, 127) }],
    ['u16s', { type: 'array', elementType: 'u16', value: Uint16Array.of(0, 65535) }],
    ['i16s', { type: 'array', elementType: 'i16', value: Int16Array.of(-32768, 32767) }],
    ['u32s', { type: 'array', elementType: 'u32', value: Uint32Array.of(0, 4294967295) }],
    ['f64s', { type: 'array', elementType: 'f64', value: Float64Array.of(Number.MIN_VALUE, -Infinity) }],
    ['u64s', { type: 'array', elementType: 'u64', value: BigUint64Array.of(0n, 2n ** 64n - 1n) }],
    [
      'i64s',
      { type: 'array', elementType: 'i64', value: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n, 7n) },
    ],
    ['bools', { type: 'array', elementType: 'bool', value: [true, false, true] }],
    ['strings0', { type: 'array', elementType: 'string', value: [] }],
    [
      'nested',
      {
        type: 'array',
        elementType: 'array',
        value: [
          { type: 'array', elementType: 'string', value: ['a', 'b'] },
          { type: 'array', elementType: 'f32', value: Float32Array.of(0.5) },
          {
            type: 'array',
            elementType: 'array',
            value: [
              { type: 'array', elementType: 'i32', value: Int32Array.of(1, 2) },
              { type: 'array', elementType: 'bool', value: [true] },
            ],
          },
        ],
      },
    ],
  ];

  it('keeps every value type, in order, through a file on disk', async () => {
    const path = join(dir, 'meta.gguf');
    await writeGGUF(path, { metadata: input });
    const g = openGGUF(path);
    try {
      expect([...g.metadata.entries()]).toEqual(expected);
      expect(g.alignment).toBe(32);
      expect(g.metadata.has('general.alignment')).toBe(false); // the default is not written
      expect(g.tensors).toEqual([]);
    } finally {
      g.close();
    }
  });

  it('writes a read file back byte for byte (types survive the round trip)', () => {
    const bytes = encodeGGUF({ metadata: input });
    const again = encodeGGUF({ metadata: parseGGUF(bytes).metadata });
    expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
  });

  it('stores 64-bit integers beyond 2^53 exactly as little-endian words', () => {
    const bytes = encodeGGUF({ metadata: { k: { type: 'u64', value: 2n ** 53n + 1n } } });
    // magic, version, counts (24) + key (8 + 1) + type (4): then the value.
    const at = 24 + 9 + 4;
    expect(Array.from(bytes.subarray(at, at + 8))).toEqual([1, 0, 0, 0, 0, 0, 0x20, 0]);
  });

  it('has typed getters that name the file and key on a missing key or a wrong type', () => {
    const g = parseGGUF(encodeGGUF({ metadata: input }), 'model.gguf');
    expect(g.get('llama.context_length', 'u32')).toBe(4294967295);
    expect(g.get('u64', 'u64')).toBe(2n ** 64n - 1n);
    expect(g.get('yes', 'bool')).toBe(true);
    expect(g.getOptional('nope', 'u32')).toBeUndefined();
    expect(g.getArray('tokenizer.ggml.tokens', 'string')).toEqual(['<s>', '</s>', '\uFEFF', '▁the', '']);
    expect(g.getArray('tokenizer.ggml.scores', 'f32')).toBeInstanceOf(Float32Array);
    expectFormatError(
      () => g.get('llama.block_count', 'u32'),
      'model.gguf',
      "'llama.block_count'",
      'missing',
      'u32',
    );
    expectFormatError(
      () => g.get('llama.context_length', 'i32'),
      'model.gguf',
      "'llama.context_length'",
      'has type u32, expected i32',
    );
    expectFormatError(
      () => g.getOptional('u8s', 'u8'),
      'model.gguf',
      "'u8s'",
      'has type array of u8, expected u8',
    );
    expectFormatError(
      () => g.getArray('tokenizer.ggml.scores', 'f64'),
      'model.gguf',
      'has type array of f32, expected array of f64',
    );
    expectFormatError(
      () => g.getArray('general.architecture', 'string'),
      'has type string, expected array of string',
    );
  });

  it('reads a multi-megabyte header (a real vocabulary) identically from disk and memory', async () => {
    // Larger than the writer's first buffers and the reader's 1 MiB read-ahead.
    const n = 100_000;
    const tokens = Array.from({ length: n }, (_, i) => `tok${i.toString(36)}${i % 7 === 0 ? '▁é' : ''}`);
    const metadata: Record<string, GGUFMetadataInput> = {};
    for (let k = 0; k < 2; k++) {
      metadata[`tokens${k}`] = tokens;
      metadata[`scores${k}`] = Float32Array.from({ length: n }, (_, i) => i / 3);
      metadata[`u16.${k}`] = { type: 'u16', value: 1000 + k };
      metadata[`types${k}`] = Int32Array.from({ length: n }, (_, i) => i % 6);
      metadata[`u64.${k}`] = { type: 'u64', value: 2n ** 60n + BigInt(k) };
    }
    const path = join(dir, 'vocab.gguf');
    await writeGGUF(path, {
      metadata,
      tensors: [{ name: 'w', shape: [32], type: 'F32', data: new Float32Array(32).fill(3) }],
    });
    const bytes = await readFile(path);
    expect(bytes.length).toBeGreaterThan(3 * 2 ** 20);
    const g = openGGUF(path);
    try {
      // Re-encoding compares every key, type and value byte for byte, and fast.
      const fromDisk = encodeGGUF({ metadata: g.metadata });
      const fromMemory = encodeGGUF({ metadata: parseGGUF(bytes).metadata });
      expect(Buffer.from(fromDisk).equals(Buffer.from(fromMemory))).toBe(true);
      expect(Buffer.from(fromDisk).equals(Buffer.from(encodeGGUF({ metadata })))).toBe(true);
      const readTokens = g.getArray('tokens1', 'string');
      expect(readTokens.length).toBe(n);
      expect(readTokens.every((t, i) => t === tokens[i])).toBe(true);
      expect(g.get('u16.1', 'u16')).toBe(1001);
      expect(g.get('u64.1', 'u64')).toBe(2n ** 60n + 1n);
      expect(g.getArray('types1', 'i32')[n - 1]).toBe((n - 1) % 6);
      expect(Array.from(g.readTensorF32('w'))).toEqual(new Array(32).fill(3));
    } finally {
      g.close();
    }
  });

  it('reads every scalar width correctly where it starts at or straddles a 1 MiB read-ahead boundary', async () => {
    // Each value follows a u8 filler array sized so that the reader's window (1 MiB from the filler's
    // data) ends exactly `s` bytes into the value; the value then forces a refill of the window.
    const CHUNK = 2 ** 20;
    const values: [string, GGUFScalarInput, number][] = [
      ['u8', { type: 'u8', value: 0xc3 }, 1],
      ['i8', { type: 'i8', value: -61 }, 1],
      ['bool', { type: 'bool', value: true }, 1],
      ['u16', { type: 'u16', value: 0xbeef }, 2],
      ['i16', { type: 'i16', value: -12345 }, 2],
      ['u32', { type: 'u32', value: 0xdeadbeef }, 4],
      ['i32', { type: 'i32', value: -123456789 }, 4],
      ['f32', { type: 'f32', value: 3.5 }, 4],
      ['u64', { type: 'u64', value: 2n ** 63n + 5n }, 8],
      ['i64', { type: 'i64', value: -(2n ** 62n) - 7n }, 8],
      ['f64', { type: 'f64', value: Math.E }, 8],
      ['string', { type: 'string', value: 'straddle' }, 8], // its u64 length straddles
    ];
    const metadata = new Map<string, GGUFMetadataInput>();
    for (const [name, value, size] of values) {
      for (const s of new Set([0, size - 1])) {
        const key = `v.${name}.${s}`;
        // After the filler's data: key length (8), key, value type (4), then the value.
        const fillerLength = CHUNK - s - 12 - key.length;
        metadata.set(`f.${name}.${s}`, new Uint8Array(fillerLength).fill(0xab));
        metadata.set(key, value);
      }
    }
    const path = join(dir, 'straddle.gguf');
    await writeGGUF(path, { metadata });
    const g = openGGUF(path);
    try {
      for (const [name, value, size] of values) {
        for (const s of new Set([0, size - 1])) {
          const want = {
            ...value,
            value: value.type === 'u64' || value.type === 'i64' ? BigInt(value.value) : value.value,
          };
          expect(g.metadata.get(`v.${name}.${s}`), `${name} straddling by ${s}`).toEqual(want);
        }
      }
    } finally {
      g.close();
    }
  });

  it('accepts a Map, keeping its order', () => {
    const m = new Map<string, GGUFMetadataInput>([
      ['z', 'last?'],
      ['a', { type: 'u8', value: 1 }],
    ]);
    expect([...parseGGUF(encodeGGUF({ metadata: m })).metadata.keys()]).toEqual(['z', 'a']);
  });

  it('rejects values whose GGUF type is ambiguous or out of range, naming the key', () => {
    const bad: [GGUFMetadataInput | unknown, RegExp][] = [
      [5, /'k': a bare number 5 has no GGUF type/],
      [5n, /'k': a bare bigint 5 has no GGUF type/],
      [[1, 2], /'k': only arrays of strings or of booleans can be given bare/],
      [[], /'k': an empty array has no element type/],
      [{ type: 'u8', value: 256 }, /'k': u8 value must be an integer in \[0, 255\], got 256/],
      [{ type: 'i32', value: 1.5 }, /'k': i32 value must be an integer/],
      [{ type: 'u32', value: -1 }, /'k': u32 value must be an integer in \[0, 4294967295\], got -1/],
      [{ type: 'u64', value: -1n }, /'k': u64 value must be a bigint/],
      [{ type: 'i64', value: 2n ** 63n }, /'k': i64 value must be a bigint/],
      [{ type: 'u64', value: 2 ** 60 }, /'k': u64 value must be a bigint \(or safe integer\)/],
      [{ type: 'f32', value: '1' }, /'k': f32 value must be a number, got string/],
      [{ type: 'bool', value: 1 }, /'k': bool value must be a boolean/],
      [{ type: 'u128', value: 1 }, /'k': unknown value type "u128"/],
      [{ type: 'array', elementType: 'u7', value: [] }, /'k': unknown array element type "u7"/],
      [{ type: 'array', elementType: 'u8', value: [1, 300] }, /'k'\[1\]: u8 value must be an integer/],
      [
        { type: 'array', elementType: 'array', value: ['x'] },
        /'k'\[0\]: element of an array of arrays must be an array/,
      ],
      ['\uD800', /metadata 'k': the string has an unpaired surrogate/],
      [null, /'k': unsupported value null/],
    ];
    for (const [value, pattern] of bad) {
      expectFormatError(
        () => encodeGGUF({ metadata: { k: value as GGUFMetadataInput } }),
        'cannot encode GGUF',
        pattern,
      );
    }
    expectFormatError(() => encodeGGUF({ metadata: { '': 'x' } }), 'key must be 1 to 65535 UTF-8 bytes');
  });
});

// ---------------------------------------------------------------------------------------------------

describe('tensor round trip', () => {
  /** Values with exact f16/bf16 cases, ties, and a spread of magnitudes. */
  function values(n: number, seed: number): Float32Array {
    let s = seed;
    return Float32Array.from({ length: n }, (_, i) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return i % 7 === 0 ? (i % 3) - 1 : (s / 2 ** 32 - 0.5) * 10 ** ((i % 5) - 2);
    });
  }
  const a = values(2 * 3 * 32, 1);
  const tensors: GGUFTensorInput[] = [
    { name: 'blk.0.f32', shape: [2, 3, 32], type: 'F32', data: a },
    { name: 'blk.0.f16', shape: [6, 32], type: 'F16', data: a },
    { name: 'blk.0.bf16', shape: [192], type: 'BF16', data: a },
    { name: 'blk.0.q8_0', shape: [3, 64], type: 'Q8_0', data: a },
    { name: 'scalar', shape: [], type: 'F32', data: Float32Array.of(42) },
    { name: 'odd', shape: [3], type: 'F16', data: Float32Array.of(1, 2, 3) }, // 6 bytes, then padding
    {
      name: 'raw.q4_0',
      shape: [1, 32],
      type: 'Q4_0',
      data: Uint8Array.from({ length: 18 }, (_, i) => i * 13),
    },
    { name: 'raw.f16', shape: [2], type: 'F16', data: Uint16Array.of(0x7e01, 0x8001) },
  ];

  it('stores exact bytes and reads values back within each type’s rounding', async () => {
    const path = join(dir, 'tensors.gguf');
    writeGGUFSync(path, { metadata: { 'general.architecture': 'test' }, tensors });
    const g = openGGUF(path);
    try {
      expect(g.tensors.map((t) => [t.name, t.typeName, t.shape, t.byteLength])).toEqual([
        ['blk.0.f32', 'F32', [2, 3, 32], 768],
        ['blk.0.f16', 'F16', [6, 32], 384],
        ['blk.0.bf16', 'BF16', [192], 384],
        ['blk.0.q8_0', 'Q8_0', [3, 64], 6 * 34],
        ['scalar', 'F32', [], 4],
        ['odd', 'F16', [3], 6],
        ['raw.q4_0', 'Q4_0', [1, 32], 18],
        ['raw.f16', 'F16', [2], 4],
      ]);
      for (const t of g.tensors) expect(t.offset % 32, t.name).toBe(0);

      expect(g.readTensorBytes('blk.0.f32')).toEqual(new Uint8Array(a.buffer));
      expect(g.readTensorBytes('blk.0.f16')).toEqual(new Uint8Array(f32ToF16Array(a).buffer));
      expect(g.readTensorBytes('blk.0.bf16')).toEqual(new Uint8Array(f32ToBf16Array(a).buffer));
      expect(g.readTensorBytes('blk.0.q8_0')).toEqual(quantizeQ8_0(a));
      expect(g.readTensorBytes('raw.q4_0')).toEqual(tensors[6]!.data);
      expect(g.readTensorBytes('raw.f16')).toEqual(Uint8Array.of(0x01, 0x7e, 0x01, 0x80));

      expect(g.readTensorF32('blk.0.f32')).toEqual(a);
      expect(Array.from(g.readTensorF32('blk.0.f16'))).toEqual(Array.from(a, (x) => roundTo('f16', x)));
      expect(Array.from(g.readTensorF32('blk.0.bf16'))).toEqual(Array.from(a, (x) => roundTo('bf16', x)));
      const q = g.readTensorF32('blk.0.q8_0');
      for (let b = 0; b < 6; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(a[b * 32 + j]!));
        const d = Math.fround(amax / 127);
        const bytes = g.readTensorBytes('blk.0.q8_0');
        const d16 = f16BitsToF32(bytes[b * 34]! | (bytes[b * 34 + 1]! << 8));
        for (let j = 0; j < 32; j++) {
          expect(Math.abs(q[b * 32 + j]! - a[b * 32 + j]!)).toBeLessThanOrEqual(
            0.50002 * d + 127 * Math.abs(d16 - d),
          );
        }
      }
      expect(Array.from(g.readTensorF32('scalar'))).toEqual([42]);
      expect(Array.from(g.readTensorF32('odd'))).toEqual([1, 2, 3]);
      expect(new Uint32Array(g.readTensorF32('raw.f16').buffer)).toEqual(
        Uint32Array.of(0x7fc02000, 0x80000000 | 0x33800000),
      );
    } finally {
      g.close();
    }
  });

  it('writes ne innermost first (the reverse of the shape)', () => {
    const bytes = encodeGGUF({
      tensors: [{ name: 't', shape: [5, 3, 32], type: 'F32', data: new Float32Array(480) }],
    });
    // header (24) + name (8 + 1): n_dims, then ne.
    const v = new DataView(bytes.buffer);
    expect(v.getUint32(33, true)).toBe(3);
    expect([v.getBigUint64(37, true), v.getBigUint64(45, true), v.getBigUint64(53, true)]).toEqual([
      32n,
      3n,
      5n,
    ]);
  });

  it('refuses to convert types it cannot decode, naming the tensor and type', () => {
    const g = parseGGUF(encodeGGUF({ tensors }), 'q.gguf');
    expect(() => g.readTensorF32('raw.q4_0')).toThrow(DTypeError);
    expect(() => g.readTensorF32('raw.q4_0')).toThrow(
      /q\.gguf: tensor 'raw\.q4_0' is Q4_0 \(2\); .*readTensorBytes/,
    );
    expectFormatError(() => g.readTensorBytes('missing'), "q.gguf: no tensor named 'missing'");
    expect(g.hasTensor('scalar')).toBe(true);
    expect(g.tensor('scalar').numel).toBe(1);
  });

  it('returns bytes the caller owns, even from memory', () => {
    const bytes = encodeGGUF({ tensors });
    // A Buffer too (what readFile returns), whose slice() is a view rather than a copy.
    for (const input of [bytes, Buffer.from(bytes)]) {
      const g = parseGGUF(input);
      const first = g.readTensorBytes('blk.0.f32');
      expect(first.constructor).toBe(Uint8Array);
      first.fill(0);
      expect(g.readTensorF32('blk.0.f32')).toEqual(a);
      expect(g.readTensorBytes('raw.q4_0')).toEqual(tensors[6]!.data);
    }
  });

  it('honours a non-default alignment (64) and records it as a u32', () => {
    const bytes = encodeGGUF({ tensors, alignment: 64 });
    const g = parseGGUF(bytes);
    expect(g.alignment).toBe(64);
    expect(g.metadata.get('general.alignment')).toEqual({ type: 'u32', value: 64 });
    expect(g.dataOffset % 64).toBe(0);
    const offsets = g.tensors.map((t) => t.offset);
    for (const o of offsets) expect(o % 64).toBe(0);
    // f32 768, f16 384, bf16 384, q8_0 204 -> 256, then 4, 6 and 18 bytes -> 64 each, raw.f16 4 -> 64.
    expect(offsets).toEqual([0, 768, 1152, 1536, 1792, 1856, 1920, 1984]);
    expect(bytes.length).toBe(g.dataOffset + 2048);
    expect(g.readTensorF32('blk.0.f32')).toEqual(a);
    // Alignment from the metadata alone, and a conflict between the two.
    expect(
      parseGGUF(encodeGGUF({ metadata: { 'general.alignment': { type: 'u32', value: 128 } }, tensors }))
        .dataOffset % 128,
    ).toBe(0);
    expectFormatError(
      () => encodeGGUF({ metadata: { 'general.alignment': { type: 'u32', value: 128 } }, alignment: 64 }),
      'alignment option 64 disagrees with metadata',
    );
    expectFormatError(() => encodeGGUF({ alignment: 48 }), 'alignment must be a power of two, got 48');
    expectFormatError(
      () => encodeGGUF({ metadata: { 'general.alignment': { type: 'u64', value: 64n } } }),
      "'general.alignment'",
      'must be a u32',
    );
  });

  it('rejects tensors that do not fit the format, naming them', () => {
    const t = (over: Partial<GGUFTensorInput>): GGUFTensorInput[] => [
      { name: 'w', shape: [2, 32], type: 'F32', data: new Float32Array(64), ...over },
    ];
    const cases: [GGUFTensorInput[], RegExp][] = [
      [t({ data: new Float32Array(63) }), /'w': data has 63 values but shape \[2, 32\] needs 64/],
      [t({ type: 'F16', data: new Uint16Array(65) }), /'w': data has 65 values but shape \[2, 32\] needs 64/],
      [
        t({ type: 'Q8_0', shape: [4, 16] }),
        /'w': Q8_0 stores rows in blocks of 32, but the last dimension of shape \[4, 16\] is 16/,
      ],
      [t({ type: 'Q8_0', shape: [], data: new Float32Array(1) }), /'w': Q8_0 stores rows in blocks of 32/],
      [
        t({ type: 'Q8_0', data: new Uint8Array(67) }),
        /'w': raw data has 67 bytes but Q8_0 shape \[2, 32\] takes 68/,
      ],
      [
        t({ type: 'Q4_K', shape: [256], data: new Float32Array(256) }),
        /'w': f32 values can be encoded as F32, F16, BF16 or Q8_0, not Q4_K/,
      ],
      [
        t({ type: 'F32', data: new Uint16Array(64) }),
        /'w': a Uint16Array holds raw F16 or BF16 bits, but the type is F32/,
      ],
      [t({ type: 'F8' as 'F32' }), /'w': unknown ggml type "F8"/],
      [t({ shape: [2, 0, 32] }), /'w': shape must be 0 to 4 positive integers, got \[2,0,32\]/],
      [t({ shape: [1, 1, 1, 2, 32] }), /'w': shape must be 0 to 4 positive integers/],
      [t({ shape: [2, 32.5] }), /'w': shape must be 0 to 4 positive integers/],
      [t({ name: 'x'.repeat(64) }), /name is 64 UTF-8 bytes; llama.cpp accepts at most 63/],
      [
        t({ data: [1, 2] as unknown as Float32Array }),
        /'w': data must be a Float32Array, Uint16Array or Uint8Array, got Array/,
      ],
      [[...t({}), ...t({})], /'w': duplicate tensor name/],
    ];
    for (const [input, pattern] of cases)
      expectFormatError(() => encodeGGUF({ tensors: input }), 'cannot encode GGUF tensor', pattern);
    expectFormatError(
      () => encodeGGUF({ tensors: t({ name: '' }) }),
      'tensor #0: name must be a non-empty string',
    );
  });

  it('reads a tensor larger than one conversion step identically from disk and memory', async () => {
    // readTensorF32 converts a file-backed tensor 16 MiB of stored bytes at a time; these cross a step
    // boundary (F16: 2^23 elements per step; Q8_0: 493447 blocks per step).
    const nF16 = 9 * 2 ** 20;
    const f16 = Uint16Array.from({ length: nF16 }, (_, i) => (i * 7) & 0x7bff);
    const nbQ = 500_000;
    const q8 = new Uint8Array(nbQ * 34);
    for (let i = 0; i < q8.length; i++) q8[i] = (i * 31) & 0xff;
    for (let b = 0; b < nbQ; b++) {
      q8[b * 34] = b & 0xff;
      q8[b * 34 + 1] = 0x20 + (b % 0x18); // scale bits 0x20xx..0x37xx: finite f16
    }
    const path = join(dir, 'big.gguf');
    writeGGUFSync(path, {
      tensors: [
        { name: 'f16', shape: [nF16], type: 'F16', data: f16 },
        { name: 'q8', shape: [nbQ, 32], type: 'Q8_0', data: q8 },
      ],
    });
    const fromMemory = parseGGUF(await readFile(path));
    const g = openGGUF(path);
    try {
      for (const name of ['f16', 'q8']) {
        const disk = g.readTensorF32(name);
        const mem = fromMemory.readTensorF32(name);
        expect(Buffer.from(disk.buffer).equals(Buffer.from(mem.buffer)), name).toBe(true);
      }
      const f = g.readTensorF32('f16');
      for (const i of [0, 2 ** 23 - 1, 2 ** 23, nF16 - 1]) expect(f[i]).toBe(f16BitsToF32((i * 7) & 0x7bff));
      const y = g.readTensorF32('q8');
      for (const b of [0, 493446, 493447, nbQ - 1]) {
        const d = f16BitsToF32(q8[b * 34]! | (q8[b * 34 + 1]! << 8));
        for (const j of [0, 31])
          expect(y[b * 32 + j]).toBe(Math.fround(((q8[b * 34 + 2 + j]! << 24) >> 24) * d));
      }
    } finally {
      g.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------

describe('lazy reading', () => {
  it('opens a 1 GiB model by reading only its header, and reads one tensor by reading only its bytes', () => {
    // A sparse file: the header, a 1 GiB tensor that is never written, then a small tensor at the end.
    const big = 2 ** 30;
    const header = rawFile({
      kv: [kvString('general.architecture', 'sparse')],
      tensors: [
        { name: 'huge', ne: [4096, 65536], type: 0, offset: 0 },
        { name: 'small', ne: [8], type: 0, offset: big },
      ],
    });
    const small = Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const path = join(dir, 'sparse.gguf');
    const fd = fs.openSync(path, 'w');
    try {
      fs.writeSync(fd, header, 0, header.length, 0);
      fs.writeSync(fd, new Uint8Array(small.buffer), 0, 32, header.length + big);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.statSync(path).size).toBe(header.length + big + 32);

    const spy = vi.spyOn(fs, 'readSync');
    syncBuiltinESMExports(); // make the module's `import * as fs` see the spy
    const bytesRead = (): number => spy.mock.results.reduce((sum, r) => sum + (r.value as number), 0);
    const before = process.memoryUsage().arrayBuffers;
    try {
      const g = openGGUF(path);
      try {
        expect(spy).toHaveBeenCalled();
        // One read-ahead chunk at most (1 MiB), nowhere near the 1 GiB of data.
        expect(bytesRead()).toBeLessThanOrEqual(2 ** 20);
        expect(g.tensor('huge').byteLength).toBe(big);
        expect(g.dataOffset).toBe(header.length);
        spy.mockClear();
        expect(g.readTensorF32('small')).toEqual(small);
        expect(bytesRead()).toBe(32);
        expect(spy.mock.calls.every((c) => (c as unknown[])[4] === header.length + big)).toBe(true);
        expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 2 ** 20);
      } finally {
        g.close();
      }
    } finally {
      spy.mockRestore();
      syncBuiltinESMExports();
    }
  });

  it('throws DisposedError after close, and FormatError when the file shrinks after opening', async () => {
    const path = join(dir, 'shrink.gguf');
    await writeGGUF(path, { tensors: [{ name: 'x', shape: [64], type: 'F32', data: new Float32Array(64) }] });
    const g = openGGUF(path);
    g[Symbol.dispose]();
    g.close(); // idempotent
    expect(() => g.readTensorBytes('x')).toThrow(DisposedError);
    expect(g.tensor('x').numel).toBe(64); // the header stays available

    const h = openGGUF(path);
    try {
      fs.truncateSync(path, h.dataOffset + 100);
      expectFormatError(
        () => h.readTensorBytes('x'),
        path,
        /file ended at byte \d+ while reading \d+ bytes at offset \d+; it was \d+ bytes when opened \(truncated since\?\)/,
      );
    } finally {
      h.close();
    }
  });

  it('closes the file descriptor when the header is invalid', async () => {
    if (!fs.existsSync('/proc/self/fd')) return; // Linux only
    const path = join(dir, 'bad-magic.gguf');
    await writeFile(path, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    const before = fs.readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 20; i++) expect(() => openGGUF(path)).toThrow(FormatError);
    expect(fs.readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('corrupt files', () => {
  const L = 'corrupt.gguf';

  it('bad magic', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({}, { magic: [0x47, 0x47, 0x55, 0x58] }), L),
      `${L}: not a GGUF file: magic is 'GGUX' (47 47 55 58), expected 'GGUF'`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { magic: [0x46, 0x55, 0x47, 0x47] }), L),
      L,
      "'FUGG'",
      'big-endian',
    );
  });

  it('unsupported versions', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({}, { version: 1 }), L),
      `${L}: unsupported GGUF version 1`,
      'v1',
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { version: 4 }), L),
      `${L}: unsupported GGUF version 4; versions 2 and 3 are supported`,
    );
    expectFormatError(() => parseGGUF(oneTensor({}, { version: 0x03000000 }), L), L, 'big-endian');
  });

  /** A file with a field of every kind, and where each field starts. */
  function annotated(): { bytes: Uint8Array; at: Map<string, number> } {
    const at = new Map<string, number>();
    const b = new Bytes();
    const mark = (what: string): Bytes => (at.set(what, b.length), b);
    mark('magic').raw(0x47, 0x47, 0x55, 0x46);
    mark('version').u32(3);
    mark('tensor_count').u64(2);
    mark('metadata_kv_count').u64(2);
    mark('length of metadata #0 (key)').u64(4);
    mark('metadata #0 (key)').raw(...enc.encode('name'));
    mark("metadata 'name' (value type)").u32(T.string);
    mark("length of metadata 'name'").u64(5);
    mark("metadata 'name'").raw(...enc.encode('hello'));
    mark('length of metadata #1 (key)').str('list').u32(T.array);
    mark("metadata 'list' (array element type)").u32(T.string);
    mark("metadata 'list' (array length)").u64(2);
    mark("length of metadata 'list'[0]").str('ab');
    mark("length of metadata 'list'[1]").u64(2);
    mark("metadata 'list'[1]").raw(0x63, 0x64);
    mark('length of tensor info #0 (name)').u64(1);
    mark('tensor info #0 (name)').raw(0x61);
    mark("tensor info #0 'a' (n_dims)").u32(2);
    mark("tensor info #0 'a' (ne[0])").u64(4);
    mark("tensor info #0 'a' (ne[1])").u64(2);
    mark("tensor info #0 'a' (type)").u32(0);
    mark("tensor info #0 'a' (offset)").u64(0);
    mark('length of tensor info #1 (name)').str('b').u32(1).u64(32).u32(8);
    mark("tensor info #1 'b' (offset)").u64(32);
    mark('end of header');
    b.pad(32).raw(...new Array(32 + 34).fill(0));
    return { bytes: b.bytes(), at };
  }

  it('truncated header: every cut names the field being read, from memory and from disk', async () => {
    const { bytes, at } = annotated();
    expect(parseGGUF(bytes, L).tensors.map((t) => t.name)).toEqual(['a', 'b']);
    const header = at.get('end of header')!;
    // Every cut inside the header fails cleanly.
    for (let cut = 0; cut < header; cut++)
      expectFormatError(() => parseGGUF(bytes.subarray(0, cut), L), `${L}: truncated`);
    // A file that ends where a field starts (or inside it) names that field.
    for (const [what, start] of at) {
      if (what === 'end of header') continue;
      expectFormatError(() => parseGGUF(bytes.subarray(0, start), L), `${L}: truncated header: ${what} `);
      if (!what.startsWith('length of')) continue;
      expectFormatError(
        () => parseGGUF(bytes.subarray(0, start + 7), L),
        `${L}: truncated header: ${what} needs 8 bytes at offset ${start} but the file is ${start + 7} bytes`,
      );
    }
    // The same through a file descriptor (the header is read in chunks there).
    for (const what of [
      'version',
      "metadata 'list'[1]",
      "tensor info #0 'a' (ne[1])",
      "tensor info #1 'b' (offset)",
    ]) {
      const path = join(dir, 'cut.gguf');
      await writeFile(path, bytes.subarray(0, at.get(what)! + 1));
      expectFormatError(
        () => openGGUF(path),
        `${path}: truncated header: ${what} needs`,
        `but the file is ${at.get(what)! + 1} bytes`,
      );
    }
  });

  it('truncated data names the tensor, its offset and size, and the file size', () => {
    const { bytes, at } = annotated();
    const dataOffset = Math.ceil(at.get('end of header')! / 32) * 32;
    const cut = dataOffset + 40; // inside tensor 'b' (Q8_0 at 32, 34 bytes)
    expectFormatError(
      () => parseGGUF(bytes.subarray(0, cut), L),
      `${L}: truncated data: tensor 'b' (Q8_0 [32]) at data offset 32 (file offset ${dataOffset + 32}) needs 34 bytes, up to byte ${dataOffset + 66}, but the file is ${cut} bytes`,
    );
    // The last tensor need not be followed by its padding.
    expect(parseGGUF(bytes.subarray(0, dataOffset + 66), L).tensors).toHaveLength(2);
  });

  it('unknown and removed ggml type ids', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({ type: 99 }), L),
      `${L}: tensor info #0 'x' has unknown ggml type id 99`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ type: 4 }), L),
      `${L}: tensor info #0 'x' has ggml type Q4_2 (4), which ggml has removed`,
    );
  });

  it('identifies read-only types with their block sizes', () => {
    const cases: [number, string, number, number][] = [
      [2, 'Q4_0', 32, 18],
      [3, 'Q4_1', 32, 20],
      [6, 'Q5_0', 32, 22],
      [7, 'Q5_1', 32, 24],
      [9, 'Q8_1', 32, 36],
      [10, 'Q2_K', 256, 84],
      [11, 'Q3_K', 256, 110],
      [12, 'Q4_K', 256, 144],
      [13, 'Q5_K', 256, 176],
      [14, 'Q6_K', 256, 210],
      [15, 'Q8_K', 256, 292],
      [24, 'I8', 1, 1],
      [25, 'I16', 1, 2],
      [26, 'I32', 1, 4],
      [27, 'I64', 1, 8],
      [28, 'F64', 1, 8],
      [30, 'BF16', 1, 2],
      [34, 'TQ1_0', 256, 54],
      [39, 'MXFP4', 32, 17],
      [40, 'NVFP4', 64, 36],
      [41, 'Q1_0', 128, 18],
      [42, 'Q2_0', 64, 18],
    ];
    for (const [id, name, blockSize, typeSize] of cases) {
      expect(ggmlTypeTraits(id)).toEqual({ id, name, blockSize, typeSize });
      expect(ggmlTypeTraits(name)?.id).toBe(id);
      const bytes = rawFile({
        tensors: [{ name: 't', ne: [512, 3], type: id, offset: 0 }],
        data: (1536 / blockSize) * typeSize,
      });
      const info = parseGGUF(bytes, L).tensor('t');
      expect([info.typeName, info.byteLength]).toEqual([name, (1536 / blockSize) * typeSize]);
    }
    expect(ggmlTypeTraits(4)).toBeUndefined();
    expectFormatError(
      () => parseGGUF(rawFile({ tensors: [{ name: 't', ne: [16, 2], type: 8, offset: 0 }], data: 68 }), L),
      `${L}: tensor info #0 't' of type Q8_0 has rows of 16 elements (ne[0]), not a multiple of its block size 32`,
    );
  });

  it('bad dimensions', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({ ne: [1, 1, 1, 1, 8] }), L),
      `${L}: tensor info #0 'x' has n_dims 5; ggml tensors have at most 4`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ ne: [8, 0] }), L),
      `${L}: tensor info #0 'x' has ne[1] = 0; dimensions must be positive`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ ne: [8, 2n ** 64n - 1n] }), L),
      `${L}: tensor info #0 'x' has ne[1] = -1, a negative dimension`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ ne: [2 ** 30, 2 ** 30] }), L),
      `${L}: tensor info #0 'x' has dimensions 1073741824 x 1073741824: more elements than can be addressed`,
    );
    // A 0-d tensor (n_dims 0) is a scalar: one element.
    expect(
      parseGGUF(rawFile({ tensors: [{ name: 's', ne: [], type: 0, offset: 0 }], data: 4 })).tensor('s'),
    ).toMatchObject({ shape: [], numel: 1 });
  });

  it('misaligned, overlapping and out-of-range offsets', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({ offset: 4 }, { data: 64 }), L),
      `${L}: tensor info #0 'x' has offset 4, not a multiple of the alignment 32`,
    );
    const overlap = rawFile({
      tensors: [
        { name: 'p', ne: [16], type: 0, offset: 0 },
        { name: 'q', ne: [4], type: 0, offset: 32 },
      ],
      data: 96,
    });
    expectFormatError(
      () => parseGGUF(overlap, L),
      `${L}: tensor 'q' at data offset 32 overlaps tensor 'p' at [0, 64)`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ offset: 2n ** 60n }), L),
      `${L}: tensor info #0 'x' has offset ${2n ** 60n}`,
    );
    expectFormatError(() => parseGGUF(oneTensor({ offset: 64 }), L), `${L}: truncated data: tensor 'x'`);
    // Tensors out of order but disjoint are fine (llama.cpp's own writer never does this, gguf-py's reader accepts it).
    const reordered = rawFile({
      tensors: [
        { name: 'p', ne: [8], type: 0, offset: 32 },
        { name: 'q', ne: [8], type: 0, offset: 0 },
      ],
      data: 64,
    });
    expect(parseGGUF(reordered).tensors.map((t) => t.offset)).toEqual([32, 0]);
  });

  it('duplicate tensor names and metadata keys', () => {
    const dupTensor = rawFile({
      tensors: [
        { name: 'x', ne: [8], type: 0, offset: 0 },
        { name: 'x', ne: [8], type: 0, offset: 32 },
      ],
      data: 64,
    });
    expectFormatError(() => parseGGUF(dupTensor, L), `${L}: tensor info #1 'x': duplicate tensor name`);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [kvU32('a', 1), kvU32('a', 2)] }), L),
      `${L}: metadata #1: duplicate key 'a'`,
    );
  });

  it('absurd counts and lengths are rejected before anything is allocated for them', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({}, { tensorCount: 2n ** 62n }), L),
      `${L}: tensor_count ${2n ** 62n} is over the limit`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kvCount: 2n ** 64n - 1n }), L),
      `${L}: metadata_kv_count ${2n ** 64n - 1n} is over the limit`,
    );
    // A plausible count the file cannot back fails where the bytes run out.
    const plausible = rawFile({
      tensorCount: 1000,
      tensors: [{ name: 'x', ne: [8], type: 0, offset: 0 }],
      alignment: 1,
    });
    expectFormatError(
      () => parseGGUF(plausible, L),
      `${L}: truncated header: length of tensor info #1 (name) needs 8 bytes at offset ${plausible.length}`,
    );
    const hugeArray = (b: Bytes) =>
      b
        .str('arr')
        .u32(T.array)
        .u32(T.u64)
        .u64(2n ** 40n);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [hugeArray] }), L),
      `${L}: truncated header: metadata 'arr' (${2n ** 40n} u64 values) needs ${2n ** 43n} bytes`,
    );
    const hugeString = (b: Bytes) =>
      b
        .str('s')
        .u32(T.string)
        .u64(2n ** 50n);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [hugeString] }), L),
      `${L}: truncated header: metadata 's' needs ${2n ** 50n} bytes`,
    );
    const hugeStrings = (b: Bytes) =>
      b
        .str('s')
        .u32(T.array)
        .u32(T.string)
        .u64(2n ** 40n);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [hugeStrings] }), L),
      `${L}: metadata 's' claims ${2n ** 40n} elements, over the`,
    );
    const hugeName = rawFile({ tensorCount: 1, data: 0 });
    const v = new DataView(hugeName.buffer);
    v.setBigUint64(24, 2n ** 63n, true); // where the first name's length goes (it reads into the padding)
    expectFormatError(
      () => parseGGUF(hugeName, L),
      `${L}: truncated header: tensor info #0 (name) needs ${2n ** 63n} bytes at offset 32 but the file is 32 bytes`,
    );
  });

  it('invalid UTF-8 in keys, values and tensor names', () => {
    const bad = Uint8Array.of(0x61, 0xff, 0x62);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [(b) => b.str(bad).u32(T.u8).u8(1)] }), L),
      `${L}: metadata #0 (key) at offset 32 is not valid UTF-8`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [(b) => b.str('k').u32(T.string).str(bad)] }), L),
      `${L}: metadata 'k' at offset`,
      'not valid UTF-8',
    );
    const inArray = (b: Bytes) =>
      b.str('k').u32(T.array).u32(T.string).u64(2).str('ok').str(Uint8Array.of(0xc3));
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [inArray] }), L),
      `${L}: metadata 'k'[1] at offset`,
      'not valid UTF-8',
    );
    expectFormatError(
      () => parseGGUF(oneTensor({ name: Uint8Array.of(0xed, 0xa0, 0x80) }), L),
      `${L}: tensor info #0 (name) at offset 32 is not valid UTF-8`,
    );
  });

  it('unknown value types, bad bools, nesting too deep', () => {
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [(b) => b.str('k').u32(13)] }), L),
      `${L}: metadata 'k' has unknown value type 13`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [(b) => b.str('k').u32(T.array).u32(99).u64(0)] }), L),
      `${L}: metadata 'k' is an array of unknown value type 99`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [(b) => b.str('k').u32(T.bool).u8(2)] }), L),
      `${L}: metadata 'k' at offset`,
      'bool byte 2; only 0 and 1 are valid',
    );
    const deep = (b: Bytes) => {
      b.str('k').u32(T.array);
      for (let i = 0; i < 40; i++) b.u32(T.array).u64(1);
      b.u32(T.u8).u64(0);
    };
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [deep] }), L),
      `${L}: metadata 'k'[0][0]`,
      'nests arrays more than 32 deep',
    );
  });

  it('general.alignment of the wrong type or not a power of two', () => {
    const wrongType = (b: Bytes) => b.str('general.alignment').u32(T.i32).u32(64);
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [wrongType] }), L),
      `${L}: metadata 'general.alignment' must be a u32, got i32`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [kvU32('general.alignment', 48)] }), L),
      `${L}: metadata 'general.alignment' is 48, not a power of two`,
    );
    expectFormatError(
      () => parseGGUF(oneTensor({}, { kv: [kvU32('general.alignment', 0)] }), L),
      'is 0, not a power of two',
    );
    const ok = parseGGUF(oneTensor({}, { kv: [kvU32('general.alignment', 64)], alignment: 64 }), L);
    expect([ok.alignment, ok.dataOffset % 64]).toEqual([64, 0]);
  });
});
