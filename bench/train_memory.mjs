#!/usr/bin/env node
/**
 * Training peak memory, Tessera side by side with PyTorch, with each memory feature off and on, and the
 * largest GPT each can train within a fixed memory budget:
 *
 *   node bench/train_memory.mjs [--only table|search] [--budget-mib 2048] [--quick] [--threads 2]
 *        [--accum 4] [--probe-timeout 600] [--kill-margin-mib 0] [--no-profile]
 *        [--configs baby,large] [--features off,bf16,ckpt,accum,all] [--sides pytorch,pytorch-all,tessera,tessera-all]
 *
 * Model: nanoGPT's GPT-2 layout on both sides (bench/peers/torch_gpt.py; Tessera's `GPT` from dist/nn),
 * vocab 65, bias, no dropout, weight tying. A training step: forward with targets, backward, clip the
 * global gradient norm at 1.0, AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1). Tessera's step is
 * jitted (`jit(step)(x, y)`, as `tessera train` and bench/gpt_step.mjs), device 'cpu', TESSERA_THREADS;
 * PyTorch eager, torch.set_num_threads, /usr/bin/python3 with bench/lib/common.mjs's torchEnv. The same
 * tokens on both sides (bench/gpt_step.mjs's xorshift stream).
 *
 * Steps per measurement: PyTorch 2 (step 1 creates the AdamW state, step 2 is the steady state), Tessera 3
 * (jit: call 1 traces, call 2 captures, call 3 is the first replay, the steady state). --steps N sets
 * PyTorch's count (Tessera's is max(N, 3)).
 *
 * Features (each its own process, on both sides):
 *   off     f32, no checkpointing, no accumulation
 *   bf16    forward and loss under bf16 autocast (PyTorch: torch.autocast('cpu', dtype=torch.bfloat16);
 *           Tessera: autocast({ dtype: 'bf16' }, ...)); parameters, gradients, optimizer state stay f32
 *   ckpt    activation checkpointing of every transformer block (PyTorch: torch.utils.checkpoint.checkpoint
 *           per block, use_reentrant=False; Tessera: GPT config checkpointing: true)
 *   accum   gradient accumulation over --accum (4) micro-batches of batch/4 (PyTorch: (loss/k).backward()
 *           k times, then the step; Tessera: loss.div(k).backward() per micro-batch, the gradients realized
 *           between micro-batches, then the step)
 *   all     the three together
 *
 * Memory figures: peak RSS = VmHWM of the child process (/proc/self/status) read at its end, after the
 * steps; baseline RSS = VmRSS after the library is loaded, before the model exists (reported separately;
 * it is part of the peak). Own figures: Tessera's memory.stats() peak (bytes its allocator tracked);
 * PyTorch on CPU has no allocator statistics in torch 1.13, so one extra step runs under
 * torch.profiler.profile(profile_memory=True) after VmHWM was read (tensor bytes live at the step start +
 * the peak of the running sum of allocator events; --no-profile skips it).
 *
 * Part 1, table (--only table): the nanoGPT baby GPT (shakespeare_char: 6 layers, 6 heads, n_embd 384,
 * block 256, vocab 65, batch 64: 10.7M parameters) and a GPT about 20x larger (16 layers, 16 heads,
 * n_embd 1024, block 256, batch 8: 201.9M parameters, 18.7x), every feature on both sides.
 *
 * Part 2, search (--only search): the largest GPT of a one-knob family whose peak RSS over the steps is
 * within --budget-mib (2048): 12 layers, block 256, batch 8, vocab 65, n_head = h, n_embd = 64·h (GPT-2
 * small is h = 12), for four sides: PyTorch plain, PyTorch with everything on (autocast + checkpointing +
 * accumulation), Tessera plain, Tessera with everything on. Exponential search from h = 2 (doubling
 * while it fits), then binary search to one head. A probe fits when it finishes with VmHWM ≤ budget; the
 * harness polls the child's VmRSS every 50 ms and kills it once above budget + --kill-margin-mib (0: it
 * cannot fit any more), or after --probe-timeout seconds (counted as not fitting, and marked).
 *
 * --quick: tiny sizes to test the harness in a few minutes (one 0.4M-parameter table configuration with
 * features off and all; a 2-layer block-64 batch-4 family from h = 4, doubling only, no binary search;
 * budget 384 MiB unless --budget-mib). Writes bench/results/train_memory.json (a run with --only keeps the
 * other part of the previous file, with its own date and command).
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  BENCH_DIR,
  PYTHON,
  commandLine,
  cpuSnapshot,
  fmt,
  foreignCores,
  machineInfo,
  lastJsonLine,
  parseArgs,
  probeTesseraDevice,
  readResult,
  tesseraBuildInfo,
  torchEnv,
  writeResult,
} from './lib/common.mjs';

const args = parseArgs();
const QUICK = !!args.quick;
const MiB = 2 ** 20;
const THREADS = Number(args.threads ?? 2);
const ACCUM = Number(args.accum ?? 4);
const BUDGET_MIB = Number(args['budget-mib'] ?? (QUICK ? 384 : 2048));
const PROBE_TIMEOUT_S = Number(args['probe-timeout'] ?? 600);
const KILL_MARGIN_MIB = Number(args['kill-margin-mib'] ?? 0);
const PT_STEPS = Number(args.steps ?? 2);
const TS_STEPS = Math.max(3, PT_STEPS);
const PROFILE = !args['no-profile'];
const ONLY = args.only ?? null;
if (ONLY && !['table', 'search'].includes(ONLY)) throw new Error(`--only ${ONLY}: expected table or search`);

const VOCAB = 65;
const TABLE_CONFIGS = QUICK
  ? [{ name: 'baby-quick', label: 'tiny GPT (quick)', layers: 2, heads: 2, embd: 128, block: 64, batch: 8 }]
  : [
      { name: 'baby', label: 'baby GPT (nanoGPT shakespeare_char)', layers: 6, heads: 6, embd: 384, block: 256, batch: 64 },
      { name: 'large', label: 'GPT ~20x larger', layers: 16, heads: 16, embd: 1024, block: 256, batch: 8 },
    ];
const FEATURES = {
  off: { label: 'all off (f32)', precision: 'f32', ckpt: false, accum: 1 },
  bf16: { label: 'bf16 autocast', precision: 'bf16', ckpt: false, accum: 1 },
  ckpt: { label: 'activation checkpointing', precision: 'f32', ckpt: true, accum: 1 },
  accum: { label: `gradient accumulation (${ACCUM} micro-batches)`, precision: 'f32', ckpt: false, accum: ACCUM },
  all: { label: 'all on', precision: 'bf16', ckpt: true, accum: ACCUM },
};
const FAMILY = QUICK
  ? { layers: 2, block: 64, batch: 4, headDim: 64, startHeads: 4, maxHeads: 64, binary: false }
  : { layers: 12, block: 256, batch: 8, headDim: 64, startHeads: 2, maxHeads: 64, binary: true };
const SEARCH_SIDES = {
  pytorch: { side: 'pytorch', label: 'PyTorch (plain f32)', feature: 'off' },
  'pytorch-all': { side: 'pytorch', label: 'PyTorch (autocast + checkpointing + accumulation)', feature: 'all' },
  tessera: { side: 'tessera', label: 'Tessera (plain f32, jit)', feature: 'off' },
  'tessera-all': { side: 'tessera', label: 'Tessera (all on, jit)', feature: 'all' },
};
const pickList = (v, all) => (v === undefined || v === true ? all : String(v).split(','));

/** Parameters of the GPT-2 layout with weight tying and biases. */
export function gptParams({ layers, embd, block, vocab = VOCAB }) {
  const C = embd;
  return vocab * C + block * C + layers * (12 * C * C + 13 * C) + 2 * C;
}

