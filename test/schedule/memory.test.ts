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
