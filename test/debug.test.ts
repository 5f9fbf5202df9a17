// TESSERA_DEBUG=2 (here: setDebug(2)) prints each kernel with its fused ops, shapes, inputs and output,
// and the memory plan; level 3 adds the kernel IR.
import { afterEach, describe, expect, it } from 'vitest';
import { randn, setDebug, tensor } from '../src/index.js';

afterEach(() => setDebug(0));

describe('debug output', () => {
  it('level 2 prints kernels and the memory plan', () => {
    const lines: string[] = [];
    setDebug(2, (l) => lines.push(l));
    const a = randn([4, 8]).realize();
    const b = randn([8, 3]).realize();
    a.matmul(b).relu().softmax(-1).realize();
    const text = lines.join('\n');
    expect(text).toMatch(/realize: 4 kernels/);
    // The matmul result feeds three softmax kernels, so it is stored (f32[4,3,1], before the reshape).
    expect(text).toMatch(/k0 contraction t\d+:f32\[4,3,1\] \(arena@0\) <- buf#\d+:f32\[4,8\], buf#\d+:f32\[8,3\] ops=\[MUL,SUM\] gemm\(b=1 m=4 n=3 k=8/);
    expect(text).toMatch(/k3 elementwise t\d+:f32\[4,3\] \(output\)/);
    expect(text).toMatch(/memory plan: planned peak \d+ B vs naive \d+ B/);
    expect(text).not.toMatch(/^kernel /m);
  });

  it('level 3 adds readable kernel IR', () => {
    const lines: string[] = [];
    setDebug(3, (l) => lines.push(l));
    tensor([[1, 2], [3, 4]], { dtype: 'f32' }).T.exp().realize();
    const text = lines.join('\n');
    expect(text).toMatch(/kernel E_2_2\(out out: f32\[4\], in0: f32\[4\]\)/);
    expect(text).toMatch(/in0\[g1\*2\+g0\]/);
  });
});
