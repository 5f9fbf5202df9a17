#!/usr/bin/env node
/**
 * f32 matmul GFLOP/s on WebGPU: Tessera's WGSL kernels side by side with TensorFlow.js's WebGPU
 * backend, on the same adapter, in one run:
 *
 *   node bench/webgpu_matmul.mjs [--sizes 128,256,512] [--peers tessera,tessera-jit,tfjs-webgpu]
 *                                [--samples 5] [--min-sample-ms 200] [--roundtrips 3] [--full-check-max-n 512]
 *                                [--swiftshader auto|always|never] [--retries 1] [--busy-threshold 0.25]
 *                                [--retry-budget-s 60] [--child-timeout-s 90]
 *
 * WebGPU in Node is Dawn, from the `webgpu` npm package (a runtime dependency of Tessera at the
 * repository root). The adapter: with --swiftshader auto (default), whatever the inherited
 * environment finds, else Chromium's SwiftShader (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json,
 * XDG_RUNTIME_DIR=/tmp), a CPU implementation of Vulkan; `always` forces SwiftShader, `never` keeps
 * the environment as it is. On SwiftShader the "GPU" is this machine's CPU: the figures compare the two
 * WGSL code generators on one adapter (a relative figure only), they say nothing of a real GPU.
 *
 * Every (peer, n) measurement runs in its own child process (this script with `--worker`):
 *   tessera      device 'webgpu'; a.matmul(b).realize() on realized inputs (the first call, which
 *                compiles the WGSL, is not timed)
 *   tessera-jit  the same through `const mm = T.jit((a, b) => a.matmul(b))`: calls 1 (trace), 2
 *                (capture) and 3 (first replay) are not timed; timed calls are replays
 *   tfjs-webgpu  @tensorflow/tfjs-backend-webgpu (same version as @tensorflow/tfjs-core, from bench/'s
 *                npm project): `globalThis.navigator = { gpu }` from the `webgpu` package, then
 *                setBackend('webgpu'); tf.matMul(a, b) on uploaded inputs (first call not timed)
 * Timing is the same on every side (lib/webgpu.mjs timeGpu): a sample enqueues `inner` matmuls, then
 * awaits `data()` of the last result (the queue runs in order, so every matmul of the sample has
 * finished); per-call time = sample / inner, with `inner` calibrated so a sample lasts >= --min-sample-ms.
 * The read back of one n x n result per sample is therefore included, amortized over `inner` calls.
 * `roundtrip_ms` is one matmul plus the read back of its result, alone: the median of --roundtrips
 * extra calls, or of the samples themselves when a sample is one call.
 * Each result is checked before timing: every entry against float64 dot products for n <=
 * --full-check-max-n (max abs and relative error), 16 entries above.
 *
 * The machine may be shared, and SwiftShader runs on the CPU: CPU time used by other processes during
 * each child is measured, and a disturbed run retried (--retries, --busy-threshold) after waiting up to
 * 30 s for a quiet machine, but only while the run has lasted less than --retry-budget-s: every
 * measurement is always made once, and waiting for others adds at most about that much to the run.
 *
 * Writes bench/results/webgpu_matmul.json and prints the adapter, a GFLOP/s table and Tessera / tfjs
 * ratios. Exits 1 when no adapter is found or a measurement failed or was wrong (results still written).
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  BENCH_DIR,
  checkMatmul,
  commandLine,
  fmt,
  importTessera,
  machineInfo,
  numList,
  parseArgs,
  randomF32,
  runJsonChildQuiet,
  tesseraBuildInfo,
  writeResult,
  checkMatmulFull,
} from './lib/common.mjs';
import { webgpuMatmulRatioTable, webgpuMatmulTable, webgpuMatmulLabel } from './lib/tables.mjs';
import {
  adapterFacts,
  adapterLine,
  installWebGPU,
  timeGpu,
  webgpuChildEnv,
} from './lib/webgpu.mjs';

const require = createRequire(join(BENCH_DIR, 'package.json'));
const args = parseArgs();
const SELF = join(BENCH_DIR, 'webgpu_matmul.mjs');
export const ALL_PEERS = ['tessera', 'tessera-jit', 'tfjs-webgpu'];
const isTessera = (p) => p === 'tessera' || p === 'tessera-jit';
const DEVICE = 'webgpu';
const WRONG_REL = 1e-4;

const flopOf = (n) => 2 * n ** 3;
const wrongOf = (r) => !!r && (r.non_finite > 0 || !(r.max_rel_err <= WRONG_REL));

// ------------------------------------------------------------------------------------------------
// Workers: one measurement, one JSON line on stdout
// ------------------------------------------------------------------------------------------------

function workerOpts() {
  return {
    n: Number(args.n),
    timing: { samples: Number(args.samples ?? 5), minSampleMs: Number(args['min-sample-ms'] ?? 200) },
    roundtrips: Number(args.roundtrips ?? 3),
    fullCheckMaxN: Number(args['full-check-max-n'] ?? 512),
  };
}

/** Check C against A @ B: every entry up to fullCheckMaxN, else 16 probes. */
function check(Ah, Bh, C, n, fullCheckMaxN) {
  if (n <= fullCheckMaxN) return { check: 'full', ...checkMatmulFull(Ah, Bh, C, n) };
  return { check: '16 entries', max_abs_err: null, max_rel_err: checkMatmul(Ah, Bh, C, n), non_finite: 0 };
}

