/**
 * Llama: rotary embeddings against closed forms, the full forward against an independent float64
 * plain-JS implementation (grouped-query attention, SwiGLU, RMSNorm), cached prefill + decode against
 * the uncached forward, greedy generation against step-by-step recomputation, training, and config
 * errors.
 *
 * Tolerances: f32 Tessera vs float64 reference logits, atol 2e-4 (a few ulps over ~10 f32 ops deep);
 * cached vs uncached logits, atol 1e-4 (different summation orders in attention).
 */
import { describe, expect, it } from 'vitest';
import { manualSeed, tensor, ValueError } from '../../src/index.js';
import { applyRope, Llama, ropeInvFreq, ropeTables, type LlamaConfig } from '../../src/nn/llama.js';
import { AdamW } from '../../src/optim/adamw.js';
import { expectClose } from '../helpers/check.js';

const CFG: LlamaConfig = { vocabSize: 11, dim: 16, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 24, maxSeqLen: 12, normEps: 1e-5, ropeTheta: 10000 };

type Mat = Float64Array; // row-major

/** Independent float64 Llama forward over one sequence: logits [T, V]. */
function referenceLogits(model: Llama, ids: number[]): Float64Array {
  const c = model.config;
  const W = Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Float64Array.from(t.dataSync())]));
  const T = ids.length;
  const D = c.dim;
  const hd = D / c.nHead;
  const linear = (x: Mat, w: Mat, inDim: number, outDim: number) => {
    const y = new Float64Array(T * outDim);
    for (let t = 0; t < T; t++) for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[t * inDim + i]! * w[o * inDim + i]!;
      y[t * outDim + o] = s;
    }
    return y;
  };
  const rms = (x: Mat, w: Mat) => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x[t * D + i]! ** 2;
      const r = 1 / Math.sqrt(ss / D + c.normEps);
      for (let i = 0; i < D; i++) y[t * D + i] = x[t * D + i]! * r * w[i]!;
    }
    return y;
  };
  const rope = (x: Mat, heads: number) => {
    const y = Float64Array.from(x);
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let i = 0; i < hd / 2; i++) {
      const ang = t / c.ropeTheta ** ((2 * i) / hd);
      const a = x[t * heads * hd + h * hd + 2 * i]!;
      const b = x[t * heads * hd + h * hd + 2 * i + 1]!;
      y[t * heads * hd + h * hd + 2 * i] = a * Math.cos(ang) - b * Math.sin(ang);
      y[t * heads * hd + h * hd + 2 * i + 1] = a * Math.sin(ang) + b * Math.cos(ang);
    }
    return y;
  };
  let x = new Float64Array(T * D);
  ids.forEach((id, t) => x.set(W['embed_tokens.weight']!.subarray(id * D, (id + 1) * D), t * D));
  for (let l = 0; l < c.nLayer; l++) {
    const p = (n: string) => W[`layers.${l}.${n}`]!;
    const xn = rms(x, p('input_layernorm.weight'));
    const q = rope(linear(xn, p('self_attn.q_proj.weight'), D, c.nHead * hd), c.nHead);
    const k = rope(linear(xn, p('self_attn.k_proj.weight'), D, c.nKVHead * hd), c.nKVHead);
    const v = linear(xn, p('self_attn.v_proj.weight'), D, c.nKVHead * hd);
    const att = new Float64Array(T * c.nHead * hd);
    for (let h = 0; h < c.nHead; h++) {
      const kh = Math.floor(h / (c.nHead / c.nKVHead));
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[t * c.nHead * hd + h * hd + i]! * k[j * c.nKVHead * hd + kh * hd + i]!;
          s.push(d / Math.sqrt(hd));
        }
        const m = Math.max(...s);
        const e = s.map((z) => Math.exp(z - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          for (let j = 0; j <= t; j++) acc += (e[j]! / z) * v[j * c.nKVHead * hd + kh * hd + i]!;
          att[t * c.nHead * hd + h * hd + i] = acc;
        }
      }
    }
    const o = linear(att, p('self_attn.o_proj.weight'), c.nHead * hd, D);
    x = x.map((a, i) => a + o[i]!);
    const hn = rms(x, p('post_attention_layernorm.weight'));
    const g = linear(hn, p('mlp.gate_proj.weight'), D, c.hiddenDim);
    const u = linear(hn, p('mlp.up_proj.weight'), D, c.hiddenDim);
    const a = g.map((z, i) => (z / (1 + Math.exp(-z))) * u[i]!);
    const dn = linear(a, p('mlp.down_proj.weight'), c.hiddenDim, D);
    x = x.map((z, i) => z + dn[i]!);
  }
  return linear(rms(x, W['norm.weight']!), W['lm_head.weight']!, D, c.vocabSize);
}

function model(cfg: LlamaConfig = CFG, seed = 3): Llama {
  manualSeed(seed);
  const m = new Llama(cfg);
  // Non-trivial norm weights, so a wrong norm placement shows.
  for (const [k, t] of Object.entries(m.stateDict())) {
    if (k.endsWith('norm.weight')) t.assign(tensor(Float32Array.from({ length: t.numel }, (_, i) => 1 + 0.1 * Math.sin(i + k.length)), { shape: t.shape }));
  }
  return m;
}

