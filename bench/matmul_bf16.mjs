#!/usr/bin/env node
/**
 * bf16 matmul GFLOP/s (f32 accumulation, bf16 result), Tessera side by side with PyTorch, with the f32
 * matmul of both at the same sizes for reference, in one run:
 *
 *   node bench/matmul_bf16.mjs [--sizes 256,512,1024,2048] [--threads 1,2]
 *                              [--peers tessera-bf16,tessera-bf16-jit,tessera-f32,pytorch-bf16,pytorch-f32]
 *                              [--samples 7] [--min-sample-ms 100] [--check-n 128] [--interp-max-n 512]
 *                              [--retries 2] [--busy-threshold 0.25] [--retry-budget-s 120] [--child-timeout-s 300]
 *                              [--no-docs]
 *   node bench/matmul_bf16.mjs --docs-only     # rewrite the docs section from bench/results/matmul_bf16.json
 *
 * Every (peer, n, threads) measurement runs in its own child process (this script with `--worker`, or
 * bench/peers/torch_matmul_bf16.py), with the peer's own thread knob:
 *   tessera-bf16      TESSERA_THREADS=t; a, b: bf16 tensors realized on the device (f32 data cast to bf16);
 *                     timed: `autocast({ dtype: 'bf16' }, () => a.matmul(b)).realize()` (f32 accumulation,
 *                     bf16 result), then dispose; the first call (which compiles) is not timed
 *   tessera-bf16-jit  the same through `jit((x, y) => autocast({ dtype: 'bf16' }, () => x.matmul(y)))`:
 *                     calls 1 (trace), 2 (capture), 3 (first replay) untimed; timed calls are replays
 *   tessera-f32       a.matmul(b).realize() on f32 inputs (bench/matmul.mjs's `tessera`)
 *   tessera-f32-jit   (not by default) jit((x, y) => x.matmul(y)) on f32 (bench/matmul.mjs's `tessera-jit`)
 *   pytorch-bf16      torch.matmul on torch.bfloat16 tensors, torch.set_num_threads(t) + OMP_NUM_THREADS,
 *                     Debian torch 1.13 (its bf16 matmul goes to oneDNN when built in; the oneDNN
 *                     implementation used is recorded per row from oneDNN's verbose log of the untimed call)
 *   pytorch-f32       torch.matmul on f32 (OpenBLAS, bench/peers/torch_matmul.py's set-up)
 *   pytorch-bf16-noonednn (not by default) pytorch-bf16 with torch.backends.mkldnn disabled: ATen's own
 *                     bf16 gemm, the path PyTorch takes without oneDNN (slow; keep --sizes small)
 * The PyTorch children run under /usr/bin/python3 with lib/common.mjs torchEnv (OPENBLAS_CORETYPE=SkylakeX,
 * ATEN_CPU_CAPABILITY=avx512 on AVX-512 CPUs). One more child, before the measurements, records what
 * PyTorch's bf16 matmul runs on (oneDNN build and ISA, implementation name, mkldnn availability).
 *
 * Correctness, in every child before timing: a full product at --check-n (128) of the harness's
 * deterministic inputs (lib/common.mjs randomF32, seeds 1 and 2; rounded to bf16, round-to-nearest-even,
 * for the bf16 peers) against float64 dot products of the same rounded inputs; error per entry
 * |C - ref| / max(|ref|, 1e-3 * sum_k |a_ik b_kj|), tolerance 1e-2 for the bf16 peers (bf16's unit roundoff
 * is 2^-8 = 0.0039) and 1e-3 for f32. The bf16 peers must also return bf16. At the measured n, 16 probes
 * (lib/common.mjs checkMatmul, error relative to sum_k |a_ik b_kj|) against float64.
 *
 * Timing is lib/common.mjs timeIt (PyTorch: the same loop in Python): samples calibrated to last
 * >= --min-sample-ms, best and median per call. GFLOP/s = 2 n^3 / time.
 *
 * The machine may be shared: each child's run is watched for CPU time used by other processes (/proc/stat
 * minus our own, `foreign_cores`), a run during which others used more than --busy-threshold cores is
 * retried (--retries, after waiting up to 30 s per retry for a quiet machine) while the whole run has
 * lasted less than --retry-budget-s, keeping the quietest attempt; figures still disturbed are marked †.
 *
 * Tessera's cpu backend compiles its kernels at run time against the C headers in
 * src/runtime/cpu/csrc/ (gemm.h, tessera_api.h) of the working tree, not against dist/: each Tessera row
 * records a hash of those headers, and the run warns when they (or dist/) changed while it ran.
 *
 * Writes bench/results/matmul_bf16.json, prints Markdown tables (GFLOP/s with % of the f32 FMA peak of
 * bench/results/peak.json at that thread count; ratios; % of the bf16 dot-product peak, taken as 2x the
 * f32 FMA peak: one 512-bit vdpbf16ps does 32 bf16 multiply-adds into 16 f32 lanes, 64 flop against a
 * vfmadd231ps's 32, at the same issue rate on this CPU) and rewrites its own section at the end of
 * docs/benchmarks.md (between the markers below; appended if absent; --no-docs skips it). bench/report.mjs
 * regenerates that page without this section: `--docs-only` puts it back from the JSON.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  BENCH_DIR,
  PYTHON,
  ROOT_DIR,
  checkMatmul,
  checkMatmulFull,
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
  runJsonChild,
  runJsonChildQuiet,
  tesseraBuildInfo,
  timeIt,
  torchEnv,
  writeResult,
} from './lib/common.mjs';

const args = parseArgs();
const SELF = join(BENCH_DIR, 'matmul_bf16.mjs');
const TORCH_PEER = join(BENCH_DIR, 'peers', 'torch_matmul_bf16.py');
const RESULT_FILE = 'matmul_bf16.json';
const DOCS_FILE = join(ROOT_DIR, 'docs', 'benchmarks.md');
const DOCS_BEGIN = '<!-- bench/matmul_bf16.mjs: begin (rendered by bench/report.mjs, and alone by node bench/matmul_bf16.mjs --docs-only) -->';
const DOCS_END = '<!-- bench/matmul_bf16.mjs: end -->';
const CSRC_DIR = join(ROOT_DIR, 'src', 'runtime', 'cpu', 'csrc');

export const ALL_PEERS = [
  'tessera-bf16',
  'tessera-bf16-jit',
  'tessera-f32',
  'tessera-f32-jit',
  'pytorch-bf16',
  'pytorch-f32',
  'pytorch-bf16-noonednn',
];
export const DEFAULT_PEERS = ['tessera-bf16', 'tessera-bf16-jit', 'tessera-f32', 'pytorch-bf16', 'pytorch-f32'];
const LABEL = {
  'tessera-bf16': 'Tessera bf16 (realize)',
  'tessera-bf16-jit': 'Tessera bf16 (jit)',
  'tessera-f32': 'Tessera f32 (realize)',
  'tessera-f32-jit': 'Tessera f32 (jit)',
  'pytorch-bf16': 'PyTorch bf16',
  'pytorch-f32': 'PyTorch f32',
  'pytorch-bf16-noonednn': 'PyTorch bf16, oneDNN off',
};
const label = (p) => LABEL[p] ?? p;
const isTessera = (p) => p.startsWith('tessera');
const isBf16 = (p) => p.includes('bf16');
/** Tolerance of the full check at --check-n (per-entry error as defined in the header). */
const tolerance = (p) => (isBf16(p) ? 1e-2 : 1e-3);
/** Probe error (relative to sum |a b|) above which a row at the measured n is flagged. */
const probeTolerance = (p) => (isBf16(p) ? 1e-2 : 1e-4);
const flopOf = (n) => 2 * n ** 3;