/**
 * Run one measurement child: poll its VmRSS every 50 ms, kill it (SIGKILL) when above `killAbove` bytes
 * or after `timeoutS`; its result is the last JSON line of its stdout.
 */
function runChild(cmd, argv, { env, killAbove = Infinity, timeoutS = PROBE_TIMEOUT_S } = {}) {
  return new Promise((resolve) => {
    const c0 = cpuSnapshot();
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env, cwd: BENCH_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killed = null;
    let maxPolled = 0;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const poll = setInterval(() => {
      try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        const rss = m ? Number(m[1]) * 1024 : 0;
        maxPolled = Math.max(maxPolled, rss);
        if (rss > killAbove && !killed) {
          killed = 'budget';
          child.kill('SIGKILL');
        }
      } catch {
        /* exited */
      }
      if (!killed && performance.now() - t0 > timeoutS * 1000) {
        killed = 'timeout';
        child.kill('SIGKILL');
      }
    }, 50);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      const wall_s = (performance.now() - t0) / 1000;
      const foreign = foreignCores(c0, cpuSnapshot());
      const result = lastJsonLine(out);
      const base = { wall_s, max_polled_rss: maxPolled, foreign_cores: foreign };
      if (killed) return resolve({ ok: false, killed, ...base, error: killed === 'budget' ? `killed: RSS ${fmt(maxPolled / MiB, 0)} MiB above the budget` : `killed after ${timeoutS} s` });
      if (code !== 0 || !result || result.error) {
        const why = result?.error ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
        return resolve({ ok: false, ...base, error: why, stderr: err.trim().split('\n').slice(-12).join('\n') });
      }
      resolve({ ok: true, ...base, result });
    });
  });
}

