// Activation checkpointing (`checkpoint(fn)`): values and gradients are those of calling `fn` directly
// (f32, |Δ| <= 1e-5 + 1e-5·|x|), for parameters and for inputs, with a random op (dropout) inside, with
// several outputs, for consecutive and nested segments; the gradients also match float64 central
// differences of an independent plain-JS MLP. Under noGrad it is a plain call. Small and
// device-agnostic (runs in the interp, cpu and webgpu projects).
import { describe, expect, it } from 'vitest';
import { checkpoint, lastRealizeStats, manualSeed, noGrad, realize, tensor, ValueError, type Tensor } from '../../src/index.js';
import * as F from '../../src/nn/functional.js';
import { Block } from '../../src/nn/gpt.js';
import { expectClose, numericGrad } from '../helpers/check.js';
import { randArray } from '../helpers/ref.js';

const TOL = { atol: 1e-5, rtol: 1e-5 };

/** f32 leaf tensors (requiresGrad) from fixed pseudo-random data. */
function leaves(shapes: number[][], seed: number, scale = 1): Tensor[] {
  return shapes.map((s, k) => {
    const n = s.reduce((a, b) => a * b, 1);
    return tensor(Float32Array.from(randArray(n, seed + 17 * k), (v) => v * scale), { shape: s, dtype: 'f32', requiresGrad: true });
  });
}

/** Run `build(leaves)` → scalar loss, backward, and return the loss value and every leaf's gradient. */
function lossAndGrads(ts: Tensor[], build: (ts: Tensor[]) => Tensor): { loss: number; grads: Float32Array[] } {
  for (const t of ts) t.grad = null;
  const loss = build(ts);
  loss.backward();
  realize(loss, ...ts.map((t) => t.grad!));
  return { loss: loss.itemSync(), grads: ts.map((t) => Float32Array.from(t.grad!.dataSync())) };
}

function expectSameGrads(a: { loss: number; grads: Float32Array[] }, b: { loss: number; grads: Float32Array[] }, what: string): void {
  expectClose([b.loss], [a.loss], TOL, `${what}: loss`);
  a.grads.forEach((g, i) => expectClose(b.grads[i]!, g, TOL, `${what}: grad ${i}`));
}

// A 2-layer MLP: tanh(x W1ᵀ + b1) W2ᵀ + b2, reduced to a scalar with fixed weights.
const B = 3;
const IN = 5;
const HID = 7;
const OUT = 4;
const shapes = [
  [B, IN],
  [HID, IN],
  [HID],
  [OUT, HID],
  [OUT],
];
const W_OUT = randArray(B * OUT, 99);

function mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor): Tensor {
  return F.linear(F.linear(x, w1, b1).tanh(), w2, b2);
}
const weighted = (y: Tensor) => y.mul(tensor(Float32Array.from(W_OUT), { shape: [B, OUT], dtype: 'f32' })).sum();

/** The same MLP loss in float64 plain JavaScript (independent oracle). */
function mlpRef([x, w1, b1, w2, b2]: Float64Array[]): number {
  let s = 0;
  for (let i = 0; i < B; i++) {
    const h = new Float64Array(HID);
    for (let j = 0; j < HID; j++) {
      let a = b1![j]!;
      for (let k = 0; k < IN; k++) a += x![i * IN + k]! * w1![j * IN + k]!;
      h[j] = Math.tanh(a);
    }
    for (let o = 0; o < OUT; o++) {
      let a = b2![o]!;
      for (let j = 0; j < HID; j++) a += h[j]! * w2![o * HID + j]!;
      s += a * W_OUT[i * OUT + o]!;
    }
  }
  return s;
}

