#!/usr/bin/python3
"""PyTorch peer of bench/matmul_bf16.mjs: C = A @ B on the CPU in bf16 (or f32, for reference), one size,
dtype and thread count per process.

Run as bench/matmul_bf16.mjs does (Debian's torch 1.13; OPENBLAS_CORETYPE selects OpenBLAS's kernels for f32):

    OPENBLAS_CORETYPE=SkylakeX ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=1 \\
        /usr/bin/python3 bench/peers/torch_matmul_bf16.py --n 1024 --threads 1 --dtype bf16
    ... bench/peers/torch_matmul_bf16.py --facts      # what PyTorch's bf16 matmul runs on (no timing)

bf16: torch.matmul of two torch.bfloat16 tensors (bf16 result). PyTorch 1.13 sends it to oneDNN's matmul
(`mkldnn_bf16_gemm`) when oneDNN is built in and the CPU has AVX-512 (oneDNN then picks its
avx512_core_bf16 kernels on CPUs with the BF16 dot product), else to ATen's scalar fallback gemm. The
implementation oneDNN used is read from its verbose log around the first (untimed) call, so the JSON says
which path was timed: `onednn_impl` (e.g. "brg:avx512_core_bf16"), or null when no oneDNN primitive ran.
f32: OpenBLAS sgemm, as bench/peers/torch_matmul.py.

Timing is bench/peers/torch_matmul.py's time_it (the same as bench/lib/common.mjs timeIt()): one untimed
call, an inner repeat count calibrated so a sample lasts >= --min-sample-ms, then --samples samples.

Correctness, before timing: (1) a full check at --check-n (default 128) on the harness's deterministic
inputs (bench/lib/common.mjs randomF32, seeds 1 and 2, rounded to bf16 for --dtype bf16) against a float64
product of the same rounded inputs; error per entry |C - ref| / max(|ref|, 1e-3 * sum_k |a_ik b_kj|);
(2) 16 probes at --n (error relative to sum_k |a_ik b_kj|, as torch_matmul.py). Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onednn_capture import CaptureStdout  # noqa: E402
from torch_matmul import openblas_core, time_it  # noqa: E402  (shared with the f32 peer, unchanged)


def random_f32(length, seed):
    """bench/lib/common.mjs randomF32: xorshift32, uniform [-1, 1), the same values as the Node side."""
    out = [0.0] * length
    x = (seed & 0xFFFFFFFF) or 1
    for i in range(length):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x / 2147483648 - 1
    return out


def onednn_verbose(fn):
    """Run fn() with oneDNN's verbose log on; returns (info lines, matmul exec lines, fn's result)."""
    import torch

    mk = torch.backends.mkldnn
    with CaptureStdout() as cap:
        if hasattr(mk, 'verbose'):
            with mk.verbose(mk.VERBOSE_ON):
                out = fn()
        else:  # no runtime switch: nothing is captured unless ONEDNN_VERBOSE was set in the environment
            out = fn()
    lines = [l.strip() for l in cap.text.splitlines() if l.startswith(('onednn_verbose', 'dnnl_verbose'))]
    info = [l for l in lines if ',info,' in l]
    execs = [l for l in lines if ',exec,' in l]
    return info, execs, out


def impl_of(exec_lines):
    """oneDNN's implementation name in an exec line: onednn_verbose,exec,cpu,matmul,<impl>,..."""
    for l in exec_lines:
        f = l.split(',')
        if len(f) > 4 and f[3] == 'matmul':
            return f[4]
    return None


def torch_facts():
    import torch

    cfg = torch.__config__.show()
    pick = lambda key: next((l.split(':', 1)[1].strip() if ':' in l else l.strip() for l in cfg.splitlines() if key in l), None)  # noqa: E731
    return {
        'version': torch.__version__,
        'mkldnn_available': bool(torch.backends.mkldnn.is_available()),
        'mkldnn_enabled': bool(getattr(torch.backends.mkldnn, 'enabled', True)),
        'mkldnn_build': next((l.strip().lstrip('- ') for l in cfg.splitlines() if 'MKL-DNN' in l or 'oneDNN' in l), None),
        'aten_capability': pick('CPU capability usage'),
        'blas_info': next((p.split('=', 1)[1] for p in cfg.replace(',', ' ').split() if p.startswith('BLAS_INFO=')), None),
        'env': {k: os.environ.get(k) for k in ('OPENBLAS_CORETYPE', 'ATEN_CPU_CAPABILITY', 'OMP_NUM_THREADS', 'ONEDNN_VERBOSE', 'DNNL_VERBOSE', 'ONEDNN_MAX_CPU_ISA')},
    }