/** One measurement: side 'pytorch' | 'tessera', model config, feature name. */
function measure(side, cfg, feature, opts = {}) {
  const f = FEATURES[feature];
  const common = [
    '--layers', cfg.layers, '--heads', cfg.heads, '--embd', cfg.embd, '--block', cfg.block,
    '--vocab', VOCAB, '--batch', cfg.batch, '--precision', f.precision, '--accum', f.accum,
  ].map(String);
  if (f.ckpt) common.push('--checkpointing');
  if (side === 'pytorch') {
    const a = [join(BENCH_DIR, 'peers', 'torch_train_memory.py'), ...common, '--threads', String(THREADS), '--steps', String(PT_STEPS)];
    if (opts.profile) a.push('--profile-memory');
    return runChild(PYTHON, a, { env: torchEnv(THREADS), ...opts });
  }
  const a = [join(BENCH_DIR, 'peers', 'tessera_train_memory.mjs'), ...common, '--steps', String(TS_STEPS)];
  return runChild(process.execPath, a, { env: { ...process.env, TESSERA_THREADS: String(THREADS) }, ...opts });
}

const mib = (b) => (b == null ? 'n/a' : fmt(b / MiB, 0));
const summary = (r) => {
  if (!r.ok) return { ok: false, error: r.error, killed: r.killed ?? null, stderr: r.stderr, wall_s: r.wall_s, max_polled_rss: r.max_polled_rss };
  const x = r.result;
  const own =
    x.side === 'tessera'
      ? Object.values(x.tessera_stats ?? {}).reduce((a, s) => a + s.peak, 0) || null
      : (x.allocator?.peak_bytes ?? null);
  return {
    ok: true,
    params: x.params,
    peak_rss: x.peak_rss,
    baseline_rss: x.baseline_rss,
    after_model_rss: x.after_model_rss,
    end_rss: x.end_rss,
    own_peak: own,
    own_note: x.side === 'tessera' ? 'memory.stats() peak, summed over devices' : x.allocator_note,
    wall_s: r.wall_s,
    foreign_cores: r.foreign_cores,
    losses: x.losses,
    ms_steps: x.ms_steps,
    detail: x,
  };
};

/** Called with partial results after every table configuration and every search side (set by main). */
let savePartial = () => {};

async function runTable() {
  const features = pickList(args.features, QUICK ? ['off', 'all'] : Object.keys(FEATURES));
  const names = pickList(args.configs, TABLE_CONFIGS.map((c) => c.name));
  const configs = [];
  for (const cfg of TABLE_CONFIGS.filter((c) => names.includes(c.name))) {
    const params = gptParams({ ...cfg });
    console.log(`\n== ${cfg.label}: ${cfg.layers} layers, ${cfg.heads} heads, n_embd ${cfg.embd}, block ${cfg.block}, batch ${cfg.batch}, ${(params / 1e6).toFixed(1)}M params`);
    const rows = [];
    for (const feature of features) {
      const row = { feature, label: FEATURES[feature].label };
      for (const side of ['pytorch', 'tessera']) {
        const r = summary(await measure(side, cfg, feature, { profile: PROFILE, timeoutS: Math.max(PROBE_TIMEOUT_S, 1800) }));
        row[side] = r;
        console.log(
          r.ok
            ? `  ${feature.padEnd(6)} ${side.padEnd(8)} peak RSS ${mib(r.peak_rss).padStart(6)} MiB (baseline ${mib(r.baseline_rss)}), own ${mib(r.own_peak)} MiB, loss ${r.losses.map((l) => l.toFixed(4)).join(' ')}, ${fmt(r.wall_s, 0)} s`
            : `  ${feature.padEnd(6)} ${side.padEnd(8)} FAILED: ${r.error.split('\n')[0]}`,
        );
      }
      if (row.pytorch.ok && row.tessera.ok) row.ratio_peak_rss = row.tessera.peak_rss / row.pytorch.peak_rss;
      rows.push(row);
    }
    configs.push({ ...cfg, vocab: VOCAB, params, accum: ACCUM, rows, date: new Date().toISOString(), command: commandLine('train_memory.mjs') });
    savePartial({ table: { date: new Date().toISOString(), command: commandLine('train_memory.mjs'), pytorch_steps: PT_STEPS, tessera_steps: TS_STEPS, profile: PROFILE, configs, partial: true } });
  }
  return { date: new Date().toISOString(), command: commandLine('train_memory.mjs'), pytorch_steps: PT_STEPS, tessera_steps: TS_STEPS, profile: PROFILE, configs };
}