/**
 * Shared measurement: `launch()` enqueues one matmul and returns its result, `read(c)` resolves to its
 * host data, `release(c)` frees it. `warmup` calls happen before (untimed), the last one checked.
 */
async function measureCommon(
  { n, timing, roundtrips, fullCheckMaxN },
  Ah,
  Bh,
  launch,
  read,
  release,
  warmup = 1,
) {
  const t0 = performance.now();
  let c;
  for (let i = 0; i < warmup; i++) {
    if (c !== undefined) release(c);
    c = launch();
  }
  const C = await read(c);
  const first_ms = performance.now() - t0;
  const verdict = check(Ah, Bh, C, n, fullCheckMaxN);
  release(c);
  if (wrongOf(verdict)) return { first_ms, ...verdict, wrong: true };
  const t = await timeGpu(launch, read, release, timing);
  // with one call per sample, every sample already is a round trip
  const rts = t.inner === 1 ? [...t.samples] : [];
  for (let i = 0; t.inner > 1 && i < roundtrips; i++) {
    const r0 = performance.now();
    const x = launch();
    await read(x);
    rts.push(performance.now() - r0);
    release(x);
  }
  rts.sort((a, b) => a - b);
  return {
    best_ms: t.best,
    median_ms: t.median,
    gflops_best: flopOf(n) / t.best / 1e6,
    gflops_median: flopOf(n) / t.median / 1e6,
    inner: t.inner,
    samples_ms: t.samples,
    roundtrip_ms: rts.length ? rts[rts.length >> 1] : null,
    first_ms,
    ...verdict,
  };
}

/** Tessera's WebGPU runtime and what it says about its adapter. */
async function tesseraWebgpu(T) {
  const devices = T.listDevices();
  if (!devices.includes(DEVICE))
    throw new Error(`Tessera has no '${DEVICE}' device (registered: ${devices.join(', ')})`);
  const rt = T.getRuntime(DEVICE); // throws a DeviceError when there is no adapter
  const info = rt.adapterInfo ?? rt.adapter?.info ?? rt.info ?? null;
  let fingerprint = null;
  try {
    fingerprint = rt.fingerprint();
  } catch {
    /* optional */
  }
  return { rt, devices, runtime: rt.name, adapter: info ? adapterFacts(info) : null, fingerprint };
}

