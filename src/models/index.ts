/**
 * `models`: language models to and from the ecosystem's files (GGUF with llama.cpp's names and
 * metadata; architectures llama and gpt2).
 * @packageDocumentation
 */
import '../runtime/node_devices.js';
export { loadGGUFModel, exportGGUF, describeGGUFModel } from './gguf.js';
export type { LanguageModel, LoadedModel, ExportType, ExportGGUFOptions, GGUFModelInfo } from './gguf.js';
export { generateText } from './textgen.js';
export type { GenerateTextOptions, GeneratedText } from './textgen.js';
export { loadHFModel, saveHFModel, permuteRotaryRows } from './hf.js';
export type { LoadedHFModel, LoadHFOptions, SaveHFOptions } from './hf.js';
