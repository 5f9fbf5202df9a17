/** File formats: safetensors, checkpoints, tokenizers. */
export { encodeSafetensors, decodeSafetensors, saveSafetensors, loadSafetensors } from './safetensors.js';
export type { HostTensor } from './safetensors.js';
export { saveCheckpoint, loadCheckpoint } from './checkpoint.js';
export { writeFileAtomic, writeFileAtomicSync } from './atomic.js';
export { CharTokenizer } from './char_tokenizer.js';
export {
  openGGUF,
  parseGGUF,
  encodeGGUF,
  writeGGUF,
  writeGGUFSync,
  ggmlTypeTraits,
  GGUFFile,
} from './gguf.js';
export type {
  GGMLTypeName,
  GGMLTypeTraits,
  GGUFFloatType,
  GGUFScalarType,
  GGUFElementType,
  GGUFScalarValues,
  GGUFArrayValues,
  GGUFScalar,
  GGUFArray,
  GGUFValue,
  GGUFScalarInput,
  GGUFArrayInput,
  GGUFMetadataInput,
  GGUFTensorInfo,
  GGUFTensorInput,
  GGUFWriteInput,
} from './gguf.js';
export {
  quantizeQ8_0,
  dequantizeQ8_0,
  f32ToF16Array,
  f16ToF32Array,
  f32ToBf16Array,
  bf16ToF32Array,
  Q8_0_BLOCK_SIZE,
  Q8_0_BLOCK_BYTES,
} from './quant.js';