def full_check(torch, n, dtype):
    """Product at n x n of the harness's inputs (rounded to dtype) against float64; max per-entry error."""
    A = torch.tensor(random_f32(n * n, 1), dtype=torch.float32).reshape(n, n).to(dtype)
    B = torch.tensor(random_f32(n * n, 2), dtype=torch.float32).reshape(n, n).to(dtype)
    C = torch.matmul(A, B)
    ref = A.double() @ B.double()
    scale = A.double().abs() @ B.double().abs()
    err = (C.double() - ref).abs() / torch.maximum(ref.abs(), 1e-3 * scale).clamp_min(1e-30)
    return {'n': n, 'max_rel_err': err.max().item(), 'out_dtype': str(C.dtype).replace('torch.', '')}


def probe_check(A, B, C, n):
    worst = 0.0
    for p in range(16):
        i, j = (p * 7919) % n, (p * 104729 + 13) % n
        prod = A[i, :].double() * B[:, j].double()
        worst = max(worst, abs(C[i, j].double().item() - prod.sum().item()) / max(prod.abs().sum().item(), 1e-30))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=256)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--dtype', choices=('bf16', 'f32'), default='bf16')
    ap.add_argument('--samples', type=int, default=7)
    ap.add_argument('--min-sample-ms', type=float, default=100)
    ap.add_argument('--check-n', type=int, default=128)
    ap.add_argument('--no-onednn', action='store_true', help='torch.backends.mkldnn off: ATen\'s own bf16 gemm (the path without oneDNN)')
    ap.add_argument('--facts', action='store_true', help='only report what the bf16 matmul runs on (oneDNN ISA, implementation)')
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    facts = torch_facts()
    dt = torch.bfloat16 if a.dtype == 'bf16' else torch.float32
    peer = 'pytorch-' + a.dtype
    if a.no_onednn:
        torch.backends.mkldnn.enabled = False
        peer += '-noonednn'

    if a.facts:
        x = torch.rand(64, 64).to(torch.bfloat16)
        info, execs, _ = onednn_verbose(lambda: torch.matmul(x, x))
        info32, execs32, _ = onednn_verbose(lambda: torch.matmul(x.float(), x.float()))
        print(json.dumps({
            'peer': 'pytorch-facts',
            **facts,
            'num_threads': torch.get_num_threads(),
            'onednn_info': info + info32,
            'onednn_isa': next((l.split('isa:', 1)[1] for l in info + info32 if 'isa:' in l), None),
            'bf16_onednn_exec': execs,
            'bf16_onednn_impl': impl_of(execs),
            'f32_onednn_exec': execs32,
            'openblas': openblas_core(),
            'python': sys.executable,
        }))
        return

    check = full_check(torch, a.check_n, dt)
    n = a.n
    A = (torch.rand(n, n) * 2 - 1).to(dt)
    B = (torch.rand(n, n) * 2 - 1).to(dt)
    t0 = time.perf_counter()
    info, execs, C = onednn_verbose(lambda: torch.matmul(A, B))  # the untimed first call, logged
    first_ms = (time.perf_counter() - t0) * 1e3
    max_rel_err = probe_check(A, B, C, n)
    # torch.matmul(A, B) allocates its output each call, like Tessera's realize does
    t = time_it(lambda: torch.matmul(A, B), a.samples, a.min_sample_ms)
    flop = 2.0 * n ** 3
    print(json.dumps({
        'peer': peer,
        'n': n,
        'threads': a.threads,
        'dtype': a.dtype,
        'out_dtype': str(C.dtype).replace('torch.', ''),
        **facts,
        'num_threads': torch.get_num_threads(),
        'mkldnn_enabled_when_timed': bool(torch.backends.mkldnn.enabled),
        'onednn_impl': impl_of(execs),
        'onednn_exec': execs[:4],
        'onednn_isa': next((l.split('isa:', 1)[1] for l in info if 'isa:' in l), None),
        'openblas': openblas_core() if a.dtype == 'f32' else None,
        'first_ms': first_ms,
        'best_ms': t['best'],
        'median_ms': t['median'],
        'gflops_best': flop / t['best'] / 1e6,
        'gflops_median': flop / t['median'] / 1e6,
        'inner': t['inner'],
        'samples_ms': t['samples'],
        'max_rel_err': max_rel_err,
        'check': check,
        'python': sys.executable,
    }))


if __name__ == '__main__':
    main()