describe('Llama', () => {
  it('rotary tables and pair rotation match closed forms; scaling variants', () => {
    const inv = ropeInvFreq(8, 10000);
    expect(Array.from(inv)).toEqual([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75]);
    expect(Array.from(ropeInvFreq(8, 10000, { type: 'linear', factor: 4 }))).toEqual(Array.from(inv, (x) => x / 4));
    // llama3: the highest frequency (short wavelength) is kept, the lowest divided by the factor.
    const l3 = ropeInvFreq(128, 500000, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 });
    const base = ropeInvFreq(128, 500000);
    expect(l3[0]).toBe(base[0]);
    expect(l3[63]).toBeCloseTo(base[63]! / 8, 15);
    const { cos, sin } = ropeTables(3, 4, 100);
    expectClose(Array.from(cos.subarray(4, 6)), [Math.cos(2), Math.cos(0.2)], { atol: 1e-7, rtol: 0 });
    expectClose(Array.from(sin.subarray(4, 6)), [Math.sin(2), Math.sin(0.2)], { atol: 1e-7, rtol: 0 });
    const x = tensor([1, 2, 3, 4], { shape: [1, 1, 1, 4] });
    const y = applyRope(x, tensor([Math.cos(0.5), Math.cos(1)], { shape: [1, 2] }), tensor([Math.sin(0.5), Math.sin(1)], { shape: [1, 2] }));
    expectClose(Array.from(y.dataSync()), [Math.cos(0.5) - 2 * Math.sin(0.5), Math.sin(0.5) + 2 * Math.cos(0.5), 3 * Math.cos(1) - 4 * Math.sin(1), 3 * Math.sin(1) + 4 * Math.cos(1)], { atol: 1e-6, rtol: 0 });
  });

  it('forward logits match an independent float64 implementation (GQA 4 heads / 2 kv heads, SwiGLU, RMSNorm)', () => {
    const m = model();
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const got = m.forward(tensor(ids, { dtype: 'i32', shape: [1, ids.length] })).logits.dataSync();
    expectClose(Array.from(got), Array.from(referenceLogits(m, ids)), { atol: 2e-4, rtol: 0 }, 'logits');
  });

  it('cached prefill + one-token decode steps give the uncached logits at every position', () => {
    const m = model();
    m.eval();
    const ids = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 7, 0, 10, 2, 2, 8, 1]];
    const full = m.forward(tensor(ids.flat(), { dtype: 'i32', shape: [2, 8] })).logits.dataSync(); // [2, 8, V]
    const V = CFG.vocabSize;
    const cache = m.createCache(2);
    const at = (b: number, t: number) => Array.from(full.subarray((b * 8 + t) * V, (b * 8 + t + 1) * V));
    // Prefill the first 3 positions, then decode one token at a time.
    let logits = m.forwardCached(tensor(ids.map((r) => r.slice(0, 3)).flat(), { dtype: 'i32', shape: [2, 3] }), tensor([0], { dtype: 'i32' }), cache);
    for (let t = 3; t <= 8; t++) {
      const v = logits.dataSync();
      for (let b = 0; b < 2; b++) expectClose(Array.from(v.subarray(b * V, (b + 1) * V)), at(b, t - 1), { atol: 1e-4, rtol: 0 }, `row ${b} position ${t - 1}`);
      if (t === 8) break;
      logits = m.forwardCached(tensor(ids.map((r) => r[t]!), { dtype: 'i32', shape: [2, 1] }), tensor([t], { dtype: 'i32' }), cache);
    }
    cache.dispose();
  });

  it('greedy generation equals arg max of the uncached forward, token by token (jitted decode)', () => {
    const m = model({ ...CFG, maxSeqLen: 16 }, 8);
    const prompt = [2, 7, 1];
    const got = m.generate([prompt], { maxNewTokens: 9, temperature: 0 })[0]!;
    expect(got.length).toBe(9);
    const seq = [...prompt];
    for (let i = 0; i < 9; i++) {
      const l = m.forward(tensor(seq, { dtype: 'i32', shape: [1, seq.length] })).logits.dataSync();
      const last = Array.from(l.subarray((seq.length - 1) * CFG.vocabSize));
      seq.push(last.indexOf(Math.max(...last)));
    }
    expect(got).toEqual(seq.slice(3));
    // Stop tokens end the row; sampling with a seed is reproducible.
    const stopAt = got[4]!;
    expect(m.generate([prompt], { maxNewTokens: 9, temperature: 0, stopTokens: [stopAt] })[0]).toEqual(got.slice(0, got.indexOf(stopAt)));
    const s1 = m.generate([prompt], { maxNewTokens: 6, temperature: 0.8, topK: 5, topP: 0.9, seed: 4 });
    const s2 = m.generate([prompt], { maxNewTokens: 6, temperature: 0.8, topK: 5, topP: 0.9, seed: 4 });
    expect(s1).toEqual(s2);
  });

  it('trains: 30 AdamW steps on a repeating sequence cut the loss by more than half', () => {
    const m = model({ ...CFG, nLayer: 1 }, 5);
    const opt = new AdamW(m.parameters(), { lr: 3e-2 });
    const seq = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2];
    const x = tensor(seq.slice(0, 11), { dtype: 'i32', shape: [1, 11] });
    const y = tensor(seq.slice(1, 12), { dtype: 'i32', shape: [1, 11] });
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const { loss } = m.forward(x, y);
      loss!.backward();
      opt.step({ realize: [loss!] });
      losses.push(loss!.itemSync());
    }
    expect(losses[29]!).toBeLessThan(losses[0]! / 2);
  });

  it('rejects bad configs naming the field', () => {
    expect(() => new Llama({ ...CFG, nKVHead: 3 })).toThrow(ValueError);
    expect(() => new Llama({ ...CFG, nKVHead: 3 })).toThrow(/nKVHead/);
    expect(() => new Llama({ ...CFG, dim: 18 })).toThrow(/divisible/);
    expect(() => new Llama({ ...CFG, hiddenDim: 0 })).toThrow(/hiddenDim/);
    expect(() => model().generate([[1, 2], [3]])).toThrow(/equal lengths/);
    expect(() => model().generate([[1, 99]])).toThrow(/outside/);
  });
});
