/**
 * Shared pieces of the benchmark harness: paths, child processes that print one JSON result line,
 * timing statistics, the Tessera device choice, machine facts, result files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT_DIR = resolve(BENCH_DIR, '..');
export const RESULTS_DIR = join(BENCH_DIR, 'results');
export const DIST_DIR = join(ROOT_DIR, 'dist');

/** The interpreter the PyTorch peers must run under (Debian's python3-torch lives in its dist-packages). */
export const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';

/**
 * Environment of a PyTorch child: OpenBLAS must be told to use its AVX-512 kernels
 * (`OPENBLAS_CORETYPE=SkylakeX`, overridable), ATen its AVX-512 kernels on AVX-512 CPUs
 * (`ATEN_CPU_CAPABILITY=avx512`, overridable), and OpenMP gets the thread count.
 */
export function torchEnv(threads) {
  const env = {
    ...process.env,
    OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? 'SkylakeX',
    OMP_NUM_THREADS: String(threads),
    PYTHONDONTWRITEBYTECODE: '1',
  };
  // Debian's torch 1.13 dispatches its own (non-BLAS) kernels to AVX2 by default; give the peer its
  // AVX-512 kernels where the CPU has them (override with ATEN_CPU_CAPABILITY=default).
  if (!env.ATEN_CPU_CAPABILITY && cpuFlags().includes('avx512f')) env.ATEN_CPU_CAPABILITY = 'avx512';
  return env;
}

/** Parse `--key value` / `--flag` arguments into an object (values stay strings). */
export function parseArgs(argv = process.argv.slice(2)) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
    else out[a.slice(2)] = true;
  }
  return out;
}

export const numList = (s, dflt) => (s === undefined || s === true ? dflt : String(s).split(',').map(Number));

/**
 * Run a child process that prints its result as a JSON object on its last `{...}` stdout line.
 * Returns `{ ok, result?, error?, stderr, ms }`; never throws, so one failing peer does not stop a run.
 */
/** The last line of `text` that starts with '{', parsed (undefined if none, or not JSON). */
export function lastJsonLine(text) {
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .pop();
  try {
    return line ? JSON.parse(line) : undefined;
  } catch {
    return undefined;
  }
}

