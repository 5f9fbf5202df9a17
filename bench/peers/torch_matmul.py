#!/usr/bin/python3
"""PyTorch peer of bench/matmul.mjs: f32 C = A @ B on the CPU, one size and thread count per process.

Run as bench/matmul.mjs does (Debian's torch 1.13 with OpenBLAS; OPENBLAS_CORETYPE selects its kernels):

    OPENBLAS_CORETYPE=SkylakeX ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=1 /usr/bin/python3 bench/peers/torch_matmul.py --n 1024 --threads 1

Timing mirrors bench/lib/common.mjs timeIt(): one untimed call, then an inner repeat count calibrated
so that a sample lasts >= --min-sample-ms, then --samples samples; per-call best and median.
Prints one JSON line.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time


def openblas_core():
    """The OpenBLAS kernel set actually loaded in this process (None if OpenBLAS is not loaded)."""
    try:
        with open('/proc/self/maps') as f:
            libs = sorted({l.split()[-1] for l in f if 'openblas' in l.lower() and l.split()[-1].startswith('/')})
        for lib in libs:
            h = ctypes.CDLL(lib)
            h.openblas_get_corename.restype = ctypes.c_char_p
            h.openblas_get_config.restype = ctypes.c_char_p
            return {'library': lib, 'core': h.openblas_get_corename().decode(), 'config': h.openblas_get_config().decode()}
    except Exception as e:  # noqa: BLE001 - informational only
        return {'error': str(e)}
    return None


def time_it(fn, samples, min_sample_ms, max_inner=1 << 14):
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = (time.perf_counter() - t0) * 1e3
        if dt >= min_sample_ms or inner >= max_inner:
            break
        inner = min(max_inner, max(inner * 2, int(inner * min_sample_ms * 1.2 / max(dt, 1e-3)) + 1))
    per = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        per.append((time.perf_counter() - t0) * 1e3 / inner)
    return {'best': min(per), 'median': statistics.median(per), 'samples': per, 'inner': inner}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, required=True)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--samples', type=int, default=7)
    ap.add_argument('--min-sample-ms', type=float, default=100)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n = a.n
    A = torch.rand(n, n) * 2 - 1
    B = torch.rand(n, n) * 2 - 1
    C = torch.empty(n, n)
    t0 = time.perf_counter()
    torch.matmul(A, B, out=C)
    first_ms = (time.perf_counter() - t0) * 1e3
    # a few probes against float64
    worst = 0.0
    for p in range(16):
        i, j = (p * 7919) % n, (p * 104729 + 13) % n
        prod = A[i, :].double() * B[:, j].double()
        worst = max(worst, abs(C[i, j].item() - prod.sum().item()) / max(prod.abs().sum().item(), 1e-30))
    # torch.matmul(A, B) allocates its output each call, like the other peers' results do
    t = time_it(lambda: torch.matmul(A, B), a.samples, a.min_sample_ms)
    flop = 2.0 * n ** 3
    print(json.dumps({
        'peer': 'pytorch',
        'n': n,
        'threads': a.threads,
        'version': torch.__version__,
        'num_threads': torch.get_num_threads(),
        'openblas': openblas_core(),
        'first_ms': first_ms,
        'best_ms': t['best'],
        'median_ms': t['median'],
        'gflops_best': flop / t['best'] / 1e6,
        'gflops_median': flop / t['median'] / 1e6,
        'inner': t['inner'],
        'max_rel_err': worst,
        'env': {k: os.environ.get(k) for k in ('OPENBLAS_CORETYPE', 'ATEN_CPU_CAPABILITY', 'OMP_NUM_THREADS')},
        'aten_capability': next((l.split(':', 1)[1].strip() for l in torch.__config__.show().splitlines() if 'CPU capability usage' in l), None),
        'python': sys.executable,
    }))


if __name__ == '__main__':
    main()
