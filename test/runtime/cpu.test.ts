// The native CPU backend: agreement with the interpreter on a whole GPT training step, the GEMM
// template with fused epilogues, math functions at special values, the on-disk kernel cache (a second
// process compiles nothing; a corrupted entry is rebuilt), compile errors, the no-compiler fallback,
// and running a schedule off the JavaScript thread.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderKernelC, usesGemmTemplate } from '../../src/codegen/render/c.js';
import { GPT } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { CompileError, compileShared, defaultCompilerConfig } from '../../src/runtime/cpu/compiler.js';
import { gatherRows, getDefaultDevice, getRuntime, manualSeed, planSchedule, setDefaultDevice, tensor } from '../../src/index.js';
import type { Tensor } from '../../src/index.js';
import { lowerKernel } from '../../src/codegen/lower.js';

const root = join(import.meta.dirname, '../..');

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Infinity;
    m = Math.max(m, d);
  }
  return m;
}

/** Three AdamW steps of a small GPT from identical initial weights on `device`. */
function gptSteps(device: string, init: Record<string, Float32Array>): { loss: number; params: Float32Array[] } {
  const prev = getDefaultDevice();
  setDefaultDevice(device);
  try {
    const model = new GPT({ vocabSize: 17, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16 });
    const sd: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(model.stateDict())) sd[k] = tensor(init[k]!, { shape: t.shape, dtype: 'f32' });
    model.loadStateDict(sd);
    const opt = new AdamW(model.parameters(), { lr: 1e-2 });
    const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 5 + 3) % 17);
    const x = tensor(ids, { dtype: 'i32', shape: [2, 8] });
    const y = tensor(ids.map((v) => (v + 1) % 17), { dtype: 'i32', shape: [2, 8] });
    let loss = 0;
    for (let s = 0; s < 3; s++) {
      const out = model.forward(x, y);
      out.loss!.backward();
      opt.step({ realize: [out.loss!] });
      loss = out.loss!.itemSync();
    }
    return { loss, params: model.parameters().map((p) => p.dataSync().slice() as Float32Array) };
  } finally {
    setDefaultDevice(prev);
  }
}

