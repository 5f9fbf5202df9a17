#!/usr/bin/python3
"""PyTorch peer of bench/train_memory.mjs: peak memory of a few nanoGPT training steps, one configuration
per process.

The model is bench/peers/torch_gpt.py's nanoGPT GPT-2 layout (weight tying, pre-norm, tanh GELU, the
explicit softmax attention: torch 1.13 has no scaled_dot_product_attention). A step is nanoGPT's: k
micro-batches of batch/k sequences (k = --accum, 1 = no accumulation), each forward with targets and
(loss / k).backward(); then clip_grad_norm_(1.0), AdamW step, zero_grad(set_to_none=True), loss.item().

Features (each off by default):
  --precision bf16   forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (parameters,
                     gradients and AdamW state stay f32, as mixed-precision training does)
  --checkpointing    every transformer block through torch.utils.checkpoint.checkpoint (use_reentrant=False):
                     only block inputs are kept for backward, each block's forward is recomputed
  --accum k          gradient accumulation over k micro-batches of batch/k

Memory figures (bytes):
  baseline_rss   VmRSS after `import torch` and thread set-up, before the model is created
  peak_rss       VmHWM (the process's peak resident set) at the end of the --steps steps
  allocator      PyTorch's own figure. On CPU torch 1.13 keeps no allocator statistics
                 (torch.cuda.max_memory_allocated has no CPU counterpart), so with --profile-memory one
                 extra step runs under torch.profiler.profile(profile_memory=True) AFTER peak_rss was read
                 (the profiler's own memory does not count there): the profiler records every CPU
                 allocator alloc/free ("[memory]" events, signed nbytes); the peak of their running sum
                 plus the tensor bytes live when the step starts (parameters, AdamW state; gradients are
                 None after zero_grad(set_to_none=True)) is the peak of tensor memory in that step.

Prints one JSON line.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from torch_gpt import GPT, make_tokens  # noqa: E402


def proc_status():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            k, _, v = line.partition(':')
            if k in ('VmRSS', 'VmHWM', 'VmPeak', 'VmSize'):
                out[k] = int(v.split()[0]) * 1024
    return out


class CkptGPT(GPT):
    """torch_gpt.GPT with optional per-block activation checkpointing."""

    def __init__(self, c, checkpointing):
        super().__init__(c)
        self.checkpointing = checkpointing

    def forward(self, idx, targets):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointing else block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1)


def tensor_bytes(model, opt):
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                n += v.numel() * v.element_size()
    for p in model.parameters():
        if p.grad is not None:
            n += p.grad.numel() * p.grad.element_size()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--block', type=int, default=256)
    ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--heads', type=int, default=6)
    ap.add_argument('--embd', type=int, default=384)
    ap.add_argument('--vocab', type=int, default=65)
    ap.add_argument('--precision', choices=['f32', 'bf16'], default='f32')
    ap.add_argument('--checkpointing', action='store_true')
    ap.add_argument('--accum', type=int, default=1)
    ap.add_argument('--profile-memory', action='store_true')
    ap.add_argument('--data-seed', type=int, default=1337)
    a = ap.parse_args()
    if a.batch % a.accum:
        raise SystemExit(f'--batch {a.batch} is not a multiple of --accum {a.accum}')
    torch.set_num_threads(a.threads)
    base = proc_status()
    t_start = time.perf_counter()
    torch.manual_seed(1337)
    c = dict(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, block_size=a.block, vocab_size=a.vocab, bias=True)
    model = CkptGPT(c, a.checkpointing)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    n_params = sum(p.numel() for p in model.parameters())
    after_model = proc_status()
    n_total = a.steps + (1 if a.profile_memory else 0)
    data, checksum = make_tokens(n_total, a.batch * a.block, a.vocab, a.data_seed)
    k, mb = a.accum, a.batch // a.accum

    def step(i):
        xh, yh = data[i]
        x = torch.tensor(xh).view(a.batch, a.block)
        y = torch.tensor(yh).view(a.batch, a.block)
        total = 0.0
        for m in range(k):
            xm, ym = x[m * mb:(m + 1) * mb], y[m * mb:(m + 1) * mb]
            if a.precision == 'bf16':
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    loss = model(xm, ym)
            else:
                loss = model(xm, ym)
            (loss / k).backward()
            total += loss.item() / k
            del loss
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    losses, times = [], []
    for i in range(a.steps):
        t0 = time.perf_counter()
        losses.append(step(i))
        times.append((time.perf_counter() - t0) * 1e3)
    end = proc_status()

    allocator = None
    allocator_note = 'torch 1.13 keeps no CPU allocator statistics; run with --profile-memory for the profiler figure'
    if a.profile_memory:
        try:
            from torch.profiler import ProfilerActivity, profile
            live0 = tensor_bytes(model, opt)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                losses.append(step(a.steps))
            evs = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
            evs.sort(key=lambda e: e.start_us())
            run, peak, allocs = 0, 0, 0
            for e in evs:
                run += e.nbytes()
                allocs += 1 if e.nbytes() > 0 else 0
                peak = max(peak, run)
            allocator = {
                'peak_bytes': live0 + peak,
                'live_at_step_start': live0,
                'step_peak_above_start': peak,
                'net_at_step_end': run,
                'alloc_events': allocs,
                'events': len(evs),
            }
            allocator_note = ('torch.profiler.profile(profile_memory=True) over one extra step after peak_rss was read: '
                              'tensor bytes live at the step start + peak of the running sum of CPU allocator events')
        except Exception as e:  # the figure is optional
            allocator_note = f'profiler failed: {e!r}'

    print(json.dumps({
        'side': 'pytorch',
        'version': torch.__version__,
        'threads': a.threads,
        'config': c,
        'batch': a.batch,
        'accum': k,
        'micro_batch': mb,
        'precision': a.precision,
        'checkpointing': a.checkpointing,
        'params': n_params,
        'steps': a.steps,
        'baseline_rss': base['VmRSS'],
        'after_model_rss': after_model['VmRSS'],
        'peak_rss': end['VmHWM'],
        'end_rss': end['VmRSS'],
        'allocator': allocator,
        'allocator_note': allocator_note,
        'ms_steps': times,
        'wall_s': time.perf_counter() - t_start,
        'losses': losses,
        'data_checksum': checksum,
        'env': {kk: os.environ.get(kk) for kk in ('OPENBLAS_CORETYPE', 'ATEN_CPU_CAPABILITY', 'OMP_NUM_THREADS')},
    }))


if __name__ == '__main__':
    main()
