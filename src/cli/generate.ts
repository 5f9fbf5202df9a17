import { FormatError } from '../errors.js';
import { CharTokenizer } from '../io/char_tokenizer.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import type { LanguageModel } from '../models/gguf.js';
import { GPT } from '../nn/gpt.js';
import type { GPTConfig } from '../nn/gpt.js';
import { Llama } from '../nn/llama.js';
import type { LlamaConfig } from '../nn/llama.js';
import { setDefaultDevice } from '../runtime/registry.js';
import { sampleText } from './train.js';

export interface GenerateCliOptions {
  checkpoint: string;
  prompt: string;
  length: number;
  temperature: number;
  seed: number;
  device: string;
}

/** A model and its character tokenizer from a checkpoint written by `tessera train` (either architecture). */
export async function loadTrainedCheckpoint(path: string, device?: string): Promise<{ lm: LanguageModel; tok: CharTokenizer }> {
  const { metadata } = await loadCheckpoint(path).then((c) => {
    for (const t of Object.values(c.tensors)) t.dispose();
    return c;
  });
  const arch = metadata.format === 'tessera-gpt' ? 'gpt2' : metadata.format === 'tessera-llama' ? 'llama' : undefined;
  if (!arch || !metadata.config || !metadata.tokenizer) {
    throw new FormatError(`${path}: not a checkpoint written by 'tessera train' (metadata field 'format', 'config' or 'tokenizer' missing)`);
  }
  let config: unknown;
  try {
    config = JSON.parse(metadata.config);
  } catch {
    throw new FormatError(`${path}: metadata field 'config' is not valid JSON`);
  }
  const tok = CharTokenizer.fromJSON(metadata.tokenizer);
  if (device) setDefaultDevice(device);
  const lm: LanguageModel = arch === 'llama' ? { arch, model: new Llama(config as LlamaConfig) } : { arch, model: new GPT(config as GPTConfig) };
  await loadCheckpoint(path, lm.model);
  return { lm, tok };
}

/** Load a checkpoint written by `tessera train` and continue `prompt`. */
export async function generateFromCheckpoint(o: GenerateCliOptions): Promise<string> {
  const { lm, tok } = await loadTrainedCheckpoint(o.checkpoint, o.device);
  return sampleText(lm, tok, o.prompt, o.length, o.device, o.seed, o.temperature);
}