// ------------------------------------------------------------------------------------------------
// Checks (the Python peer mirrors these)
// ------------------------------------------------------------------------------------------------

const f32Cell = new Float32Array(1);
const u32Cell = new Uint32Array(f32Cell.buffer);
/** f32 values rounded to bf16, round-to-nearest-even (NaN stays NaN), as float values. Independent of Tessera. */
export function roundBf16(x) {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f32Cell[0] = x[i];
    const b = u32Cell[0];
    if ((b & 0x7fffffff) > 0x7f800000) {
      out[i] = NaN;
      continue;
    }
    u32Cell[0] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
    out[i] = f32Cell[0];
  }
  return out;
}

/** Largest error relative to each entry (any NaN or infinite entry: Infinity). */
const valueRelErr = (c) => (c.non_finite ? Infinity : c.max_value_rel_err);

/** Short hash of the C headers Tessera's cpu backend compiles its kernels against (from the working tree). */
export function csrcFingerprint() {
  try {
    const h = createHash('sha256');
    for (const f of ['gemm.h', 'tessera_api.h']) h.update(readFileSync(join(CSRC_DIR, f)));
    return h.digest('hex').slice(0, 12);
  } catch {
    return null;
  }
}

/** Whether src/runtime/cpu/csrc has uncommitted changes (git status), i.e. the measured kernel is not HEAD's. */
function csrcGitState() {
  const r = spawnSync('git', ['status', '--porcelain', '--', 'src/runtime/cpu/csrc', 'src/codegen/render/c.ts'], {
    cwd: ROOT_DIR,
    encoding: 'utf8',
  });
  if (r.status !== 0) return null;
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim());
}

// ------------------------------------------------------------------------------------------------
// Tessera workers: one measurement, one JSON line on stdout
// ------------------------------------------------------------------------------------------------

