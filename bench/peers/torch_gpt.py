#!/usr/bin/python3
"""PyTorch peer of bench/gpt_step.mjs: nanoGPT's "baby GPT on CPU" training step, eager mode.

The model is nanoGPT's (github.com/karpathy/nanoGPT, model.py, MIT license) reduced to what this
configuration uses: 4 layers, 4 heads, n_embd 128, block 64, vocab 65, bias True, dropout 0, weight
tying, pre-norm blocks, causal self-attention (the explicit softmax path: torch 1.13 has no
scaled_dot_product_attention), MLP with GELU(approximate='tanh') as Tessera's GPT, GPT-2 init
(N(0, 0.02), zero biases, residual projections N(0, 0.02/sqrt(2*n_layer))). A step is nanoGPT's:
forward with targets, backward, clip_grad_norm_(1.0), AdamW step, zero_grad(set_to_none=True), loss.item().

Data and timing boundaries are bench/gpt_step.mjs's: every step's tokens are made before timing, as host
int64 arrays, by the same xorshift generator and seed (--data-seed) as the Tessera side, so both train on
the same tokens. A timed step copies that step's arrays into fresh x, y tensors (torch.tensor copies), runs
the step and reads the loss with .item(); x, y and the loss are freed when rebound in the next timed step
(Tessera disposes them at the end of its timed step: the same work, inside the timed region on both sides).

--precision bf16 (default f32): forward + loss inside torch.autocast(device_type='cpu', dtype=torch.bfloat16),
PyTorch's own CPU autocast (torch 1.13: linear, matmul and bmm run in bf16 on oneDNN, their outputs are
bf16; layer_norm and cross_entropy run in f32; ops outside its lists, e.g. GELU and softmax, run in
whatever dtype they are given). Backward, clip_grad_norm_ and AdamW are outside the region, on the f32
parameters and their f32 gradients, as in the f32 step. The first (untimed, warm-up) step records the
dtypes a few modules produced (forward hooks, removed afterwards) and, for bf16, oneDNN's verbose log of
that step summarised per matmul implementation and source dtype (`onednn_matmuls`), so the JSON shows
that the products really ran in bf16.

    OPENBLAS_CORETYPE=SkylakeX ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=2 /usr/bin/python3 bench/peers/torch_gpt.py --threads 2 [--precision bf16]

Prints one JSON line.
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onednn_capture import CaptureStdout  # noqa: E402


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c['n_embd'], 3 * c['n_embd'], bias=c['bias'])
        self.c_proj = nn.Linear(c['n_embd'], c['n_embd'], bias=c['bias'])
        self.n_head, self.n_embd = c['n_head'], c['n_embd']
        T = c['block_size']
        self.register_buffer('bias', torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c['n_embd'], 4 * c['n_embd'], bias=c['bias'])
        self.gelu = nn.GELU(approximate='tanh')
        self.c_proj = nn.Linear(4 * c['n_embd'], c['n_embd'], bias=c['bias'])

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c['n_embd'], elementwise_affine=True)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c['n_embd'], elementwise_affine=True)
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c['vocab_size'], c['n_embd']),
            wpe=nn.Embedding(c['block_size'], c['n_embd']),
            h=nn.ModuleList([Block(c) for _ in range(c['n_layer'])]),
            ln_f=nn.LayerNorm(c['n_embd']),
        ))
        self.lm_head = nn.Linear(c['n_embd'], c['vocab_size'], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c['n_layer']))

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            torch.nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            torch.nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def make_tokens(n_steps, length, vocab, seed):
    """bench/gpt_step.mjs's makeTokens: one xorshift32 (13, 17, 5) stream, x then y per step, state % vocab."""
    s = seed & 0xFFFFFFFF
    out, checksum = [], 0
    for _ in range(n_steps):
        pair = []
        for _ in range(2):
            a = np.empty(length, dtype=np.int64)
            for k in range(length):
                s ^= (s << 13) & 0xFFFFFFFF
                s ^= s >> 17
                s ^= (s << 5) & 0xFFFFFFFF
                a[k] = s % vocab
                checksum = (checksum * 31 + int(a[k])) % 1000000007
            pair.append(a)
        out.append(pair)
    return out, checksum


