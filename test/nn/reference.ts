/**
 * Independent float64 references in plain JavaScript (no Tessera code), and finite differences.
 */

/** Row-major flat array -> rows of length n. */
export function rows(flat: ArrayLike<number>, n: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < flat.length; i += n) out.push(Array.from({ length: n }, (_, j) => flat[i + j]!));
  return out;
}

/** PyTorch's cross_entropy (class axis last), float64. */
export function crossEntropyRef(
  logits: number[][],
  target: number[],
  opts: { ignoreIndex?: number; labelSmoothing?: number; reduction?: 'mean' | 'sum' | 'none' } = {},
): number | number[] {
  const ignore = opts.ignoreIndex ?? -100;
  const eps = opts.labelSmoothing ?? 0;
  const per: number[] = [];
  let count = 0;
  logits.forEach((row, i) => {
    const t = target[i]!;
    if (t === ignore) {
      per.push(0);
      return;
    }
    count++;
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    const logp = row.map((x) => x - lse);
    const nll = -logp[t]!;
    const smooth = -logp.reduce((s, x) => s + x, 0) / row.length;
    per.push((1 - eps) * nll + eps * smooth);
  });
  const r = opts.reduction ?? 'mean';
  if (r === 'none') return per;
  const sum = per.reduce((s, x) => s + x, 0);
  return r === 'sum' ? sum : sum / count;
}

/** Layer norm over the last axis (biased variance), float64. */
export function layerNormRef(
  x: number[][],
  w: number[] | undefined,
  b: number[] | undefined,
  eps: number,
): number[][] {
  return x.map((row) => {
    const n = row.length;
    const mu = row.reduce((s, v) => s + v, 0) / n;
    const variance = row.reduce((s, v) => s + (v - mu) ** 2, 0) / n;
    const inv = 1 / Math.sqrt(variance + eps);
    return row.map((v, j) => (v - mu) * inv * (w ? w[j]! : 1) + (b ? b[j]! : 0));
  });
}

/** RMS norm over the last axis, float64. */
export function rmsNormRef(x: number[][], w: number[] | undefined, eps: number): number[][] {
  return x.map((row) => {
    const ms = row.reduce((s, v) => s + v * v, 0) / row.length;
    const inv = 1 / Math.sqrt(ms + eps);
    return row.map((v, j) => v * inv * (w ? w[j]! : 1));
  });
}

/** Central finite differences of a scalar function of a flat vector (float64). */
export function finiteDiff(f: (x: number[]) => number, x: readonly number[], h = 1e-6): number[] {
  return x.map((_, i) => {
    const xp = [...x];
    const xm = [...x];
    xp[i]! += h;
    xm[i]! -= h;
    return (f(xp) - f(xm)) / (2 * h);
  });
}

/** Deterministic pseudo-random numbers in [-1, 1) for test inputs. */
export function pseudoRandom(n: number, seed = 1): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296) * 2 - 1;
  });
}

/** Max |a - b| over two arrays (throws if lengths differ). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Parameters of {@link gptRef}: GPT-2 state-dict names → flat row-major float64 values. */
export type GptRefParams = Record<string, number[]>;

/**
 * A float64 GPT-2 forward pass (pre-norm blocks, fused c_attn, causal softmax attention, tanh GELU
 * MLP, final LayerNorm, head tied to wte) and its mean cross-entropy, in plain loops.
 */
export function gptRef(
  P: GptRefParams,
  cfg: { vocabSize: number; nLayer: number; nHead: number; nEmbd: number },
  idx: number[][],
  targets: number[][],
): { logits: number[][][]; loss: number } {
  const C = cfg.nEmbd;
  const V = cfg.vocabSize;
  const H = cfg.nHead;
  const hd = C / H;
  const lin = (x: number[], W: number[], b: number[] | undefined, out: number): number[] =>
    Array.from({ length: out }, (_, o) => {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < x.length; i++) s += x[i]! * W[o * x.length + i]!;
      return s;
    });
  const ln = (x: number[], w: number[], b: number[]) => layerNormRef([x], w, b, 1e-5)[0]!;
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  const logits: number[][][] = [];
  let lossSum = 0;
  let count = 0;
  idx.forEach((row, bi) => {
    const T = row.length;
    let x = row.map((tok, t) =>
      Array.from({ length: C }, (_, c) => P['wte.weight']![tok * C + c]! + P['wpe.weight']![t * C + c]!),
    );
    for (let l = 0; l < cfg.nLayer; l++) {
      const p = (n: string) => P[`h.${l}.${n}`]!;
      const qkv = x.map((xt) =>
        lin(ln(xt, p('ln_1.weight'), p('ln_1.bias')), p('attn.c_attn.weight'), p('attn.c_attn.bias'), 3 * C),
      );
      const y = x.map(() => new Array<number>(C).fill(0));
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < T; i++) {
          const scores: number[] = [];
          for (let j = 0; j <= i; j++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qkv[i]![h * hd + d]! * qkv[j]![C + h * hd + d]!;
            scores.push(s / Math.sqrt(hd));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= i; j++)
            for (let d = 0; d < hd; d++) y[i]![h * hd + d]! += (e[j]! / z) * qkv[j]![2 * C + h * hd + d]!;
        }
      }
      x = x.map((xt, t) => {
        const a = lin(y[t]!, p('attn.c_proj.weight'), p('attn.c_proj.bias'), C);
        return xt.map((v, c) => v + a[c]!);
      });
      x = x.map((xt) => {
        const hdn = lin(
          ln(xt, p('ln_2.weight'), p('ln_2.bias')),
          p('mlp.c_fc.weight'),
          p('mlp.c_fc.bias'),
          4 * C,
        ).map(gelu);
        const m = lin(hdn, p('mlp.c_proj.weight'), p('mlp.c_proj.bias'), C);
        return xt.map((v, c) => v + m[c]!);
      });
    }
    const out = x.map((xt) =>
      lin(ln(xt, P['ln_f.weight']!, P['ln_f.bias']!), P['wte.weight']!, undefined, V),
    );
    logits.push(out);
    out.forEach((lg, t) => {
      lossSum += crossEntropyRef([lg], [targets[bi]![t]!]) as number;
      count++;
    });
  });
  return { logits, loss: lossSum / count };
}
