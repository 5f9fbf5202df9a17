/**
 * `models`: language models to and from the ecosystem's files (GGUF with llama.cpp's names and
 * metadata; architectures llama and gpt2).
 * @packageDocumentation
 */
import '../runtime/node_devices.js';
export { loadGGUFModel, exportGGUF, describeGGUFModel } from './gguf.js';
export type { LanguageModel, LoadedModel, ExportType, ExportGGUFOptions, GGUFModelInfo } from './gguf.js';
