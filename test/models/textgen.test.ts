/**
 * generateText: text equals the decoded greedy tokens; a stop string ends the text before its first
 * occurrence (finishReason 'stop'); streamed pieces concatenate to the final text and never include any
 * part of a stop string; maxTokens bounds the length ('length'); both architectures.
 */
import { describe, expect, it } from 'vitest';
import { manualSeed } from '../../src/index.js';
import { CharTokenizer } from '../../src/io/char_tokenizer.js';
import { generateText } from '../../src/models/textgen.js';
import { GPT } from '../../src/nn/gpt.js';
import { Llama } from '../../src/nn/llama.js';
import { CharTokenizerAdapter } from '../../src/tokenizer/char.js';

const tok = new CharTokenizerAdapter(CharTokenizer.fromText('abcdefghij klmnop'));

describe('generateText', () => {
  for (const arch of ['llama', 'gpt2'] as const) {
    it(`${arch}: greedy text, stop strings and streaming`, () => {
      manualSeed(21);
      const lm =
        arch === 'llama'
          ? ({ arch, model: new Llama({ vocabSize: tok.vocabSize, dim: 16, nLayer: 1, nHead: 2, hiddenDim: 32, maxSeqLen: 48 }) } as const)
          : ({ arch, model: new GPT({ vocabSize: tok.vocabSize, blockSize: 48, nLayer: 1, nHead: 2, nEmbd: 16 }) } as const);
      const plain = generateText(lm, tok, 'abc', { maxTokens: 24, temperature: 0 });
      expect(plain.finishReason).toBe('length');
      expect(plain.tokens.length).toBe(24);
      expect(plain.text).toBe(tok.decode(plain.tokens));
      expect(plain.promptTokens).toBe(3);
      // A stop string taken from the middle of the greedy text.
      const stop = plain.text.slice(6, 9);
      const first = plain.text.indexOf(stop);
      const pieces: string[] = [];
      const stopped = generateText(lm, tok, 'abc', { maxTokens: 24, temperature: 0, stop: ['zzz-never', stop], onText: (p) => pieces.push(p) });
      expect(stopped.finishReason).toBe('stop');
      expect(stopped.text).toBe(plain.text.slice(0, first));
      expect(pieces.join('')).toBe(stopped.text);
      for (const p of pieces) expect(p.includes(stop)).toBe(false);
      const streamed: string[] = [];
      expect(generateText(lm, tok, 'abc', { maxTokens: 24, temperature: 0, onText: (p) => streamed.push(p) }).text).toBe(plain.text);
      expect(streamed.join('')).toBe(plain.text);
    });
  }
});