async function workerTessera(peer, n, threads, timing, checkN) {
  const bf16 = isBf16(peer);
  const useJit = peer.endsWith('-jit');
  const T = await importTessera();
  const jit = useJit ? (await importTessera('jit/index.js')).jit : undefined;
  if (useJit && typeof jit !== 'function') throw new Error('dist/jit/index.js exports no jit function');
  if (bf16 && typeof T.autocast !== 'function') throw new Error('dist/index.js exports no autocast function');
  const { device, runtime, devices, note } = pickDevice(T);
  const rt = T.getRuntime(device);
  const sync = async () => {
    if (!rt.synchronous) await rt.synchronize();
  };
  const read = async (t) => (rt.synchronous ? t.dataSync() : await t.data());
  // inputs: f32 host data -> device tensor -> (bf16 peers) cast to bf16 on the device, realized
  const input = (host, size) => {
    const t = T.tensor(host, { shape: [size, size], dtype: 'f32', device });
    return (bf16 ? t.cast('bf16') : t).realize();
  };
  const body = bf16 ? (x, y) => T.autocast({ dtype: 'bf16' }, () => x.matmul(y)) : (x, y) => x.matmul(y);
  // `call(a, b)`: a realized product, as the timed loop makes it
  const makeCall = () => {
    if (!useJit) return (x, y) => body(x, y).realize();
    const mm = jit(body);
    const f = (x, y) => mm(x, y);
    f.stats = () => ({ ...mm.stats });
    return f;
  };
  const outDtypeWanted = bf16 ? 'bf16' : 'f32';

  // 1. full check at checkN, on its own tensors (and, for jit, its own jitted function, replayed)
  const Ac = randomF32(checkN * checkN, 1);
  const Bc = randomF32(checkN * checkN, 2);
  const Acr = bf16 ? roundBf16(Ac) : Ac;
  const Bcr = bf16 ? roundBf16(Bc) : Bc;
  const ac = input(Ac, checkN);
  const bc = input(Bc, checkN);
  // the cast itself: the device's bf16 inputs must be the round-to-nearest-even values
  let inputMismatches = 0;
  if (bf16) {
    const [ra, rb] = [await read(ac), await read(bc)];
    for (let i = 0; i < ra.length; i++) inputMismatches += (ra[i] !== Acr[i]) + (rb[i] !== Bcr[i]);
  }
  const callC = makeCall();
  let cc;
  for (let i = 0; i < (useJit ? 3 : 1); i++) {
    cc?.dispose();
    cc = callC(ac, bc);
    await sync();
  }
  if (useJit && callC.stats().replayed < 1) throw new Error(`jit: check call 3 was not a replay (${JSON.stringify(callC.stats())})`);
  const check = {
    n: checkN,
    max_rel_err: valueRelErr(checkMatmulFull(Acr, Bcr, await read(cc), checkN)),
    out_dtype: cc.dtype,
    input_cast_mismatches: inputMismatches,
  };
  cc.dispose();
  ac.dispose();
  bc.dispose();

  // 2. the measurement at n
  const Ah = randomF32(n * n, 1);
  const Bh = randomF32(n * n, 2);
  const a = input(Ah, n);
  const b = input(Bh, n);
  const call = makeCall();
  const t0 = performance.now();
  call(a, b).dispose();
  await sync();
  const first_ms = performance.now() - t0;
  const firstStats = T.lastRealizeStats();
  if (useJit) {
    call(a, b).dispose(); // capture
    await sync();
  }
  const c0 = call(a, b); // realize: second call; jit: first replay
  await sync();
  if (useJit && call.stats().replayed !== 1) throw new Error(`jit: call 3 was not a replay (${JSON.stringify(call.stats())})`);
  const out_dtype = c0.dtype;
  const max_rel_err = checkMatmul(bf16 ? roundBf16(Ah) : Ah, bf16 ? roundBf16(Bh) : Bh, await read(c0), n);
  c0.dispose();
  const stats = T.lastRealizeStats();
  const t = await timeIt(async () => {
    const c = call(a, b);
    await sync();
    c.dispose();
  }, timing);
  if (out_dtype !== outDtypeWanted || check.out_dtype !== outDtypeWanted)
    throw new Error(`${peer}: result dtype ${out_dtype} (check: ${check.out_dtype}), expected ${outDtypeWanted}`);
  return {
    peer,
    n,
    threads,
    dtype: bf16 ? 'bf16' : 'f32',
    out_dtype,
    best_ms: t.best,
    median_ms: t.median,
    gflops_best: flopOf(n) / t.best / 1e6,
    gflops_median: flopOf(n) / t.median / 1e6,
    inner: t.inner,
    samples_ms: t.samples,
    device,
    runtime,
    devices,
    device_note: note,
    tessera_threads_env: process.env.TESSERA_THREADS ?? null,
    csrc_hash: csrcFingerprint(),
    first_ms,
    first_compiled: firstStats.compiled,
    ...(useJit
      ? { jit_stats: call.stats(), launches_per_replay: call.stats().launchesPerReplay }
      : { kernels_per_call: stats.kernels, kinds: stats.kinds }),
    max_rel_err,
    check,
  };
}

