import { FormatError } from '../errors.js';
import { CharTokenizer } from '../io/char_tokenizer.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { GPT } from '../nn/gpt.js';
import { setDefaultDevice } from '../runtime/registry.js';
import type { GPTConfig } from '../nn/gpt.js';
import { sampleText } from './train.js';

export interface GenerateCliOptions {
  checkpoint: string;
  prompt: string;
  length: number;
  temperature: number;
  seed: number;
  device: string;
}

/** Load a checkpoint written by `tessera train` and continue `prompt`. */
export async function generateFromCheckpoint(o: GenerateCliOptions): Promise<string> {
  const { metadata } = await loadCheckpoint(o.checkpoint).then((c) => {
    for (const t of Object.values(c.tensors)) t.dispose();
    return c;
  });
  if (metadata.format !== 'tessera-gpt' || !metadata.config || !metadata.tokenizer) {
    throw new FormatError(`${o.checkpoint}: not a checkpoint written by 'tessera train' (metadata field 'format', 'config' or 'tokenizer' missing)`);
  }
  let config: GPTConfig;
  try {
    config = JSON.parse(metadata.config) as GPTConfig;
  } catch {
    throw new FormatError(`${o.checkpoint}: metadata field 'config' is not valid JSON`);
  }
  const tok = CharTokenizer.fromJSON(metadata.tokenizer);
  const model = (setDefaultDevice(o.device), new GPT(config));
  await loadCheckpoint(o.checkpoint, model);
  return sampleText(model, tok, o.prompt, o.length, o.device, o.seed, o.temperature);
}
