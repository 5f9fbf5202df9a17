// End-to-end gradient check of a whole GPT (attention, layer norm, GELU, weight tying, cross-entropy):
// autodiff gradients against central finite differences of the loss, evaluated by Tessera itself in
// f32 on the interpreter. Tolerance: |analytic - numeric| <= 2e-3 + 5% of |numeric| (f32 differences
// with eps = 1e-2 on a loss of magnitude ~3).
import { describe, expect, it } from 'vitest';
import { GPT } from '../../src/nn/gpt.js';
import { manualSeed, noGrad } from '../../src/tensor/context.js';
import { realize, tensor } from '../../src/tensor/tensor.js';

describe('GPT gradients', () => {
  it('match finite differences on sampled parameter entries', () => {
    manualSeed(3);
    const model = new GPT({ vocabSize: 11, blockSize: 6, nLayer: 1, nHead: 2, nEmbd: 8 });
    const x = tensor([[1, 5, 2, 9, 3, 0], [4, 4, 7, 10, 6, 2]], { dtype: 'i32' });
    const y = tensor([[5, 2, 9, 3, 0, 1], [4, 7, 10, 6, 2, 8]], { dtype: 'i32' });
    const { loss } = model.forward(x, y);
    loss!.backward();
    // Gradients are lazy: compute them all before any parameter is perturbed below.
    realize(...model.parameters().map((p) => p.grad!));
    const lossAt = () => noGrad(() => model.forward(x, y).loss!.itemSync());
    const eps = 1e-2;
    let checked = 0;
    for (const [name, p] of model.namedParameters()) {
      const g = p.grad!.dataSync();
      const values = Float32Array.from(p.dataSync());
      for (const i of [0, Math.floor(values.length / 2), values.length - 1]) {
        const orig = values[i]!;
        const set = (v: number) => {
          values[i] = v;
          noGrad(() => p.assign(tensor(values, { shape: p.shape, dtype: 'f32' })));
          p.realize();
        };
        set(orig + eps);
        const up = lossAt();
        set(orig - eps);
        const down = lossAt();
        set(orig);
        const numeric = (up - down) / (2 * eps);
        expect(Math.abs(g[i]! - numeric), `${name}[${i}]: autodiff ${g[i]} vs numeric ${numeric}`).toBeLessThanOrEqual(2e-3 + 0.05 * Math.abs(numeric));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});