describe('cpu backend', () => {
  it('three GPT training steps agree with the interpreter (loss within 1e-4, parameters within 1e-4)', () => {
    manualSeed(11);
    const model = new GPT({ vocabSize: 17, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16 });
    const init = Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Float32Array.from(t.dataSync())]));
    const a = gptSteps('interp', init);
    const b = gptSteps('cpu', init);
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-4);
    for (let i = 0; i < a.params.length; i++) expect(maxDiff(a.params[i]!, b.params[i]!)).toBeLessThan(1e-4);
  });

  it('runs matmul + bias + relu through the GEMM template with the epilogue fused, matching the interpreter', () => {
    manualSeed(2);
    const A = Float32Array.from({ length: 67 * 45 }, (_, i) => Math.sin(i));
    const B = Float32Array.from({ length: 45 * 39 }, (_, i) => Math.cos(i * 0.7));
    const bias = Float32Array.from({ length: 39 }, (_, i) => (i % 5) - 2);
    const results = ['interp', 'cpu'].map((device) => {
      const a = tensor(A, { shape: [67, 45], device });
      const b = tensor(B, { shape: [45, 39], device });
      const c = tensor(bias, { shape: [39], device });
      const out = a.matmul(b).add(c).relu();
      if (device === 'cpu') {
        const { schedule } = planSchedule([out.node], getRuntime('cpu'));
        expect(schedule.kernels).toHaveLength(1);
        expect(usesGemmTemplate(lowerKernel(schedule.kernels[0]!))).toBe(true);
      }
      return out.dataSync();
    });
    expect(maxDiff(results[0]!, results[1]!)).toBeLessThan(1e-4);
  });

  it.each([
    ['few rows against a weight stored row by row (skinny)', [3, 40, 70], [3, 90, 70], true, 'tessera_skinny_range'],
    ['few rows against a row-major right operand (outer products)', [6, 2, 130], [6, 130, 77], false, 'tessera_rowb_range'],
  ] as const)('batched products of %s take their path and match the interpreter', (_, aShape, bShape, transposeB, path) => {
    const A = Float32Array.from({ length: aShape[0] * aShape[1] * aShape[2] }, (_, i) => Math.sin(i * 0.37));
    const B = Float32Array.from({ length: bShape[0] * bShape[1] * bShape[2] }, (_, i) => Math.cos(i * 0.11));
    const results = ['interp', 'cpu'].map((device) => {
      const a = tensor(A, { shape: [...aShape], device });
      const b = tensor(B, { shape: [...bShape], device });
      const out = a.matmul(transposeB ? b.transpose(-1, -2) : b);
      if (device === 'cpu') {
        const { schedule } = planSchedule([out.node], getRuntime('cpu'));
        expect(schedule.kernels).toHaveLength(1);
        expect(renderKernelC(lowerKernel(schedule.kernels[0]!), 'k')).toContain(path);
      }
      return out.dataSync();
    });
    expect(maxDiff(results[0]!, results[1]!)).toBeLessThan(1e-4);
  });

  it.each([
    ['keys: query rows against gathered key rows (skinny)', true, 'tessera_skinny_range_ex'],
    ['values: probability rows against gathered value rows (outer products)', false, 'tessera_rowb_range_ex'],
  ] as const)('attention over a paged pool reads its rows in place: %s, out-of-range slots read as zeros, matching the interpreter', (_, keys, path) => {
    // [N, KV, rep, *] against rows of a [S, KV * hd] pool picked by slots [N * M] (as PagedLlama does).
    const [N, KV, rep, hd, M, S] = [3, 2, 2, 24, 9, 40];
    const pool = Float32Array.from({ length: S * KV * hd }, (_, i) => Math.sin(i * 0.13));
    const slots = Int32Array.from({ length: N * M }, (_, i) => (i % 7 === 5 ? (i % 2 ? -1 : S) : (i * 11) % S));
    const left = Float32Array.from({ length: N * KV * rep * (keys ? hd : M) }, (_, i) => Math.cos(i * 0.29));
    const results = ['interp', 'cpu'].map((device) => {
      const rows = gatherRows(tensor(pool, { shape: [S, KV * hd], device }), tensor(slots, { dtype: 'i32', shape: [N * M], device }));
      const past = rows.reshape([N, M, KV, hd]).permute([0, 2, 1, 3]); // [N, KV, M, hd]
      const a = tensor(left, { shape: [N, KV, rep, keys ? hd : M], device });
      const out = keys ? a.matmul(past.transpose(-1, -2)) : a.matmul(past);
      if (device === 'cpu') {
        const { schedule } = planSchedule([out.node], getRuntime('cpu'));
        expect(schedule.kernels).toHaveLength(1);
        const src = renderKernelC(lowerKernel(schedule.kernels[0]!), 'k');
        expect(src).toContain(path);
        expect(src).toContain('tessera_row_index');
      }
      return out.dataSync();
    });
    expect(maxDiff(results[0]!, results[1]!)).toBeLessThan(1e-4);
  });

  it('exp, log, tanh, erf, sqrt agree with the interpreter, including special values', () => {
    const xs = [0, -0, 1e-30, 1e-8, 0.3, -0.7, 1, 2.5, -3, 10, -20, 80, 88.5, 89, -88, -104, 1e30, Infinity, -Infinity, NaN];
    for (const op of ['exp', 'log', 'tanh', 'erf', 'sqrt'] as const) {
      const [r, c] = ['interp', 'cpu'].map((device) => tensor(xs, { dtype: 'f32', device })[op]().dataSync());
      for (let i = 0; i < xs.length; i++) {
        const want = r![i]!;
        const got = c![i]!;
        if (Number.isNaN(want)) expect(got, `${op}(${xs[i]})`).toBeNaN();
        else if (!Number.isFinite(want)) expect(got, `${op}(${xs[i]})`).toBe(want);
        else expect(Math.abs(got - want), `${op}(${xs[i]}) = ${got}, interpreter ${want}`).toBeLessThanOrEqual(3e-7 * Math.max(1, Math.abs(want)));
      }
    }
  });

  it('a second process compiles nothing; a corrupted cache entry is detected and rebuilt', () => {
    const cache = mkdtempSync(join(tmpdir(), 'tessera-cache-'));
    const script = join(cache, 'prog.mjs');
    writeFileSync(
      script,
      `import { tensor } from ${JSON.stringify(join(root, 'dist/index.js'))};
       import { compileStats } from ${JSON.stringify(join(root, 'dist/runtime/cpu/compiler.js'))};
       const a = tensor([[1, 2], [3, 4]], { dtype: 'f32', device: 'cpu' });
       const v = a.matmul(a).exp().sum().itemSync();
       console.log(JSON.stringify({ v, ...compileStats }));`,
    );
    if (!existsSync(join(root, 'dist/index.js'))) execFileSync('npm', ['run', 'build'], { cwd: root });
    const run = () => JSON.parse(execFileSync(process.execPath, [script], { env: { ...process.env, TESSERA_CACHE_DIR: cache }, encoding: 'utf8' }).trim().split('\n').pop()!);
    const first = run();
    expect(first.compiled).toBeGreaterThanOrEqual(2); // the runtime library and one batch of kernels
    const second = run();
    expect(second.compiled).toBe(0);
    expect(second.v).toBe(first.v);
    // Corrupt every cached kernel library: the checksum no longer matches, so it is rebuilt.
    for (const f of readdirSync(cache).filter((f) => f.endsWith('.so'))) writeFileSync(join(cache, f), 'garbage');
    const third = run();
    expect(third.rebuiltCorrupt).toBeGreaterThanOrEqual(2);
    expect(third.v).toBe(first.v);
  });

  it('a compile failure names the kept source file and quotes the compiler', () => {
    const cfg = { ...defaultCompilerConfig(), cacheDir: mkdtempSync(join(tmpdir(), 'tessera-bad-')) };
    expect(() => compileShared('int broken( {', cfg)).toThrow(CompileError);
    try {
      compileShared('int broken( {', cfg);
    } catch (e) {
      expect((e as Error).message).toMatch(/compiling .*\.c failed/);
      expect((e as Error).message).toMatch(/error/);
    }
  });

  it('without a C compiler, says so and falls back to the interpreter', () => {
    const out = execFileSync(
      process.execPath,
      ['-e', `import(${JSON.stringify(join(root, 'dist/index.js'))}).then(t => { const a = t.tensor([1, 2], { dtype: 'f32', device: 'cpu' }); console.log(a.mul(3).sum().itemSync(), t.getRuntime('cpu').name); })`],
      { env: { ...process.env, TESSERA_CC: '/nonexistent/cc' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    expect(out.trim()).toBe('9 interp');
  });

  it('runs a whole schedule off the JavaScript thread with launchManyAsync', async () => {
    const rt = getRuntime('cpu');
    expect(typeof rt.launchManyAsync).toBe('function');
    const { realizeAsync } = await import('../../src/tensor/tensor.js');
    const a = tensor(Float32Array.from({ length: 256 * 256 }, (_, i) => (i % 7) - 3), { shape: [256, 256], device: 'cpu' });
    const p = realizeAsync(a.matmul(a).relu().sum());
    let ticked = false;
    setImmediate(() => (ticked = true));
    const [s] = await p;
    expect(ticked).toBe(true);
    const ref = tensor(a.dataSync(), { shape: [256, 256], device: 'interp' }).matmul(tensor(a.dataSync(), { shape: [256, 256], device: 'interp' })).relu().sum();
    expect(Math.abs(s!.itemSync() - ref.itemSync()) / Math.abs(ref.itemSync())).toBeLessThan(1e-5);
  });
});