async function worker() {
  const n = Number(args.n);
  const threads = Number(args.threads ?? 1);
  const timing = { samples: Number(args.samples ?? 7), minSampleMs: Number(args['min-sample-ms'] ?? 100) };
  const checkN = Number(args['check-n'] ?? 128);
  try {
    if (!isTessera(args.worker) || !ALL_PEERS.includes(args.worker)) throw new Error(`unknown worker ${args.worker}`);
    console.log(JSON.stringify(await workerTessera(args.worker, n, threads, timing, checkN)));
  } catch (e) {
    console.log(JSON.stringify({ peer: args.worker, n, threads, error: String(e?.stack ?? e) }));
    process.exitCode = 1;
  }
}

// ------------------------------------------------------------------------------------------------
// Tables and the docs section (from the result JSON only, so --docs-only can redo them)
// ------------------------------------------------------------------------------------------------

const rowOf = (res, peer, n, threads) => res.results.find((r) => r.peer === peer && r.n === n && r.threads === threads);
const okRow = (res, peer, n, threads) => {
  const r = rowOf(res, peer, n, threads);
  return r && r.gflops_best && !r.error && !r.skipped ? r : undefined;
};
const f32Peak = (peak, threads) => peak?.fma?.[threads]?.gflops;
const disturbed = (res, r) => r.foreign_cores > (res.busy_threshold ?? 0.25);

