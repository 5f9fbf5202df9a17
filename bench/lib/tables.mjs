/** Markdown tables of the benchmark results, shared by the scripts' console output and bench/report.mjs. */
import { fmt } from './common.mjs';

/**
 * Training FLOPs per step of a GPT, nanoGPT's estimate_mfu() formula (PaLM appendix B):
 * 6·N per token (N = parameters without the position embedding) + 12·L·H·Q·T for attention.
 */
export function gptFlopsPerStep({ params, config, batch }) {
  const L = config.nLayer ?? config.n_layer;
  const H = config.nHead ?? config.n_head;
  const C = config.nEmbd ?? config.n_embd;
  const T = config.blockSize ?? config.block_size;
  const N = params - T * C;
  return (6 * N + 12 * L * H * (C / H) * T) * T * batch;
}

const TESSERA_MM = ['tessera', 'tessera-jit'];
export const matmulLabel = (p) => ({ tessera: 'Tessera (realize)', 'tessera-jit': 'Tessera (jit)' })[p] ?? p;

/** GFLOP/s table: one column per peer, best / median (% of the FMA peak at that thread count, from best). */
export function matmulTable(res, peak) {
  const peers = res.peers;
  const lines = [];
  const head = ['n', 'threads', ...peers.map((p) => `${matmulLabel(p)} GFLOP/s (% peak)`)];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`);
  for (const threads of res.threads) {
    for (const n of res.sizes) {
      const get = (p) => res.results.find((r) => r.peer === p && r.n === n && r.threads === threads);
      const pk = peak?.fma?.[threads]?.gflops;
      const cell = (p) => {
        const r = get(p);
        if (!r) return '-';
        if (r.skipped) return `skipped (${r.skipped.split(':')[0]})`;
        if (r.unavailable) return 'n/a (1 thread only)';
        if (r.error) return 'failed';
        const busy = r.foreign_cores > (res.busy_threshold ?? 0.25) ? ' †' : '';
        return `${fmt(r.gflops_best)} / ${fmt(r.gflops_median)}${pk ? ` (${fmt((100 * r.gflops_best) / pk, 0)}%)` : ''}${busy}`;
      };
      lines.push(`| ${n} | ${threads} | ${peers.map(cell).join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

/** One matmul result row, or undefined when it has no throughput (missing, skipped, failed, n/a). */
export function matmulRow(res, peer, n, threads) {
  const r = res.results.find((x) => x.peer === peer && x.n === n && x.threads === threads);
  return r && r.gflops_best && !r.error && !r.skipped && !r.unavailable ? r : undefined;
}

/** Throughput ratio a / b: best / best and median / median; undefined when either is missing. */
export function matmulRatio(res, a, b, n, threads) {
  const ra = matmulRow(res, a, n, threads);
  const rb = matmulRow(res, b, n, threads);
  if (!ra || !rb) return undefined;
  return { best: ra.gflops_best / rb.gflops_best, median: ra.gflops_median / rb.gflops_median };
}

/** Ratio table: each Tessera variant / each peer (and jit / realize), "best-ratio (median-ratio)". */
export function matmulRatioTable(res) {
  const tess = TESSERA_MM.filter((p) => res.peers.includes(p));
  const others = res.peers.filter((p) => !TESSERA_MM.includes(p));
  const pairs = [];
  if (tess.length === 2) pairs.push(['tessera-jit', 'tessera']);
  for (const o of others) for (const t of tess) pairs.push([t, o]);
  const head = ['n', 'threads', ...pairs.map(([a, b]) => `${matmulLabel(a)} / ${matmulLabel(b)}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const threads of res.threads) {
    for (const n of res.sizes) {
      const cells = pairs.map(([a, b]) => {
        const r = matmulRatio(res, a, b, n, threads);
        return r ? `${r.best.toFixed(3)}x (${r.median.toFixed(3)}x)` : '-';
      });
      lines.push(`| ${n} | ${threads} | ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

/** The GPT step's rows: label of a result row. */
export const gptLabel = (r) =>
  r.label ??
  {
    tessera: 'Tessera (jit)',
    'tessera-nojit': 'Tessera, not jitted',
    pytorch: 'PyTorch',
    'pytorch-foreach': 'PyTorch, AdamW foreach',
  }[r.peer] ??
  r.peer;

export function gptTable(res, peak) {
  const rows = res.results;
  const tj = rows.find((r) => r.peer === 'tessera' && !r.error);
  const tn = rows.find((r) => r.peer === 'tessera-nojit' && !r.error);
  const head = [
    'peer',
    'threads',
    'ms/step median',
    'ms/step best',
    'tokens/s',
    'model GFLOP/s (% peak)',
    'Tessera (jit) speed / this',
    'Tessera, not jitted, speed / this',
    'launches per step (runtime calls)',
    'kernels compiled per step',
    'notes',
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((h, i) => (i < 2 || i === head.length - 1 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  // speed ratio = this row's ms/step / Tessera's ms/step (medians); > 1: Tessera is faster
  const ratio = (t, r) => (!t || r === t ? '-' : `${(r.ms_median / t.ms_median).toFixed(3)}x`);
  for (const r of rows) {
    if (r.error) {
      lines.push(
        `| ${gptLabel(r)} | ${res.threads} | failed | | | | | | | | ${String(r.error).split('\n')[0].slice(0, 120).replace(/\|/g, '/')} |`,
      );
      continue;
    }
    const notes = [];
    const isT = r.peer.startsWith('tessera');
    if (isT) {
      notes.push(`device ${r.device}${r.runtime !== r.device ? ` (runtime ${r.runtime})` : ''}`, r.jit);
      if (r.jit_stats)
        notes.push(
          `jit stats: ${r.jit_stats.traced} traced, ${r.jit_stats.replayed} replayed, ${r.jit_stats.signatures} signature(s), launchesPerReplay ${r.jit_stats.launchesPerReplay}`,
        );
      notes.push(
        `${r.realizes_per_step} realize(s) per step${r.scheduled_kernels_per_step ? ` (${r.scheduled_kernels_per_step} kernels scheduled)` : ''}`,
      );
      notes.push(
        `${r.warmup} warm-up + ${r.steps} measured steps; warm-up steps ${r.ms_warmup_steps.map((x) => fmt(x, 0)).join(', ')} ms, compiling ${r.compiled_warmup_steps.join(', ')} kernels`,
      );
    } else notes.push(r.optimizer.replace(/\|/g, '/'), `${r.warmup} warm-up + ${r.steps} measured steps`);
    if (r.foreign_cores > (res.busy_threshold ?? 0.25))
      notes.push(`† other processes used ${r.foreign_cores.toFixed(2)} cores meanwhile`);
    const gflops = gptFlopsPerStep(r) / r.ms_median / 1e6;
    const pk = peak?.fma?.[r.threads ?? res.threads]?.gflops;
    const g = `${fmt(gflops)}${pk ? ` (${fmt((100 * gflops) / pk)}%)` : ''}`;
    const launches = isT ? `${r.launches_per_step} (${r.runtime_calls_per_step})` : '-';
    const compiled = isT ? `${r.compiled_per_step}` : '-';
    lines.push(
      `| ${gptLabel(r)} | ${r.threads ?? res.threads} | ${fmt(r.ms_median)} | ${fmt(r.ms_best)} | ${fmt(r.tokens_per_s, 0)} | ${g} | ${ratio(tj, r)} | ${ratio(tn, r)} | ${launches} | ${compiled} | ${notes.join('; ')} |`,
    );
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// WebGPU matmul (bench/webgpu_matmul.mjs)

const TESSERA_WG = ['tessera', 'tessera-jit'];
export const webgpuMatmulLabel = (p) =>
  ({
    tessera: 'Tessera WebGPU (realize)',
    'tessera-jit': 'Tessera WebGPU (jit)',
    'tfjs-webgpu': 'tfjs-webgpu',
  })[p] ?? p;

/** One WebGPU matmul row with a throughput, or undefined (missing, failed, wrong, skipped, unavailable). */
export function webgpuMatmulRow(res, peer, n) {
  const r = res.results.find((x) => x.peer === peer && x.n === n);
  return r && r.gflops_best && !r.error && !r.wrong && !r.skipped && !r.unavailable ? r : undefined;
}

/** Throughput ratio a / b (best / best, median / median); undefined when either is missing. */
export function webgpuMatmulRatio(res, a, b, n) {
  const ra = webgpuMatmulRow(res, a, n);
  const rb = webgpuMatmulRow(res, b, n);
  if (!ra || !rb) return undefined;
  return { best: ra.gflops_best / rb.gflops_best, median: ra.gflops_median / rb.gflops_median };
}

/** GFLOP/s table: one column per peer, "best / median", plus the single-call round trip (ms, median). */
export function webgpuMatmulTable(res) {
  const peers = res.peers;
  const head = [
    'n',
    ...peers.map((p) => `${webgpuMatmulLabel(p)} GFLOP/s`),
    ...peers.map((p) => `${webgpuMatmulLabel(p)} round trip ms`),
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const n of res.sizes) {
    const get = (p) => res.results.find((r) => r.peer === p && r.n === n);
    const cell = (p) => {
      const r = get(p);
      if (!r) return '-';
      if (r.unavailable) return 'unavailable';
      if (r.skipped) return 'skipped';
      if (r.error) return 'failed';
      if (r.wrong) return 'WRONG RESULT';
      const busy = r.foreign_cores > (res.busy_threshold ?? 0.25) ? ' †' : '';
      return `${fmt(r.gflops_best, 2)} / ${fmt(r.gflops_median, 2)}${busy}`;
    };
    const rt = (p) => {
      const r = webgpuMatmulRow(res, p, n);
      return r ? fmt(r.roundtrip_ms, 1) : '-';
    };
    lines.push(`| ${n} | ${peers.map(cell).join(' | ')} | ${peers.map(rt).join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Ratio table: each Tessera variant / tfjs-webgpu (and jit / realize), "best-ratio (median-ratio)". */
export function webgpuMatmulRatioTable(res) {
  const tess = TESSERA_WG.filter((p) => res.peers.includes(p));
  const others = res.peers.filter((p) => !TESSERA_WG.includes(p));
  const pairs = [];
  for (const o of others) for (const t of tess) pairs.push([t, o]);
  if (tess.length === 2) pairs.push(['tessera-jit', 'tessera']);
  if (!pairs.length) return '_No ratio: a Tessera peer and tfjs-webgpu are both needed._';
  const head = ['n', ...pairs.map(([a, b]) => `${webgpuMatmulLabel(a)} / ${webgpuMatmulLabel(b)}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const n of res.sizes) {
    const cells = pairs.map(([a, b]) => {
      const r = webgpuMatmulRatio(res, a, b, n);
      return r ? `${r.best.toFixed(3)}x (${r.median.toFixed(3)}x)` : '-';
    });
    lines.push(`| ${n} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
