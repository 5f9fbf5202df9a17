#!/usr/bin/env node
/**
 * Machine limits, the denominators of every "% of peak" in docs/benchmarks.md:
 * f32 FMA peak (fma_peak.c) and DRAM bandwidth (stream.c), each on 1..N threads.
 *
 *   node bench/peak/run.mjs [--threads 1,2] [--stream-elements 67108864] [--reps 7] [--retries 3] [--busy-threshold 0.25]
 *
 * Compiles both programs with `cc -O3 -march=native -pthread` into bench/peak/build/ and writes
 * bench/results/peak.json. A run during which other processes used more than --busy-threshold cores is
 * retried (the quietest attempt is kept, and its `foreign_cores` recorded).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  BENCH_DIR,
  commandLine,
  machineInfo,
  numList,
  parseArgs,
  runJsonChildQuiet,
  writeResult,
} from '../lib/common.mjs';

const args = parseArgs();
const threads = numList(args.threads, [1, 2]);
const reps = Number(args.reps ?? 7);
const elements = String(args['stream-elements'] ?? 67108864);
const CC = process.env.CC ?? 'cc';
const quiet = { retries: Number(args.retries ?? 3), threshold: Number(args['busy-threshold'] ?? 0.25) };
const FLAGS = ['-O3', '-march=native', '-pthread'];

const srcDir = join(BENCH_DIR, 'peak');
const buildDir = join(srcDir, 'build');
mkdirSync(buildDir, { recursive: true });
for (const name of ['fma_peak', 'stream']) {
  const r = spawnSync(CC, [...FLAGS, join(srcDir, `${name}.c`), '-o', join(buildDir, name)], {
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    console.error(`peak: compiling ${name}.c failed:\n${r.stderr}`);
    process.exit(1);
  }
}
const ccVersion = spawnSync(CC, ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? CC;

const busyNote = (r) =>
  r.foreign_cores == null
    ? ''
    : `  [other processes: ${r.foreign_cores.toFixed(2)} cores${r.attempts > 1 ? `, ${r.attempts} attempts` : ''}]`;
const fma = {};
const stream = {};
for (const t of threads) {
  const f = runJsonChildQuiet(join(buildDir, 'fma_peak'), [String(t), '0.4', String(reps)], {}, quiet);
  if (!f.ok) throw new Error(`fma_peak ${t}: ${f.error}\n${f.stderr}`);
  fma[t] = { ...f.result, foreign_cores: f.foreign_cores, attempts: f.attempts };
  console.log(
    `fma peak   ${t} thread${t > 1 ? 's' : ' '}: ${f.result.gflops.toFixed(1)} GFLOP/s f32 (${f.result.widths.map((w) => `${w.bits}-bit ${w.gflops.toFixed(1)}`).join(', ')})${busyNote(f)}`,
  );
}
for (const t of threads) {
  const s = runJsonChildQuiet(join(buildDir, 'stream'), [String(t), elements, String(reps)], {}, quiet);
  if (!s.ok) throw new Error(`stream ${t}: ${s.error}\n${s.stderr}`);
  stream[t] = { ...s.result, foreign_cores: s.foreign_cores, attempts: s.attempts };
  console.log(
    `stream     ${t} thread${t > 1 ? 's' : ' '}: copy ${s.result.copy_gbs.toFixed(1)} GB/s, triad ${s.result.triad_gbs.toFixed(1)} GB/s (3 x ${s.result.array_mib} MiB arrays)${busyNote(s)}`,
  );
}

const file = writeResult('peak.json', {
  kind: 'peak',
  date: new Date().toISOString(),
  command: commandLine('peak/run.mjs'),
  machine: machineInfo(),
  compiler: `${ccVersion} ${FLAGS.join(' ')}`,
  busy_threshold: quiet.threshold,
  fma,
  stream,
});
console.log(`wrote ${file}`);
