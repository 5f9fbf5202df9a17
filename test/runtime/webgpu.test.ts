// The WebGPU backend (runs in the 'webgpu' vitest project, on SwiftShader in CI): which kernel shape
// each kind of work takes and that it agrees with the interpreter (tiled GEMM with fused epilogue,
// batched; workgroup reductions with NaN; grids folded past the per-dimension limit; the storage
// buffer limit; packed 8/16-bit types written in place), clear errors for over-limit requests with the
// device working afterwards, asynchronous reads, and jit replay of a training step.
import { describe, expect, it } from 'vitest';
import { lowerKernel } from '../../src/codegen/lower.js';
import { renderKernelWGSL } from '../../src/codegen/render/wgsl.js';
import type { Tensor } from '../../src/index.js';
import { DeviceError, full, getRuntime, jit, manualSeed, planSchedule, realizeTotals, tensor } from '../../src/index.js';
import { GPT } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { WebGPURuntime } from '../../src/runtime/webgpu/backend.js';

const gpu = () => getRuntime('webgpu') as WebGPURuntime;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Number.isNaN(a[i]!) && Number.isNaN(b[i]!) ? m : Infinity;
    m = Math.max(m, d);
  }
  return m;
}

/** Kernel shapes the WGSL renderer picks for the kernels of `t`'s schedule. */
function shapes(t: Tensor): string[] {
  const rt = gpu();
  const { schedule } = planSchedule([t.node], rt);
  return schedule.kernels.map((k) => renderKernelWGSL(lowerKernel(k), { f16: false, maxWorkgroupsPerDimension: 65535 }).shape);
}

const data = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