@contextlib.contextmanager
def onednn_log(enabled, out):
    """With enabled: run the body with oneDNN's verbose log on (captured, not printed) and put a summary of
    its matmul primitives in out: {'<implementation> <src dtype>': count, ...}, plus the ISA line."""
    mk = torch.backends.mkldnn
    if not enabled or not hasattr(mk, 'verbose'):
        yield
        return
    with CaptureStdout() as cap:
        with mk.verbose(mk.VERBOSE_ON):
            yield
    counts = {}
    for line in cap.text.splitlines():
        f = line.strip().split(',')
        if len(f) > 6 and f[1] == 'exec' and f[3] == 'matmul':
            src = next((m.split('::')[0] for m in f[6].split() if m.startswith('src_')), '?')
            key = f'{f[4]} {src}'
            counts[key] = counts.get(key, 0) + 1
        elif len(f) > 3 and f[1] == 'info' and f[3].startswith('isa:'):
            out['onednn_isa'] = f[3][4:]
    out['onednn_matmuls'] = counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--batch', type=int, default=12)
    ap.add_argument('--block', type=int, default=64)
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--heads', type=int, default=4)
    ap.add_argument('--embd', type=int, default=128)
    ap.add_argument('--vocab', type=int, default=65)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--beta2', type=float, default=0.99)
    ap.add_argument('--weight-decay', type=float, default=0.1)
    ap.add_argument('--grad-clip', type=float, default=1.0)
    ap.add_argument('--data-seed', type=int, default=1337, help='seed of the token generator (as bench/gpt_step.mjs)')
    ap.add_argument('--foreach', action='store_true', help='AdamW(foreach=True): the multi-tensor update')
    ap.add_argument('--precision', choices=('f32', 'bf16'), default='f32',
                    help="bf16: forward + loss under torch.autocast(device_type='cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    c = dict(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, block_size=a.block, vocab_size=a.vocab, bias=True)
    model = GPT(c)
    model.train()
    # Weight decay on every parameter, as Tessera's AdamW (nanoGPT exempts biases and LayerNorm weights;
    # the work per step is the same).
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, a.beta2), weight_decay=a.weight_decay,
                            foreach=True if a.foreach else None)
    n_params = sum(p.numel() for p in model.parameters())
    data, checksum = make_tokens(a.warmup + a.steps, a.batch * a.block, a.vocab, a.data_seed)
    bf16 = a.precision == 'bf16'
    # The first step (a warm-up step when --warmup >= 1) records the dtypes some modules produce.
    probe = {'modules': {}}
    watch = ('transformer.h.0.ln_1', 'transformer.h.0.attn.c_attn', 'transformer.h.0.attn', 'transformer.h.0.mlp.gelu',
             'transformer.h.0', 'transformer.ln_f', 'lm_head')

    def hook(name):
        def record(_mod, _inp, out):
            probe['modules'][name] = str((out[0] if isinstance(out, tuple) else out).dtype).replace('torch.', '')
        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n in watch]
    times, losses = [], []
    for step in range(a.warmup + a.steps):
        xh, yh = data[step]
        # (outside the timed region: the first step's oneDNN log, bf16 only)
        with onednn_log(bf16 and step == 0, probe):
            # ---- timed: host tokens -> x, y tensors, step, loss to host
            t0 = time.perf_counter()
            x = torch.tensor(xh).view(a.batch, a.block)
            y = torch.tensor(yh).view(a.batch, a.block)
            if bf16:
                with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
                    logits, loss = model(x, y)
            else:
                logits, loss = model(x, y)
            loss.backward()
            if a.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            lossf = loss.item()
            dt = (time.perf_counter() - t0) * 1e3
        # x, y, logits and loss are released when rebound in the next step (inside its timed region), as
        # in nanoGPT's loop. An explicit `del` here instead would free the whole step's memory at once and
        # let glibc trim it back to the OS, so every step would page-fault it in again: a cost of the
        # harness, not of PyTorch (it disappears with MALLOC_TRIM_THRESHOLD_ raised).
        # ----
        if step == 0:
            for h in hooks:
                h.remove()
            probe.update(logits=str(logits.dtype).replace('torch.', ''), loss=str(loss.dtype).replace('torch.', ''),
                         parameters=str(next(model.parameters()).dtype).replace('torch.', ''))
        losses.append(lossf)
        if step >= a.warmup:
            times.append(dt)
    tokens = a.batch * a.block
    med = statistics.median(times)
    print(json.dumps({
        'peer': 'pytorch-foreach' if a.foreach else 'pytorch',
        'threads': a.threads,
        'num_threads': torch.get_num_threads(),
        'version': torch.__version__,
        'config': c,
        'batch': a.batch,
        'params': n_params,
        'optimizer': f'AdamW(lr={a.lr}, betas=(0.9, {a.beta2}), weight_decay={a.weight_decay}, foreach={a.foreach or None}), clip_grad_norm_({a.grad_clip})',
        'data': {'generator': 'xorshift32 (13, 17, 5), token = state % vocab, x then y per step', 'seed': a.data_seed, 'checksum': checksum},
        'timed': 'host tokens -> x, y tensors; step; loss to host (the previous step\'s x, y, loss are freed when rebound, inside the next timed step)',
        'precision': a.precision,
        'autocast': "torch.autocast(device_type='cpu', dtype=torch.bfloat16) around forward + loss" if bf16 else None,
        'dtypes': probe,
        'warmup': a.warmup,
        'steps': a.steps,
        'ms_median': med,
        'ms_best': min(times),
        'ms_steps': times,
        'tokens_per_s': tokens / (med / 1e3),
        'losses': losses,
        'loss_first': losses[0],
        'loss_last': losses[-1],
        'python': sys.executable,
        'env': {k: os.environ.get(k) for k in ('OPENBLAS_CORETYPE', 'ATEN_CPU_CAPABILITY', 'OMP_NUM_THREADS')},
        'aten_capability': next((l.split(':', 1)[1].strip() for l in torch.__config__.show().splitlines() if 'CPU capability usage' in l), None),
    }))


if __name__ == '__main__':
    main()
