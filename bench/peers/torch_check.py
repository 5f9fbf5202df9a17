#!/usr/bin/python3
"""Set-up check of the PyTorch peer (run by bench/setup.sh): prints torch's build configuration, the
OpenBLAS kernel set actually loaded, and 1-thread f32 matmul GFLOP/s at n=1024; exits 1 below --min-gflops.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/torch_check.py --min-gflops 50
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_matmul import openblas_core  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--min-gflops', type=float, default=50)
    ap.add_argument('--n', type=int, default=1024)
    a = ap.parse_args()
    import torch

    print(f'python      {sys.executable} {sys.version.split()[0]}')
    print(f'torch       {torch.__version__} from {os.path.dirname(torch.__file__)}')
    print('torch.__config__.show():')
    print(torch.__config__.show().rstrip())
    ob = openblas_core()
    print(f'OpenBLAS    {ob}')
    print(f'OPENBLAS_CORETYPE={os.environ.get("OPENBLAS_CORETYPE")} ATEN_CPU_CAPABILITY={os.environ.get("ATEN_CPU_CAPABILITY")}')
    torch.set_num_threads(1)
    n = a.n
    A, B = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        A @ B
    best = float('inf')
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(5):
            A @ B
        best = min(best, (time.perf_counter() - t0) / 5)
    g = 2 * n ** 3 / best / 1e9
    ok = g >= a.min_gflops
    print(f'matmul      n={n}, 1 thread: {g:.1f} GFLOP/s ({"ok" if ok else "TOO SLOW"}: threshold {a.min_gflops})')
    if not ok:
        print('The PyTorch peer is not using optimized BLAS kernels: check that libopenblas0-openmp is installed, '
              'that /usr/bin/python3 is used, and OPENBLAS_CORETYPE (SkylakeX on AVX-512 CPUs).', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