describe('webgpu backend', () => {
  it('finds an adapter and reports its limits', () => {
    const rt = gpu();
    expect(rt.name).toBe('webgpu');
    expect(rt.limits.maxBuffersPerKernel).toBe(rt.info.limits.maxStorageBuffersPerShaderStage);
    expect(rt.limits.bufferAlignment).toBe(rt.info.limits.minStorageBufferOffsetAlignment);
    expect(rt.fingerprint()).toMatch(/^webgpu:/);
  });

  it('runs matmul + bias + relu through the tiled GEMM template with the epilogue fused (odd sizes, 1e-4)', () => {
    const A = data(67 * 45, (i) => Math.sin(i));
    const B = data(45 * 70, (i) => Math.cos(i * 0.7));
    const bias = data(70, (i) => (i % 5) - 2);
    const results = ['interp', 'webgpu'].map((device) => {
      const a = tensor(A, { shape: [67, 45], device });
      const b = tensor(B, { shape: [45, 70], device });
      const c = tensor(bias, { shape: [70], device });
      const y = a.matmul(b).add(c).relu();
      if (device === 'webgpu') expect(shapes(y)).toEqual(['gemm']);
      return y.dataSync();
    });
    expect(maxDiff(results[1]!, results[0]!)).toBeLessThan(1e-4);
  });

  it('runs batched products with a scaled prologue (attention-style), matching the interpreter', () => {
    const A = data(3 * 17 * 40, (i) => Math.sin(i * 0.3));
    const B = data(3 * 40 * 9, (i) => Math.cos(i * 0.11));
    const results = ['interp', 'webgpu'].map((device) => {
      const a = tensor(A, { shape: [3, 17, 40], device });
      const b = tensor(B, { shape: [3, 9, 40], device });
      const y = a.mul(0.5).matmul(b.transpose(1, 2));
      if (device === 'webgpu') expect(shapes(y)).toEqual(['gemm']);
      return y.dataSync();
    });
    expect(maxDiff(results[1]!, results[0]!)).toBeLessThan(1e-4);
  });

  it('spreads long reductions over a workgroup; max propagates NaN like the interpreter', () => {
    const x = data(3 * 5000, (i) => Math.sin(i * 0.01) * 3);
    x[7000] = NaN;
    const results = ['interp', 'webgpu'].map((device) => {
      const t = tensor(x, { shape: [3, 5000], device });
      if (device === 'webgpu') expect(shapes(t.sum(1))).toEqual(['workgroup-reduce']);
      return [...t.sum(1).dataSync(), ...t.max(1).dataSync(), ...t.exp().mean(1).dataSync()];
    });
    expect(Number.isNaN(results[1]![4]!)).toBe(true);
    expect(maxDiff(results[1]!, results[0]!)).toBeLessThan(1e-3);
  });

  it('folds a grid above maxComputeWorkgroupsPerDimension into two dimensions', () => {
    const n = 70_000 * 64; // 70 000 workgroups of 64 > 65 535
    const t = full([n], 1.5, { device: 'webgpu' }).add(tensor(2, { device: 'webgpu' }));
    const k = lowerKernel(planSchedule([t.node], gpu()).schedule.kernels[0]!);
    expect(renderKernelWGSL(k, { f16: false, maxWorkgroupsPerDimension: 65535 }).grid[1]).toBeGreaterThan(1);
    const v = t.dataSync();
    expect(v.length).toBe(n);
    expect(v[0]).toBe(3.5);
    expect(v[n - 1]).toBe(3.5);
    expect(v[65_535 * 64 + 3]).toBe(3.5);
  });

  it('splits a kernel that would bind more storage buffers than the adapter allows', () => {
    const limit = gpu().limits.maxBuffersPerKernel;
    const ins = Array.from({ length: limit + 4 }, (_, i) => tensor(data(8, (j) => i + j), { shape: [8], device: 'webgpu' }));
    const sum = ins.reduce((a, b) => a.add(b));
    const { schedule } = planSchedule([sum.node], gpu());
    expect(schedule.kernels.length).toBeGreaterThan(1);
    for (const k of schedule.kernels) expect(k.inputs.length + 1).toBeLessThanOrEqual(limit);
    const n = limit + 4;
    expect(Array.from(sum.dataSync())).toEqual(Array.from({ length: 8 }, (_, j) => (n * (n - 1)) / 2 + n * j));
  });

  it('writes packed 8- and 16-bit types in place (u8, bool, bf16, f16) exactly as the interpreter', () => {
    const results = ['interp', 'webgpu'].map((device) => {
      const u = tensor(Array.from({ length: 13 }, (_, i) => i * 20), { dtype: 'u8', device });
      u.assign(u.add(7));
      const b = tensor(data(13, (i) => i - 6), { device }).gt(0);
      const h = tensor(data(13, (i) => i / 3 + 1e-3), { device }).cast('bf16');
      h.assign(h.mul(3));
      const f = tensor(data(13, (i) => i * 1000.37), { device }).cast('f16');
      f.assign(f.add(0.1));
      return [...u.dataSync(), ...b.dataSync(), ...h.dataSync(), ...f.dataSync()];
    });
    expect(results[1]).toEqual(results[0]);
  });

  it('rejects an allocation above maxBufferSize with a clear error, and keeps working afterwards', () => {
    const max = gpu().info.limits.maxBufferSize!;
    const n = Math.floor(max / 4) + 1024;
    let err: unknown;
    try {
      full([n], 1, { device: 'webgpu' }).add(1).realize();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceError);
    expect((err as Error).message).toMatch(/maxBufferSize/);
    expect((err as Error).message).toMatch(/GiB|MiB/);
    const ok = tensor([1, 2, 3], { device: 'webgpu' }).mul(2);
    expect(Array.from(ok.dataSync())).toEqual([2, 4, 6]);
  });

  it('reads asynchronously without blocking the event loop', async () => {
    const t = tensor(data(1000, (i) => i), { device: 'webgpu' }).mul(2).sum();
    let ticked = false;
    const tick = new Promise<void>((r) =>
      setImmediate(() => {
        ticked = true;
        r();
      }),
    );
    const v = await t.item();
    await tick;
    expect(ticked).toBe(true);
    expect(v).toBe(999_000);
  });

  it('replays a jitted GPT training step with the same losses and weights as running it', () => {
    const make = () => {
      manualSeed(5);
      const model = new GPT({ vocabSize: 13, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 });
      const opt = new AdamW(model.parameters(), { lr: 1e-2 });
      const step = (x: Tensor, y: Tensor) => {
        const { loss } = model.forward(x, y);
        loss!.backward();
        opt.step({ realize: [loss!] });
        return loss!;
      };
      return { model, step };
    };
    const batch = (i: number): [Tensor, Tensor] => {
      const ids = Int32Array.from({ length: 16 }, (_, j) => (i * 7 + j * 3) % 13);
      return [tensor(ids, { dtype: 'i32', shape: [2, 8], device: 'webgpu' }), tensor(ids.map((v) => (v * 5 + 1) % 13), { dtype: 'i32', shape: [2, 8], device: 'webgpu' })];
    };
    const plain = make();
    const traced = make();
    const step = jit(traced.step);
    const a = Array.from({ length: 4 }, (_, i) => plain.step(...batch(i)).itemSync());
    let before = 0;
    const b = Array.from({ length: 4 }, (_, i) => {
      if (i === 2) before = realizeTotals().realizes;
      return step(...batch(i)).itemSync();
    });
    expect(realizeTotals().realizes - before).toBe(0);
    expect(b).toEqual(a);
    expect(a[3]!).toBeLessThan(a[0]!);
    const pa = plain.model.parameters().map((p) => Array.from(p.dataSync()));
    const pb = traced.model.parameters().map((p) => Array.from(p.dataSync()));
    expect(pb).toEqual(pa);
  });
});
