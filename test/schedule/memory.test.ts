// Memory planner: intermediates share one arena by lifetime. Checked here: no two live buffers
// overlap (checkPlan), results are bit-identical with planning on and off, and the planned peak of a
// training step is well below one-buffer-per-intermediate.
import { afterEach, describe, expect, it } from 'vitest';
import { engineOptions, getRuntime, manualSeed, noGrad, planSchedule, randn, realize } from '../../src/index.js';
import type { Tensor } from '../../src/index.js';
import { checkPlan, planMemory } from '../../src/schedule/memory.js';

function mlpStep(seed: number): Tensor[] {
  manualSeed(seed);
  const dims = [16, 32, 32, 32, 8];
  const ws = dims.slice(1).map((d, i) => randn([dims[i]!, d], { requiresGrad: true }));
  const x = randn([12, 16]).realize();
  const y = randn([12, 8]).realize();
  let h = x;
  for (const [i, w] of ws.entries()) h = i < ws.length - 1 ? h.matmul(w).tanh() : h.matmul(w);
  const loss = h.sub(y).square().mean();
  loss.backward();
  return [loss, ...noGrad(() => ws.map((w) => w.sub(w.grad!.mul(0.05))))];
}

afterEach(() => {
  engineOptions.memoryPlanning = true;
  engineOptions.checkPlans = false;
});

describe('memory planner', () => {
  it('never places two buffers that are alive at once in overlapping bytes', () => {
    const outs = mlpStep(1);
    const { schedule, plan } = planSchedule(
      outs.map((t) => t.node),
      getRuntime('interp'),
    );
    expect(plan.buffers.size).toBeGreaterThan(5);
    expect(() => checkPlan(plan)).not.toThrow();
    for (const p of plan.buffers.values()) expect(p.offset % getRuntime('interp').limits.bufferAlignment).toBe(0);
    // The arena can never be smaller than what is alive at the busiest kernel.
    expect(plan.arenaBytes).toBeGreaterThanOrEqual(plan.liveBytesPeak);
    expect(schedule.kernels.length).toBeGreaterThan(5);
  });

  it('checkPlan catches an aliasing plan', () => {
    const outs = mlpStep(2);
    const { schedule } = planSchedule(
      outs.map((t) => t.node),
      getRuntime('interp'),
    );
    const plan = planMemory(schedule.kernels, new Set(outs.map((t) => t.node)), 64);
    const broken = { ...plan, buffers: new Map([...plan.buffers].map(([n, b]) => [n, { ...b, offset: 0 }])) };
    expect(() => checkPlan(broken)).toThrow(/aliases live buffers/);
  });

  it('gives bit-identical results with planning on and off', () => {
    engineOptions.checkPlans = true;
    const planned = mlpStep(3);
    realize(...planned);
    engineOptions.memoryPlanning = false;
    const unplanned = mlpStep(3);
    realize(...unplanned);
    for (let i = 0; i < planned.length; i++) {
      expect(Array.from(planned[i]!.dataSync())).toEqual(Array.from(unplanned[i]!.dataSync()));
    }
  });

  it('packs an MLP training step optimally: arena equals the live-bytes lower bound, 1.4x below naive', () => {
    const outs = mlpStep(4);
    const { plan } = planSchedule(
      outs.map((t) => t.node),
      getRuntime('interp'),
    );
    // Activations live from the forward pass until the backward pass uses them, so little can share here.
    expect(plan.arenaBytes).toBe(plan.liveBytesPeak);
    expect(plan.naiveBytes / plan.arenaBytes).toBeGreaterThanOrEqual(1.4);
  });
});

describe('memory planner on a GPT training step', () => {
  it('cuts the planned peak by at least 2x against one buffer per intermediate, without aliasing', async () => {
    const { GPT } = await import('../../src/nn/gpt.js');
    const { AdamW } = await import('../../src/optim/adamw.js');
    const { tensor } = await import('../../src/tensor/tensor.js');
    manualSeed(5);
    const model = new GPT({ vocabSize: 32, blockSize: 16, nLayer: 2, nHead: 4, nEmbd: 32 });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const ids = Int32Array.from({ length: 4 * 16 }, (_, i) => (i * 7) % 32);
    const x = tensor(ids, { dtype: 'i32', shape: [4, 16] });
    const y = tensor(ids.map((v) => (v + 1) % 32), { dtype: 'i32', shape: [4, 16] });
    const { loss } = model.forward(x, y);
    loss!.backward();
    const pending = opt.prepareStep();
    const { schedule, plan } = planSchedule([loss!.node, ...pending.tensors.map((t) => t.node)], getRuntime('interp'));
    checkPlan(plan);
    const ratio = plan.naiveBytes / plan.arenaBytes;
    expect(schedule.kernels.length).toBeGreaterThan(30);
    expect(ratio).toBeGreaterThanOrEqual(2);
    // Within 10% of the best any packing could do.
    expect(plan.arenaBytes).toBeLessThanOrEqual(plan.liveBytesPeak * 1.1);
  });
});