function gflopsTable(res, peak) {
  const head = ['n', 'threads', ...res.peers.map((p) => `${label(p)} GFLOP/s (% f32 peak)`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const threads of res.threads)
    for (const n of res.sizes) {
      const pk = f32Peak(peak, threads);
      const cell = (p) => {
        const r = rowOf(res, p, n, threads);
        if (!r) return '-';
        if (r.skipped) return `skipped (${r.skipped})`;
        if (r.error) return 'failed';
        const wrong = r.wrong ? ' WRONG' : '';
        return `${fmt(r.gflops_best)} / ${fmt(r.gflops_median)}${pk ? ` (${fmt((100 * r.gflops_best) / pk, 0)}%)` : ''}${disturbed(res, r) ? ' †' : ''}${wrong}`;
      };
      lines.push(`| ${n} | ${threads} | ${res.peers.map(cell).join(' | ')} |`);
    }
  return lines.join('\n');
}

function ratioPairs(res) {
  const has = (p) => res.peers.includes(p);
  const pairs = [];
  for (const t of ['tessera-bf16', 'tessera-bf16-jit']) if (has(t) && has('pytorch-bf16')) pairs.push([t, 'pytorch-bf16']);
  if (has('tessera-bf16') && has('tessera-f32')) pairs.push(['tessera-bf16', 'tessera-f32']);
  if (has('tessera-bf16-jit') && has('tessera-f32-jit')) pairs.push(['tessera-bf16-jit', 'tessera-f32-jit']);
  else if (has('tessera-bf16-jit') && has('tessera-f32')) pairs.push(['tessera-bf16-jit', 'tessera-f32']);
  if (has('pytorch-bf16') && has('pytorch-f32')) pairs.push(['pytorch-bf16', 'pytorch-f32']);
  if (has('tessera-f32') && has('pytorch-f32')) pairs.push(['tessera-f32', 'pytorch-f32']);
  if (has('pytorch-bf16-noonednn') && has('pytorch-bf16')) pairs.push(['pytorch-bf16-noonednn', 'pytorch-bf16']);
  return pairs;
}

function ratioTable(res) {
  const pairs = ratioPairs(res);
  if (!pairs.length) return '';
  const head = ['n', 'threads', ...pairs.map(([a, b]) => `${label(a)} / ${label(b)}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const threads of res.threads)
    for (const n of res.sizes) {
      const cells = pairs.map(([a, b]) => {
        const ra = okRow(res, a, n, threads);
        const rb = okRow(res, b, n, threads);
        if (!ra || !rb) return '-';
        const d = disturbed(res, ra) || disturbed(res, rb) ? ' †' : '';
        return `${(ra.gflops_best / rb.gflops_best).toFixed(3)}x (${(ra.gflops_median / rb.gflops_median).toFixed(3)}x)${d}`;
      });
      lines.push(`| ${n} | ${threads} | ${cells.join(' | ')} |`);
    }
  return lines.join('\n');
}

/** % of the bf16 dot-product peak (2x the f32 FMA peak) of each bf16 peer, from best. */
function bf16PeakTable(res, peak) {
  const bfPeers = res.peers.filter(isBf16);
  if (!peak || !bfPeers.length) return '';
  const head = ['n', 'threads', 'bf16 peak GFLOP/s (2x f32 FMA peak)', ...bfPeers.map((p) => `${label(p)} % of bf16 peak`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' ---: ').join('|')}|`];
  for (const threads of res.threads)
    for (const n of res.sizes) {
      const pk = f32Peak(peak, threads);
      const cells = bfPeers.map((p) => {
        const r = okRow(res, p, n, threads);
        return r && pk ? `${fmt((100 * r.gflops_best) / (2 * pk), 0)}%${disturbed(res, r) ? ' †' : ''}` : '-';
      });
      lines.push(`| ${n} | ${threads} | ${pk ? fmt(2 * pk) : 'n/a'} | ${cells.join(' | ')} |`);
    }
  return lines.join('\n');
}

/** Plain-language notes: PyTorch's bf16 path, checks, peaks, build, disturbed rows. */
function notes(res, peak) {
  const out = [];
  const f = res.torch_facts;
  const bfRows = res.results.filter((r) => r.peer === 'pytorch-bf16' && !r.error);
  if (f && !f.error) {
    const impls = [...new Set(bfRows.map((r) => r.onednn_impl ?? 'none (no oneDNN primitive ran)'))];
    out.push(
      `PyTorch ${f.version}: oneDNN built in (${f.mkldnn_build ?? 'version unknown'}), \`torch.backends.mkldnn.is_available()\` = ${f.mkldnn_available}; ` +
        `oneDNN detects ISA "${f.onednn_isa ?? 'unknown'}"; ATen CPU capability ${f.aten_capability ?? 'unknown'}. ` +
        `Its bf16 matmul runs oneDNN's \`${f.bf16_onednn_impl ?? 'none'}\` (verbose log of a 64x64 product)` +
        (bfRows.length ? `; in the measured rows: ${impls.map((i) => `\`${i}\``).join(', ')} (the untimed first call of each row, logged with \`torch.backends.mkldnn.verbose\`)` : '') +
        `. Its f32 matmul is OpenBLAS (${f.openblas?.core ?? 'core unknown'}), no oneDNN primitive.`,
    );
  } else if (f?.error) out.push(`PyTorch facts child failed: ${String(f.error).split('\n')[0]}`);
  // pathological PyTorch bf16: no oneDNN primitive, or much slower than its own f32
  const slow = [];
  for (const r of bfRows) {
    const r32 = okRow(res, 'pytorch-f32', r.n, r.threads);
    if (!r.onednn_impl || (r32 && r.gflops_best < 0.5 * r32.gflops_best))
      slow.push(`n=${r.n} t=${r.threads}: ${fmt(r.gflops_best)} GFLOP/s${r32 ? ` vs f32 ${fmt(r32.gflops_best)}` : ''}, oneDNN impl ${r.onednn_impl ?? 'none'}`);
  }
  if (slow.length)
    out.push(
      `**PyTorch's bf16 matmul is pathologically slow here** (a fallback, not a tuned bf16 kernel): ${slow.join('; ')}. A Tessera / PyTorch bf16 ratio above 1 on those rows says little.`,
    );
  else if (bfRows.length)
    out.push(
      "PyTorch's bf16 matmul is not a naive fallback on this machine: every measured row ran oneDNN's bf16 kernel and was at least half as fast as PyTorch's own f32 matmul.",
    );
  // which kind of kernel Tessera's bf16 rows ran, inferred from the f32 FMA peak (a widening kernel cannot pass it)
  const tb = res.results.filter((r) => isTessera(r.peer) && isBf16(r.peer) && r.gflops_best && !r.error);
  if (tb.length && peak) {
    const over = tb.filter((r) => r.gflops_best > (f32Peak(peak, r.threads) ?? Infinity));
    out.push(
      over.length
        ? `Tessera's bf16 product passes the f32 FMA peak in ${over.length} of ${tb.length} rows (up to ${fmt(Math.max(...over.map((r) => (100 * r.gflops_best) / f32Peak(peak, r.threads))), 0)}% of it): the measured build uses the bf16 dot product (vdpbf16ps), which a kernel that widens to f32 cannot do.`
        : "No Tessera bf16 row passes the f32 FMA peak: consistent with a kernel that widens bf16 to f32 (or a dot-product kernel still short of that peak).",
    );
  }
  const noDnn = res.results.filter((r) => r.peer === 'pytorch-bf16-noonednn' && !r.error);
  if (noDnn.length)
    out.push(
      `With oneDNN off (\`torch.backends.mkldnn.flags(enabled=False)\`), PyTorch's bf16 matmul falls back to ATen's own gemm: ${noDnn.map((r) => `n=${r.n} t=${r.threads} ${fmt(r.gflops_best)} GFLOP/s`).join(', ')}.`,
    );
  if (peak)
    out.push(
      `Peaks (bench/results/peak.json, ${peak.date}): f32 FMA ${res.threads.map((t) => `${fmt(f32Peak(peak, t))} GFLOP/s on ${t} thread${t > 1 ? 's' : ''}`).join(', ')}. ` +
        'The bf16 dot-product peak is taken as twice that (not measured by bench/peak): one 512-bit vdpbf16ps does 32 bf16 multiply-adds into 16 f32 lanes (64 flop) where a vfmadd231ps does 16 (32 flop), at the same issue rate on this CPU. A bf16 kernel that widens bf16 to f32 and runs the f32 micro-kernel is bounded by the f32 peak (100% in the first table); only a dot-product kernel can pass it.',
    );
  else out.push('No bench/results/peak.json: run `node bench/peak/run.mjs` for the % of peak figures.');
  const checks = res.results
    .filter((r) => r.check)
    .map((r) => ({ p: r.peer, e: r.check.max_rel_err, n: r.check.n, mm: r.check.input_cast_mismatches }));
  const byPeer = {};
  for (const c of checks) byPeer[c.p] = Math.max(byPeer[c.p] ?? 0, Number.isNaN(c.e) ? Infinity : c.e);
  if (checks.length)
    out.push(
      `Correctness (every child, before timing): full ${checks[0].n}x${checks[0].n} product on bf16-rounded inputs (f32 inputs for the f32 rows) against float64, worst per-entry error |C - ref| / max(|ref|, 1e-3 Σ|a b|) over the run: ` +
        Object.entries(byPeer)
          .map(([p, e]) => `${label(p)} ${e.toExponential(2)} (tolerance ${tolerance(p)}${e > tolerance(p) ? ': **FAILED**' : ''})`)
          .join(', ') +
        `; plus 16 probes at each measured n.${checks.some((c) => c.mm) ? ' **Tessera\'s f32 -> bf16 cast did not round to nearest even on some inputs.**' : ''}`,
    );
  const wrong = res.results.filter((r) => r.wrong);
  if (wrong.length) out.push(`**Wrong results**: ${wrong.map((r) => `${label(r.peer)} n=${r.n} t=${r.threads}: ${r.wrong}`).join('; ')}.`);
  const failed = res.results.filter((r) => r.error);
  if (failed.length)
    out.push(`Failed: ${failed.map((r) => `${label(r.peer)} n=${r.n} t=${r.threads}: ${String(r.error).split('\n')[0].slice(0, 160)}`).join('; ')}.`);
  const b = res.tessera_build;
  if (b) {
    const dirty = res.csrc_git_state?.length ? `uncommitted: ${res.csrc_git_state.join(', ')}` : 'as committed';
    out.push(
      `Tessera: commit \`${b.commit}\`, dist/ built ${b.dist_built}; the C kernels were compiled from the working tree's src/runtime/cpu/csrc (headers hash \`${res.csrc_hash_at_start}\`, ${dirty}).` +
        (res.warnings?.length ? ` **${res.warnings.join(' ')}**` : ''),
    );
  }
  // a multi-thread row no faster than the same peer on 1 thread: the other core was not (fully) ours
  const flat = [];
  for (const r of res.results) {
    if (!(r.threads > 1) || !r.gflops_best || r.error) continue;
    const r1 = okRow(res, r.peer, r.n, 1);
    if (r1 && r.n >= 512 && r.gflops_best < 1.15 * r1.gflops_best) flat.push(`${label(r.peer)} n=${r.n} t=${r.threads} (${fmt(r.gflops_best)} vs ${fmt(r1.gflops_best)} on 1 thread)`);
  }
  if (flat.length)
    out.push(
      `No faster on ${flat.length > 1 ? 'these' : 'this'} 2-thread row${flat.length > 1 ? 's' : ''} than on 1 thread: ${flat.join(', ')}. Unless a peer really does not scale, the second core was busy with work the /proc/stat watch does not see (another VM, or a load that started between samples): compare such rows with care, or rerun.`,
    );
  const dist = res.results.filter((r) => !r.error && !r.skipped && disturbed(res, r));
  if (dist.length)
    out.push(
      `† measured while other processes used more than ${res.busy_threshold} cores (after ${res.retries} retries): ${dist.map((r) => `${label(r.peer)} n=${r.n} t=${r.threads} (${fmt(r.foreign_cores, 2)})`).join(', ')}.`,
    );
  return out;
}

export function renderTables(res, peak) {
  return [
    `GFLOP/s best / median (% of the f32 FMA peak at that thread count, from best):`,
    '',
    gflopsTable(res, peak),
    '',
    'Throughput ratios, best / best (median / median); above 1: the first is faster:',
    '',
    ratioTable(res),
    '',
    ...(peak ? ['% of the bf16 dot-product peak (2x the f32 FMA peak), from best:', '', bf16PeakTable(res, peak), ''] : []),
    'Notes:',
    '',
    ...notes(res, peak).map((s) => `- ${s}`),
  ].join('\n');
}

export function renderDocsSection(res, peak) {
  return [
    DOCS_BEGIN,
    '',
    '## bf16 matmul',
    '',
    `Command: \`${res.command}\` (${res.date}). \`bench/report.mjs\` renders this section from \`bench/results/matmul_bf16.json\` too; \`node bench/matmul_bf16.mjs --docs-only\` rewrites only it.`,
    '',
    "Tessera's bf16 products run on AVX-512 BF16's `vdpbf16ps` (src/runtime/cpu/csrc/GEMM.md), whose peak is twice the f32 FMA's; the figures are those of the kernel in the build recorded below. " +
      'Both sides compute C = A @ B on bf16 inputs with f32 accumulation and a bf16 result: Tessera `autocast({ dtype: \'bf16\' }, () => a.matmul(b)).realize()` on bf16 tensors realized on the `cpu` device (and its `jit` replay), PyTorch `torch.matmul` on `torch.bfloat16` tensors; the f32 columns are the same products in f32, for reference. Each (peer, n, threads) is its own process.',
    '',
    renderTables(res, peak),
    '',
    DOCS_END,
  ].join('\n');
}

/** Replace this script's section of docs/benchmarks.md (between the markers), or append it at the end. */
function updateDocs(section) {
  const text = existsSync(DOCS_FILE) ? readFileSync(DOCS_FILE, 'utf8') : '# Benchmarks\n';
  const i = text.indexOf(DOCS_BEGIN);
  const j = text.indexOf(DOCS_END);
  let out;
  if (i >= 0 && j > i) out = text.slice(0, i) + section + text.slice(j + DOCS_END.length);
  else out = `${text.replace(/\s*$/, '')}\n\n${section}\n`;
  writeFileSync(DOCS_FILE, out);
  return DOCS_FILE;
}

// ------------------------------------------------------------------------------------------------
// Orchestrator
// ------------------------------------------------------------------------------------------------

const quiet = { retries: Number(args.retries ?? 2), threshold: Number(args['busy-threshold'] ?? 0.25) };

function measure(peer, n, threads, timing, checkN, retries, timeoutMs) {
  const common = [
    '--n',
    String(n),
    '--threads',
    String(threads),
    '--samples',
    String(timing.samples),
    '--min-sample-ms',
    String(timing.minSampleMs),
    '--check-n',
    String(checkN),
  ];
  const q = { ...quiet, retries };
  if (!isTessera(peer)) {
    const extra = peer === 'pytorch-f32' ? ['--dtype', 'f32'] : ['--dtype', 'bf16'];
    if (peer === 'pytorch-bf16-noonednn') extra.push('--no-onednn');
    return runJsonChildQuiet(PYTHON, [TORCH_PEER, ...common, ...extra], { env: torchEnv(threads), timeoutMs }, q);
  }
  const env = { ...process.env, TESSERA_THREADS: String(threads) };
  return runJsonChildQuiet(process.execPath, [SELF, '--worker', peer, ...common], { env, timeoutMs }, q);
}

async function main() {
  const t0 = performance.now();
  const buildAtStart = tesseraBuildInfo();
  const csrcAtStart = csrcFingerprint();
  const sizes = numList(args.sizes, [256, 512, 1024, 2048]);
  const threadList = numList(args.threads, [1, 2]);
  const peers = args.peers ? String(args.peers).split(',') : DEFAULT_PEERS;
  const timing = { samples: Number(args.samples ?? 7), minSampleMs: Number(args['min-sample-ms'] ?? 100) };
  const checkN = Number(args['check-n'] ?? 128);
  const interpMaxN = Number(args['interp-max-n'] ?? 512);
  const retryBudgetS = Number(args['retry-budget-s'] ?? 120);
  const childTimeoutMs = Number(args['child-timeout-s'] ?? 300) * 1000;
  for (const p of peers)
    if (!ALL_PEERS.includes(p)) throw new Error(`unknown peer ${p} (expected ${ALL_PEERS.join(', ')})`);

  let tess = null;
  if (peers.some(isTessera)) {
    const probe = probeTesseraDevice();
    if (!probe.ok) throw new Error(`cannot load Tessera: ${probe.error}\n${probe.stderr}`);
    tess = probe.result;
    console.log(`Tessera device: ${tess.device} (${tess.note}); C headers ${csrcAtStart}`);
  }
  let torchFacts = null;
  if (peers.some((p) => !isTessera(p))) {
    const r = runJsonChild(PYTHON, [TORCH_PEER, '--facts', '--threads', String(threadList[0])], {
      env: torchEnv(threadList[0]),
      timeoutMs: 120_000,
    });
    torchFacts = r.ok ? r.result : { error: r.error, stderr: r.stderr };
    if (r.ok)
      console.log(
        `PyTorch ${r.result.version}: mkldnn available ${r.result.mkldnn_available}, ${r.result.mkldnn_build}; oneDNN ISA: ${r.result.onednn_isa}; bf16 matmul -> oneDNN ${r.result.bf16_onednn_impl ?? 'NONE (ATen fallback)'}`,
      );
    else console.log(`PyTorch facts child FAILED: ${r.error}\n${r.stderr}`);
  }
  const peak = readResult('peak.json');
  if (!peak) console.log('no bench/results/peak.json yet: run node bench/peak/run.mjs for the % of peak columns');

  const results = [];
  for (const threads of threadList)
    for (const n of sizes)
      for (const peer of peers) {
        if (isTessera(peer) && tess.runtime === 'interp' && (n > interpMaxN || threads > 1)) {
          results.push({ peer, n, threads, skipped: n > interpMaxN ? `interp: n > ${interpMaxN}` : 'interp: single-threaded' });
          continue;
        }
        const elapsed = (performance.now() - t0) / 1000;
        const r = measure(peer, n, threads, timing, checkN, elapsed > retryBudgetS ? 0 : quiet.retries, childTimeoutMs);
        const busy =
          r.foreign_cores === null || r.foreign_cores === undefined
            ? ''
            : `  [other processes: ${r.foreign_cores.toFixed(2)} cores${r.attempts > 1 ? `, ${r.attempts} attempts` : ''}]`;
        const tag = `  ${peer.padEnd(16)} n=${String(n).padStart(4)} t=${threads}:`;
        if (r.ok) {
          const row = { ...r.result, foreign_cores: r.foreign_cores, attempts: r.attempts };
          const why = [];
          if (row.check && !(row.check.max_rel_err <= tolerance(peer)))
            why.push(`check at n=${row.check.n}: max rel err ${row.check.max_rel_err} > ${tolerance(peer)}`);
          if (!(row.max_rel_err <= probeTolerance(peer))) why.push(`probes at n=${n}: max rel err ${row.max_rel_err}`);
          if (row.check?.input_cast_mismatches) why.push(`${row.check.input_cast_mismatches} bf16 inputs not rounded to nearest even`);
          if (isBf16(peer) && row.out_dtype !== 'bf16' && row.out_dtype !== 'bfloat16') why.push(`result dtype ${row.out_dtype}`);
          if (why.length) row.wrong = why.join('; ');
          results.push(row);
          const impl = row.onednn_impl !== undefined && isBf16(peer) ? `  [oneDNN: ${row.onednn_impl ?? 'none'}]` : '';
          console.log(
            `${tag} ${fmt(row.gflops_best)} GFLOP/s best, ${fmt(row.gflops_median)} median${row.wrong ? `  WRONG: ${row.wrong}` : ''}${impl}${busy}`,
          );
        } else {
          results.push({ peer, n, threads, error: r.error, stderr: r.stderr, foreign_cores: r.foreign_cores });
          console.log(`${tag} FAILED: ${r.error}\n${r.stderr}`);
        }
      }

  const buildNow = tesseraBuildInfo();
  const csrcNow = csrcFingerprint();
  const warnings = [];
  if (buildNow.dist_built !== buildAtStart.dist_built)
    warnings.push(`dist/ was rebuilt during this run (${buildAtStart.dist_built} -> ${buildNow.dist_built}): Tessera figures may mix two builds.`);
  const hashes = [...new Set(results.filter((r) => r.csrc_hash).map((r) => r.csrc_hash))];
  if (csrcNow !== csrcAtStart || hashes.length > 1)
    warnings.push(
      `src/runtime/cpu/csrc headers changed during this run (${[csrcAtStart, ...hashes, csrcNow].filter((v, i, a) => a.indexOf(v) === i).join(' -> ')}): Tessera rows may have run different kernels (each row records csrc_hash).`,
    );
  for (const w of warnings) console.log(`WARNING: ${w}`);
  const res = {
    kind: 'matmul_bf16',
    date: new Date().toISOString(),
    command: commandLine('matmul_bf16.mjs'),
    machine: machineInfo(),
    tessera: tess,
    tessera_build: { ...buildNow, dist_built_at_start: buildAtStart?.dist_built ?? null },
    csrc_hash_at_start: csrcAtStart,
    csrc_hash_at_end: csrcNow,
    csrc_git_state: csrcGitState(),
    torch_facts: torchFacts,
    sizes,
    threads: threadList,
    peers,
    timing,
    check_n: checkN,
    interp_max_n: interpMaxN,
    busy_threshold: quiet.threshold,
    retries: quiet.retries,
    retry_budget_s: retryBudgetS,
    peak_file_date: peak?.date ?? null,
    wall_s: (performance.now() - t0) / 1000,
    warnings,
    results,
  };
  const file = writeResult(RESULT_FILE, res);
  console.log(`\n${renderTables(res, peak)}\n\nwrote ${file} (${fmt(res.wall_s, 0)} s)`);
  if (!args['no-docs']) console.log(`updated ${updateDocs(renderDocsSection(res, peak))} (its "bf16 matmul" section)`);
  if (results.some((r) => r.error || r.wrong)) process.exitCode = 1;
}

function docsOnly() {
  const res = readResult(RESULT_FILE);
  if (!res) throw new Error(`no bench/results/${RESULT_FILE}: run node bench/matmul_bf16.mjs first`);
  const peak = readResult('peak.json');
  console.log(renderTables(res, peak));
  console.log(`\nupdated ${updateDocs(renderDocsSection(res, peak))} from bench/results/${RESULT_FILE} (${res.date})`);
}

// run only as a script (importing this module for its table helpers runs nothing)
if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(SELF)) {
  if (args.worker) await worker();
  else if (args['docs-only']) docsOnly();
  else await main();
}