async function runSearch() {
  const budget = BUDGET_MIB * MiB;
  const killAbove = budget + KILL_MARGIN_MIB * MiB;
  const sides = pickList(args.sides, Object.keys(SEARCH_SIDES));
  const familyCfg = (h) => ({ layers: FAMILY.layers, heads: h, embd: FAMILY.headDim * h, block: FAMILY.block, batch: FAMILY.batch });
  const out = [];
  console.log(
    `\n== largest GPT within ${BUDGET_MIB} MiB: ${FAMILY.layers} layers, n_head h, n_embd ${FAMILY.headDim}h, block ${FAMILY.block}, batch ${FAMILY.batch} (accumulation: ${ACCUM} micro-batches)`,
  );
  for (const name of sides) {
    const s = SEARCH_SIDES[name];
    const probes = [];
    let failure = null;
    const probe = async (h) => {
      const cfg = familyCfg(h);
      const r = await measure(s.side, cfg, s.feature, { killAbove });
      const fits = r.ok && r.result.peak_rss <= budget;
      const p = {
        heads: h,
        embd: cfg.embd,
        params: gptParams(cfg),
        fits,
        peak_rss: r.ok ? r.result.peak_rss : null,
        baseline_rss: r.ok ? r.result.baseline_rss : null,
        own_peak_by_owner: r.ok ? (r.result.tessera_stats?.[r.result.device]?.peakByOwner ?? null) : null,
        max_polled_rss: r.max_polled_rss,
        killed: r.killed ?? null,
        error: r.ok || r.killed ? null : r.error,
        wall_s: r.wall_s,
      };
      probes.push(p);
      console.log(
        `  ${name.padEnd(12)} h=${String(h).padStart(2)} n_embd ${String(cfg.embd).padStart(4)} ${(p.params / 1e6).toFixed(1).padStart(6)}M params: ${fits ? 'fits' : 'does not fit'}, ${r.ok ? `peak RSS ${mib(p.peak_rss)} MiB` : r.killed ? r.error : `FAILED: ${String(r.error).split('\n')[0]}`} (${fmt(r.wall_s, 0)} s)`,
      );
      if (!r.ok && !r.killed) failure = r.error;
      return fits;
    };
    let lo = 0; // largest h known to fit
    let hi = null; // smallest h known not to fit
    for (let h = FAMILY.startHeads; h <= FAMILY.maxHeads; h *= 2) {
      if (await probe(h)) lo = h;
      else {
        hi = h;
        break;
      }
      if (failure) break;
    }
    if (FAMILY.binary && !failure && hi !== null && lo > 0) {
      while (hi - lo > 1 && !failure) {
        const mid = (lo + hi) >> 1;
        if (await probe(mid)) lo = mid;
        else hi = mid;
      }
    }
    const best = lo > 0 && !failure ? probes.find((p) => p.heads === lo) : null;
    out.push({
      name,
      side: s.side,
      label: s.label,
      feature: s.feature,
      probes,
      failed: failure,
      best: best ? { heads: best.heads, embd: best.embd, params: best.params, peak_rss: best.peak_rss } : null,
      capped: hi === null && !failure ? `fits up to the family's largest probed size (h = ${lo})` : null,
    });
    console.log(
      best
        ? `  ${name}: largest fitting h=${best.heads} (n_embd ${best.embd}), ${(best.params / 1e6).toFixed(1)}M params, peak RSS ${mib(best.peak_rss)} MiB`
        : `  ${name}: ${failure ? `failed: ${String(failure).split('\n')[0]}` : 'nothing fits'}`,
    );
    savePartial({ search: { date: new Date().toISOString(), command: commandLine('train_memory.mjs'), budget_mib: BUDGET_MIB, sides: out, partial: true } });
  }
  const P = Object.fromEntries(out.map((o) => [o.name, o.best?.params ?? null]));
  const ratio = (a, b) => (P[a] && P[b] ? P[a] / P[b] : null);
  return {
    date: new Date().toISOString(),
    command: commandLine('train_memory.mjs'),
    budget_mib: BUDGET_MIB,
    kill_margin_mib: KILL_MARGIN_MIB,
    probe_timeout_s: PROBE_TIMEOUT_S,
    pytorch_steps: PT_STEPS,
    tessera_steps: TS_STEPS,
    family: { ...FAMILY, vocab: VOCAB, accum: ACCUM, knob: `n_head = h, n_embd = ${FAMILY.headDim}h` },
    sides: out,
    ratios: {
      tessera_all_over_pytorch: ratio('tessera-all', 'pytorch'),
      tessera_all_over_pytorch_all: ratio('tessera-all', 'pytorch-all'),
      tessera_over_pytorch: ratio('tessera', 'pytorch'),
      goal: 'Tessera (all on) fits >= 3x the parameters of PyTorch (plain) in the same budget',
    },
  };
}

