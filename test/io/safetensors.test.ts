import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f32ToBf16Bits, f32ToF16Bits, readElement, type DType } from '../../src/dtype.js';
import { DTypeError, FormatError } from '../../src/errors.js';
import { writeFileAtomic, writeFileAtomicSync } from '../../src/io/atomic.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  saveSafetensors,
  type HostTensor,
} from '../../src/io/safetensors.js';

const enc = new TextEncoder();

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-safetensors-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** One tensor of every dtype, with edge values (raw half bits include NaN payloads and infinities). */
function sampleTensors(): Record<string, HostTensor> {
  return {
    f32: {
      dtype: 'f32',
      shape: [2, 3],
      data: Float32Array.of(1.5, -2.25, 3.4028234663852886e38, 1e-40, -0, 7),
    },
    f16: {
      dtype: 'f16',
      shape: [6],
      data: Uint16Array.of(f32ToF16Bits(1), f32ToF16Bits(-0.5), 0x7bff, 0x0001, 0x7c00, 0x7e01),
    },
    bf16: {
      dtype: 'bf16',
      shape: [2, 2],
      data: Uint16Array.of(f32ToBf16Bits(1), f32ToBf16Bits(-3.140625), f32ToBf16Bits(1e30), 0xff81),
    },
    i32: { dtype: 'i32', shape: [3], data: Int32Array.of(-2147483648, 0, 2147483647) },
    i8: { dtype: 'i8', shape: [4], data: Int8Array.of(-128, -1, 0, 127) },
    u8: { dtype: 'u8', shape: [3], data: Uint8Array.of(0, 128, 255) },
    bool: { dtype: 'bool', shape: [1, 3], data: Uint8Array.of(1, 0, 1) },
  };
}

