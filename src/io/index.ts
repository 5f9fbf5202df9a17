/** File formats: safetensors, checkpoints, tokenizers. */
export { encodeSafetensors, decodeSafetensors, saveSafetensors, loadSafetensors } from './safetensors.js';
export type { HostTensor } from './safetensors.js';
export { saveCheckpoint, loadCheckpoint } from './checkpoint.js';
export { writeFileAtomic, writeFileAtomicSync } from './atomic.js';
export { CharTokenizer } from './char_tokenizer.js';
