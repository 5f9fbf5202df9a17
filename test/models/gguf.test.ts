/**
 * Models to and from GGUF: Llama and GPT-2 exported then loaded give the same logits (F32 exactly;
 * F16 within 2e-2 and Q8_0 within 5e-2 absolute on logits of magnitude ~1, the storage rounding of
 * weights ~N(0, 0.02)), the tokenizer travels with the model, `describeGGUFModel` reports sizes, and
 * mismatched or foreign files give FormatErrors naming the file and the tensor or key.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError, manualSeed, tensor } from '../../src/index.js';
import { CharTokenizer } from '../../src/io/char_tokenizer.js';
import { openGGUF, writeGGUF } from '../../src/io/gguf.js';
import { describeGGUFModel, exportGGUF, loadGGUFModel } from '../../src/models/gguf.js';
import { GPT } from '../../src/nn/gpt.js';
import { Llama } from '../../src/nn/llama.js';
import { CharTokenizerAdapter } from '../../src/tokenizer/char.js';
import { expectClose } from '../helpers/check.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-gguf-models-'));
const text = 'the quick brown fox jumps over the lazy dog.';
const chars = CharTokenizer.fromText(text);
const charTok = new CharTokenizerAdapter(chars);

function llama(): Llama {
  manualSeed(12);
  return new Llama({ vocabSize: chars.vocabSize, dim: 32, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 64, maxSeqLen: 16 });
}
const ids = [3, 1, 4, 1, 5, 9, 2, 6];
const logitsOf = (m: Llama | GPT) => Array.from(m.forward(tensor(ids, { dtype: 'i32', shape: [1, ids.length] })).logits.dataSync());

describe('GGUF models', () => {
  it('Llama: F32 export -> load gives identical logits, the tokenizer and the config; F16/Q8_0 within tolerance', async () => {
    const m = llama();
    const want = logitsOf(m);
    const tok = charTok;
    for (const [type, atol] of [['F32', 0], ['F16', 2e-2], ['Q8_0', 5e-2]] as const) {
      const path = join(dir, `llama-${type}.gguf`);
      await exportGGUF(path, { arch: 'llama', model: m }, { type, tokenizer: tok, name: 'tiny' });
      const loaded = loadGGUFModel(path);
      expect(loaded.arch).toBe('llama');
      expect(loaded.name).toBe('tiny');
      if (loaded.arch !== 'llama') throw new Error('unreachable');
      expect(loaded.model.config).toMatchObject({ dim: 32, nLayer: 2, nHead: 4, nKVHead: 2, hiddenDim: 64, maxSeqLen: 16, vocabSize: chars.vocabSize });
      const got = logitsOf(loaded.model);
      if (atol === 0) expect(got).toEqual(want);
      else expectClose(got, want, { atol, rtol: 0 }, `${type} logits`);
      expect(loaded.tokenizer!.encode(text, { addSpecial: false })).toEqual(charTok.encode(text, { addSpecial: false }));
      const f = openGGUF(path);
      const types = new Set(f.tensors.filter((t) => t.shape.length === 2).map((t) => t.typeName));
      expect([...types]).toEqual([type]);
      expect(f.tensors.filter((t) => t.shape.length === 1).every((t) => t.typeName === 'F32')).toBe(true);
      f.close();
    }
    const info = describeGGUFModel(join(dir, 'llama-Q8_0.gguf'));
    expect(info).toMatchObject({ architecture: 'llama', contextLength: 16, tokenizer: 'llama', vocabSize: chars.vocabSize });
    expect(info.parameters).toBe(m.parameters().reduce((s, p) => s + p.numel, 0));
    expect(info.kvCacheBytes).toBe(2 * 2 * 2 * 8 * 16 * 4);
  });

  it('GPT-2: export -> load gives identical logits (tied head, biases, learned positions)', async () => {
    manualSeed(4);
    const m = new GPT({ vocabSize: chars.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 });
    const path = join(dir, 'gpt2.gguf');
    await exportGGUF(path, { arch: 'gpt2', model: m });
    const loaded = loadGGUFModel(path);
    expect(loaded.arch).toBe('gpt2');
    // A device other than the default: parameters are created there.
    const onCpu = loadGGUFModel(path, { device: 'cpu' });
    expect(onCpu.model.parameters().every((p) => p.device === 'cpu')).toBe(true);
    expect(logitsOf(loaded.model)).toEqual(logitsOf(m));
    expect(loaded.tokenizer).toBeUndefined();
  });

  it('names the file and the tensor or key when a file does not fit', async () => {
    const good = join(dir, 'llama-F32.gguf');
    const f = openGGUF(good);
    const metadata = new Map(f.metadata);
    const tensors = f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: 'F32' as const, data: f.readTensorF32(t.name) }));
    f.close();
    const bad = async (name: string, md: Map<string, unknown>, ts: typeof tensors) => {
      const p = join(dir, name);
      await writeGGUF(p, { metadata: md as never, tensors: ts });
      return p;
    };
    const foreign = new Map(metadata).set('general.architecture', { type: 'string', value: 'bert' });
    const bert = await bad('bert.gguf', foreign, tensors);
    expect(() => loadGGUFModel(bert)).toThrow(/bert\.gguf: architecture 'bert' is not supported/);
    const missing = await bad('missing.gguf', metadata, tensors.filter((t) => t.name !== 'blk.1.ffn_up.weight'));
    expect(() => loadGGUFModel(missing)).toThrow(FormatError);
    expect(() => loadGGUFModel(missing)).toThrow(/missing\.gguf: tensor 'blk\.1\.ffn_up\.weight'.*missing/);
    const wide = new Map(metadata).set('llama.feed_forward_length', { type: 'u32', value: 48 });
    const shape = await bad('shape.gguf', wide, tensors);
    expect(() => loadGGUFModel(shape)).toThrow(/shape\.gguf: tensor 'blk\.0\.ffn_gate\.weight' has shape \[64,32\], the llama config needs \[48,32\]/);
    const noKey = new Map(metadata);
    noKey.delete('llama.block_count');
    const nokey = await bad('nokey.gguf', noKey, tensors);
    expect(() => loadGGUFModel(nokey)).toThrow(/nokey\.gguf: metadata key 'llama\.block_count' is missing/);
  });
});
