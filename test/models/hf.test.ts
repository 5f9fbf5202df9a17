/**
 * Models to and from Hugging Face checkpoints (config.json + safetensors).
 *
 * Llama: the checkpoint saveHFModel writes is checked against Hugging Face's own convention — a float64
 * plain-JS forward pass with rotate_half rotary embeddings, reading the file's tensors, matches the
 * Tessera model's logits, and for one head the rotate_half rotation of x·W_q,hfᵀ equals the adjacent-pair
 * rotation of x·W_q,tesseraᵀ up to the closed-form row permutation. Loading gives identical logits (F32),
 * also from shards; F16 within 1e-3 and BF16 within 1e-2 absolute on logits of magnitude ≤ 0.3 (observed
 * 1.1e-4 and 1.2e-3: the storage rounding, 2^-11 and 2^-8 relative, of weights ~N(0, 0.02) and norms ~1). GPT-2: Conv1D weights are stored transposed; old checkpoints'
 * mask buffers and un-prefixed names load. Every misfit gives a FormatError naming the file and the key
 * or tensor.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError, manualSeed, tensor } from '../../src/index.js';
import { decodeSafetensors, encodeSafetensors, type HostTensor } from '../../src/io/safetensors.js';
import { loadHFModel, permuteRotaryRows, saveHFModel } from '../../src/models/hf.js';
import { GPT } from '../../src/nn/gpt.js';
import { Llama, type LlamaConfig } from '../../src/nn/llama.js';
import { noGrad } from '../../src/tensor/context.js';
import { expectClose } from '../helpers/check.js';

const root = mkdtempSync(join(tmpdir(), 'tessera-hf-models-'));
const ids = [3, 1, 4, 1, 5, 9, 2, 6];
const logitsOf = (m: Llama | GPT) => Array.from(m.forward(tensor(ids, { dtype: 'i32', shape: [1, ids.length] })).logits.dataSync());

/** Deterministic values in [-a, a]. */
function rand(n: number, seed: number, a = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * a;
  });
}

const LLAMA: LlamaConfig = { vocabSize: 12, dim: 32, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 48, maxSeqLen: 16, normEps: 1e-5, ropeTheta: 500 };

/** A small Llama with random (not all-one) norm weights, so every tensor's mapping matters. */
function llama(cfg: Partial<LlamaConfig> = {}): Llama {
  manualSeed(7);
  const m = new Llama({ ...LLAMA, ...cfg });
  let seed = 1;
  for (const [key, p] of m.namedParameters()) {
    if (key.endsWith('norm.weight') || key.endsWith('layernorm.weight')) {
      const v = rand(p.numel, seed++, 0.5).map((x) => 1 + x);
      noGrad(() => p.assign(tensor(v, { shape: p.shape })));
    }
  }
  return m;
}

function readST(path: string): Record<string, HostTensor> {
  return decodeSafetensors(readFileSync(path), path).tensors;
}

function writeCheckpoint(dir: string, config: unknown, tensors: Record<string, HostTensor> | undefined): void {
  mkdirSync(dir, { recursive: true });
  if (config !== undefined) writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  if (tensors) writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
}

/**
 * Hugging Face LlamaForCausalLM's forward pass in float64 from the checkpoint's tensors: RMSNorm,
 * rotate_half rotary embeddings (pairs (i, i + hd/2), inverse frequency theta^(-2i/hd)), grouped-query
 * causal attention, SwiGLU, tied or separate head. Independent of Tessera's modules.
 */