async function workerTessera(o, jitted) {
  const T = await importTessera();
  const { rt, devices, runtime, adapter, fingerprint } = await tesseraWebgpu(T);
  const { n } = o;
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = T.tensor(Ah, { shape: [n, n], dtype: 'f32', device: DEVICE }).realize();
  const b = T.tensor(Bh, { shape: [n, n], dtype: 'f32', device: DEVICE }).realize();
  if (!rt.synchronous) await rt.synchronize();
  const read = (c) => c.data();
  const release = (c) => c.dispose();
  let r;
  let extra = {};
  if (jitted) {
    if (typeof T.jit !== 'function') throw new Error('dist/index.js exports no jit function');
    const mm = T.jit((x, y) => x.matmul(y));
    let calls = 0;
    const call = () => {
      calls++;
      return mm(a, b);
    };
    // calls 1 (trace), 2 (capture), 3 (first replay, checked): none is timed
    r = await measureCommon(o, Ah, Bh, call, read, release, 3);
    if (mm.stats.traced !== 2 || mm.stats.replayed !== calls - 2)
      throw new Error(
        `jit: expected 2 traced calls and every later call replayed, got ${JSON.stringify(mm.stats)} after ${calls} calls`,
      );
    extra = { jit_stats: { ...mm.stats }, launches_per_replay: mm.stats.launchesPerReplay };
  } else {
    r = await measureCommon(
      o,
      Ah,
      Bh,
      () => {
        const c = a.matmul(b);
        c.realize();
        return c;
      },
      read,
      release,
    );
    const stats = T.lastRealizeStats?.();
    if (stats) extra = { kernels_per_call: stats.kernels, kinds: stats.kinds };
  }
  return {
    peer: jitted ? 'tessera-jit' : 'tessera',
    n,
    device: DEVICE,
    runtime,
    devices,
    adapter,
    fingerprint,
    ...extra,
    ...r,
  };
}

