/**
 * The price table (a JSON file) and exact cost arithmetic. Prices are per million tokens, so the cost
 * of a request in millionths of the currency unit is simply tokens x price; it is computed on scaled
 * integers (BigInt), never on binary floating point, and rounded half-up to 6 decimals once.
 *
 * File format:
 * ```json
 * { "currency": "USD",
 *   "models": { "tiny": { "input": 0.15, "output": 0.6, "cached": 0.075 } },
 *   "default": { "input": 1, "output": 2 } }
 * ```
 * `cached` defaults to `input` (no discount for prefix-cache hits); `default` prices models not listed;
 * `currency` defaults to USD.
 */
import { readFileSync } from 'node:fs';
import { ValueError } from '../../errors.js';

/** Prices of one model, per million tokens. */
export interface ModelPrice {
  /** Prompt tokens not served from the prefix cache. */
  input: number;
  /** Completion tokens. */
  output: number;
  /** Prompt tokens served from the prefix cache. */
  cached: number;
}

export interface PriceTable {
  currency: string;
  models: Record<string, ModelPrice>;
  /** For models not in `models`; without it such models are unpriced (cost 0, flagged by billing). */
  default?: ModelPrice;
}

/** A table that prices nothing: costs are 0 and billing lists every model as unpriced. */
export const EMPTY_PRICES: PriceTable = { currency: 'USD', models: {} };

const PRICE_FIELDS = ['input', 'output', 'cached'] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseModelPrice(v: unknown, where: string, source: string): ModelPrice {
  if (!isObject(v))
    throw new ValueError(
      `${source}: ${where} must be an object like { "input": 0.5, "output": 1.5, "cached": 0.25 }`,
    );
  for (const k of Object.keys(v)) {
    if (!(PRICE_FIELDS as readonly string[]).includes(k))
      throw new ValueError(`${source}: ${where} has unknown field '${k}' (expected input, output, cached)`);
  }
  const num = (k: (typeof PRICE_FIELDS)[number]): number => {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) {
      throw new ValueError(
        `${source}: ${where}.${k} must be a number >= 0, got ${JSON.stringify(x) ?? 'nothing'}`,
      );
    }
    return x;
  };
  if (v.input === undefined)
    throw new ValueError(`${source}: ${where}.input is missing (price per million prompt tokens)`);
  if (v.output === undefined)
    throw new ValueError(`${source}: ${where}.output is missing (price per million completion tokens)`);
  const input = num('input');
  return { input, output: num('output'), cached: v.cached === undefined ? input : num('cached') };
}

/**
 * Validate a parsed price table. `source` (the file name) starts every error message, e.g.
 * `prices.json: models.tiny.output must be a number >= 0, got "3"`.
 */
export function parsePrices(json: unknown, source = 'prices'): PriceTable {
  if (!isObject(json))
    throw new ValueError(
      `${source}: expected a JSON object with "currency" and "models", got ${Array.isArray(json) ? 'an array' : typeof json}`,
    );
  for (const k of Object.keys(json)) {
    if (!['currency', 'models', 'default'].includes(k))
      throw new ValueError(`${source}: unknown field '${k}' (expected currency, models, default)`);
  }
  const currency = json.currency ?? 'USD';
  if (typeof currency !== 'string' || !/^[A-Za-z]{1,10}$/.test(currency)) {
    throw new ValueError(
      `${source}: currency must be a currency code such as "USD", got ${JSON.stringify(currency)}`,
    );
  }
  if (json.models === undefined)
    throw new ValueError(`${source}: models is missing (an object from model id to prices)`);
  if (!isObject(json.models))
    throw new ValueError(`${source}: models must be an object from model id to prices`);
  const models: Record<string, ModelPrice> = {};
  for (const [id, p] of Object.entries(json.models)) models[id] = parseModelPrice(p, `models.${id}`, source);
  const table: PriceTable = { currency, models };
  if (json.default !== undefined) table.default = parseModelPrice(json.default, 'default', source);
  return table;
}

/** Read and validate a price table file. @throws ValueError naming the file (and field) at fault. */
export function loadPrices(file: string): PriceTable {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ValueError(`${file}: cannot read the price table (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ValueError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parsePrices(json, file);
}

/** The prices of `model`: its own entry, else the table's default, else undefined (unpriced). */
export function priceFor(table: PriceTable, model: string): ModelPrice | undefined {
  return Object.hasOwn(table.models, model) ? table.models[model] : table.default;
}

/** An exact decimal: value = coef / 10^scale. */
interface Decimal {
  coef: bigint;
  scale: number;
}

/**
 * The decimal a JS number prints as (its shortest round-trip form, e.g. 0.1 → "0.1"), which is
 * what the price file said: converting the binary double itself would turn 0.1 into 0.1000000000000000055…
 */
function toDecimal(x: number): Decimal {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  if (!m) throw new ValueError(`price must be a finite number >= 0, got ${x}`);
  const frac = m[2] ?? '';
  const exp = Number(m[3] ?? 0);
  let coef = BigInt(m[1]! + frac);
  let scale = frac.length - exp;
  if (scale < 0) {
    coef *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { coef, scale };
}

/** Token counts that a cost is computed from. */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/**
 * Cost in millionths of the currency unit (micro-units), exact and rounded half-up:
 * ((prompt - cached) x input + cached x cached price + completion x output) / 1e6 units.
 */
export function costMicros(price: ModelPrice, t: TokenCounts): bigint {
  const terms: [number, number][] = [
    [t.promptTokens - t.cachedTokens, price.input],
    [t.cachedTokens, price.cached],
    [t.completionTokens, price.output],
  ];
  const decs = terms.map(([n, p]) => {
    if (!Number.isSafeInteger(n) || n < 0)
      throw new ValueError(
        `token counts must be integers with 0 <= cached <= prompt, got ${JSON.stringify(t)}`,
      );
    return { n: BigInt(n), d: toDecimal(p) };
  });
  const scale = Math.max(...decs.map((x) => x.d.scale));
  let num = 0n;
  for (const { n, d } of decs) num += n * d.coef * 10n ** BigInt(scale - d.scale);
  const den = 10n ** BigInt(scale);
  return (2n * num + den) / (2n * den);
}

/** Micro-units as a number of currency units: the double nearest the exact 6-decimal value. */
export function microsToNumber(micros: bigint): number {
  // Both operands are exact doubles (micros < 2^53 for any realistic bill), so IEEE division rounds
  // once, to the same double that parsing the decimal string would give.
  return Number(micros) / 1e6;
}

/** Micro-units as a decimal string with exactly 6 places, e.g. 435n → "0.000435". */
export function formatMicros(micros: bigint): string {
  const neg = micros < 0n;
  const s = (neg ? -micros : micros).toString().padStart(7, '0');
  return `${neg ? '-' : ''}${s.slice(0, -6)}.${s.slice(-6)}`;
}

/** Cost in currency units rounded to 6 decimals, or 0 for an unpriced model (undefined price). */
export function cost(price: ModelPrice | undefined, t: TokenCounts): number {
  return price ? microsToNumber(costMicros(price, t)) : 0;
}
