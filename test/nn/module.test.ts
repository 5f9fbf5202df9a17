import { describe, expect, it } from 'vitest';
import {
  DTypeError,
  ShapeError,
  ValueError,
  manualSeed,
  tensor,
  zeros,
  type Tensor,
} from '../../src/index.js';
import {
  Dropout,
  Embedding,
  GELU,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  RMSNorm,
} from '../../src/nn/index.js';
import { maxAbsDiff } from './reference.js';

/** A small two-level model: names must come out as PyTorch would print them. */
class Block extends Module {
  readonly fc: Linear;
  readonly norm: LayerNorm;
  constructor(d: number) {
    super();
    this.fc = this.registerModule('fc', new Linear(d, d));
    this.norm = this.registerModule('norm', new LayerNorm(d));
  }
  forward(x: Tensor): Tensor {
    return this.norm.forward(this.fc.forward(x));
  }
}

class Net extends Module {
  readonly emb: Embedding;
  readonly h: ModuleList<Block>;
  readonly head: Linear;
  readonly scale: Tensor;
  readonly drop: Dropout;
  constructor() {
    super();
    this.emb = this.registerModule('emb', new Embedding(5, 4));
    this.h = this.registerModule('h', new ModuleList([new Block(4), new Block(4)]));
    this.head = this.registerModule('head', new Linear(4, 3, { bias: false }));
    this.scale = this.registerParameter('scale', tensor([1], { dtype: 'f32' }));
    this.registerBuffer('steps', tensor([0], { dtype: 'i32' }));
    this.drop = this.registerModule('drop', new Dropout(0.1));
  }
}

describe('Module', () => {
  it('namedParameters gives dotted names in registration order', () => {
    const net = new Net();
    expect(net.namedParameters().map(([n]) => n)).toEqual([
      'scale',
      'emb.weight',
      'h.0.fc.weight',
      'h.0.fc.bias',
      'h.0.norm.weight',
      'h.0.norm.bias',
      'h.1.fc.weight',
      'h.1.fc.bias',
      'h.1.norm.weight',
      'h.1.norm.bias',
      'head.weight',
    ]);
    expect(net.parameters().every((p) => p.requiresGrad && p.isRealized)).toBe(true);
    expect(net.numParameters()).toBe(1 + 20 + 2 * (16 + 4 + 4 + 4) + 12);
    expect(Object.keys(net.stateDict())).toContain('steps');
    expect(net.namedBuffers().map(([n]) => n)).toEqual(['steps']);
  });

  it('train()/eval() propagate to every submodule', () => {
    const net = new Net();
    expect(net.training).toBe(true);
    net.eval();
    expect(net.namedModules().every(([, m]) => !m.training)).toBe(true);
    net.train();
    expect(net.h.at(1).norm.training).toBe(true);
  });

  it('a tensor registered twice (tied weights) is one parameter', () => {
    class Tied extends Module {
      constructor() {
        super();
        const e = this.registerModule('emb', new Embedding(3, 2));
        const head = this.registerModule('head', new Module());
        head.registerParameter('weight', e.weight);
      }
    }
    const m = new Tied();
    expect(m.parameters().length).toBe(1);
    expect(m.numParameters()).toBe(6);
    expect(Object.keys(m.stateDict())).toEqual(['emb.weight', 'head.weight']);
  });

  it('rejects invalid or duplicate names', () => {
    const m = new Module();
    m.registerParameter('w', zeros([2]));
    expect(() => m.registerParameter('w', zeros([2]))).toThrow(ValueError);
    expect(() => m.registerModule('a.b', new Module())).toThrow(/letters, digits/);
    expect(() => m.registerParameter('ints', tensor([1, 2], { dtype: 'i32' }))).toThrow(DTypeError);
  });

  it('loadStateDict copies values in place, keeping identities', () => {
    manualSeed(1);
    const a = new Net();
    manualSeed(2);
    const b = new Net();
    const before = b.parameters();
    b.loadStateDict(a.stateDict());
    expect(b.parameters()).toEqual(before); // same objects
    for (const [k, t] of Object.entries(a.stateDict())) {
      expect(maxAbsDiff(t.dataSync(), b.stateDict()[k]!.dataSync())).toBe(0);
      expect(t.isRealized && b.stateDict()[k]!.isRealized).toBe(true);
    }
    // The copy is independent: changing a does not change b.
    a.head.weight.assign(zeros([3, 4])).realize();
    expect(Array.from(b.head.weight.dataSync()).some((v) => v !== 0)).toBe(true);
    // b's parameters still train (they are leaves of their own).
    const loss = b.head.forward(tensor([[1, 2, 3, 4]], { dtype: 'f32' })).sum();
    loss.backward();
    expect(b.head.weight.grad).not.toBeNull();
  });

  it('strict loadStateDict reports missing and unexpected keys in one error', () => {
    const net = new Net();
    const sd = { ...net.stateDict() };
    delete sd['h.1.fc.bias'];
    delete sd['scale'];
    sd['extra.weight'] = zeros([1]);
    let msg = '';
    try {
      net.loadStateDict(sd);
    } catch (e) {
      expect(e).toBeInstanceOf(ValueError);
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/missing keys: .*scale/);
    expect(msg).toMatch(/h\.1\.fc\.bias/);
    expect(msg).toMatch(/unexpected keys: extra\.weight/);
    const res = net.loadStateDict(sd, { strict: false });
    expect(res.missingKeys.sort()).toEqual(['h.1.fc.bias', 'scale']);
    expect(res.unexpectedKeys).toEqual(['extra.weight']);
  });

  it('loadStateDict checks shapes and dtypes, naming the key', () => {
    const net = new Net();
    const sd = { ...net.stateDict(), 'head.weight': zeros([4, 3]) };
    expect(() => net.loadStateDict(sd)).toThrow(ShapeError);
    expect(() => net.loadStateDict(sd)).toThrow(/'head\.weight' has shape \[4,3\].*\[3,4\]/);
    const sd2 = { ...net.stateDict(), steps: zeros([1]) };
    expect(() => net.loadStateDict(sd2)).toThrow(DTypeError);
  });
});

