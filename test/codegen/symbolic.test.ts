import { describe, expect, it } from 'vitest';
import { add, div, evaluate, ivar, mod, mul, narrowedVars, range, render, simplifyConds, substitute } from '../../src/codegen/symbolic.js';
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

  it('a modulo whose operand keeps one quotient over its range is a subtraction', () => {
    const r = ivar('r', 128, 143);
    expect(render(mod(r, 16))).toBe('r-128');
    expect(render(mod(add(ivar('t', 130, 140), 3), 16))).toBe('t-125');
    expect(render(mod(ivar('s', 120, 135), 16))).toBe('(s%16)'); // crosses a multiple of 16: kept
  });

  it('narrows variables by validity conditions, so a padded source index collapses', () => {
    // cat([a (128 wide), b (16 wide)]) along x ∈ [0, 144): a is read where 0 <= x < 128, b where
    // 0 <= x - 128 < 16; a [2, 128] viewed through a reshape of a [256] buffer: index (g*128 + x).
    const x = ivar('x', 0, 143);
    const g = ivar('g', 0, 1);
    const aIdx = add(mul(div(add(mul(g, 128), x), 256), 4096), mod(add(mul(g, 128), x), 256));
    expect(render(aIdx)).toContain('//'); // without the condition, x may reach 143
    const narrowA = narrowedVars([{ e: x, lo: 0, hi: 128 }]);
    expect(render(substitute(aIdx, narrowA))).toBe('g*128+x');
    const bIdx = mod(add(x, -128), 16);
    const narrowB = narrowedVars([{ e: add(x, -128), lo: 0, hi: 16 }]);
    expect(range(narrowB.get('x')!)).toEqual([128, 143]);
    expect(render(substitute(bIdx, narrowB))).toBe('x-128');
    // Conditions on several variables, or already implied ones, narrow nothing.
    expect(narrowedVars([{ e: add(x, g), lo: 0, hi: 100 }]).size).toBe(0);
    expect(narrowedVars([{ e: x, lo: 0, hi: 144 }]).size).toBe(0);
    // A negative coefficient: 0 <= 10 - 2x < 5  ⇔  x ∈ [3, 5].
    expect(range(narrowedVars([{ e: add(mul(x, -2), 10), lo: 0, hi: 5 }]).get('x')!)).toEqual([3, 5]);
  });

  it('simplifies validity conditions', () => {
    expect(simplifyConds([{ e: j, lo: 0, hi: 8 }])).toEqual([]);
    expect(simplifyConds([{ e: add(j, 10), lo: 0, hi: 8 }])).toBe(false);
    expect(simplifyConds([{ e: add(j, -2), lo: 0, hi: 8 }])).toHaveLength(1);
  });
});
