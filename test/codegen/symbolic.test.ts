import { describe, expect, it } from 'vitest';
import { add, div, evaluate, ivar, mod, mul, range, render, simplifyConds } from '../../src/codegen/symbolic.js';
import { flatIndex, unflatIndex } from '../../src/codegen/lower.js';

const i = ivar('i', 0, 3);
const j = ivar('j', 0, 7);

describe('symbolic index simplification', () => {
  it('collapses a reshape round trip to the original index', () => {
    const flat = flatIndex([i, j], [4, 8]);
    expect(render(flat)).toBe('i*8+j');
    const back = unflatIndex(flat, [4, 8]);
    expect(back.map(render)).toEqual(['i', 'j']);
    // [4,8] -> [2,2,8] -> [4,8]
    const mid = unflatIndex(flat, [2, 2, 8]);
    expect(render(flatIndex(mid, [2, 2, 8]))).toBe('i*8+j');
  });

  it('drops divisions and modulos that ranges make trivial', () => {
    expect(render(div(j, 8))).toBe('0');
    expect(render(mod(j, 8))).toBe('j');
    expect(render(div(add(mul(i, 8), j), 8))).toBe('i');
    expect(render(mod(add(mul(i, 8), j), 8))).toBe('j');
    expect(render(div(div(add(mul(i, 16), mul(j, 2)), 2), 4))).toBe('i*2+(j//4)');
  });

  it('folds x//d*d + x%d back to x', () => {
    const x = add(mul(i, 5), j); // not a multiple structure the ranges can split
    expect(render(add(mul(div(x, 3), 3), mod(x, 3)))).toBe(render(x));
  });

  it('agrees with direct evaluation on every point', () => {
    const exprs = [div(add(mul(i, 3), j, 1), 4), mod(add(mul(i, 6), mul(j, 3), -2), 5), add(mul(div(j, 3), 7), mod(i, 2))];
    for (const e of exprs) {
      const [lo, hi] = range(e);
      for (let a = 0; a <= 3; a++) {
        for (let b = 0; b <= 7; b++) {
          const env = { i: a, j: b };
          const direct = e === exprs[0] ? Math.floor((a * 3 + b + 1) / 4) : e === exprs[1] ? (((a * 6 + b * 3 - 2) % 5) + 5) % 5 : Math.floor(b / 3) * 7 + (a % 2);
          expect(evaluate(e, env)).toBe(direct);
          expect(direct).toBeGreaterThanOrEqual(lo);
          expect(direct).toBeLessThanOrEqual(hi);
        }
      }
    }
  });

  it('simplifies validity conditions', () => {
    expect(simplifyConds([{ e: j, lo: 0, hi: 8 }])).toEqual([]);
    expect(simplifyConds([{ e: add(j, 10), lo: 0, hi: 8 }])).toBe(false);
    expect(simplifyConds([{ e: add(j, -2), lo: 0, hi: 8 }])).toHaveLength(1);
  });
});