export function runJsonChild(
  cmd,
  args,
  { env = process.env, timeoutMs = 30 * 60_000, cwd = BENCH_DIR } = {},
) {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, cwd, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  const stderr = (r.stderr ?? '').trim();
  if (r.error) return { ok: false, error: `${cmd}: ${r.error.message}`, stderr, ms };
  const result = lastJsonLine(r.stdout ?? '');
  if (r.status !== 0 || !result || result.error) {
    const why = result?.error ?? (r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`);
    return { ok: false, error: why, stderr: stderr.split('\n').slice(-15).join('\n'), ms, result };
  }
  return { ok: true, result, stderr, ms };
}

/**
 * CPU time snapshot: all CPUs' busy time (/proc/stat) and this process's own plus its waited-for
 * children's CPU time (/proc/self/stat utime, stime, cutime, cstime), in clock ticks (USER_HZ, 100/s).
 */
export function cpuSnapshot() {
  try {
    const all = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = all[3] + (all[4] ?? 0); // idle + iowait
    const busy = all.slice(0, 8).reduce((a, b) => a + b, 0) - idle;
    const self = readFileSync('/proc/self/stat', 'utf8');
    const f = self
      .slice(self.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number); // fields from #3 (state) on
    const own = f[11] + f[12] + f[13] + f[14]; // utime stime cutime cstime (#14..#17)
    return { busy, own, t: performance.now() };
  } catch {
    return null;
  }
}

/**
 * CPU used by OTHER processes between two snapshots, in cores (0 = the machine was ours). Measurements
 * on a shared machine are only as good as this number.
 */
export function foreignCores(a, b) {
  if (!a || !b) return null;
  const seconds = (b.t - a.t) / 1000;
  if (seconds <= 0) return null;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / 100 / seconds);
}

/**
 * `runJsonChild` that also reports how busy the machine was with other work while the child ran, and
 * retries (up to `retries` times) when that exceeded `threshold` cores, keeping the quietest attempt.
 */
export function runJsonChildQuiet(cmd, args, opts = {}, { retries = 2, threshold = 0.25 } = {}) {
  let best;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const a = cpuSnapshot();
    const r = runJsonChild(cmd, args, opts);
    r.foreign_cores = foreignCores(a, cpuSnapshot());
    r.attempts = attempt + 1;
    if (!best || !r.ok || (r.foreign_cores ?? 0) < (best.foreign_cores ?? 0)) best = r;
    if (!r.ok || r.foreign_cores === null || r.foreign_cores <= threshold) break;
    if (attempt < retries) waitQuiet({ threshold, maxSeconds: 30 * (attempt + 1) });
  }
  return best;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
export function sleepMs(ms) {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/**
 * Wait (synchronously, up to `maxSeconds`) until other processes use at most `threshold` cores over a
 * 2-second window. Returns the last measured foreign load (null where /proc is unavailable).
 */
export function waitQuiet({ threshold = 0.25, maxSeconds = 60 } = {}) {
  const deadline = performance.now() + maxSeconds * 1000;
  let load = null;
  do {
    const a = cpuSnapshot();
    sleepMs(2000);
    load = foreignCores(a, cpuSnapshot());
    if (load === null || load <= threshold) return load;
  } while (performance.now() < deadline);
  return load;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Time `fn` (sync or async): calibrate an inner repeat count so one sample lasts at least `minSampleMs`,
 * then take `samples` samples. Returns per-call milliseconds `{ best, median, samples, inner }`.
 * The first call (which may compile) is made by the caller before this, and is not counted.
 */
export async function timeIt(fn, { samples = 7, minSampleMs = 50, maxInner = 1 << 14 } = {}) {
  let inner = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) await fn();
    const dt = performance.now() - t0;
    if (dt >= minSampleMs || inner >= maxInner) break;
    inner = Math.min(
      maxInner,
      Math.max(inner * 2, Math.ceil((inner * minSampleMs * 1.2) / Math.max(dt, 1e-3))),
    );
  }
  const per = [];
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) await fn();
    per.push((performance.now() - t0) / inner);
  }
  return { best: Math.min(...per), median: median(per), samples: per, inner };
}

/** Deterministic uniform [-1, 1) f32 data (xorshift), so inputs do not depend on a library's RNG. */
export function randomF32(len, seed = 1) {
  const out = new Float32Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x / 2147483648 - 1;
  }
  return out;
}

/**
 * Every entry of C = A @ B (row-major n x n) against float64 dot products: the largest absolute error
 * and the largest error relative to that entry's sum of |a·b| (harmless under cancellation) over the
 * finite entries, the largest error relative to the entry itself (floored at 1e-3 of its |a·b| sum: what a
 * low-precision result's rounding is measured against), and the count of entries that are NaN or infinite.
 */
export function checkMatmulFull(A, B, C, n) {
  let maxAbs = 0;
  let maxRel = 0;
  let maxValueRel = 0;
  let nonFinite = 0;
  const dot = new Float64Array(n);
  const scale = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    dot.fill(0);
    scale.fill(0);
    for (let k = 0; k < n; k++) {
      const a = A[i * n + k];
      const row = k * n;
      for (let j = 0; j < n; j++) {
        const p = a * B[row + j];
        dot[j] += p;
        scale[j] += Math.abs(p);
      }
    }
    for (let j = 0; j < n; j++) {
      const e = Math.abs(C[i * n + j] - dot[j]);
      if (!Number.isFinite(e)) {
        nonFinite++;
        continue;
      }
      if (e > maxAbs) maxAbs = e;
      const r = e / Math.max(scale[j], 1e-30);
      if (r > maxRel) maxRel = r;
      const v = e / Math.max(Math.abs(dot[j]), 1e-3 * scale[j], 1e-30);
      if (v > maxValueRel) maxValueRel = v;
    }
  }
  return { max_abs_err: maxAbs, max_rel_err: maxRel, max_value_rel_err: maxValueRel, non_finite: nonFinite };
}

/**
 * Check a few entries of C = A @ B (row-major n x n) against float64 dot products. Returns the largest
 * relative error over the probes (relative to the row's |a|·|b| scale, so cancellation is harmless).
 */
export function checkMatmul(A, B, C, n, probes = 16) {
  let worst = 0;
  for (let p = 0; p < probes; p++) {
    const i = (p * 7919) % n;
    const j = (p * 104729 + 13) % n;
    let dot = 0;
    let scale = 0;
    for (let k = 0; k < n; k++) {
      dot += A[i * n + k] * B[k * n + j];
      scale += Math.abs(A[i * n + k] * B[k * n + j]);
    }
    worst = Math.max(worst, Math.abs(C[i * n + j] - dot) / Math.max(scale, 1e-30));
  }
  return worst;
}

/** Import Tessera's built modules from the root `dist/` (built by `npm run build` at the root). */
export async function importTessera(sub = 'index.js') {
  const file = join(DIST_DIR, sub);
  if (!existsSync(file))
    throw new Error(`${file} is missing: run \`npm run build\` at the repository root first`);
  return import(pathToFileURL(file).href);
}

/**
 * The Tessera device to measure: `BENCH_TESSERA_DEVICE` when set, else 'cpu' when registered, else
 * 'interp' (the reference interpreter), with a note saying why. `runtime` is the runtime actually
 * behind the name (the registry may fall back to the interpreter); `slow` marks the interpreter.
 */
export function pickDevice(T) {
  const devices = T.listDevices();
  const forced = process.env.BENCH_TESSERA_DEVICE;
  if (forced) {
    if (!devices.includes(forced))
      throw new Error(`BENCH_TESSERA_DEVICE=${forced} is not registered (devices: ${devices.join(', ')})`);
    return {
      device: forced,
      runtime: T.getRuntime(forced).name,
      devices,
      note: `forced by BENCH_TESSERA_DEVICE`,
    };
  }
  if (devices.includes('cpu')) {
    // the registry may hand out the interpreter under the name 'cpu' when no C compiler works
    const runtime = T.getRuntime('cpu').name;
    if (runtime === 'cpu') return { device: 'cpu', runtime, devices, note: `native cpu backend` };
    return {
      device: 'cpu',
      runtime,
      devices,
      note: `'cpu' is registered but runs the '${runtime}' runtime (fallback)`,
    };
  }
  return {
    device: 'interp',
    runtime: 'interp',
    devices,
    note: `'cpu' is not registered (devices: ${devices.join(', ')}); using the interp reference runtime`,
  };
}

/** Probe, in a child process, which device the Tessera workers will use (so the parent need not load Tessera). */
export function probeTesseraDevice() {
  const code = `import(${JSON.stringify(pathToFileURL(join(BENCH_DIR, 'lib', 'common.mjs')).href)}).then(async (c) => { const T = await c.importTessera(); console.log(JSON.stringify(c.pickDevice(T))); }).catch((e) => { console.log(JSON.stringify({ error: String(e && e.message || e) })); process.exit(1); });`;
  return runJsonChild(process.execPath, ['--input-type=module', '-e', code]);
}

export function cpuModel() {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    /* not Linux */
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function cpuFlags() {
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1].split(/\s+/) : [];
  } catch {
    return [];
  }
}