function printTable(t) {
  for (const c of t.configs) {
    console.log(`\n${c.label} (${(c.params / 1e6).toFixed(1)}M params, batch ${c.batch} x ${c.block}): peak RSS MiB (baseline), own figure MiB`);
    console.log('| feature | PyTorch peak RSS | PyTorch allocator (profiler) | Tessera peak RSS | Tessera memory.stats peak | Tessera / PyTorch |');
    for (const r of c.rows) {
      const cell = (x) => (x.ok ? `${mib(x.peak_rss)} (${mib(x.baseline_rss)})` : `n/a${x.killed ? ` (${x.killed})` : ''}`);
      console.log(
        `| ${r.label} | ${cell(r.pytorch)} | ${r.pytorch.ok ? mib(r.pytorch.own_peak) : 'n/a'} | ${cell(r.tessera)} | ${r.tessera.ok ? mib(r.tessera.own_peak) : 'n/a'} | ${r.ratio_peak_rss ? r.ratio_peak_rss.toFixed(2) + 'x' : 'n/a'} |`,
      );
    }
  }
}

async function main() {
  const buildAtStart = tesseraBuildInfo();
  const probe = probeTesseraDevice();
  const tess = probe.ok ? probe.result : { error: probe.error };
  console.log(`Tessera device: ${tess.device ?? 'n/a'} (${tess.note ?? tess.error}); threads ${THREADS}; budget ${BUDGET_MIB} MiB`);
  const prev = readResult('train_memory.json');
  const keepPrev = prev && !!prev.quick === QUICK && !prev.partial;
  const header = () => ({
    kind: 'train_memory',
    date: new Date().toISOString(),
    command: commandLine('train_memory.mjs'),
    quick: QUICK,
    machine: machineInfo(),
    tessera: tess,
    tessera_build: { ...tesseraBuildInfo(), dist_built_at_start: buildAtStart?.dist_built ?? null },
    threads: THREADS,
    python: PYTHON,
  });
  const kept = { table: ONLY === 'search' && keepPrev ? prev.table ?? null : null, search: ONLY === 'table' && keepPrev ? prev.search ?? null : null };
  // Partial results go to their own file, so an interrupted run leaves the last complete one in place.
  savePartial = (part) => {
    Object.assign(kept, part);
    writeResult('train_memory.partial.json', { ...header(), partial: true, ...kept });
  };
  let table = ONLY === 'search' ? kept.table : await runTable();
  // --configs with a subset: the other configurations of the previous complete run are kept (each row
  // group carries its own date and command).
  const prevCfgs = keepPrev ? (prev.table?.configs ?? []) : [];
  if (ONLY !== 'search' && prevCfgs.length) {
    const done = new Set(table.configs.map((c) => c.name));
    const order = TABLE_CONFIGS.map((c) => c.name);
    const merged = [...prevCfgs.filter((c) => !done.has(c.name)), ...table.configs];
    merged.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    table = { ...table, configs: merged };
  }
  kept.table = table;
  if (ONLY !== 'search') printTable(table);
  const search = ONLY === 'table' ? kept.search : await runSearch();
  const res = { ...header(), table, search };
  if (search) {
    const r = search.ratios;
    console.log(
      `\nlargest trainable GPT within ${search.budget_mib} MiB: ${search.sides.map((s) => `${s.label} ${s.best ? `${(s.best.params / 1e6).toFixed(1)}M` : 'n/a'}`).join('; ')}`,
    );
    console.log(
      `Tessera (all on) / PyTorch (plain): ${r.tessera_all_over_pytorch ? r.tessera_all_over_pytorch.toFixed(2) + 'x' : 'n/a'}; / PyTorch (all on): ${r.tessera_all_over_pytorch_all ? r.tessera_all_over_pytorch_all.toFixed(2) + 'x' : 'n/a'} (goal >= 3x PyTorch plain)`,
    );
  }
  const file = writeResult('train_memory.json', res);
  rmSync(join(BENCH_DIR, 'results', 'train_memory.partial.json'), { force: true });
  console.log(`\nwrote ${file}`);
}

await main();
