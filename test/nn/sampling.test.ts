// sampleToken: greedy is the arg max (first on ties) of the penalised logits, read in place from any
// array type; the repetition penalty divides positive and multiplies negative logits; top-k 1 and a tiny
// top-p collapse to greedy; seeded draws repeat and follow the softmax.
import { describe, expect, it } from 'vitest';
import { checkSampling, mulberry32, sampleToken } from '../../src/nn/sampling.js';

const greedy = checkSampling({ temperature: 0 }, 'test');

describe('sampleToken', () => {
  it('greedy: arg max, the first one on ties, the same for plain and typed arrays', () => {
    const row = [0.5, 2, -1, 2, 1.5];
    for (const a of [row, Float32Array.from(row), Float64Array.from(row)]) expect(sampleToken(a, greedy, Math.random)).toBe(1);
    expect(sampleToken([-Infinity, -3, -Infinity], greedy, Math.random)).toBe(1);
    // A NaN first entry is never exceeded (comparisons with NaN are false), as before.
    expect(sampleToken([NaN, 1, 2], greedy, Math.random)).toBe(0);
  });

  it('greedy with a repetition penalty: positive logits divided, negative ones multiplied', () => {
    const o = checkSampling({ temperature: 0, repetitionPenalty: 2 }, 'test');
    // Token 1 (3) halves to 1.5 < 2 (token 3): 3 wins. Token 0 (-0.1 -> -0.2) stays below.
    expect(sampleToken(Float32Array.from([-0.1, 3, 1, 2]), o, Math.random, [1, 0, 1, 99, -4])).toBe(3);
    expect(sampleToken(Float32Array.from([-0.1, 3, 1, 2]), o, Math.random, [])).toBe(1);
    // Without a history the penalty does nothing.
    expect(sampleToken([-0.1, 3, 1, 2], o, Math.random)).toBe(1);
  });

  it('top-k 1 and a tiny top-p are greedy; seeded draws repeat and follow the softmax', () => {
    const row = Float32Array.from([0, Math.log(3), Math.log(6)]);
    for (const o of [{ temperature: 1, topK: 1 }, { temperature: 1, topP: 1e-6 }]) expect(sampleToken(row, checkSampling(o, 'test'), Math.random)).toBe(2);
    const o = checkSampling({ temperature: 1 }, 'test');
    const draw = (seed: number) => {
      const rnd = mulberry32(seed);
      return Array.from({ length: 3000 }, () => sampleToken(row, o, rnd));
    };
    const a = draw(7);
    expect(draw(7)).toEqual(a);
    const freq = [0, 1, 2].map((t) => a.filter((x) => x === t).length / a.length);
    // Probabilities 0.1, 0.3, 0.6 (binomial standard error ~0.009 at n = 3000).
    [0.1, 0.3, 0.6].forEach((p, t) => expect(Math.abs(freq[t]! - p)).toBeLessThan(0.04));
  });
});
