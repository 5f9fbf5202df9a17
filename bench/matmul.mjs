#!/usr/bin/env node
/**
 * f32 matmul GFLOP/s, Tessera side by side with its peers, in one run:
 *
 *   node bench/matmul.mjs [--sizes 256,512,1024,2048] [--threads 1,2] [--peers tessera,tessera-jit,pytorch,onnxruntime,tfjs-wasm]
 *                         [--samples 7] [--min-sample-ms 100] [--interp-max-n 512] [--retries 2] [--busy-threshold 0.25]
 *
 * Every (peer, n, threads) measurement runs in its own child process (this script with `--worker`, or
 * bench/peers/torch_matmul.py), with the thread count set through the peer's own knob:
 *   tessera      TESSERA_THREADS=t; realize of a.matmul(b) on realized inputs (first call, which
 *                compiles, is not timed); the device is 'cpu' when registered, else 'interp'
 *   tessera-jit  the same, through `const mm = jit((a, b) => a.matmul(b))` from dist/jit: calls 1 (trace),
 *                2 (capture) and 3 (first replay) are not timed; timed calls are replays, `mm(a, b).dispose()`
 *   pytorch      torch.set_num_threads(t) (+ OMP_NUM_THREADS), Debian torch 1.13 + OpenBLAS, run with
 *                /usr/bin/python3 and OPENBLAS_CORETYPE=SkylakeX
 *   onnxruntime  onnxruntime-node, a one-node MatMul model written by bench/lib/onnx.mjs, intraOpNumThreads=t
 *   tfjs-wasm    @tensorflow/tfjs-backend-wasm, setThreadsCount(t) before setBackend('wasm')
 *
 * The machine may be shared: each child's run is watched for CPU time used by other processes
 * (/proc/stat minus our own), recorded as `foreign_cores`, and a run during which others used more than
 * --busy-threshold cores is retried (--retries), keeping the quietest attempt; the table marks
 * figures measured while others were busy.
 *
 * Writes bench/results/matmul.json and prints a Markdown table (GFLOP/s, % of the FMA peak measured by
 * bench/peak/run.mjs for the same thread count, Tessera / peer ratios).
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  BENCH_DIR,
  PYTHON,
  checkMatmul,
  commandLine,
  fmt,
  importTessera,
  machineInfo,
  numList,
  parseArgs,
  pickDevice,
  probeTesseraDevice,
  randomF32,
  readResult,
  runJsonChildQuiet,
  tesseraBuildInfo,
  timeIt,
  torchEnv,
  writeResult,
} from './lib/common.mjs';
import { matmulModel } from './lib/onnx.mjs';
import { matmulRatioTable, matmulTable } from './lib/tables.mjs';

const require = createRequire(join(BENCH_DIR, 'package.json'));
const args = parseArgs();
const SELF = join(BENCH_DIR, 'matmul.mjs');
export const ALL_PEERS = ['tessera', 'tessera-jit', 'pytorch', 'onnxruntime', 'tfjs-wasm'];
const isTessera = (p) => p === 'tessera' || p === 'tessera-jit';

const flopOf = (n) => 2 * n ** 3;
function summary(peer, n, threads, t, extra = {}) {
  return {
    peer,
    n,
    threads,
    best_ms: t.best,
    median_ms: t.median,
    gflops_best: flopOf(n) / t.best / 1e6,
    gflops_median: flopOf(n) / t.median / 1e6,
    inner: t.inner,
    ...extra,
  };
}

// ------------------------------------------------------------------------------------------------
// Workers: one measurement, one JSON line on stdout
// ------------------------------------------------------------------------------------------------

async function workerTessera(n, threads, timing) {
  const T = await importTessera();
  const { device, runtime, devices, note } = pickDevice(T);
  const rt = T.getRuntime(device);
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = T.tensor(Ah, { shape: [n, n], dtype: 'f32', device }).realize();
  const b = T.tensor(Bh, { shape: [n, n], dtype: 'f32', device }).realize();
  const t0 = performance.now();
  const c0 = a.matmul(b).realize();
  if (!rt.synchronous) await rt.synchronize();
  const first_ms = performance.now() - t0;
  const firstStats = T.lastRealizeStats();
  const C = rt.synchronous ? c0.dataSync() : await c0.data();
  const max_rel_err = checkMatmul(Ah, Bh, C, n);
  c0.dispose();
  const t = await timeIt(async () => {
    const c = a.matmul(b);
    c.realize();
    if (!rt.synchronous) await rt.synchronize();
    c.dispose();
  }, timing);
  const stats = T.lastRealizeStats();
  return summary('tessera', n, threads, t, {
    device,
    runtime,
    devices,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    first_ms,
    first_compiled: firstStats.compiled,
    kernels_per_call: stats.kernels,
    kinds: stats.kinds,
    max_rel_err,
  });
}

async function workerTesseraJit(n, threads, timing) {
  const T = await importTessera();
  const { jit } = await importTessera('jit/index.js');
  if (typeof jit !== 'function') throw new Error('dist/jit/index.js exports no jit function');
  const { device, runtime, devices, note } = pickDevice(T);
  const rt = T.getRuntime(device);
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = T.tensor(Ah, { shape: [n, n], dtype: 'f32', device }).realize();
  const b = T.tensor(Bh, { shape: [n, n], dtype: 'f32', device }).realize();
  const mm = jit((x, y) => x.matmul(y));
  const sync = async () => {
    if (!rt.synchronous) await rt.synchronize();
  };
  // call 1 traces (and compiles), call 2 captures, call 3 is the first replay: none is timed
  const t0 = performance.now();
  mm(a, b).dispose();
  await sync();
  const first_ms = performance.now() - t0;
  const firstStats = T.lastRealizeStats();
  mm(a, b).dispose();
  await sync();
  const c3 = mm(a, b);
  await sync();
  if (mm.stats.replayed !== 1) throw new Error(`jit: call 3 was not a replay (${JSON.stringify(mm.stats)})`);
  const C = rt.synchronous ? c3.dataSync() : await c3.data();
  const max_rel_err = checkMatmul(Ah, Bh, C, n); // checked on a replayed result
  c3.dispose();
  const t = await timeIt(async () => {
    const c = mm(a, b);
    await sync();
    c.dispose();
  }, timing);
  return summary('tessera-jit', n, threads, t, {
    device,
    runtime,
    devices,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    first_ms,
    first_compiled: firstStats.compiled,
    jit_stats: { ...mm.stats },
    launches_per_replay: mm.stats.launchesPerReplay,
    max_rel_err,
  });
}

async function workerOrt(n, threads, timing) {
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(matmulModel(n, n, n), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  });
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const feeds = { A: new ort.Tensor('float32', Ah, [n, n]), B: new ort.Tensor('float32', Bh, [n, n]) };
  const t0 = performance.now();
  const out = await session.run(feeds);
  const first_ms = performance.now() - t0;
  const max_rel_err = checkMatmul(Ah, Bh, out.C.data, n);
  const t = await timeIt(() => session.run(feeds), timing);
  return summary('onnxruntime', n, threads, t, {
    version: require('onnxruntime-node/package.json').version,
    first_ms,
    max_rel_err,
  });
}

async function workerTfjs(n, threads, timing) {
  const tf = require('@tensorflow/tfjs-core');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setThreadsCount(threads);
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: setBackend("wasm") failed');
  await tf.ready();
  const multithread = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const actual = wasm.getThreadsCount();
  if (threads > 1 && actual < threads) {
    return {
      peer: 'tfjs-wasm',
      n,
      threads,
      unavailable: `multithreading unavailable in Node: WASM_HAS_MULTITHREAD_SUPPORT=${multithread}, getThreadsCount()=${actual} (tfjs disables threaded wasm under Node, tensorflow/tfjs#3830)`,
    };
  }
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = tf.tensor2d(Ah, [n, n], 'float32');
  const b = tf.tensor2d(Bh, [n, n], 'float32');
  const t0 = performance.now();
  const c0 = tf.matMul(a, b);
  const C = c0.dataSync();
  const first_ms = performance.now() - t0;
  const max_rel_err = checkMatmul(Ah, Bh, C, n);
  c0.dispose();
  // the wasm kernels run synchronously inside matMul(); the result stays in wasm memory
  const t = await timeIt(() => tf.matMul(a, b).dispose(), timing);
  return summary('tfjs-wasm', n, threads, t, {
    version: require('@tensorflow/tfjs-backend-wasm/package.json').version,
    simd,
    multithread_support: multithread,
    threads_count: actual,
    first_ms,
    max_rel_err,
  });
}

async function worker() {
  const n = Number(args.n);
  const threads = Number(args.threads ?? 1);
  const timing = { samples: Number(args.samples ?? 7), minSampleMs: Number(args['min-sample-ms'] ?? 100) };
  const fn = {
    tessera: workerTessera,
    'tessera-jit': workerTesseraJit,
    onnxruntime: workerOrt,
    'tfjs-wasm': workerTfjs,
  }[args.worker];
  if (!fn) throw new Error(`unknown worker ${args.worker}`);
  try {
    console.log(JSON.stringify(await fn(n, threads, timing)));
  } catch (e) {
    console.log(JSON.stringify({ peer: args.worker, n, threads, error: String(e?.stack ?? e) }));
    process.exitCode = 1;
  }
}

// ------------------------------------------------------------------------------------------------
// Orchestrator
// ------------------------------------------------------------------------------------------------

const quiet = { retries: Number(args.retries ?? 2), threshold: Number(args['busy-threshold'] ?? 0.25) };

function measure(peer, n, threads, timing) {
  const common = [
    '--n',
    String(n),
    '--threads',
    String(threads),
    '--samples',
    String(timing.samples),
    '--min-sample-ms',
    String(timing.minSampleMs),
  ];
  if (peer === 'pytorch') {
    return runJsonChildQuiet(
      PYTHON,
      [join(BENCH_DIR, 'peers', 'torch_matmul.py'), ...common],
      { env: torchEnv(threads) },
      quiet,
    );
  }
  const env = { ...process.env };
  if (isTessera(peer)) env.TESSERA_THREADS = String(threads);
  else env.OMP_NUM_THREADS = String(threads);
  return runJsonChildQuiet(process.execPath, [SELF, '--worker', peer, ...common], { env }, quiet);
}

async function main() {
  const buildAtStart = tesseraBuildInfo();
  const sizes = numList(args.sizes, [256, 512, 1024, 2048]);
  const threadList = numList(args.threads, [1, 2]);
  const peers = args.peers ? String(args.peers).split(',') : ALL_PEERS;
  const timing = { samples: Number(args.samples ?? 7), minSampleMs: Number(args['min-sample-ms'] ?? 100) };
  const interpMaxN = Number(args['interp-max-n'] ?? 512);
  for (const p of peers)
    if (!ALL_PEERS.includes(p)) throw new Error(`unknown peer ${p} (expected ${ALL_PEERS.join(', ')})`);

  let tess = null;
  if (peers.some(isTessera)) {
    const probe = probeTesseraDevice();
    if (!probe.ok) throw new Error(`cannot load Tessera: ${probe.error}\n${probe.stderr}`);
    tess = probe.result;
    console.log(`Tessera device: ${tess.device} (${tess.note})`);
    if (tess.runtime === 'interp')
      console.log(
        `  interp is the slow single-threaded reference: Tessera runs capped at n <= ${interpMaxN} and 1 thread (--interp-max-n)`,
      );
  }
  const peak = readResult('peak.json');
  if (!peak)
    console.log('no bench/results/peak.json yet: run node bench/peak/run.mjs for the % of peak columns');

  const results = [];
  for (const threads of threadList) {
    for (const n of sizes) {
      for (const peer of peers) {
        if (isTessera(peer) && tess.runtime === 'interp' && (n > interpMaxN || threads > 1)) {
          results.push({
            peer,
            n,
            threads,
            skipped: n > interpMaxN ? `interp: n > ${interpMaxN}` : 'interp: single-threaded',
          });
          continue;
        }
        const r = measure(peer, n, threads, timing);
        const busy =
          r.foreign_cores === null
            ? ''
            : `  [other processes: ${r.foreign_cores.toFixed(2)} cores${r.attempts > 1 ? `, ${r.attempts} attempts` : ''}]`;
        if (r.ok) {
          r.result.foreign_cores = r.foreign_cores;
          r.result.attempts = r.attempts;
          results.push(r.result);
          if (r.result.unavailable)
            console.log(
              `  ${peer.padEnd(11)} n=${String(n).padStart(4)} t=${threads}: ${r.result.unavailable}`,
            );
          else {
            const err = r.result.max_rel_err;
            console.log(
              `  ${peer.padEnd(11)} n=${String(n).padStart(4)} t=${threads}: ${fmt(r.result.gflops_best)} GFLOP/s best, ${fmt(r.result.gflops_median)} median${err > 1e-4 ? `  WRONG RESULT? max rel err ${err}` : ''}${busy}`,
            );
          }
        } else {
          results.push({
            peer,
            n,
            threads,
            error: r.error,
            stderr: r.stderr,
            foreign_cores: r.foreign_cores,
          });
          console.log(
            `  ${peer.padEnd(11)} n=${String(n).padStart(4)} t=${threads}: FAILED: ${r.error}\n${r.stderr}`,
          );
        }
      }
    }
  }
  const res = {
    kind: 'matmul',
    date: new Date().toISOString(),
    command: commandLine('matmul.mjs'),
    machine: machineInfo(),
    tessera: tess,
    tessera_build: { ...tesseraBuildInfo(), dist_built_at_start: buildAtStart?.dist_built ?? null },
    sizes,
    threads: threadList,
    peers,
    timing,
    interp_max_n: interpMaxN,
    busy_threshold: quiet.threshold,
    peak_file_date: peak?.date ?? null,
    results,
  };
  const buildNow = tesseraBuildInfo();
  if (buildNow.dist_built !== buildAtStart.dist_built)
    console.log(
      `WARNING: dist/ was rebuilt during this run (${buildAtStart.dist_built} -> ${buildNow.dist_built}): Tessera figures may mix two builds`,
    );
  const file = writeResult('matmul.json', res);
  console.log(
    `\nGFLOP/s best / median (% of the ${peak ? 'measured' : 'unknown'} FMA peak at that thread count, from best):\n`,
  );
  console.log(matmulTable(res, peak));
  console.log('\nThroughput ratios, best / best (median / median); above 1: the first is faster:\n');
  console.log(matmulRatioTable(res));
  console.log(`\nwrote ${file}`);
}

if (args.worker) await worker();
else await main();
