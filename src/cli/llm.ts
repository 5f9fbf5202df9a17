import { ValueError } from '../errors.js';
import type { ExportType } from '../models/gguf.js';
import { describeGGUFModel, exportGGUF, loadGGUFModel } from '../models/gguf.js';
import { loadTrainedCheckpoint } from './generate.js';
import { generateText } from '../models/textgen.js';
import { loadHFModel, saveHFModel } from '../models/hf.js';
import type { LanguageModel } from '../models/gguf.js';
import { ByteLevelBPE } from '../tokenizer/byte_level.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CharTokenizerAdapter } from '../tokenizer/char.js';

/** Options of `tessera generate --model file.gguf`. */
export interface GenerateModelOptions {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed: number;
  /** Stop strings (the text ends before the first one). */
  stop?: readonly string[];
  stream?: boolean;
  device: string;
  /** Where streamed text goes (default stdout). */
  write?: (s: string) => void;
}

/**
 * Continue `prompt` with a GGUF model (llama or gpt2) and its own tokenizer; with `stream`, text is
 * written as it is generated. Returns the generated text.
 */
export function generateFromGGUF(o: GenerateModelOptions): string {
  const m = loadAnyModel(o.model, o.device);
  if (!m.tokenizer) throw new ValueError(`${o.model}: no tokenizer found (GGUF tokenizer.ggml.* metadata, or tokenizer.json beside a Hugging Face config.json), so text cannot be encoded`);
  const write = o.write ?? ((s: string) => process.stdout.write(s));
  return generateText(m, m.tokenizer, o.prompt, {
    maxTokens: o.maxTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    minP: o.minP,
    repetitionPenalty: o.repeatPenalty,
    seed: o.seed,
    stop: o.stop,
    onText: o.stream ? write : undefined,
  }).text;
}

/** A GGUF file, or a Hugging Face directory (config.json + safetensors, tokenizer.json when present). */
function loadAnyModel(path: string, device: string): LanguageModel & { tokenizer: Tokenizer | undefined } {
  if (!statSync(path, { throwIfNoEntry: false })?.isDirectory()) return loadGGUFModel(path, { device });
  const m = loadHFModel(path, { device });
  const tj = join(path, 'tokenizer.json');
  return { ...m, tokenizer: existsSync(tj) ? ByteLevelBPE.fromTokenizerJSON(readFileSync(tj, 'utf8')) : undefined };
}

/** `tessera info file.gguf`: a readable description. */
export function formatGGUFInfo(path: string): string {
  const i = describeGGUFModel(path);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return [
    `${i.file}: ${i.architecture}${i.name ? ` (${i.name})` : ''}`,
    `  parameters: ${i.parameters.toLocaleString('en-US')}`,
    `  tensor types: ${Object.entries(i.tensorTypes).map(([t, n]) => `${t} x${n}`).join(', ')}`,
    `  file: ${mib(i.fileBytes)}; weights once loaded (f32): ${mib(i.loadedBytes)}`,
    i.contextLength !== undefined ? `  context: ${i.contextLength} tokens; KV cache for one full sequence: ${mib(i.kvCacheBytes ?? 0)}` : '',
    `  tokenizer: ${i.tokenizer ?? 'none'}${i.vocabSize !== undefined ? ` (${i.vocabSize} tokens)` : ''}`,
  ]
    .filter((l) => l)
    .join('\n');
}

/** Options of `tessera export`. */
export interface ExportOptions {
  checkpoint: string;
  out: string;
  format: 'gguf' | 'safetensors';
  type: ExportType;
}

/**
 * Export a checkpoint written by `tessera train` (gpt2 or llama architecture, character tokenizer) to
 * GGUF (llama.cpp's names and metadata; the tokenizer as a 'llama' single-character vocabulary) or to
 * safetensors in a Hugging Face directory (`out` is the directory).
 */
export async function exportCheckpoint(o: ExportOptions): Promise<string> {
  const { lm, tok } = await loadTrainedCheckpoint(o.checkpoint);
  const tokenizer = new CharTokenizerAdapter(tok);
  if (o.format === 'gguf') {
    await exportGGUF(o.out, lm, { type: o.type, tokenizer, name: `tessera-${lm.arch}-char` });
    return o.out;
  }
  // safetensors: a Hugging Face directory (config.json + model.safetensors) that transformers and
  // `loadHFModel` read; the character vocabulary has no tokenizer.json equivalent.
  await saveHFModel(o.out, lm);
  return o.out;
}