describe('checkpoint', () => {
  it('MLP: same loss and gradients (parameters and input) as without, and as float64 finite differences', () => {
    const ts = leaves(shapes, 1);
    const plain = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => weighted(mlp(x!, w1!, b1!, w2!, b2!)));
    const ck = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => weighted(checkpoint((h: Tensor) => mlp(h, w1!, b1!, w2!, b2!))(x!)));
    expectSameGrads(plain, ck, 'checkpointed MLP');
    // Each layer its own segment; parameters passed as segment inputs too.
    const perLayer = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => {
      const h = checkpoint((a: Tensor, w: Tensor, b: Tensor) => F.linear(a, w, b).tanh())(x!, w1!, b1!);
      return weighted(checkpoint((a: Tensor) => F.linear(a, w2!, b2!))(h));
    });
    expectSameGrads(plain, perLayer, 'per-layer segments');
    // Independent oracle: float64 central differences of a plain-JS MLP on the same f32 values.
    const xs = ts.map((t) => Float64Array.from(t.dataSync()));
    expectClose([ck.loss], [mlpRef(xs)], { atol: 1e-4, rtol: 1e-5 }, 'loss vs float64');
    const fd = numericGrad(mlpRef, xs, 1e-4);
    fd.forEach((g, i) => expectClose(ck.grads[i]!, g, { atol: 2e-4, rtol: 1e-3 }, `grad ${i} vs finite differences`));
  });

  it('the segment is really recomputed: the backward program runs more kernels than without', () => {
    // If checkpoint were a plain call, the programs would be identical. With it, the segment's forward
    // appears a second time (recomputation) in the one schedule of loss + gradients.
    const ts = leaves(shapes, 2);
    const count = (build: (ts: Tensor[]) => Tensor): number => {
      for (const t of ts) t.grad = null;
      const loss = build(ts);
      loss.backward();
      realize(loss, ...ts.map((t) => t.grad!));
      return lastRealizeStats().kernels;
    };
    const plain = count(([x, w1, b1, w2, b2]) => weighted(mlp(x!.mul(2), w1!, b1!, w2!, b2!)));
    const ck = count(([x, w1, b1, w2, b2]) => weighted(checkpoint((h: Tensor) => mlp(h, w1!, b1!, w2!, b2!))(x!.mul(2))));
    expect(ck).toBeGreaterThan(plain);
  });

  it('lazy (non-realized) segment inputs: gradients flow back through the expression that made them', () => {
    const ts = leaves(shapes, 3);
    const plain = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => weighted(mlp(x!.mul(x!).add(1), w1!, b1!, w2!, b2!)));
    const ck = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => weighted(checkpoint((h: Tensor) => mlp(h, w1!, b1!, w2!, b2!))(x!.mul(x!).add(1))));
    expectSameGrads(plain, ck, 'lazy input');
  });

  it('nested segments give the same gradients', () => {
    const ts = leaves(shapes, 4);
    const plain = lossAndGrads(ts, ([x, w1, b1, w2, b2]) => weighted(mlp(x!, w1!, b1!, w2!, b2!)));
    const nested = lossAndGrads(ts, ([x, w1, b1, w2, b2]) =>
      weighted(
        checkpoint((h: Tensor) => {
          const inner = checkpoint((a: Tensor) => F.linear(a, w1!, b1!).tanh())(h);
          return F.linear(inner, w2!, b2!);
        })(x!),
      ),
    );
    expectSameGrads(plain, nested, 'nested');
  });

  it('a transformer block (attention, layer norm, GELU): same gradients for every parameter and the input', () => {
    manualSeed(21);
    const cfg = { vocabSize: 8, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true };
    const blocks = [new Block(cfg), new Block(cfg)];
    const params = blocks.flatMap((b) => b.parameters());
    const [x] = leaves([[2, 6, 8]], 5);
    const wOut = tensor(Float32Array.from(randArray(2 * 6 * 8, 6)), { shape: [2, 6, 8], dtype: 'f32' });
    const run = (ck: boolean) =>
      lossAndGrads([x!, ...params], ([h0]) => {
        let h = h0!;
        for (const b of blocks) h = ck ? checkpoint((a: Tensor) => b.forward(a))(h) : b.forward(h);
        return h.mul(wOut).sum();
      });
    const plain = run(false);
    const ck = run(true);
    expect(plain.grads.every((g) => g.some((v) => v !== 0))).toBe(true);
    expectSameGrads(plain, ck, 'blocks');
  });

  it('dropout inside the segment: the recomputation draws the same mask (same seed), so gradients are equal', () => {
    const ts = leaves(shapes, 7);
    const build =
      (ck: boolean) =>
      ([x, w1, b1, w2, b2]: Tensor[]) => {
        const seg = (h: Tensor) => F.linear(F.dropout(F.linear(h, w1!, b1!).tanh(), 0.5), w2!, b2!);
        return weighted(ck ? checkpoint(seg)(x!) : seg(x!));
      };
    manualSeed(123);
    const plain = lossAndGrads(ts, build(false));
    manualSeed(123);
    const ck = lossAndGrads(ts, build(true));
    expectSameGrads(plain, ck, 'dropout');
    // The mask matters (a different seed changes the gradients), so the equality above is not vacuous.
    manualSeed(124);
    const other = lossAndGrads(ts, build(true));
    expect(Math.abs(other.loss - plain.loss) + Math.abs(other.grads[1]![0]! - plain.grads[1]![0]!)).toBeGreaterThan(1e-4);
  });

  it('several outputs (one of them not differentiable)', () => {
    const ts = leaves(shapes, 8);
    const seg = (x: Tensor, w1: Tensor, b1: Tensor): Tensor[] => {
      const h = F.linear(x, w1, b1);
      return [h.tanh(), h.sigmoid(), h.detach().mul(3)];
    };
    const build =
      (ck: boolean) =>
      ([x, w1, b1, w2, b2]: Tensor[]) => {
        const [a, s, d] = ck ? checkpoint(seg)(x!, w1!, b1!) : seg(x!, w1!, b1!);
        return weighted(F.linear(a!.mul(s!).add(d!), w2!, b2!)).add(s!.sum().mul(0.5));
      };
    const plain = lossAndGrads(ts, build(false));
    const ck = lossAndGrads(ts, build(true));
    expectSameGrads(plain, ck, 'multiple outputs');
  });

  it('under noGrad it is a plain call of fn', () => {
    const [x, w] = leaves([[2, 3], [4, 3]], 9);
    let calls = 0;
    let inner: Tensor | undefined;
    const fn = (a: Tensor) => {
      calls++;
      // The argument is passed through unchanged (no materialising copy).
      expect(a).toBe(x);
      return (inner = F.linear(a, w!));
    };
    const out = noGrad(() => checkpoint(fn)(x!));
    expect(calls).toBe(1);
    expect(out).toBe(inner);
    expect(out.requiresGrad).toBe(false);
    expectClose(out.dataSync(), noGrad(() => F.linear(x!, w!)).dataSync(), TOL, 'noGrad value');
  });

  it('bad arguments throw ValueError', () => {
    const [x] = leaves([[2, 3]], 10);
    expect(() => checkpoint(42 as unknown as () => Tensor)).toThrow(ValueError);
    expect(() => checkpoint((a: Tensor) => a.mul(2))([1, 2] as unknown as Tensor)).toThrow(ValueError);
    expect(() => checkpoint((a: Tensor, b: Tensor) => a.mul(b))(x!, 3 as unknown as Tensor)).toThrow(ValueError);
    expect(() => checkpoint(((a: Tensor) => a.sum().itemSync()) as unknown as (a: Tensor) => Tensor)(x!)).toThrow(ValueError);
    expect(() => checkpoint(((a: Tensor) => [a.mul(2), 'no']) as unknown as (a: Tensor) => Tensor[])(x!)).toThrow(ValueError);
  });
});
