// jit: a captured training step replays the same kernels on the same buffers and gives the same
// numbers as running the step normally; a new signature re-traces; a freed buffer is a clear error.
import { describe, expect, it } from 'vitest';
import { jit } from '../../src/jit/index.js';
import { GPT } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { DisposedError, getDefaultDevice, manualSeed, realizeTotals, setDefaultDevice, tensor } from '../../src/index.js';
import type { Tensor } from '../../src/index.js';

function trainer(device: string) {
  const prev = getDefaultDevice();
  setDefaultDevice(device);
  manualSeed(5);
  const model = new GPT({ vocabSize: 13, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0.1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-2 });
  setDefaultDevice(prev);
  const step = (x: Tensor, y: Tensor): Tensor => {
    const { loss } = model.forward(x, y);
    loss!.backward();
    opt.step({ realize: [loss!] });
    return loss!;
  };
  return { model, opt, step };
}

function batch(i: number, device: string, B = 2): [Tensor, Tensor] {
  const ids = Int32Array.from({ length: B * 8 }, (_, j) => (i * 7 + j * 3) % 13);
  return [tensor(ids, { dtype: 'i32', shape: [B, 8], device }), tensor(ids.map((v) => (v * 5 + 1) % 13), { dtype: 'i32', shape: [B, 8], device })];
}

describe.each(['interp', 'cpu'])('jit on %s', (device) => {
  it('replays a GPT training step (dropout, AdamW, changing lr) with the same losses and weights as running it', () => {
    const plain = trainer(device);
    const traced = trainer(device);
    const step = jit(traced.step);
    manualSeed(77);
    const a: number[] = [];
    for (let i = 0; i < 6; i++) {
      plain.opt.setLr(1e-2 / (i + 1));
      a.push(plain.step(...batch(i, device)).itemSync());
    }
    manualSeed(77);
    const b: number[] = [];
    let kernelsBefore = 0;
    for (let i = 0; i < 6; i++) {
      traced.opt.setLr(1e-2 / (i + 1));
      if (i === 2) kernelsBefore = realizeTotals().realizes;
      b.push(step(...batch(i, device)).itemSync());
    }
    // Calls 3..6 replayed: no realize (so no graph building, scheduling or compiling) happened for them.
    expect(realizeTotals().realizes - kernelsBefore).toBe(0);
    expect(step.stats).toMatchObject({ traced: 2, replayed: 4, signatures: 1 });
    expect(b).toEqual(a);
    const pa = plain.model.parameters().map((p) => Array.from(p.dataSync()));
    const pb = traced.model.parameters().map((p) => Array.from(p.dataSync()));
    expect(pb).toEqual(pa);
  });

  it('re-traces for a new input signature and errors clearly on a freed buffer', () => {
    const t = trainer(device);
    const step = jit(t.step);
    for (let i = 0; i < 3; i++) step(...batch(i, device));
    expect(step.stats.replayed).toBe(1);
    step(...batch(0, device, 3)); // batch of 3: new signature
    expect(step.stats.signatures).toBe(2);
    expect(step.stats.traced).toBe(3);
    t.model.parameters()[0]!.dispose();
    expect(() => step(...batch(1, device))).toThrow(DisposedError);
    expect(() => step(...batch(1, device))).toThrow(/freed after the capture/);
  });
});

describe('jit.async', () => {
  it('replays off the JavaScript thread on cpu and gives the same losses as the synchronous path', async () => {
    const a = trainer('cpu');
    const b = trainer('cpu');
    const sync = jit(a.step);
    const asyncStep = jit(b.step);
    manualSeed(3);
    const la: number[] = [];
    for (let i = 0; i < 4; i++) la.push(sync(...batch(i, 'cpu')).itemSync());
    manualSeed(3);
    const lb: number[] = [];
    for (let i = 0; i < 4; i++) {
      let ticked = false;
      setImmediate(() => (ticked = true));
      const loss = await asyncStep.async(...batch(i, 'cpu'));
      lb.push(loss.itemSync());
      if (i >= 2) expect(ticked).toBe(true); // the event loop ran while the replay computed
    }
    expect(lb).toEqual(la);
    expect(asyncStep.stats).toMatchObject({ traced: 2, replayed: 2 });
  });
});