function hfLlamaLogits(w: Record<string, HostTensor>, c: Required<Omit<LlamaConfig, 'ropeScaling'>>, tokens: number[]): number[] {
  const W = (n: string) => Array.from(w[n]!.data as Float32Array);
  const D = c.dim;
  const H = c.nHead;
  const KV = c.nKVHead;
  const hd = D / H;
  const matvec = (m: number[], rows: number, x: number[]) => Array.from({ length: rows }, (_, r) => x.reduce((s, xi, j) => s + xi * m[r * x.length + j]!, 0));
  const rms = (x: number[], g: number[]) => {
    const inv = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + c.normEps);
    return x.map((v, i) => v * inv * g[i]!);
  };
  const rope = (v: number[], p: number) => {
    const out = [...v];
    for (let h = 0; h < v.length / hd; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const ang = p * c.ropeTheta ** ((-2 * i) / hd);
        const a = v[h * hd + i]!;
        const b = v[h * hd + i + hd / 2]!;
        out[h * hd + i] = a * Math.cos(ang) - b * Math.sin(ang);
        out[h * hd + i + hd / 2] = b * Math.cos(ang) + a * Math.sin(ang);
      }
    }
    return out;
  };
  const emb = W('model.embed_tokens.weight');
  let x = tokens.map((t) => emb.slice(t * D, (t + 1) * D));
  for (let l = 0; l < c.nLayer; l++) {
    const p = `model.layers.${l}.`;
    const h = x.map((r) => rms(r, W(`${p}input_layernorm.weight`)));
    const q = h.map((r, t) => rope(matvec(W(`${p}self_attn.q_proj.weight`), H * hd, r), t));
    const k = h.map((r, t) => rope(matvec(W(`${p}self_attn.k_proj.weight`), KV * hd, r), t));
    const v = h.map((r) => matvec(W(`${p}self_attn.v_proj.weight`), KV * hd, r));
    const att = x.map((_, t) => {
      const o = new Array<number>(H * hd).fill(0);
      for (let hh = 0; hh < H; hh++) {
        const g = Math.floor(hh / (H / KV));
        const s = Array.from({ length: t + 1 }, (_, u) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[t]![hh * hd + i]! * k[u]![g * hd + i]!;
          return d / Math.sqrt(hd);
        });
        const mx = Math.max(...s);
        const e = s.map((z) => Math.exp(z - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let u = 0; u <= t; u++) for (let i = 0; i < hd; i++) o[hh * hd + i]! += (e[u]! / z) * v[u]![g * hd + i]!;
      }
      return matvec(W(`${p}self_attn.o_proj.weight`), D, o);
    });
    x = x.map((r, t) => r.map((vv, i) => vv + att[t]![i]!));
    const h2 = x.map((r) => rms(r, W(`${p}post_attention_layernorm.weight`)));
    const ff = h2.map((r) => {
      const g = matvec(W(`${p}mlp.gate_proj.weight`), c.hiddenDim, r);
      const u = matvec(W(`${p}mlp.up_proj.weight`), c.hiddenDim, r);
      return matvec(W(`${p}mlp.down_proj.weight`), D, g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]!));
    });
    x = x.map((r, t) => r.map((vv, i) => vv + ff[t]![i]!));
  }
  const head = c.tieEmbeddings ? emb : W('lm_head.weight');
  return x.flatMap((r) => matvec(head, c.vocabSize, rms(r, W('model.norm.weight'))));
}

