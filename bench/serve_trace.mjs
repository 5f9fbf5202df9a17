#!/usr/bin/env node
/**
 * Lines up what clients saw with what the engine did, from `node bench/serve_load.mjs --trace DIR`:
 *
 *   node bench/serve_trace.mjs DIR [--server tessera] [--level 16] [--top 10]
 *
 * For every inter-token gap of the measured requests it finds the engine steps that ended inside the gap
 * (DIR/<server>.steps.jsonl) and splits the gap into: steps that ran (their durations), idle engine time
 * between them, and delivery (last step's end to the token's arrival at the client). Prints the
 * distribution of each part over the gaps at or above the 99th percentile, then the largest gaps one by one,
 * and a timeline summary of the level (steps by kind, tokens per step, time with fewer than all streams
 * decoding).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, parseArgs } from './lib/common.mjs';

const args = parseArgs();
const dir = args._[0];
if (!dir || dir.startsWith('--')) {
  console.error('usage: node bench/serve_trace.mjs DIR [--server tessera] [--level 16] [--top 10]');
  process.exit(2);
}
const server = String(args.server ?? 'tessera');
const level = Number(args.level ?? 16);
const top = Number(args.top ?? 10);
const steps = readFileSync(join(dir, `${server}.steps.jsonl`), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const requests = JSON.parse(readFileSync(join(dir, `${server}-${level}.requests.json`), 'utf8'));
const t0 = Math.min(...requests.map((r) => r.start));
const t1 = Math.max(...requests.map((r) => r.end));
const inLevel = steps.filter((s) => s.end >= t0 && s.end - s.ms <= t1);

/** Index of the first step ending at or after t (steps are in end order). */
function firstEndingAfter(t) {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid].end < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const gaps = [];
for (const r of requests) {
  for (let i = 1; i < r.token_at.length; i++) {
    const a = r.token_at[i - 1];
    const b = r.token_at[i];
    // The step that produced token i ended before b; the one that produced token i-1 ended before a.
    const from = firstEndingAfter(a);
    let to = firstEndingAfter(b) - 1;
    const ran = to >= from ? steps.slice(from, to + 1) : [];
    const busy = ran.reduce((s, x) => s + Math.min(x.ms, x.end - a), 0);
    const lastEnd = ran.length ? ran[ran.length - 1].end : a;
    gaps.push({ gap: b - a, at: a - t0, steps: ran.length, busy, idle: Math.max(0, lastEnd - a - busy), delivery: b - lastEnd, ran });
  }
}
gaps.sort((x, y) => y.gap - x.gap);
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};
const p99 = pct(gaps.map((g) => g.gap), 0.99);
const tail = gaps.filter((g) => g.gap >= p99);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
console.log(`${server} at ${level} streams: ${requests.length} requests, ${gaps.length} gaps, level ${fmt((t1 - t0) / 1000, 2)} s, ${inLevel.length} steps`);
console.log(`gap p50 ${fmt(pct(gaps.map((g) => g.gap), 0.5), 1)} ms, p99 ${fmt(p99, 1)} ms; over the ${tail.length} gaps >= p99, mean parts: steps ${fmt(mean(tail.map((g) => g.steps)), 2)}, step time ${fmt(mean(tail.map((g) => g.busy)), 1)} ms, engine idle ${fmt(mean(tail.map((g) => g.idle)), 1)} ms, delivery ${fmt(mean(tail.map((g) => g.delivery)), 1)} ms`);
console.log(`\nlargest ${top} gaps:`);
for (const g of gaps.slice(0, top)) {
  const desc = g.ran.map((s) => `${fmt(s.ms, 1)}ms[b${s.batch} d${s.decode} p${s.prefill}${s.buckets ? ` ${s.buckets.join('+')}` : ''}${s.compiled ? ` compiled ${s.compiled}` : ''}]`).join(' + ');
  console.log(`  ${fmt(g.gap, 1)} ms at +${fmt(g.at / 1000, 2)} s: ${desc || '(no step)'}; idle ${fmt(g.idle, 1)}, delivery ${fmt(g.delivery, 1)}`);
}
const kinds = { decode: inLevel.filter((s) => s.prefill === 0), mixed: inLevel.filter((s) => s.prefill > 0) };
console.log('\nsteps in the level:');
for (const [k, ss] of Object.entries(kinds)) {
  if (!ss.length) continue;
  console.log(`  ${k}: ${ss.length} steps, ${fmt(ss.reduce((a, s) => a + s.ms, 0) / 1000, 2)} s, mean ${fmt(mean(ss.map((s) => s.ms)), 1)} ms (p99 ${fmt(pct(ss.map((s) => s.ms), 0.99), 1)}), mean decode tokens ${fmt(mean(ss.map((s) => s.decode)), 1)}, mean prefill tokens ${fmt(mean(ss.map((s) => s.prefill)), 1)}`);
}
const stepTime = inLevel.reduce((a, s) => a + s.ms, 0);
console.log(`  engine busy ${fmt(stepTime / 1000, 2)} s of ${fmt((t1 - t0) / 1000, 2)} s; steps with fewer than ${level} decodes: ${inLevel.filter((s) => s.decode < level).length}`);
const hist = new Map();
for (const s of inLevel) hist.set(s.decode, (hist.get(s.decode) ?? 0) + 1);
console.log(`  decodes per step: ${[...hist].sort((a, b) => a[0] - b[0]).map(([d, n]) => `${d}:${n}`).join(' ')}`);
const byBucket = new Map();
for (const s of inLevel) {
  const k = (s.buckets ?? ['?']).join('+');
  const e = byBucket.get(k) ?? [];
  e.push(s.ms);
  byBucket.set(k, e);
}
console.log('\nsteps by bucket (count, median ms, max ms):');
for (const [k, ms] of [...byBucket].sort((a, b) => b[1].length - a[1].length)) console.log(`  ${k.padEnd(28)} ${String(ms.length).padStart(4)}  ${fmt(pct(ms, 0.5), 1).padStart(6)}  ${fmt(Math.max(...ms), 1).padStart(7)}`);