export function machineInfo() {
  const flags = cpuFlags();
  const simd = ['avx512f', 'avx512_bf16', 'avx512_vnni', 'avx2', 'fma'].filter((f) => flags.includes(f));
  let cache = '';
  const ls = spawnSync('lscpu', [], { encoding: 'utf8' });
  if (ls.status === 0) {
    const pick = (k) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(ls.stdout)?.[1]?.trim();
    cache = ['L1d', 'L2', 'L3']
      .map((k) => (pick(`${k} cache`) ? `${k} ${pick(`${k} cache`)}` : ''))
      .filter(Boolean)
      .join(', ');
  }
  return {
    cpu: cpuModel(),
    logicalCpus: cpus().length,
    memGiB: +(totalmem() / 2 ** 30).toFixed(1),
    simd,
    cache,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** The Tessera source the measured dist/ was built from: commit, uncommitted src/ changes, build time. */
export function tesseraBuildInfo() {
  const git = (a) => spawnSync('git', a, { cwd: ROOT_DIR, encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--', 'src']);
  let built = null;
  try {
    built = statSync(join(DIST_DIR, 'index.js')).mtime.toISOString();
  } catch {
    /* not built */
  }
  // Files under src/ modified after dist/ was built: their changes are NOT in the measured build.
  const newer = [];
  if (built) {
    const t = Date.parse(built);
    const walk = (dir) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const f = join(dir, e.name);
        if (e.isDirectory()) walk(f);
        else if (statSync(f).mtimeMs > t) newer.push(relative(ROOT_DIR, f));
      }
    };
    try {
      walk(join(ROOT_DIR, 'src'));
    } catch {
      /* no src/ */
    }
  }
  return {
    commit: head.status === 0 ? head.stdout.trim() : null,
    src_uncommitted_files: dirty.status === 0 ? dirty.stdout.split('\n').filter(Boolean).length : null,
    dist_built: built,
    src_changed_after_build: newer.sort(),
  };
}

export function writeResult(name, data) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, name);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

export function readResult(name) {
  const file = join(RESULTS_DIR, name);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
}

/** The command line that produced this run, relative to the repository root. */
export function commandLine(script) {
  const args = process.argv.slice(2).map((a) => (/^[\w.,=/:-]+$/.test(a) ? a : JSON.stringify(a)));
  return ['node', `bench/${script}`, ...args].join(' ');
}

export const fmt = (x, d = 1) =>
  x === undefined || x === null || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(d);
