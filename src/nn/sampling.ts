import { ValueError } from '../errors.js';

/** How the next token is chosen from a row of logits. */
export interface SamplingOptions {
  /** Divide the logits by this before sampling (default 1); 0 is greedy (argmax). */
  temperature?: number;
  /** Keep only the `topK` most likely tokens (default: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches `topP` (default 1). */
  topP?: number;
  /** Drop tokens whose probability is below `minP` times the most likely one's (default 0). */
  minP?: number;
  /**
   * Penalise tokens already generated or in the prompt (CTRL / llama.cpp style: a positive logit is
   * divided by it, a negative one multiplied; default 1 = off).
   */
  repetitionPenalty?: number;
  /** Seed of the sampler (default 0): equal seeds give equal samples. */
  seed?: number;
}

/** Check sampling options once, naming the bad field. */
export function checkSampling(o: SamplingOptions, who: string): Required<Omit<SamplingOptions, 'topK'>> & { topK?: number } {
  const temperature = o.temperature ?? 1;
  if (!(temperature >= 0)) throw new ValueError(`${who}: temperature must be >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new ValueError(`${who}: topK must be a positive integer, got ${o.topK}`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new ValueError(`${who}: topP must be in (0, 1], got ${o.topP}`);
  const minP = o.minP ?? 0;
  if (!(minP >= 0 && minP < 1)) throw new ValueError(`${who}: minP must be in [0, 1), got ${o.minP}`);
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (!(repetitionPenalty > 0)) throw new ValueError(`${who}: repetitionPenalty must be > 0, got ${o.repetitionPenalty}`);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed)) throw new ValueError(`${who}: seed must be an integer, got ${o.seed}`);
  return { temperature, topK: o.topK, topP, minP, repetitionPenalty, seed };
}

/** Host-side PRNG (mulberry32): small, fast, and identical on every platform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Pick the next token from one row of logits. Order of the filters, as llama.cpp's default chain:
 * repetition penalty, top-k, top-p, min-p, temperature, then a draw. Greedy (temperature 0) returns the
 * arg max of the penalised logits (the first one on ties).
 */
export function sampleToken(
  logits: ArrayLike<number>,
  o: ReturnType<typeof checkSampling>,
  rnd: () => number,
  previous?: Iterable<number>,
): number {
  const V = logits.length;
  const penalised = o.repetitionPenalty !== 1 && previous ? new Set([...previous].filter((t) => t >= 0 && t < V)) : undefined;
  const rp = o.repetitionPenalty;
  if (o.temperature === 0) {
    // Greedy reads the row in place: a serving step samples every running sequence, and a copy of each
    // 32k-entry row was most of the engine's garbage.
    const value = (i: number) => {
      const v = logits[i]!;
      return penalised?.has(i) ? (v > 0 ? v / rp : v * rp) : v;
    };
    let best = 0;
    let bestV = value(0);
    if (penalised?.size) {
      for (let i = 1; i < V; i++) {
        const v = value(i);
        if (v > bestV) {
          best = i;
          bestV = v;
        }
      }
    } else {
      for (let i = 1; i < V; i++) {
        const v = logits[i]!;
        if (v > bestV) {
          best = i;
          bestV = v;
        }
      }
    }
    return best;
  }
  const x = logits instanceof Float32Array || logits instanceof Float64Array ? new Float64Array(logits) : Float64Array.from(logits as ArrayLike<number>);
  for (const t of penalised ?? []) x[t] = x[t]! > 0 ? x[t]! / rp : x[t]! * rp;
  // Candidates sorted by logit, most likely first.
  let ids = Array.from({ length: V }, (_, i) => i).filter((i) => x[i] !== -Infinity && !Number.isNaN(x[i]!));
  if (ids.length === 0) return 0;
  ids.sort((a, b) => x[b]! - x[a]! || a - b);
  if (o.topK !== undefined && o.topK < ids.length) ids = ids.slice(0, o.topK);
  const probs = (list: number[], temp: number) => {
    const m = x[list[0]!]!;
    const w = list.map((i) => Math.exp((x[i]! - m) / temp));
    const total = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / total);
  };
  if (o.topP < 1) {
    const p = probs(ids, 1);
    let acc = 0;
    let keep = ids.length;
    for (let i = 0; i < p.length; i++) {
      acc += p[i]!;
      if (acc >= o.topP) {
        keep = i + 1;
        break;
      }
    }
    ids = ids.slice(0, keep);
  }
  if (o.minP > 0) {
    const p = probs(ids, 1);
    const cut = p[0]! * o.minP;
    ids = ids.filter((_, i) => p[i]! >= cut);
  }
  const p = probs(ids, o.temperature);
  let r = rnd();
  for (let i = 0; i < ids.length; i++) {
    r -= p[i]!;
    if (r < 0) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}