async function workerTfjs(o) {
  const { gpu, webgpuVersion } = await installWebGPU({ navigator: true });
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-backend-webgpu'); // registers 'webgpu' when navigator.gpu exists
  if (!tf.findBackendFactory('webgpu'))
    throw new Error('tfjs: the webgpu backend did not register (navigator.gpu missing?)');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: setBackend("webgpu") failed');
  await tf.ready();
  const backend = tf.backend();
  // the adapter tfjs asked for (its own requestAdapter call, same options): full facts
  const adapter = adapterFacts(
    await gpu.requestAdapter({
      powerPreference: tf.env().get('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance',
    }),
  );
  const { n } = o;
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = tf.tensor2d(Ah, [n, n], 'float32');
  const b = tf.tensor2d(Bh, [n, n], 'float32');
  const r = await measureCommon(
    o,
    Ah,
    Bh,
    () => tf.matMul(a, b),
    (c) => c.data(),
    (c) => c.dispose(),
  );
  return {
    peer: 'tfjs-webgpu',
    n,
    version: require('@tensorflow/tfjs-backend-webgpu/package.json').version,
    tfjs_core_version: require('@tensorflow/tfjs-core/package.json').version,
    webgpu_package_version: webgpuVersion,
    adapter,
    tfjs_adapter_info: backend.adapterInfo
      ? { vendor: backend.adapterInfo.vendor ?? null, architecture: backend.adapterInfo.architecture ?? null }
      : null,
    ...r,
  };
}

/** Probe: does Tessera's 'webgpu' device come up in this environment? */
async function workerProbeTessera() {
  const T = await importTessera();
  const { devices, runtime, adapter, fingerprint } = await tesseraWebgpu(T);
  return { device: DEVICE, runtime, devices, adapter, fingerprint };
}

async function worker() {
  const o = workerOpts();
  let out;
  try {
    if (args.worker === 'probe-tessera') out = await workerProbeTessera();
    else if (args.worker === 'tessera') out = await workerTessera(o, false);
    else if (args.worker === 'tessera-jit') out = await workerTessera(o, true);
    else if (args.worker === 'tfjs-webgpu') out = await workerTfjs(o);
    else throw new Error(`unknown worker ${args.worker}`);
  } catch (e) {
    out = { peer: args.worker, n: o.n, error: String(e?.stack ?? e) };
  }
  console.log(JSON.stringify(out));
  process.exitCode = out.error ? 1 : 0;
  // Let the process end by itself (a forced exit while Dawn's threads run can abort it), but leave
  // anyway after a second if a device keeps the event loop alive.
  setTimeout(() => process.exit(), 1000).unref();
}

// ------------------------------------------------------------------------------------------------
// Orchestrator
// ------------------------------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  const buildAtStart = tesseraBuildInfo();
  const sizes = numList(args.sizes, [128, 256, 512]);
  const peers = args.peers ? String(args.peers).split(',') : ALL_PEERS;
  const timing = { samples: Number(args.samples ?? 5), minSampleMs: Number(args['min-sample-ms'] ?? 200) };
  const roundtrips = Number(args.roundtrips ?? 3);
  const fullCheckMaxN = Number(args['full-check-max-n'] ?? 512);
  const quiet = { retries: Number(args.retries ?? 1), threshold: Number(args['busy-threshold'] ?? 0.25) };
  const retryBudgetS = Number(args['retry-budget-s'] ?? 60);
  const childTimeoutMs = Number(args['child-timeout-s'] ?? 90) * 1000;
  const mode = { auto: 'auto', always: 'swiftshader', never: 'inherit' }[String(args.swiftshader ?? 'auto')];
  if (!mode) throw new Error(`--swiftshader ${args.swiftshader}: expected auto, always or never`);
  for (const p of peers)
    if (!ALL_PEERS.includes(p)) throw new Error(`unknown peer ${p} (expected ${ALL_PEERS.join(', ')})`);

  const res = {
    kind: 'webgpu_matmul',
    date: new Date().toISOString(),
    command: commandLine('webgpu_matmul.mjs'),
    machine: machineInfo(),
    sizes,
    peers,
    timing,
    roundtrips,
    full_check_max_n: fullCheckMaxN,
    busy_threshold: quiet.threshold,
    retry_budget_s: retryBudgetS,
    swiftshader_mode: String(args.swiftshader ?? 'auto'),
    results: [],
  };
  const finish = (code) => {
    const buildNow = tesseraBuildInfo();
    res.tessera_build = { ...buildNow, dist_built_at_start: buildAtStart?.dist_built ?? null };
    if (buildNow.dist_built !== buildAtStart.dist_built)
      console.log(
        `WARNING: dist/ was rebuilt during this run (${buildAtStart.dist_built} -> ${buildNow.dist_built}): Tessera figures may mix two builds`,
      );
    const file = writeResult('webgpu_matmul.json', res);
    console.log(`\nwrote ${file}`);
    process.exitCode = code;
  };

  // 1. the adapter (and the environment the children need for it)
  let gpuEnv;
  try {
    gpuEnv = webgpuChildEnv(mode);
  } catch (e) {
    res.error = String(e.message ?? e);
    console.log(`WebGPU: ${res.error}`);
    return finish(1);
  }
  res.adapter = gpuEnv.adapter;
  res.driver = gpuEnv.driver;
  res.driver_note = gpuEnv.note;
  res.webgpu_package_version = gpuEnv.webgpu_version;
  console.log(`WebGPU adapter: ${adapterLine(gpuEnv.adapter)}`);
  console.log(`  ${gpuEnv.driver} (${gpuEnv.note}); webgpu package ${gpuEnv.webgpu_version}`);
  if (gpuEnv.adapter.swiftshader)
    console.log(
      '  SwiftShader runs the WGSL on this CPU: the figures below are relative only (Tessera vs TensorFlow.js on the same adapter), not GPU throughput',
    );
  const env = gpuEnv.env;

  // 2. Tessera's webgpu device
  let tessUnavailable = null;
  if (peers.some(isTessera)) {
    const probe = runJsonChildQuiet(
      process.execPath,
      [SELF, '--worker', 'probe-tessera'],
      { env, timeoutMs: childTimeoutMs },
      { retries: 0 },
    );
    if (probe.ok) {
      res.tessera = probe.result;
      console.log(
        `Tessera device '${DEVICE}': runtime ${probe.result.runtime}${probe.result.adapter ? `, adapter ${adapterLine(probe.result.adapter)}` : ''}${probe.result.fingerprint ? `, fingerprint ${probe.result.fingerprint}` : ''}`,
      );
    } else {
      tessUnavailable = String(probe.error).split('\n')[0];
      res.tessera = { device: DEVICE, error: String(probe.error) };
      console.log(
        `Tessera device '${DEVICE}' unavailable: ${tessUnavailable}${probe.stderr ? `\n${probe.stderr}` : ''}`,
      );
    }
  }

  // 3. measurements
  let bad = !!tessUnavailable;
  for (const n of sizes) {
    for (const peer of peers) {
      if (isTessera(peer) && tessUnavailable) {
        res.results.push({
          peer,
          n,
          unavailable: `Tessera '${DEVICE}' device unavailable: ${tessUnavailable}`,
        });
        continue;
      }
      const elapsed = (performance.now() - started) / 1000;
      const a = [
        SELF,
        '--worker',
        peer,
        '--n',
        String(n),
        '--samples',
        String(timing.samples),
        '--min-sample-ms',
        String(timing.minSampleMs),
        '--roundtrips',
        String(roundtrips),
        '--full-check-max-n',
        String(fullCheckMaxN),
      ];
      const r = runJsonChildQuiet(
        process.execPath,
        a,
        { env, timeoutMs: childTimeoutMs },
        { ...quiet, retries: elapsed > retryBudgetS ? 0 : quiet.retries },
      );
      const busy =
        r.foreign_cores === null || r.foreign_cores === undefined
          ? ''
          : `  [other processes: ${r.foreign_cores.toFixed(2)} cores${r.attempts > 1 ? `, ${r.attempts} attempts` : ''}]`;
      // a child that printed its measurement and then died while exiting (e.g. tearing down the
      // device thread) still measured: keep the figures, record how it ended
      const diedAfter = !r.ok && r.result && !r.result.error && r.result.gflops_best !== undefined;
      const row =
        r.ok || diedAfter
          ? { ...r.result }
          : { peer, n, error: r.error, stderr: r.stderr, ...(r.result ?? {}) };
      if (diedAfter) {
        row.exit_after_result = r.error;
        bad = true;
      }
      row.foreign_cores = r.foreign_cores;
      row.attempts = r.attempts;
      res.results.push(row);
      const label = webgpuMatmulLabel(peer).padEnd(24);
      if (diedAfter)
        console.log(
          `  ${label} n=${String(n).padStart(4)}: the process ended abnormally (${r.error}) after printing its result:\n${r.stderr}`,
        );
      if (!r.ok && !diedAfter) {
        bad = true;
        console.log(
          `  ${label} n=${String(n).padStart(4)}: FAILED: ${String(r.error).split('\n')[0]}\n${r.stderr}`,
        );
      } else if (row.wrong) {
        bad = true;
        console.log(
          `  ${label} n=${String(n).padStart(4)}: WRONG RESULT (${row.check}: max abs err ${row.max_abs_err}, max rel err ${row.max_rel_err}, ${row.non_finite} non-finite): not timed`,
        );
      } else
        console.log(
          `  ${label} n=${String(n).padStart(4)}: ${fmt(row.gflops_best, 2)} GFLOP/s best, ${fmt(row.gflops_median, 2)} median (${row.inner} per sample; round trip ${fmt(row.roundtrip_ms)} ms; first ${fmt(row.first_ms, 0)} ms; ${row.check} check max abs err ${row.max_abs_err === null ? 'n/a' : row.max_abs_err.toExponential(2)}, max rel ${row.max_rel_err.toExponential(2)})${busy}`,
        );
    }
  }
  res.elapsed_s = (performance.now() - started) / 1000;
  // vendor, architecture, device, description: what every side reports (tfjs adds isFallbackAdapter)
  const adapterKey = (a) => JSON.stringify([a.vendor, a.architecture, a.device, a.description]);
  const adapters = new Set(
    [res.adapter, res.tessera?.adapter, ...res.results.map((r) => r.adapter)].filter(Boolean).map(adapterKey),
  );
  if (adapters.size > 1) {
    console.log(`WARNING: the peers ran on different adapters: ${[...adapters].join(' vs ')}`);
    res.adapter_mismatch = [...adapters].map((s) => {
      const [vendor, architecture, device, description] = JSON.parse(s);
      return { vendor, architecture, device, description };
    });
  }

  console.log(`\nGFLOP/s best / median, adapter ${adapterLine(res.adapter)}:\n`);
  console.log(webgpuMatmulTable(res));
  console.log('\nThroughput ratios, best / best (median / median); above 1: Tessera is faster:\n');
  console.log(webgpuMatmulRatioTable(res));
  if (res.adapter.swiftshader)
    console.log('\nSwiftShader (CPU Vulkan): relative figures only, not GPU throughput.');
  finish(bad ? 1 : 0);
}

if (args.worker) await worker();
else await main();