describe('layers', () => {
  it('Linear uses PyTorch init bounds U(-1/sqrt(in), 1/sqrt(in)) and shapes', () => {
    manualSeed(3);
    const l = new Linear(16, 8);
    expect(l.weight.shape).toEqual([8, 16]);
    expect(l.bias!.shape).toEqual([8]);
    const w = Array.from(l.weight.dataSync());
    const bound = 1 / 4;
    expect(Math.max(...w)).toBeLessThanOrEqual(bound);
    expect(Math.min(...w)).toBeGreaterThanOrEqual(-bound);
    expect(Math.max(...w) - Math.min(...w)).toBeGreaterThan(bound); // spread over the interval
    expect(l.forward(zeros([2, 16])).shape).toEqual([2, 8]);
    expect(new Linear(3, 2, { bias: false }).namedParameters().map(([n]) => n)).toEqual(['weight']);
  });

  it('Embedding defaults to N(0, 1) and accepts a std', () => {
    manualSeed(4);
    const e = new Embedding(50, 40);
    const v = Array.from(e.weight.dataSync());
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    // 2000 samples: the sample sd is within ~0.05 of 1 with overwhelming probability.
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.abs(sd - 1)).toBeLessThan(0.08);
    const small = new Embedding(50, 40, { std: 0.02 });
    const sv = Array.from(small.weight.dataSync());
    expect(Math.max(...sv.map(Math.abs))).toBeLessThan(0.02 * 6);
  });

  it('LayerNorm, RMSNorm, GELU and Dropout modules', () => {
    const x = tensor([[1, 2, 3, 4]], { dtype: 'f32' });
    const ln = new LayerNorm(4);
    const y = Array.from(ln.forward(x).dataSync());
    expect(y.reduce((s, v) => s + v, 0)).toBeCloseTo(0, 5);
    expect(new LayerNorm(4, { elementwiseAffine: false }).numParameters()).toBe(0);
    expect(new LayerNorm(4, { bias: false }).namedParameters().map(([n]) => n)).toEqual(['weight']);
    const rms = new RMSNorm(4);
    const r = Array.from(rms.forward(x).dataSync());
    expect(r.reduce((s, v) => s + v * v, 0) / 4).toBeCloseTo(1, 4);
    const g = new GELU('tanh').forward(tensor([1], { dtype: 'f32' })).itemSync();
    expect(g).toBeCloseTo(0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (1 + 0.044715))), 5);
    const d = new Dropout(0.5).eval();
    expect(d.forward(x)).toBe(x);
    expect(() => new Dropout(1)).toThrow(ValueError);
    expect(() => new Linear(0, 2)).toThrow(ValueError);
  });
});
