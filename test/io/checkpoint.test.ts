import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError, manualSeed, tensor, ValueError, type Tensor } from '../../src/index.js';
import { decodeSafetensors } from '../../src/io/safetensors.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/io/checkpoint.js';
import { GPT, LayerNorm, Linear, Module, ModuleList } from '../../src/nn/index.js';
import { AdamW } from '../../src/optim/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-ckpt-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

class Net extends Module {
  readonly layers: ModuleList<Linear>;
  readonly norm: LayerNorm;
  constructor() {
    super();
    this.layers = this.registerModule(
      'layers',
      new ModuleList([new Linear(3, 4), new Linear(4, 2, { bias: false })]),
    );
    this.norm = this.registerModule('norm', new LayerNorm(2));
    this.registerBuffer('half_table', tensor([0.5, -1.25, 65504, 1e-7], { dtype: 'f16' }));
    this.registerBuffer('counts', tensor([1, 2, 3], { dtype: 'i32' }));
  }
}

/** The error loading `path` into a fresh Net throws (fails the test if it loads). */
async function loadError(path: string): Promise<Error> {
  try {
    await loadCheckpoint(path, new Net());
  } catch (e) {
    return e as Error;
  }
  throw new Error(`loading ${path} should have failed`);
}

function values(sd: Record<string, Tensor>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(sd).map(([k, t]) => [k, Array.from(t.dataSync())]));
}

describe('checkpoint', () => {
  it('round-trips a module state dict through a real safetensors file', async () => {
    manualSeed(1);
    const a = new Net();
    const path = join(dir, 'net.safetensors');
    await saveCheckpoint(path, a, { step: '12', note: 'test' });

    // The file is plain safetensors: u64 header length, JSON header keyed by state-dict names.
    const bytes = new Uint8Array(await readFile(path));
    const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
    expect(header.__metadata__).toEqual({ step: '12', note: 'test' });
    expect(header['layers.0.weight']).toMatchObject({ dtype: 'F32', shape: [4, 3] });
    expect(header['half_table']).toMatchObject({ dtype: 'F16', shape: [4] });
    expect(header['counts']).toMatchObject({ dtype: 'I32', shape: [3] });
    expect(
      Object.keys(header)
        .filter((k) => k !== '__metadata__')
        .sort(),
    ).toEqual(Object.keys(a.stateDict()).sort());
    const decoded = decodeSafetensors(bytes, path);
    const w = decoded.tensors['layers.0.weight']!;
    expect(Array.from(w.data)).toEqual(Array.from(a.layers.at(0).weight.dataSync()));

    manualSeed(2);
    const b = new Net();
    const params = b.parameters();
    const { metadata } = await loadCheckpoint(path, b);
    expect(metadata.step).toBe('12');
    expect(values(b.stateDict())).toEqual(values(a.stateDict())); // bit-exact, incl. f16
    expect(b.parameters().every((p, i) => p === params[i])).toBe(true);
  });

  it('loads without a module: every tensor by name', async () => {
    const path = join(dir, 'plain.safetensors');
    await saveCheckpoint(path, { x: tensor([[1, 2]], { dtype: 'f32' }), 'y.z': tensor([true, false]) });
    const { tensors } = await loadCheckpoint(path);
    expect(tensors.x!.shape).toEqual([1, 2]);
    expect(Array.from(tensors['y.z']!.dataSync())).toEqual([1, 0]);
    expect(tensors['y.z']!.dtype).toBe('bool');
  });

  it('a GPT and its optimizer state resume exactly', async () => {
    const cfg = { vocabSize: 8, blockSize: 4, nLayer: 1, nHead: 2, nEmbd: 8 };
    const x = tensor([[1, 2, 3, 4]], { dtype: 'i32' });
    const y = tensor([[2, 3, 4, 5]], { dtype: 'i32' });
    const train = (m: GPT, o: AdamW, n: number) => {
      for (let i = 0; i < n; i++) {
        o.zeroGrad();
        const { loss } = m.forward(x, y);
        loss!.backward();
        o.step({ realize: [loss!] });
      }
    };
    manualSeed(3);
    const m1 = new GPT(cfg);
    const o1 = new AdamW(m1.parameters(), { lr: 0.01 });
    train(m1, o1, 2);
    const path = join(dir, 'gpt.safetensors');
    const optState = Object.fromEntries(Object.entries(o1.stateDict()).map(([k, t]) => [`optim.${k}`, t]));
    await saveCheckpoint(path, { ...m1.stateDict(), ...optState });
    train(m1, o1, 2);

    manualSeed(4);
    const m2 = new GPT(cfg);
    const o2 = new AdamW(m2.parameters(), { lr: 0.01 });
    const { tensors } = await loadCheckpoint(path);
    const modelPart = Object.fromEntries(Object.entries(tensors).filter(([k]) => !k.startsWith('optim.')));
    const optPart = Object.fromEntries(
      Object.entries(tensors)
        .filter(([k]) => k.startsWith('optim.'))
        .map(([k, t]) => [k.slice(6), t]),
    );
    m2.loadStateDict(modelPart);
    o2.loadStateDict(optPart);
    train(m2, o2, 2);
    expect(values(m2.stateDict())).toEqual(values(m1.stateDict()));
  });

  it('reports missing/unexpected names, shapes and dtypes as FormatError naming file and key', async () => {
    const path = join(dir, 'other.safetensors');
    const net = new Net();
    const sd = { ...net.stateDict() };
    delete sd['norm.bias'];
    await saveCheckpoint(path, { ...sd, stray: tensor([1], { dtype: 'f32' }) });
    const err = await loadError(path);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/missing tensors: norm\.bias/);
    expect(err.message).toMatch(/unexpected tensors: stray/);

    const shapePath = join(dir, 'shape.safetensors');
    await saveCheckpoint(shapePath, {
      ...net.stateDict(),
      'layers.1.weight': tensor(new Float32Array(8), { shape: [4, 2] }),
    });
    const e2 = await loadError(shapePath);
    expect(e2).toBeInstanceOf(FormatError);
    expect(e2.message).toMatch(
      new RegExp(
        `${shapePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*'layers\\.1\\.weight'.*\\[4,2\\].*\\[2,4\\]`,
      ),
    );

    const dtypePath = join(dir, 'dtype.safetensors');
    await saveCheckpoint(dtypePath, { ...net.stateDict(), counts: tensor([1, 2, 3], { dtype: 'f32' }) });
    const e3 = await loadError(dtypePath);
    expect(e3).toBeInstanceOf(FormatError);
    expect(e3.message).toMatch(/'counts' has dtype f32.*i32/);

    // Non-strict loading skips what does not match by name.
    const partial = new Net();
    await loadCheckpoint(path, partial, { strict: false });
    expect(Array.from(partial.layers.at(0).weight.dataSync())).toEqual(
      Array.from(net.layers.at(0).weight.dataSync()),
    );
  });

  it('rejects corrupt files and reserved names', async () => {
    const path = join(dir, 'corrupt.safetensors');
    await writeFile(path, new Uint8Array([1, 2, 3]));
    await expect(loadCheckpoint(path, new Net())).rejects.toThrow(FormatError);
    await expect(saveCheckpoint(join(dir, 'x.safetensors'), { __metadata__: tensor([1]) })).rejects.toThrow(
      ValueError,
    );
  });
});
