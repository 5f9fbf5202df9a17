// Acceptance: a tiny GPT (2 layers, 64 wide) trained for 100 steps on a fixed text fragment with the
// interpreter reaches a loss clearly below its start. Stated bound: final loss (mean of the last 10
// steps) below 60% of the first step's loss, which starts near ln(vocab).
import { describe, expect, it } from 'vitest';
import { CharTokenizer } from '../../src/io/char_tokenizer.js';
import { GPT } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { manualSeed } from '../../src/tensor/context.js';
import { tensor } from '../../src/tensor/tensor.js';
import { memory } from '../../src/index.js';

const TEXT = `Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,
and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part
of the world. It is a way I have of driving off the spleen and regulating the circulation.`;

describe('tiny GPT on the interpreter', () => {
  it('learns a fixed text fragment in 100 steps', () => {
    manualSeed(42);
    const tok = CharTokenizer.fromText(TEXT);
    const ids = tok.encode(TEXT);
    const B = 8;
    const T = 16;
    const model = new GPT({ vocabSize: tok.vocabSize, blockSize: T, nLayer: 2, nHead: 4, nEmbd: 64 });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0 });
    let state = 7;
    const losses: number[] = [];
    let baseline = 0;
    for (let step = 0; step < 100; step++) {
      const x = new Int32Array(B * T);
      const y = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        state = (state * 1103515245 + 12345) >>> 0;
        const start = state % (ids.length - T - 1);
        for (let t = 0; t < T; t++) {
          x[b * T + t] = ids[start + t]!;
          y[b * T + t] = ids[start + t + 1]!;
        }
      }
      const xt = tensor(x, { dtype: 'i32', shape: [B, T] });
      const yt = tensor(y, { dtype: 'i32', shape: [B, T] });
      const { logits, loss } = model.forward(xt, yt);
      loss!.backward();
      opt.step({ realize: [loss!] });
      losses.push(loss!.itemSync());
      for (const t of [xt, yt, logits, loss!]) t.dispose();
      // No leaks: after the first step allocated the optimizer state, every step returns to one baseline.
      const current = memory.stats().interp!.current;
      if (step === 1) baseline = current;
      if (step > 1) expect(current).toBe(baseline);
    }
    const first = losses[0]!;
    const last10 = losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
    expect(first).toBeGreaterThan(Math.log(tok.vocabSize) * 0.8);
    expect(last10).toBeLessThan(first * 0.6);
  });
});