/** Bytes of a safetensors file with an arbitrary header (string or value) and data buffer. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  return withHeaderBytes(json, data);
}
function withHeaderBytes(json: Uint8Array, data: Uint8Array, declaredLength: bigint = BigInt(json.length)) {
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function formatError(fn: () => unknown): FormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FormatError);
    return err as FormatError;
  }
  throw new Error('expected a FormatError, but nothing was thrown');
}

describe('encodeSafetensors / decodeSafetensors', () => {
  it('round-trips every dtype bit-exactly, plus metadata', () => {
    const tensors = sampleTensors();
    const metadata = { format: 'pt', note: 'ünïcode ✓', '0': 'integer-like key' };
    const { tensors: back, metadata: meta } = decodeSafetensors(encodeSafetensors(tensors, metadata));
    expect(meta).toEqual(metadata);
    expect(Object.keys(back).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const b = back[name]!;
      expect(b.dtype).toBe(t.dtype);
      expect(b.shape).toEqual(t.shape);
      expect(b.data.constructor).toBe(t.data.constructor);
      // Compare raw bytes so NaN payloads, -0 and subnormals must survive exactly.
      expect(new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength)).toEqual(
        new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      );
    }
  });

  it('round-trips 0-d and zero-size tensors', () => {
    const tensors: Record<string, HostTensor> = {
      scalar: { dtype: 'f32', shape: [], data: Float32Array.of(42) },
      empty: { dtype: 'i32', shape: [0, 5], data: new Int32Array(0) },
      empty2: { dtype: 'bf16', shape: [3, 0], data: new Uint16Array(0) },
      tail: { dtype: 'u8', shape: [0], data: new Uint8Array(0) },
    };
    const { tensors: back, metadata } = decodeSafetensors(encodeSafetensors(tensors));
    expect(metadata).toEqual({});
    expect(back['scalar']).toEqual({ dtype: 'f32', shape: [], data: Float32Array.of(42) });
    expect(back['empty']).toEqual({ dtype: 'i32', shape: [0, 5], data: new Int32Array(0) });
    expect(back['empty2']).toEqual({ dtype: 'bf16', shape: [3, 0], data: new Uint16Array(0) });
    expect(back['tail']).toEqual({ dtype: 'u8', shape: [0], data: new Uint8Array(0) });
  });

  it('round-trips an empty tensor set', () => {
    const bytes = encodeSafetensors({});
    expect(decodeSafetensors(bytes)).toEqual({ tensors: {}, metadata: {} });
  });

  it('matches a hand-computed file byte for byte', () => {
    const bytes = encodeSafetensors({
      x: { dtype: 'f32', shape: [], data: Float32Array.of(1) },
      a: { dtype: 'u8', shape: [2], data: Uint8Array.of(7, 9) },
    });
    // Sorted name order: a occupies [0, 2), x occupies [2, 6).
    const json =
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"F32","shape":[],"data_offsets":[2,6]}}';
    expect(json.length).toBe(105);
    expect(bytes.length).toBe(8 + 112 + 6);
    expect([...bytes.subarray(0, 8)]).toEqual([112, 0, 0, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(bytes.subarray(8, 8 + 105))).toBe(json);
    expect([...bytes.subarray(8 + 105, 8 + 112)]).toEqual(Array(7).fill(0x20));
    // u8 7, 9 then 1.0f little-endian (0x3f800000).
    expect([...bytes.subarray(120)]).toEqual([7, 9, 0x00, 0x00, 0x80, 0x3f]);
  });

  it('writes __metadata__ first and lists tensors in layout order, even integer-like names', () => {
    const bytes = encodeSafetensors(
      {
        b: { dtype: 'u8', shape: [1], data: Uint8Array.of(1) },
        '10': { dtype: 'u8', shape: [1], data: Uint8Array.of(2) },
        '2': { dtype: 'u8', shape: [1], data: Uint8Array.of(3) },
      },
      { k: 'v' },
    );
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n)).trimEnd();
    expect(text).toBe(
      '{"__metadata__":{"k":"v"},' +
        '"10":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' +
        '"2":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},' +
        '"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}',
    );
    expect([...bytes.subarray(8 + n)]).toEqual([2, 3, 1]);
  });

  it('returns owned, aligned copies even when the data sits at unaligned offsets in the file', () => {
    // 'a' (3 bytes) pushes 'b' (f32) to data offset 3, which no Float32Array view could start at.
    const file = encodeSafetensors({
      a: { dtype: 'u8', shape: [3], data: Uint8Array.of(1, 2, 3) },
      b: { dtype: 'f32', shape: [2], data: Float32Array.of(0.5, -8) },
      c: { dtype: 'i32', shape: [1], data: Int32Array.of(-5) },
    });
    // Also decode from a view with a non-zero byteOffset into a larger buffer.
    const host = new Uint8Array(file.length + 5);
    host.set(file, 5);
    const { tensors } = decodeSafetensors(host.subarray(5));
    expect(tensors['b']!.data).toEqual(Float32Array.of(0.5, -8));
    expect(tensors['c']!.data).toEqual(Int32Array.of(-5));
    for (const t of Object.values(tensors)) {
      expect(t.data.buffer).not.toBe(host.buffer);
      expect(t.data.byteOffset).toBe(0);
    }
    host.fill(0); // mutating the source must not affect the decoded tensors
    expect(tensors['a']!.data).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('accepts headers written by other tools: other key order, whitespace, no padding', () => {
    const header =
      ' { "w": {"data_offsets": [0, 4], "shape": [2], "dtype": "BF16"},\n "__metadata__": {"format": "pt"} }';
    const data = new Uint8Array(new Uint16Array([f32ToBf16Bits(2), f32ToBf16Bits(-1)]).buffer);
    const { tensors, metadata } = decodeSafetensors(rawFile(header, data));
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors['w']!.shape).toEqual([2]);
    expect([0, 1].map((i) => readElement('bf16', tensors['w']!.data, i))).toEqual([2, -1]);
  });

  it('normalises bool bytes to 0/1 in both directions', () => {
    const bytes = encodeSafetensors({ m: { dtype: 'bool', shape: [3], data: Uint8Array.of(0, 2, 255) } });
    expect([...bytes.subarray(bytes.length - 3)]).toEqual([0, 1, 1]);
    const foreign = rawFile({ m: { dtype: 'BOOL', shape: [2], data_offsets: [0, 2] } }, Uint8Array.of(7, 0));
    expect(decodeSafetensors(foreign).tensors['m']!.data).toEqual(Uint8Array.of(1, 0));
  });

  it('keeps a tensor or metadata key named __proto__ as plain data', () => {
    const file = rawFile(
      '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"__proto__":"m"}}',
      Uint8Array.of(9),
    );
    const { tensors, metadata } = decodeSafetensors(file);
    expect(Object.getPrototypeOf(tensors)).toBe(Object.prototype);
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(tensors, '__proto__')!.value.data).toEqual(Uint8Array.of(9));
    expect(Object.getOwnPropertyDescriptor(metadata, '__proto__')!.value).toBe('m');
  });

  describe('rejects corrupt input with a FormatError naming the source and the field', () => {
    const f32x2 = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
    const eight = new Uint8Array(8);
    const cases: [string, () => Uint8Array, string[]][] = [
      ['file shorter than 8 bytes', () => Uint8Array.of(1, 0, 0), ['shorter than', 'header length']],
      [
        'header length past end of file',
        () => withHeaderBytes(enc.encode('{}'), eight, 100n),
        ['header length 100'],
      ],
      [
        'absurd header length',
        () => withHeaderBytes(enc.encode('{}'), eight, 1n << 40n),
        ['header length', 'limit'],
      ],
      ['header not UTF-8', () => withHeaderBytes(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), eight), ['UTF-8']],
      ['header not JSON', () => rawFile('{"a": '), ['JSON']],
      ['header JSON an array', () => rawFile('[1, 2]'), ['object', 'array']],
      ['header JSON null', () => rawFile('null'), ['object']],
      ['tensor entry not an object', () => rawFile({ w: 3 }), ["'w'", 'header entry']],
      ['unknown dtype', () => rawFile({ w: { ...f32x2, dtype: 'F64' } }, eight), ["'w'", 'dtype', 'F64']],
      ['missing dtype', () => rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, eight), ["'w'", 'dtype']],
      ['shape negative', () => rawFile({ w: { ...f32x2, shape: [-2] } }, eight), ["'w'", 'shape', '[-2]']],
      ['shape fractional', () => rawFile({ w: { ...f32x2, shape: [1.5] } }, eight), ["'w'", 'shape']],
      ['shape not an array', () => rawFile({ w: { ...f32x2, shape: '2' } }, eight), ["'w'", 'shape']],
      [
        'data_offsets descending',
        () => rawFile({ w: { ...f32x2, data_offsets: [8, 0] } }, eight),
        ['data_offsets'],
      ],
      [
        'data_offsets one number',
        () => rawFile({ w: { ...f32x2, data_offsets: [8] } }, eight),
        ['data_offsets'],
      ],
      [
        'data_offsets strings',
        () => rawFile({ w: { ...f32x2, data_offsets: ['0', '8'] } }, eight),
        ['data_offsets'],
      ],
      [
        'data_offsets negative',
        () => rawFile({ w: { ...f32x2, data_offsets: [-8, 0] } }, eight),
        ['data_offsets'],
      ],
      [
        'byte length disagrees with shape and dtype',
        () => rawFile({ w: { ...f32x2, shape: [3] } }, eight),
        ["'w'", 'data_offsets', 'span 8 bytes', 'needs 12'],
      ],
      [
        'offsets outside the data buffer',
        () => rawFile({ w: f32x2 }, new Uint8Array(4)),
        ["'w'", 'data_offsets', 'past the end of the data buffer'],
      ],
      [
        'overlapping tensors',
        () =>
          rawFile(
            {
              a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
              b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] },
            },
            new Uint8Array(6),
          ),
        ["'b'", "'a'", 'data_offsets', 'overlap'],
      ],
      [
        'hole between tensors',
        () =>
          rawFile(
            {
              a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
              b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] },
            },
            new Uint8Array(6),
          ),
        ["'b'", 'data_offsets', 'gap'],
      ],
      [
        'hole at the start',
        () => rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, new Uint8Array(4)),
        ["'a'", 'gap'],
      ],
      ['trailing bytes', () => rawFile({ w: f32x2 }, new Uint8Array(12)), ['data_offsets', 'trailing gap']],
      [
        '__metadata__ value not a string',
        () => rawFile({ __metadata__: { epoch: 3 } }),
        ['__metadata__', "'epoch'"],
      ],
      ['__metadata__ not an object', () => rawFile({ __metadata__: ['x'] }), ['__metadata__']],
    ];
    it.each(cases)('%s', (_label, make, fragments) => {
      const err = formatError(() => decodeSafetensors(make()));
      expect(err.message).toContain('<buffer>');
      for (const f of fragments) expect(err.message).toContain(f);
    });

    it('names the file path when loading from disk', async () => {
      const path = join(dir, 'corrupt.safetensors');
      await writeFile(path, rawFile({ w: { ...f32x2, dtype: 'C64' } }, eight));
      const err = await loadSafetensors(path).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FormatError);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toContain('C64');
    });
  });

  describe('rejects invalid tensors on encode, naming the tensor', () => {
    it('data length that disagrees with the shape', () => {
      expect(() =>
        encodeSafetensors({ w: { dtype: 'f32', shape: [2, 2], data: new Float32Array(3) } }),
      ).toThrow(/tensor 'w'.*3 elements.*needs 4/);
      expect(() =>
        encodeSafetensors({ w: { dtype: 'f32', shape: [2, 2], data: new Float32Array(3) } }),
      ).toThrow(FormatError);
    });
    it('unknown dtype', () => {
      const bad = { w: { dtype: 'f64' as DType, shape: [1], data: new Float32Array(1) } };
      expect(() => encodeSafetensors(bad)).toThrow(DTypeError);
      expect(() => encodeSafetensors(bad)).toThrow(/'w'/);
    });
    it('typed array of the wrong kind for the dtype', () => {
      const bad = { w: { dtype: 'f16' as DType, shape: [1], data: new Float32Array(1) } };
      expect(() => encodeSafetensors(bad)).toThrow(DTypeError);
      expect(() => encodeSafetensors(bad)).toThrow(/'w'.*Uint16Array.*Float32Array/);
    });
    it('invalid shape', () => {
      expect(() => encodeSafetensors({ w: { dtype: 'u8', shape: [-1], data: new Uint8Array(0) } })).toThrow(
        /'w'.*shape/,
      );
    });
    it('reserved name and non-string metadata', () => {
      expect(() =>
        encodeSafetensors({ __metadata__: { dtype: 'u8', shape: [0], data: new Uint8Array(0) } }),
      ).toThrow(FormatError);
      expect(() => encodeSafetensors({}, { epoch: 3 as unknown as string })).toThrow(/__metadata__.*'epoch'/);
    });
  });
});

describe('saveSafetensors / loadSafetensors and atomic writes', () => {
  it('saves into new parent directories without leaving temp files', async () => {
    const sub = join(dir, 'nested', 'deeper');
    const path = join(sub, 'model.safetensors');
    await saveSafetensors(path, sampleTensors(), { step: '10' });
    expect(await readdir(sub)).toEqual(['model.safetensors']);
    const { tensors, metadata } = await loadSafetensors(path);
    expect(metadata).toEqual({ step: '10' });
    expect(tensors['i32']!.data).toEqual(Int32Array.of(-2147483648, 0, 2147483647));
  });

  it('replaces an existing file and keeps its permission bits', async () => {
    const sub = join(dir, 'replace');
    await mkdir(sub);
    const path = join(sub, 'ckpt.safetensors');
    await writeFile(path, 'old contents that are longer than the new file would ever need to be'.repeat(100));
    if (process.platform !== 'win32') await chmod(path, 0o640);
    await saveSafetensors(path, { w: { dtype: 'u8', shape: [1], data: Uint8Array.of(5) } });
    expect(await readdir(sub)).toEqual(['ckpt.safetensors']);
    expect((await loadSafetensors(path)).tensors['w']!.data).toEqual(Uint8Array.of(5));
    if (process.platform !== 'win32') expect((await stat(path)).mode & 0o777).toBe(0o640);
  });

  it('leaves the old file intact and no temp file behind when the write fails', async () => {
    const sub = join(dir, 'failing');
    await mkdir(sub);
    const path = join(sub, 'keep.bin');
    await writeFile(path, 'precious');
    // Invalid data makes the write itself throw after the temp file was created.
    const bad = 123 as unknown as string;
    await expect(writeFileAtomic(path, bad)).rejects.toThrow(path);
    expect(() => writeFileAtomicSync(path, bad)).toThrow(path);
    expect(await readdir(sub)).toEqual(['keep.bin']);
    expect(await readFile(path, 'utf8')).toBe('precious');
  });

  it('cleans up and names the target when the rename fails', async () => {
    const sub = join(dir, 'rename-fails');
    const target = join(sub, 'is-a-dir');
    await mkdir(join(target, 'child'), { recursive: true });
    const err = await writeFileAtomic(target, 'x').then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(err?.message).toContain(target);
    expect(err?.code).toBeTypeOf('string');
    expect(() => writeFileAtomicSync(target, 'x')).toThrow(target);
    expect(await readdir(sub)).toEqual(['is-a-dir']);
  });

  it('sync twin writes strings and bytes atomically', async () => {
    const path = join(dir, 'sync', 'notes.txt');
    writeFileAtomicSync(path, 'first');
    writeFileAtomicSync(path, enc.encode('second ✓'));
    expect(await readFile(path, 'utf8')).toBe('second ✓');
    expect(await readdir(join(dir, 'sync'))).toEqual(['notes.txt']);
  });

  it('concurrent writers never produce a mixed or truncated file', async () => {
    const sub = join(dir, 'concurrent');
    const path = join(sub, 'race.txt');
    const payloads = Array.from({ length: 12 }, (_, i) => String(i).repeat(10_000 + i * 997));
    await Promise.all(payloads.map((p) => writeFileAtomic(path, p)));
    expect(payloads).toContain(await readFile(path, 'utf8'));
    expect(await readdir(sub)).toEqual(['race.txt']);
  });
});

/** A python3 interpreter, if any, for the independent cross-check (standard library only). */
function findPython(): string | undefined {
  for (const exe of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(exe, ['-c', 'import json, struct'], { encoding: 'utf8' });
    if (r.status === 0) return exe;
  }
  return undefined;
}
const python = findPython();

