// Price tables: every malformed file fails with a message naming the file and the field; costs are
// exact decimals rounded half-up to 6 places, never binary floating-point sums.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValueError } from '../../../src/errors.js';
import {
  cost,
  costMicros,
  formatMicros,
  loadPrices,
  parsePrices,
  priceFor,
} from '../../../src/serve/ledger/index.js';
import { tempDir } from './helpers.js';

describe('price table', () => {
  it('loads a valid file; cached defaults to input, currency to USD; default prices unknown models', () => {
    const file = join(tempDir(), 'prices.json');
    writeFileSync(
      file,
      JSON.stringify({
        currency: 'EUR',
        models: { tiny: { input: 0.15, output: 0.6, cached: 0.075 }, big: { input: 3, output: 15 } },
        default: { input: 1, output: 2 },
      }),
    );
    const t = loadPrices(file);
    expect(t.currency).toBe('EUR');
    expect(t.models.big).toEqual({ input: 3, output: 15, cached: 3 });
    expect(priceFor(t, 'tiny')).toEqual({ input: 0.15, output: 0.6, cached: 0.075 });
    expect(priceFor(t, 'other')).toEqual({ input: 1, output: 2, cached: 1 });
    expect(priceFor(t, 'toString')).toEqual({ input: 1, output: 2, cached: 1 });
    expect(parsePrices({ models: {} }).currency).toBe('USD');
    expect(priceFor(parsePrices({ models: {} }), 'tiny')).toBeUndefined();
  });

  it('names the file and the field for each kind of malformed table', () => {
    const dir = tempDir();
    const cases: [string, RegExp][] = [
      [
        '{ "currency": "USD", "models": { "tiny": { "input": 1, "output": "3" } } }',
        /prices\.json: models\.tiny\.output must be a number >= 0, got "3"/,
      ],
      [
        '{ "models": { "tiny": { "input": -0.5, "output": 1 } } }',
        /prices\.json: models\.tiny\.input must be a number >= 0, got -0\.5/,
      ],
      [
        '{ "models": { "tiny": { "input": 1, "output": 1, "cached": null } } }',
        /prices\.json: models\.tiny\.cached must be a number >= 0, got null/,
      ],
      ['{ "models": { "tiny": { "input": 1 } } }', /prices\.json: models\.tiny\.output is missing/],
      [
        '{ "models": { "tiny": { "input": 1, "ouput": 2 } } }',
        /prices\.json: models\.tiny has unknown field 'ouput'/,
      ],
      ['{ "models": { "tiny": 3 } }', /prices\.json: models\.tiny must be an object/],
      ['{ "models": [] }', /prices\.json: models must be an object/],
      ['{ "currency": "USD" }', /prices\.json: models is missing/],
      ['{ "currency": 5, "models": {} }', /prices\.json: currency must be a currency code/],
      [
        '{ "models": {}, "default": { "input": 1, "output": 1e400 } }',
        /prices\.json: default\.output must be a number >= 0/,
      ],
      ['{ "models": {}, "extra": 1 }', /prices\.json: unknown field 'extra'/],
      ['[1, 2]', /prices\.json: expected a JSON object .* got an array/],
      ['{ "models": { "tiny": { "input": 1, ', /prices\.json: not valid JSON/],
    ];
    for (const [text, message] of cases) {
      const file = join(dir, 'prices.json');
      writeFileSync(file, text);
      expect(() => loadPrices(file), text).toThrow(ValueError);
      expect(() => loadPrices(file), text).toThrow(message);
    }
    expect(() => loadPrices(join(dir, 'absent.json'))).toThrow(/absent\.json: cannot read the price table/);
  });

  it('computes costs exactly on hand-computed examples', () => {
    const p = { input: 0.15, output: 0.6, cached: 0.075 };
    // (800*0.15 + 200*0.075 + 500*0.6) / 1e6 = (120 + 15 + 300) / 1e6
    expect(cost(p, { promptTokens: 1000, cachedTokens: 200, completionTokens: 500 })).toBe(0.000435);
    expect(costMicros(p, { promptTokens: 1000, cachedTokens: 200, completionTokens: 500 })).toBe(435n);
    // 0.1 + 0.2 in floating point is 0.30000000000000004; here 1e6 tokens at 0.1 plus 1e6 at 0.2 is 0.3.
    expect(
      cost(
        { input: 0.1, output: 0.2, cached: 0.1 },
        { promptTokens: 1e6, cachedTokens: 0, completionTokens: 1e6 },
      ),
    ).toBe(0.3);
    // Half-up rounding at the 6th decimal: 25 tokens at 0.1 = 2.5 micro-units → 3; 24 → 2.4 → 2.
    expect(
      costMicros(
        { input: 0.1, output: 0, cached: 0 },
        { promptTokens: 25, cachedTokens: 0, completionTokens: 0 },
      ),
    ).toBe(3n);
    expect(
      costMicros(
        { input: 0.1, output: 0, cached: 0 },
        { promptTokens: 24, cachedTokens: 0, completionTokens: 0 },
      ),
    ).toBe(2n);
    // A price that prints in exponent notation: 5e6 tokens at 1e-7 = 0.5 micro-units, rounded half-up to 1.
    expect(
      costMicros(
        { input: 1e-7, output: 0, cached: 0 },
        { promptTokens: 5_000_000, cachedTokens: 0, completionTokens: 0 },
      ),
    ).toBe(1n);
    // Large: 10 billion tokens at 2.5 → 25 000 currency units.
    expect(
      cost(
        { input: 2.5, output: 0, cached: 0 },
        { promptTokens: 1e10, cachedTokens: 0, completionTokens: 0 },
      ),
    ).toBe(25_000);
    expect(formatMicros(435n)).toBe('0.000435');
    expect(formatMicros(25_000_000_000n)).toBe('25000.000000');
    expect(cost(undefined, { promptTokens: 10, cachedTokens: 0, completionTokens: 10 })).toBe(0);
    expect(() => costMicros(p, { promptTokens: 1, cachedTokens: 2, completionTokens: 0 })).toThrow(
      /cached <= prompt/,
    );
  });
});
