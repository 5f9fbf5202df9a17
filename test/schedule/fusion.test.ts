// Fusion is tested by kernel counts on canonical patterns. The counts are exact: a change in the
// scheduler that splits or merges kernels here must be deliberate.
import { describe, expect, it } from 'vitest';
import { getRuntime, manualSeed, noGrad, planSchedule, randn, tensor } from '../../src/index.js';
import type { Tensor } from '../../src/index.js';

function kernelsOf(...ts: Tensor[]) {
  return planSchedule(
    ts.map((t) => t.node),
    getRuntime('interp'),
  ).schedule.kernels;
}

describe('fusion', () => {
  it('a chain of 10 elementwise ops is 1 kernel', () => {
    const x = randn([32, 32]).realize();
    let y = x;
    for (const f of [(t: Tensor) => t.add(1), (t: Tensor) => t.mul(2), (t: Tensor) => t.exp(), (t: Tensor) => t.neg(), (t: Tensor) => t.sigmoid()]) y = f(y);
    y = y.sqrt().mul(x).sub(3).tanh().abs();
    const ks = kernelsOf(y);
    expect(ks).toHaveLength(1);
    expect(ks[0]!.kind).toBe('elementwise');
    expect(ks[0]!.ops.length).toBeGreaterThanOrEqual(10);
  });

  it('relu(a@b + bias) is 1 contraction kernel with the bias add and relu in its epilogue', () => {
    const a = randn([8, 16]).realize();
    const b = randn([16, 4]).realize();
    const bias = randn([4]).realize();
    const ks = kernelsOf(a.matmul(b).add(bias).relu());
    expect(ks).toHaveLength(1);
    expect(ks[0]!.kind).toBe('contraction');
    expect(ks[0]!.contraction).toMatchObject({ m: 8, n: 4, k: 16, batch: 1 });
    expect(ks[0]!.contraction!.epilogue).toEqual(expect.arrayContaining(['ADD', 'WHERE']));
  });

  it('batched matmul and attention-style products are contractions', () => {
    const q = randn([2, 3, 5, 8]).realize();
    const k = randn([2, 3, 5, 8]).realize();
    const ks = kernelsOf(q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(8)));
    expect(ks).toHaveLength(1);
    expect(ks[0]!.contraction).toMatchObject({ batch: 6, m: 5, n: 5, k: 8 });
  });

  it('a row softmax is 3 kernels and its backward adds 1 more (4 for forward+backward)', () => {
    manualSeed(0);
    const x = randn([4, 10], { requiresGrad: true });
    const s = x.softmax(-1);
    expect(kernelsOf(s)).toHaveLength(3);
    const w = randn([4, 10]).realize();
    s.mul(w).sum().backward();
    expect(kernelsOf(x.grad!)).toHaveLength(4);
  });

  it('one SGD training step of a 2-layer MLP (forward, backward, update) is 8 kernels', () => {
    manualSeed(0);
    const w1 = randn([8, 16], { requiresGrad: true });
    const b1 = randn([16], { requiresGrad: true });
    const w2 = randn([16, 4], { requiresGrad: true });
    const x = randn([5, 8]).realize();
    const y = randn([5, 4]).realize();
    const loss = x.matmul(w1).add(b1).relu().matmul(w2).sub(y).square().mean();
    loss.backward();
    const updated = noGrad(() => [w1, b1, w2].map((p) => p.sub(p.grad!.mul(0.1))));
    const ks = kernelsOf(loss, ...updated);
    // 5 GEMMs: the first layer's product, the second layer's (bias add + relu recomputed in its operand
    // packing), two weight gradients (SGD update fused in their epilogues) and one input gradient; then
    // the loss residual, the bias gradient (update fused), and the loss reduction.
    expect(ks).toHaveLength(8);
    expect(ks.filter((k) => k.kind === 'contraction')).toHaveLength(5);
  });

  it('respects the device buffer-binding limit by splitting kernels', () => {
    const xs = Array.from({ length: 10 }, () => randn([16]).realize());
    const sum = xs.reduce((p, x) => p.add(x));
    const unlimited = planSchedule([sum.node], getRuntime('interp')).schedule.kernels;
    expect(unlimited).toHaveLength(1);
    const rt = getRuntime('interp');
    const limited = planSchedule([sum.node], { ...rt, limits: { ...rt.limits, maxBuffersPerKernel: 4 } } as typeof rt).schedule.kernels;
    expect(limited.length).toBeGreaterThan(1);
    for (const k of limited) expect(k.inputs.length + 1).toBeLessThanOrEqual(4);
  });

  it('equal subgraphs are computed once (hash-consing)', () => {
    const x = tensor([1, 2, 3], { dtype: 'f32' });
    const a = x.exp().add(1);
    const b = x.exp().add(1);
    expect(a.node).toBe(b.node);
  });
});
