// In-place assign: a value is written into the tensor's own buffer at the next realize; kernels that
// read the old value in the same schedule see it, transposed self-reads are not corrupted, disposing a
// pending assignment frees its memory, and a leaf updated under noGrad stays a leaf.
import { it, expect } from 'vitest';
import { tensor, realize, memory, noGrad } from '../../src/index.js';
it('assign is in place and safe against read-after-write hazards, on interp and cpu', () => {
  for (const device of ['interp', 'cpu']) {
    const p = tensor([1, 2, 3], { dtype: 'f32', device });
    const q = p.mul(2); // lazy, reads p's old value
    p.assign(p.add(10));
    realize(p, q); // q must see the old value since it's realized in the same schedule before the write
    expect(Array.from(p.dataSync())).toEqual([11, 12, 13]);
    expect(Array.from(q.dataSync())).toEqual([2, 4, 6]);
    // transposed read of the target in the same kernel: must not corrupt
    const m = tensor([[1, 2], [3, 4]], { dtype: 'f32', device });
    m.assign(m.T.add(0));
    expect(Array.from(m.dataSync())).toEqual([1, 3, 2, 4]);
    // assign a realized tensor copies
    const r = tensor([7, 8, 9], { dtype: 'f32', device });
    p.assign(r);
    r.dispose();
    expect(Array.from(p.dataSync())).toEqual([7, 8, 9]);
    // dispose a tensor with a pending assign frees memory
    const before = memory.stats()[device]!.current;
    const z = tensor([1, 2], { dtype: 'f32', device });
    z.assign(z.mul(3));
    z.dispose();
    expect(memory.stats()[device]!.current).toBe(before);
    // requiresGrad leaf assign under noGrad keeps being a leaf
    const w = tensor([1, 2], { dtype: 'f32', device, requiresGrad: true });
    noGrad(() => w.assign(w.mul(2)));
    w.mul(w).sum().backward();
    expect(Array.from(w.grad!.dataSync())).toEqual([4, 8]);
  }
});
