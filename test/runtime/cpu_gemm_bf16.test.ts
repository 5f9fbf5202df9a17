// The CPU GEMM with bf16 operands (mixed precision): the C driver's own self-test (f32 and bf16 operand
// panels, odd K, blocks, threads; with and without the bf16 dot product), which kernels of an autocast
// linear layer take the bf16 dot-product path (forward and both backward products), and their results
// against the interpreter (a second backend that widens bf16 to f32 and multiplies in f32).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lowerKernel } from '../../src/codegen/lower.js';
import { usesBf16Dot } from '../../src/codegen/render/c.js';
import { autocast, getRuntime, planSchedule, tensor, type Tensor } from '../../src/index.js';
import type { CpuRuntime } from '../../src/runtime/cpu/cpu.js';
import { defaultCompilerConfig } from '../../src/runtime/cpu/compiler.js';

const csrc = join(import.meta.dirname, '../../src/runtime/cpu/csrc');
const cpuHasBf16 = /\bavx512_bf16\b/.test((() => {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
})());
const defaultFlags = process.env.TESSERA_CFLAGS === undefined;
const work = mkdtempSync(join(tmpdir(), 'tessera-gemm-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Build and run gemm_test.c with the runtime's compiler and optimisation flags plus `extra`. */
function gemmSelfTest(extra: string[]): string {
  const cfg = defaultCompilerConfig();
  const opt = cfg.flags.filter((f) => f !== '-shared' && f !== '-fPIC');
  const exe = join(work, `gemm_test${extra.join('')}`);
  execFileSync(cfg.cc, [...opt, ...extra, '-pthread', '-I', csrc, join(csrc, 'gemm_test.c'), '-o', exe, '-lm'], { stdio: 'pipe' });
  return execFileSync(exe, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('cpu GEMM with bf16 operands', () => {
  it('the C driver self-test passes with the build flags (bf16 dot product where the CPU has it)', () => {
    const out = gemmSelfTest([]);
    expect(out).toMatch(/all \d+ checks passed/);
    if (cpuHasBf16 && defaultFlags) expect(out).toContain('bf16 operands: vdpbf16ps micro-kernel');
    const rt = getRuntime('cpu') as CpuRuntime;
    expect(rt.gemmInfo.bf16Dot).toBe(out.includes('vdpbf16ps'));
  });

  it.runIf(cpuHasBf16 && defaultFlags)('the C driver self-test passes without the bf16 dot product (widening fallback)', () => {
    const out = gemmSelfTest(['-mno-avx512bf16']);
    expect(out).toContain('bf16 operands: widened to f32');
    expect(out).toMatch(/all \d+ checks passed/);
  });

  // y = autocast(x @ Wᵀ) with odd sizes (K = 1037 spans three kc blocks and ends in a half pair, M and N
  // are not multiples of the register tile); x is an expression (stored as bf16), W an f32 parameter
  // (rounded while packing, read transposed).
  const M = 37;
  const K = 1037;
  const N = 45;
  const X = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37) * 1.5);
  const W = Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.11) * 0.2);
  const C = Float32Array.from({ length: M * N }, (_, i) => ((i * 7) % 11) / 5 - 1);
  function run(device: string, check?: (outs: Tensor[]) => void): Float32Array[] {
    const x0 = tensor(X, { shape: [M, K], device, requiresGrad: true });
    const w = tensor(W, { shape: [N, K], device, requiresGrad: true });
    const y = autocast({ dtype: 'bf16' }, () => x0.mul(1).matmul(w.transpose(0, 1)));
    const loss = y.cast('f32').mul(tensor(C, { shape: [M, N], device })).sum();
    loss.backward();
    const outs = [y, x0.grad!, w.grad!];
    check?.(outs);
    return outs.map((t) => Float32Array.from(t.dataSync()));
  }

  it('an autocast linear layer runs its forward and both backward products on the bf16 path, matching the interpreter', () => {
    const rt = getRuntime('cpu') as CpuRuntime;
    const cpu = run('cpu', (outs) => {
      const { schedule } = planSchedule(outs.map((t) => t.node), rt);
      const bf16 = schedule.kernels.filter((k) => usesBf16Dot(lowerKernel(k)));
      expect(bf16.length).toBe(3); // y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x
    });
    const ref = run('interp');
    const names = ['y', 'dx', 'dW'];
    for (let t = 0; t < 3; t++) {
      let scale = 0;
      for (const v of ref[t]!) scale = Math.max(scale, Math.abs(v));
      let worst = 0;
      for (let i = 0; i < ref[t]!.length; i++) {
        const err = Math.abs(cpu[t]![i]! - ref[t]![i]!);
        // Both sides round their result to bf16 from f32 sums taken in different orders: at most one bf16
        // ulp of the value (2^-7 relative) plus f32 summation noise relative to the largest value.
        expect(err, `${names[t]}[${i}] = ${cpu[t]![i]}, interpreter ${ref[t]![i]}`).toBeLessThanOrEqual(2 ** -7 * Math.abs(ref[t]![i]!) + 1e-5 * scale);
        worst = Math.max(worst, err);
      }
      expect(Number.isFinite(worst)).toBe(true);
    }
  });

  it.runIf(cpuHasBf16 && defaultFlags)('on the bf16 dot product, bf16 subnormal operands read as zero (documented in CpuRuntime.gemmInfo)', () => {
    // 2^-130 is a bf16 subnormal; times 2^100 it is 2^-30 when widened to f32, and 0 under vdpbf16ps.
    const product = (device: string) => {
      const a = tensor(Float32Array.from({ length: 4 * 8 }, (_, i) => (i % 8 === 0 ? 2 ** -130 : 0)), { shape: [4, 8], device });
      const b = tensor(new Float32Array(8 * 4).fill(2 ** 100), { shape: [8, 4], device });
      return Array.from(autocast({ dtype: 'bf16' }, () => a.mul(1).matmul(b.mul(1))).dataSync());
    };
    expect(product('cpu')).toEqual(new Array(16).fill(0));
    expect(product('interp')).toEqual(new Array(16).fill(2 ** -30));
  });
});
