import { describe, expect, it } from 'vitest';
import { DTypeError, getDefaultDevice, manualSeed, memory, ShapeError, tensor, ValueError } from '../../src/index.js';
import { GPT, type GPTConfig } from '../../src/nn/index.js';
import { AdamW, clipGradNorm } from '../../src/optim/index.js';
import { gptRef, maxAbsDiff } from './reference.js';

const tiny: GPTConfig = { vocabSize: 16, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 };

function ids(rows: number[][]) {
  return tensor(rows, { dtype: 'i32' });
}

describe('GPT', () => {
  it('forward shapes, loss near ln(V) at init, GPT-2 parameter names', () => {
    manualSeed(0);
    const model = new GPT({ ...tiny, nLayer: 2 });
    const x = ids([
      [1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10],
    ]);
    const { logits, loss } = model.forward(
      x,
      ids([
        [2, 3, 4, 5, 6],
        [7, 8, 9, 10, 11],
      ]),
    );
    expect(logits.shape).toEqual([2, 5, 16]);
    expect(loss!.shape).toEqual([]);
    // Small init: near-uniform predictions, loss ≈ ln 16 = 2.77.
    expect(Math.abs(loss!.itemSync() - Math.log(16))).toBeLessThan(0.1);
    expect(model.forward(x).loss).toBeUndefined();
    const names = model.namedParameters().map(([n]) => n);
    expect(names.slice(0, 6)).toEqual([
      'wte.weight',
      'wpe.weight',
      'h.0.ln_1.weight',
      'h.0.ln_1.bias',
      'h.0.attn.c_attn.weight',
      'h.0.attn.c_attn.bias',
    ]);
    expect(names).toContain('h.1.mlp.c_proj.weight');
    expect(names.at(-1)).toBe('ln_f.bias');
    // 12·C² + 13·C per block, V·C + T·C embeddings, 2·C final norm; no separate head (tied).
    const C = 16;
    expect(model.numParameters()).toBe(2 * (12 * C * C + 13 * C) + 16 * C + 8 * C + 2 * C);
  });

  it('forward and gradients match an independent float64 reference implementation', () => {
    manualSeed(11);
    const cfg = { vocabSize: 11, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8 };
    const model = new GPT(cfg);
    // Perturb LayerNorm parameters and biases away from 1/0 so every parameter matters.
    let k = 0;
    for (const [name, p] of model.namedParameters()) {
      if (!/ln_|bias/.test(name)) continue;
      const vals = Array.from(p.dataSync(), (v, i) => v + 0.1 * Math.sin(++k + i));
      p.assign(tensor(vals, { shape: p.shape, dtype: 'f32' })).realize();
    }
    const idxRows = [
      [1, 5, 2, 9, 3, 7],
      [10, 0, 4, 4, 8, 6],
    ];
    const tgtRows = [
      [5, 2, 9, 3, 7, 1],
      [0, 4, 4, 8, 6, 10],
    ];
    const { logits, loss } = model.forward(ids(idxRows), ids(tgtRows));
    loss!.backward();
    const P: Record<string, number[]> = Object.fromEntries(
      model.namedParameters().map(([n, p]) => [n, Array.from(p.dataSync())]),
    );
    const ref = gptRef(P, cfg, idxRows, tgtRows);
    // f32 vs float64 through 2 blocks: logits within 2e-5, loss within 1e-5.
    expect(maxAbsDiff(logits.dataSync(), ref.logits.flat(2))).toBeLessThan(2e-5);
    expect(Math.abs(loss!.itemSync() - ref.loss)).toBeLessThan(1e-5);
    // Gradients: central differences of the float64 reference (h = 1e-5) for a few entries of every
    // parameter; agreement within 1e-4 absolute (gradients are O(0.01..1)).
    for (const [name, p] of model.namedParameters()) {
      const g = p.grad!.dataSync();
      for (const i of [0, Math.floor(p.numel / 2), p.numel - 1]) {
        const h = 1e-5;
        const plus = { ...P, [name]: P[name]!.map((v, j) => (j === i ? v + h : v)) };
        const minus = { ...P, [name]: P[name]!.map((v, j) => (j === i ? v - h : v)) };
        const fd =
          (gptRef(plus, cfg, idxRows, tgtRows).loss - gptRef(minus, cfg, idxRows, tgtRows).loss) / (2 * h);
        expect(Math.abs(g[i]! - fd), `${name}[${i}]`).toBeLessThan(1e-4);
      }
    }
  });

  it('ties the LM head to the token embedding (one shared parameter)', () => {
    manualSeed(1);
    const V = 20; // differs from nEmbd, so [V, C] identifies embedding-shaped parameters
    const model = new GPT({ ...tiny, vocabSize: V });
    const C = tiny.nEmbd;
    const vocabShaped = model.parameters().filter((p) => p.shape.join() === [V, C].join());
    expect(vocabShaped.length).toBe(1);
    expect(vocabShaped[0] === model.wte.weight).toBe(true);
    expect(Object.keys(model.stateDict()).some((k) => k.includes('head'))).toBe(false);
    // Rows of tokens absent from the input get gradient only through the head: nonzero proves the tie.
    const { loss } = model.forward(ids([[1, 2, 3]]), ids([[2, 3, 4]]));
    loss!.backward();
    const g = model.wte.weight.grad!.dataSync();
    const row19 = Array.from(g.slice(19 * C, 20 * C));
    expect(row19.some((v) => Math.abs(v) > 1e-6)).toBe(true);
  });

  it('is causal: changing a later token leaves earlier logits unchanged', () => {
    manualSeed(2);
    const model = new GPT({ ...tiny, nHead: 4 });
    const a = Array.from(model.forward(ids([[3, 1, 4, 1, 5, 9]])).logits.dataSync());
    const b = Array.from(model.forward(ids([[3, 1, 4, 7, 5, 2]])).logits.dataSync());
    const V = tiny.vocabSize;
    // Positions 0..2 see identical prefixes: equal to f32 rounding (tolerance 1e-6).
    for (let i = 0; i < 3 * V; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-6);
    // Position 3 sees the changed token.
    const diff = Math.max(...a.slice(3 * V, 4 * V).map((v, i) => Math.abs(v - b[3 * V + i]!)));
    expect(diff).toBeGreaterThan(1e-4);
  });

  it('validates inputs', () => {
    const model = new GPT(tiny);
    expect(() => model.forward(tensor([[1, 2]], { dtype: 'f32' }))).toThrow(DTypeError);
    expect(() => model.forward(ids([[1, 2, 3, 4, 5, 6, 7, 8, 9]]))).toThrow(/exceeds blockSize 8/);
    expect(() => model.forward(ids([[1, 2]]), ids([[1, 2, 3]]))).toThrow(ShapeError);
    expect(() => new GPT({ ...tiny, nHead: 3 })).toThrow(ValueError);
  });

  it('overfits one fixed batch: loss drops by more than 50% within 30 AdamW steps', () => {
    manualSeed(3);
    const model = new GPT(tiny);
    const seq = [
      [1, 5, 2, 9, 3, 7, 4, 11, 6],
      [8, 3, 12, 1, 15, 2, 10, 5, 0],
      [4, 4, 9, 9, 13, 13, 2, 2, 7],
      [14, 6, 0, 11, 3, 8, 1, 12, 5],
    ];
    const x = ids(seq.map((r) => r.slice(0, 8)));
    const y = ids(seq.map((r) => r.slice(1)));
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const losses: number[] = [];
    for (let step = 0; step < 30; step++) {
      opt.zeroGrad();
      const { loss } = model.forward(x, y);
      loss!.backward();
      opt.step({ realize: [loss!] }); // forward + backward + update: one schedule
      losses.push(loss!.itemSync());
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]!);
  });

  it('a training step (with clipping) returns device memory to its baseline', () => {
    manualSeed(6);
    const model = new GPT(tiny);
    const x = ids([[1, 2, 3, 4]]);
    const y = ids([[2, 3, 4, 5]]);
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const live: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { logits, loss } = model.forward(x, y);
      loss!.backward();
      const norm = clipGradNorm(model.parameters(), 1);
      opt.step({ realize: [loss!, norm] });
      for (const t of [logits, loss!, norm]) t.dispose();
      live.push(memory.stats()[getDefaultDevice()]!.current);
    }
    // Step 1 allocates the optimizer state; afterwards every step frees what it allocates.
    expect(live[2]).toBe(live[1]);
  });

  it('trains with dropout in training mode and is deterministic in eval mode', () => {
    manualSeed(4);
    const model = new GPT({ ...tiny, dropout: 0.2 });
    const x = ids([[1, 2, 3, 4]]);
    model.eval();
    const e1 = Array.from(model.forward(x).logits.dataSync());
    const e2 = Array.from(model.forward(x).logits.dataSync());
    expect(e1).toEqual(e2);
    model.train();
    const t1 = Array.from(model.forward(x).logits.dataSync());
    expect(t1).not.toEqual(e1);
  });

  it('generate: shape, determinism by seed, greedy decoding, cropping to blockSize', () => {
    manualSeed(5);
    const model = new GPT(tiny);
    const prompt = ids([
      [1, 2],
      [3, 4],
    ]);
    const out = model.generate(prompt, 9, { seed: 7, topK: 5 });
    expect(out.shape).toEqual([2, 11]); // 11 > blockSize 8: the context is cropped
    expect(out.dtype).toBe('i32');
    const v = Array.from(out.dataSync());
    expect(v.slice(0, 2)).toEqual([1, 2]);
    expect(v.every((t) => t >= 0 && t < 16)).toBe(true);
    expect(Array.from(model.generate(prompt, 9, { seed: 7, topK: 5 }).dataSync())).toEqual(v);
    const greedy = Array.from(model.generate(ids([[1, 2]]), 1, { temperature: 0 }).dataSync());
    const logits = model
      .forward(ids([[1, 2]]))
      .logits.dataSync()
      .slice(16, 32);
    expect(greedy[2]).toBe(Array.from(logits).indexOf(Math.max(...logits)));
    expect(model.training).toBe(true); // mode restored
    expect(() => model.generate(prompt, -1)).toThrow(ValueError);
  });
});