/** Reads a safetensors file with nothing but json and struct, the way the spec describes it. */
const PY_READER = String.raw`
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
header = json.loads(raw[8:8 + n].decode('utf-8'))
data = raw[8 + n:]
fmt = {'F32': ('f', 4), 'F16': ('e', 2), 'BF16': ('H', 2), 'I32': ('i', 4), 'I8': ('b', 1), 'U8': ('B', 1), 'BOOL': ('?', 1)}
out = {'header_len': n, 'metadata': header.pop('__metadata__', {}), 'tensors': {}}
for name, info in header.items():
    begin, end = info['data_offsets']
    code, size = fmt[info['dtype']]
    vals = list(struct.unpack('<%d%s' % ((end - begin) // size, code), data[begin:end]))
    if info['dtype'] == 'BF16':
        vals = [struct.unpack('<f', struct.pack('<I', v << 16))[0] for v in vals]
    out['tensors'][name] = {'dtype': info['dtype'], 'shape': info['shape'], 'values': vals}
print(json.dumps(out))
`;

describe('independent cross-check', () => {
  it.skipIf(python === undefined)('a Python json+struct reader sees the same values', async () => {
    // Finite values only: Python's json emits NaN/Infinity, which JSON.parse rejects.
    const tensors: Record<string, HostTensor> = {
      f32: { dtype: 'f32', shape: [2, 2], data: Float32Array.of(1.5, -2.25, 3.4028234663852886e38, 1e-40) },
      f16: { dtype: 'f16', shape: [4], data: Uint16Array.from([1, -0.5, 65504, 6e-8], f32ToF16Bits) },
      bf16: { dtype: 'bf16', shape: [3], data: Uint16Array.from([1, -3.140625, 1e30], f32ToBf16Bits) },
      i32: { dtype: 'i32', shape: [3], data: Int32Array.of(-2147483648, 12345, 2147483647) },
      i8: { dtype: 'i8', shape: [2], data: Int8Array.of(-128, 127) },
      u8: { dtype: 'u8', shape: [2, 1], data: Uint8Array.of(0, 255) },
      bool: { dtype: 'bool', shape: [2], data: Uint8Array.of(1, 0) },
      scalar: { dtype: 'f32', shape: [], data: Float32Array.of(0.1) },
      none: { dtype: 'i32', shape: [0, 4], data: new Int32Array(0) },
    };
    const metadata = { format: 'pt', note: 'ünïcode ✓' };
    const path = join(dir, 'python-check.safetensors');
    await saveSafetensors(path, tensors, metadata);

    const r = spawnSync(python!, ['-c', PY_READER, path], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const seen = JSON.parse(r.stdout) as {
      header_len: number;
      metadata: Record<string, string>;
      tensors: Record<string, { dtype: string; shape: number[]; values: (number | boolean)[] }>;
    };
    expect(seen.header_len % 8).toBe(0);
    expect(seen.metadata).toEqual(metadata);
    expect(Object.keys(seen.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const s = seen.tensors[name]!;
      expect(s.dtype).toBe(t.dtype.toUpperCase());
      expect(s.shape).toEqual(t.shape);
      const expected = Array.from({ length: t.data.length }, (_, i) =>
        t.dtype === 'bool' ? t.data[i] === 1 : readElement(t.dtype, t.data, i),
      );
      expect(s.values).toEqual(expected);
    }
  });
});
