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

export function matmulTable(res, peak) {
  const peers = res.peers;
  const lines = [];
  const head = [
    'n',
    'threads',
    ...peers.map((p) => `${p} GFLOP/s (% peak)`),
    ...peers.filter((p) => p !== 'tessera').map((p) => `Tessera / ${p}`),
  ];
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
      const t = get('tessera');
      const ratio = (p) => {
        const r = get(p);
        if (!t || !r || t.error || r.error || t.skipped || r.unavailable || !t.gflops_best || !r.gflops_best)
          return '-';
        return `${(t.gflops_best / r.gflops_best).toFixed(3)}x`;
      };
      lines.push(
        `| ${n} | ${threads} | ${peers.map(cell).join(' | ')} | ${peers
          .filter((p) => p !== 'tessera')
          .map(ratio)
          .join(' | ')} |`,
      );
    }
  }
  return lines.join('\n');
}

export function gptTable(res, peak) {
  const rows = res.results;
  const t = rows.find((r) => r.peer === 'tessera' && !r.error);
  const head = [
    'peer',
    'threads',
    'ms/step median',
    'ms/step best',
    'tokens/s',
    'model GFLOP/s (% peak)',
    'Tessera speed / peer',
    'notes',
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((h, i) => (i < 2 || i === head.length - 1 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  for (const r of rows) {
    if (r.error) {
      lines.push(
        `| ${r.peer} | ${res.threads} | failed | | | | | ${String(r.error).split('\n')[0].slice(0, 120).replace(/\|/g, '/')} |`,
      );
      continue;
    }
    const ratio = r.peer === 'tessera' || !t ? '-' : `${(r.ms_median / t.ms_median).toFixed(3)}x`;
    const notes = [];
    if (r.peer === 'tessera') {
      notes.push(`device ${r.device}${r.runtime !== r.device ? ` (runtime ${r.runtime})` : ''}`, r.jit);
      notes.push(
        `${r.kernels_per_step} kernel launches, ${r.realizes_per_step} realize(s), ${r.compiled_per_step} kernels compiled per step`,
      );
      notes.push(`${r.warmup} warm-up + ${r.steps} measured steps; first step ${fmt(r.ms_first_step, 0)} ms`);
    } else notes.push(r.optimizer.replace(/\|/g, '/'), `${r.warmup} warm-up + ${r.steps} measured steps`);
    if (r.foreign_cores > (res.busy_threshold ?? 0.25))
      notes.push(`† other processes used ${r.foreign_cores.toFixed(2)} cores meanwhile`);
    const gflops = gptFlopsPerStep(r) / r.ms_median / 1e6;
    const pk = peak?.fma?.[r.threads ?? res.threads]?.gflops;
    const g = `${fmt(gflops)}${pk ? ` (${fmt((100 * gflops) / pk)}%)` : ''}`;
    lines.push(
      `| ${r.peer} | ${r.threads ?? res.threads} | ${fmt(r.ms_median)} | ${fmt(r.ms_best)} | ${fmt(r.tokens_per_s, 0)} | ${g} | ${ratio} | ${notes.join('; ')} |`,
    );
  }
  return lines.join('\n');
}