describe('Hugging Face models', () => {
  it('Llama: the saved q/k rows follow rotate_half (closed form and a float64 HF forward); loading gives identical logits', async () => {
    const m = llama();
    const want = logitsOf(m);
    const dir = join(root, 'llama');
    await saveHFModel(dir, { arch: 'llama', model: m });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48, rope_theta: 500, tie_word_embeddings: false });
    const w = readST(join(dir, 'model.safetensors'));
    expect(Object.keys(w)).toContain('model.layers.1.self_attn.q_proj.weight');
    expect(Object.keys(w)).toContain('lm_head.weight');

    // Closed form, one head: q_hf = x·W_hfᵀ rotated by rotate_half equals q_t = x·W_tᵀ rotated by adjacent
    // pairs, with Tessera index 2i + j <-> HF index j·hd/2 + i.
    const hd = 8;
    const D = 32;
    const head = 2;
    const Wt = m.layers.at(0).selfAttn.qProj.weight.dataSync() as Float32Array;
    const Wh = w['model.layers.0.self_attn.q_proj.weight']!.data as Float32Array;
    const x = Array.from(rand(D, 99));
    const proj = (Wm: Float32Array) => Array.from({ length: hd }, (_, r) => x.reduce((s, xi, j) => s + xi * Wm[(head * hd + r) * D + j]!, 0));
    const qt = proj(Wt);
    const qh = proj(Wh);
    expect(qh).not.toEqual(qt); // the layouts do differ
    const pos = 5;
    for (let i = 0; i < hd / 2; i++) {
      const ang = pos * 500 ** ((-2 * i) / hd);
      const [c, s] = [Math.cos(ang), Math.sin(ang)];
      const hfOut = [qh[i]! * c - qh[i + hd / 2]! * s, qh[i + hd / 2]! * c + qh[i]! * s]; // rotate_half, indices i and i + hd/2
      const tOut = [qt[2 * i]! * c - qt[2 * i + 1]! * s, qt[2 * i]! * s + qt[2 * i + 1]! * c]; // adjacent, indices 2i and 2i+1
      expectClose(tOut, hfOut, { atol: 1e-6, rtol: 0 }, `head ${head} pair ${i}`);
    }
    // permuteRotaryRows is that closed form and its inverse.
    const back = permuteRotaryRows(Wh, 4, hd, D);
    expect(Array.from(back)).toEqual(Array.from(Wt));
    expect(Array.from(permuteRotaryRows(back, 4, hd, D, true))).toEqual(Array.from(Wh));

    // Hugging Face's forward pass (float64, rotate_half) on the file's tensors gives Tessera's logits.
    expectClose(hfLlamaLogits(w, m.config, ids), want, { atol: 2e-5, rtol: 1e-4 }, 'HF reference logits');

    const loaded = loadHFModel(dir);
    expect(loaded.arch).toBe('llama');
    if (loaded.arch !== 'llama') throw new Error('unreachable');
    expect(loaded.model.config).toMatchObject({ ...LLAMA, tieEmbeddings: false });
    expect(logitsOf(loaded.model)).toEqual(want);
    expect(loaded.config['model_type']).toBe('llama');
  });

  it('Llama: tied embeddings, llama3 rope scaling and a context cap round-trip through config.json', async () => {
    const scaling = { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8 };
    const m = llama({ tieEmbeddings: true, nKVHead: 4, ropeScaling: scaling });
    const dir = join(root, 'llama-tied');
    await saveHFModel(dir, { arch: 'llama', model: m });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg['rope_scaling']).toEqual({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 });
    expect(Object.keys(readST(join(dir, 'model.safetensors')))).not.toContain('lm_head.weight');
    const loaded = loadHFModel(dir);
    if (loaded.arch !== 'llama') throw new Error('unreachable');
    expect(loaded.model.config.ropeScaling).toEqual(scaling);
    expect(loaded.model.config.tieEmbeddings).toBe(true);
    expect(logitsOf(loaded.model)).toEqual(logitsOf(m));
    const capped = loadHFModel(dir, { maxSeqLen: 8 });
    if (capped.arch !== 'llama') throw new Error('unreachable');
    expect(capped.model.config.maxSeqLen).toBe(8);
    expect(logitsOf(capped.model)).toEqual(logitsOf(m));
  });

  it('GPT-2: Conv1D weights are stored [in, out]; round trip gives identical logits; old-checkpoint names and buffers load', async () => {
    manualSeed(4);
    const m = new GPT({ vocabSize: 12, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16 });
    for (const [, p] of m.namedParameters()) if (p.ndim === 1) noGrad(() => p.assign(tensor(rand(p.numel, p.numel + 3, 0.3), { shape: p.shape })));
    const want = logitsOf(m);
    const dir = join(root, 'gpt2');
    await saveHFModel(dir, { arch: 'gpt2', model: m });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ model_type: 'gpt2', n_embd: 16, n_layer: 2, n_head: 2, n_positions: 16, vocab_size: 12 });
    const w = readST(join(dir, 'model.safetensors'));
    const cAttn = w['transformer.h.1.attn.c_attn.weight']!;
    expect(cAttn.shape).toEqual([16, 48]);
    const lin = m.h.at(1).attn.cAttn.weight.dataSync(); // [48, 16]
    for (const [i, o] of [[0, 0], [3, 17], [15, 47]] as const) expect((cAttn.data as Float32Array)[i * 48 + o]).toBe(lin[o * 16 + i]);
    expect(w['transformer.h.0.mlp.c_fc.weight']!.shape).toEqual([16, 64]);
    expect(w['transformer.h.0.mlp.c_proj.weight']!.shape).toEqual([64, 16]);

    const loaded = loadHFModel(dir);
    expect(loaded.arch).toBe('gpt2');
    expect(logitsOf(loaded.model)).toEqual(want);
    const onCpu = loadHFModel(dir, { device: 'cpu' });
    expect(onCpu.model.parameters().every((p) => p.device === 'cpu')).toBe(true);

    // The original `gpt2` checkpoint: no `transformer.` prefix, mask buffers, n_ctx instead of n_positions.
    const old: Record<string, HostTensor> = {};
    for (const [n, t] of Object.entries(w)) old[n.replace(/^transformer\./, '')] = t;
    old['h.0.attn.bias'] = { dtype: 'f32', shape: [1, 1, 16, 16], data: new Float32Array(256) };
    old['h.0.attn.masked_bias'] = { dtype: 'f32', shape: [], data: new Float32Array([-1e4]) };
    const oldCfg = { ...cfg };
    delete oldCfg['n_positions'];
    writeCheckpoint(join(root, 'gpt2-old'), oldCfg, old);
    expect(logitsOf(loadHFModel(join(root, 'gpt2-old')).model)).toEqual(want);
  });

  it('loads a checkpoint sharded across two files by model.safetensors.index.json', () => {
    const src = join(root, 'llama');
    const w = readST(join(src, 'model.safetensors'));
    const names = Object.keys(w).sort();
    const dir = join(root, 'llama-sharded');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), readFileSync(join(src, 'config.json')));
    const shard = (i: number) => `model-0000${i}-of-00002.safetensors`;
    const weightMap: Record<string, string> = {};
    const parts: Record<string, HostTensor>[] = [{}, {}];
    names.forEach((n, i) => {
      const k = i < names.length / 2 ? 0 : 1;
      parts[k]![n] = w[n]!;
      weightMap[n] = shard(k + 1);
    });
    parts.forEach((p, k) => writeFileSync(join(dir, shard(k + 1)), encodeSafetensors(p)));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const whole = loadHFModel(src);
    expect(logitsOf(loadHFModel(dir).model)).toEqual(logitsOf(whole.model));

    // An index entry whose shard lacks the tensor names the shard and the tensor.
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, 'model.extra.weight': shard(2) } }));
    expect(() => loadHFModel(dir)).toThrow(/model-00002-of-00002\.safetensors: tensor 'model\.extra\.weight'.*missing/);
  });

  it('F16 and BF16 weights load as f32 within tolerance (F16 1e-3, BF16 1e-2 on logits)', async () => {
    const m = llama();
    const want = logitsOf(m);
    for (const [dtype, atol, st] of [['f16', 1e-3, 'float16'], ['bf16', 1e-2, 'bfloat16']] as const) {
      const dir = join(root, `llama-${dtype}`);
      await saveHFModel(dir, { arch: 'llama', model: m }, { dtype });
      const w = readST(join(dir, 'model.safetensors'));
      expect(new Set(Object.values(w).map((t) => t.dtype))).toEqual(new Set([dtype]));
      const loaded = loadHFModel(dir);
      expect(loaded.config['torch_dtype']).toBe(st);
      expect(loaded.model.parameters().every((p) => p.dtype === 'f32')).toBe(true);
      const got = logitsOf(loaded.model);
      expect(got).not.toEqual(want); // the storage did round
      expectClose(got, want, { atol, rtol: 0 }, `${dtype} logits`);
    }
  });

  describe('errors name the file and the key or tensor', () => {
    const good = join(root, 'llama');
    const cfg = () => JSON.parse(readFileSync(join(good, 'config.json'), 'utf8')) as Record<string, unknown>;
    const weights = () => readST(join(good, 'model.safetensors'));
    let n = 0;
    const variant = (config: unknown, tensors: Record<string, HostTensor> | undefined): string => {
      const dir = join(root, `bad-${n++}`);
      rmSync(dir, { recursive: true, force: true });
      writeCheckpoint(dir, config, tensors);
      return dir;
    };
    const fails = (dir: string, re: RegExp) => {
      expect(() => loadHFModel(dir)).toThrow(FormatError);
      expect(() => loadHFModel(dir)).toThrow(re);
    };

    it('missing config.json', () => {
      const dir = variant(undefined, weights());
      fails(dir, new RegExp(`${dir}/config\\.json: cannot read config\\.json`));
    });
    it('missing weights', () => {
      const dir = variant(cfg(), undefined);
      fails(dir, /neither model\.safetensors nor model\.safetensors\.index\.json/);
    });
    it('unsupported model_type', () => {
      fails(variant({ ...cfg(), model_type: 'mistral', architectures: ['MistralForCausalLM'] }, weights()), /config\.json: model_type "mistral".*not supported/);
    });
    it('missing key', () => {
      const c = cfg();
      delete c['intermediate_size'];
      fails(variant(c, weights()), /config\.json: key 'intermediate_size' is missing/);
      const g = { model_type: 'gpt2', n_embd: 16, n_layer: 1, vocab_size: 12, n_positions: 8 };
      fails(variant(g, weights()), /config\.json: key 'n_head' is missing/);
    });
    it('missing tensor', () => {
      const w = weights();
      delete w['model.layers.1.mlp.up_proj.weight'];
      fails(variant(cfg(), w), /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' \(for layers\.1\.mlp\.up_proj\.weight\) is missing/);
    });
    it('shape mismatch, naming expected and found', () => {
      fails(variant({ ...cfg(), intermediate_size: 40 }, weights()), /model\.safetensors: tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' has shape \[48,32\], the llama config needs \[40,32\]/);
    });
    it('unexpected extra tensor', () => {
      const w = weights();
      w['model.layers.0.self_attn.q_norm.weight'] = { dtype: 'f32', shape: [8], data: new Float32Array(8) };
      fails(variant(cfg(), w), /tensors not used by the llama model: model\.layers\.0\.self_attn\.q_norm\.weight \(.*model\.safetensors\)/);
    });
    it('unsupported rope_scaling', () => {
      fails(variant({ ...cfg(), rope_scaling: { rope_type: 'yarn', factor: 4 } }, weights()), /config\.json: rope_scaling type "yarn" is not supported/);
      fails(variant({ ...cfg(), rope_scaling: { type: 'linear' } }, weights()), /config\.json: key 'factor' is missing/);
    });
    it('head_dim other than hidden_size / num_attention_heads', () => {
      fails(variant({ ...cfg(), head_dim: 16 }, weights()), /config\.json: head_dim 16 differs from hidden_size \/ num_attention_heads = 8/);
    });
    it('weights of a non-float dtype', () => {
      const w = weights();
      w['model.norm.weight'] = { dtype: 'i32', shape: [32], data: new Int32Array(32) };
      fails(variant(cfg(), w), /model\.safetensors: tensor 'model\.norm\.weight' has dtype i32/);
    });
  });
});
